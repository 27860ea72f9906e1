"""Tiny runs of the quality benchmarks, only to keep them from rotting.

Their real figures (and commands) are in docs/; these runs use a few crops
and one epoch, so their numbers mean nothing.
"""

import importlib.util
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.scripts import ROOT

# The smoke runs are eager (--eager); tf.data says that does not reach it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Even though the `tf.config.experimental_run_functions_eagerly`"
)
needs_nuclei = pytest.mark.skipif(
    importlib.util.find_spec("stardist") is None,
    reason="pip install --no-deps stardist (the image ships in its wheel)",
)


@pytest.fixture
def run_benchmark(tmp_path, monkeypatch, capsys):
    """Run a benchmark's `main` in this process (a fresh interpreter would
    cost ~8 s of imports per test), in `tmp_path`; return what it printed."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    monkeypatch.chdir(tmp_path)

    def run(name, args):
        module = importlib.import_module(name.removesuffix(".py"))
        try:
            # --eager: a few steps run faster than the graph trace they would need.
            module.main([*args, "--eager"])
        finally:
            tf.config.run_functions_eagerly(False)
            keras.backend.clear_session()
        return capsys.readouterr().out

    return run


@pytest.mark.slow
@needs_nuclei
def test_recalibration_benchmark(run_benchmark, tmp_path):
    args = ["--seeds", "0", "--flops", "0.5", "--epochs", "1", "--crops", "32"]
    out = run_benchmark("recalibration.py", args + ["--json", "r.json"])
    assert "Dice recalibrated" in out
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["flops"] for r in rows] == [1.0, 0.5]


@pytest.mark.slow
@needs_nuclei
def test_importance_vs_l1_benchmark(run_benchmark, tmp_path):
    args = ["--seeds", "0", "--epochs", "1", "1", "1", "--crops", "32"]
    out = run_benchmark("importance_vs_l1.py", args + ["--json", "i.json"])
    assert "Dice after fine-tuning" in out
    rows = json.loads((tmp_path / "i.json").read_text())
    assert {(r["method"], r["recalibrated"]) for r in rows} == {
        (m, flag) for m in ("l1", "importance", "bn_scale") for flag in (False, True)
    }


@pytest.mark.slow
@needs_nuclei
# Its one epoch of importance training is too short for the multipliers to move.
@pytest.mark.filterwarnings("ignore:PruningCallback masks by the importance")
def test_quality_nuclei_benchmark(run_benchmark, tmp_path):
    # One method per code path of benchmarks/methods.py: one shot, staged,
    # staged on the wrapped model, the callback; all distilled, all under a
    # custom loss function (which Keras cannot deserialise).
    methods = ["l1_floor", "staged_comp", "importance_rounds", "callback_importance"]
    args = ["--seeds", "0", "--archs", "unet", "--targets", "0.5", "--methods"]
    args += methods + ["--distill", "on", "--epochs", "1", "1", "3", "--crops", "8"]
    args += ["--loss", "bce_dice", "--tune-lr", "2e-3", "--tune-schedule", "cosine"]
    out = run_benchmark("quality_nuclei.py", args + ["--json", "q.json"])
    assert "Dice per seed" in out
    rows = json.loads((tmp_path / "q.json").read_text())
    assert [r["method"] for r in rows] == methods
    assert {(r["tune_lr"], r["tune_schedule"]) for r in rows} == {(2e-3, "cosine")}
    assert all(r["distill"] and 0.3 < r["macs_kept"] <= 0.5 for r in rows)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="apt-get install dataset-fashion-mnist",
)
def test_quality_fashion_benchmark(run_benchmark, tmp_path):
    args = ["--seeds", "0", "--targets", "0.5", "--train-size", "128"]
    args += ["--test-size", "256"]
    args += ["--methods", "l1_global", "importance", "importance_l1", "callback_l1"]
    args += ["--distill", "on", "--epochs", "1", "1", "1", "--cache", "c"]
    tuning = ["--tune-lr", "2e-3", "--tune-schedule", "cosine"]
    out = run_benchmark("quality_fashion.py", args + tuning + ["--json", "f.json"])
    assert "accuracy per seed" in out and "loading" not in out
    assert "minus l1_global, seed by seed" in out
    rows = json.loads((tmp_path / "f.json").read_text())
    assert len(rows) == 4 and all(0.0 <= r["score"] <= 1.0 for r in rows)
    assert {(r["tune_lr"], r["tune_schedule"]) for r in rows} == {(2e-3, "cosine")}
    # A second run loads the trained and the wrapped model instead of training.
    args[args.index("callback_l1")] = "l1_repeat"
    out = run_benchmark("quality_fashion.py", args + ["--json", "g.json"])
    assert out.count("loading c/vgg_style_seed0_train1_n128") == 2
    again = json.loads((tmp_path / "g.json").read_text())
    assert again[0]["unpruned"] == rows[0]["unpruned"]
    # l1_repeat: l1_global's plan, fine-tuned under another seed.
    assert again[-1]["macs_kept"] == rows[0]["macs_kept"]


@pytest.mark.slow
@needs_nuclei
def test_tolerance_nuclei_benchmark(run_benchmark, tmp_path):
    args = ["--archs", "ternausnet", "--train-epochs", "1", "--max-rounds", "1"]
    args += ["--crops", "16", "--json", "t.json"]
    out = run_benchmark("tolerance_nuclei.py", args)
    assert "LiteRT ms" in out
    (result,) = json.loads((tmp_path / "t.json").read_text())
    assert result["after"]["flops"] <= result["before"]["flops"]
    assert result["before"]["tflite_kib"] > 0 and result["after"]["latency_ms"] > 0


@pytest.mark.slow
def test_sensitivity_benchmark(run_benchmark, tmp_path):
    args = ["--seeds", "0", "--tolerances", "0.05", "--train-epochs", "1"]
    args += ["--ratios", "0.5", "--train-size", "256", "--val-size", "128"]
    args += ["--tune-epochs", "1", "--json", "s.json"]
    out = run_benchmark("sensitivity_mnist.py", args)
    assert "suggested per-group plan" in out
    (row,) = json.loads((tmp_path / "s.json").read_text())
    assert abs(row["flops_suggested"] - row["flops_uniform"]) < 0.05


def test_channel_steps_benchmark(run_benchmark, tmp_path):
    args = ["--layers", "conv1x1", "--size", "8", "--max", "16", "--runs", "3"]
    out = run_benchmark("channel_steps.py", args + ["--json", "s.json"])
    assert "probed step" in out
    (row,) = json.loads((tmp_path / "s.json").read_text())
    assert set(row["ms"]) == {"8", "16"} and row["step"] in (1, 2, 4, 8)


@pytest.mark.slow
def test_latency_budget_benchmark(run_benchmark, tmp_path):
    args = ["--models", "small_cnn", "--budgets", "0.8", "--runs", "5"]
    args += ["--widths", "0.5", "1.0", "--json", "l.json", "--probes", "2"]
    args += ["--quantize", "float32", "--tries", "2"]
    out = run_benchmark("latency_budget.py", args)
    assert "predicted share" in out
    rows = json.loads((tmp_path / "l.json").read_text())
    plans = ["latency plan", "table without steps", "uncalibrated table"]
    plans += ["latency plan, measured", "FLOPs plan"]
    plans += ["FLOPs plan, same channels"]
    assert [r["plan"] for r in rows] == plans
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in rows)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="apt-get install dataset-fashion-mnist",
)
def test_latency_trained_benchmark(run_benchmark, tmp_path):
    args = ["--seeds", "0", "--model", "tiny", "--size", "32", "--train-size", "64"]
    args += ["--budget", "0.7"]
    args += ["--test-size", "64", "--epochs", "1", "--fine-tune", "1"]
    args += ["--runs", "3", "--probes", "1", "--widths", "0.5", "1.0"]
    args += ["--json", "t.json"]
    out = run_benchmark("latency_trained.py", args)
    assert "latency kept" in out
    rows = json.loads((tmp_path / "t.json").read_text())
    assert [r["plan"] for r in rows] == ["latency plan", "FLOPs plan"]
    assert all(0 < r["latency_kept"] and 0 <= r["accuracy"] <= 1 for r in rows)


def test_each_method_fine_tunes_on_one_cosine_at_the_harness_batch(monkeypatch):
    """`Staged`'s rounds and the callback's phases fine-tune through
    `Harness.fit` (its batch, not Keras's default 32), on consecutive slices
    of one cosine over the method's budget (it once restarted at every fit)."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    methods = importlib.import_module("methods")
    whole, later = methods.CosineSlice(1e-2, 100), methods.CosineSlice(1e-2, 100, 40)
    assert float(whole(0)) == pytest.approx(1e-2)
    assert float(later(0)) == pytest.approx(float(whole(40)))
    assert float(whole(100)) == pytest.approx(0.0, abs=1e-9)
    assert float(whole(150)) == pytest.approx(0.0, abs=1e-9)

    def compiled(model, rate=None):
        model.compile(keras.optimizers.Adam(rate or 1e-3), "mse")
        return model

    x = np.random.default_rng(0).normal(size=(40, 8, 8, 3)).astype("float32")
    harness = methods.Harness((x, x[:, :1, :1, :2]), compiled, 10, schedule="cosine")
    fits, fit = [], methods.Harness.fit

    def spy(self, model, epochs, *args, tuning=None, **kwargs):
        if tuning is not None and epochs > 0:
            fits.append((epochs, tuning, float(self.rate(*tuning)(0))))
        return fit(self, model, epochs, *args, tuning=tuning, **kwargs)

    monkeypatch.setattr(methods.Harness, "fit", spy)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(8),
            keras.layers.Conv2D(2, 1),
        ]
    )
    steps = []

    class Steps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            steps.append(self.params["steps"])

    original = keras.Model.fit

    def counted(model, *args, **kwargs):
        return original(model, *args, **{**kwargs, "callbacks": [Steps()]})

    monkeypatch.setattr(keras.Model, "fit", counted)
    harness.prune("staged_comp", compiled(model), None, 0.5, 5)
    assert [(e, t) for e, t, _ in fits] == [
        (1, (0, 5)),
        (1, (1, 5)),
        (1, (2, 5)),
        (2, (3, 5)),
    ]
    rates = [r for *_, r in fits]
    assert rates == sorted(rates, reverse=True) and rates[0] == pytest.approx(1e-3)
    assert steps == [4, 4, 4, 4]  # 40 samples at the harness's 10 (Keras: 32)


def test_paired_table_compares_each_seed_with_the_reference(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    methods = importlib.import_module("methods")
    scores = {"l1_global": (0.9, 0.8), "importance": (0.95, 0.7), "l1_repeat": (0.9,)}
    rows = [
        {"arch": "unet", "seed": seed, "target": 0.02, "distill": False,
         "method": method, "score": score}
        for method, values in scores.items()
        for seed, score in enumerate(values)
    ]  # fmt: skip
    lines = methods.paired_table(rows).splitlines()
    (importance,) = [line for line in lines if "importance" in line]
    assert importance.split()[-6:] == ["-0.025", "-0.100", "+0.050", "1", "of", "2"]
    (repeat,) = [line for line in lines if "l1_repeat" in line]
    assert repeat.split()[-6:] == ["+0.000", "+0.000", "+0.000", "1", "of", "1"]
    assert not [line for line in lines[3:] if "l1_global" in line]
