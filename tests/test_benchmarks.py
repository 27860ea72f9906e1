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
    """`Staged`'s rounds and its final epochs fine-tune through kprune's own
    FineTune at the harness's batch (not Keras's default 32), on one cosine
    over the method's budget (it once restarted at every fit); the callback's
    two phases follow one cosine through kprune's CosineRate."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    methods = importlib.import_module("methods")

    def compiled(model, rate=None):
        model.compile(keras.optimizers.Adam(rate or 1e-3), "mse")
        return model

    x = np.random.default_rng(0).normal(size=(40, 8, 8, 3)).astype("float32")
    harness = methods.Harness((x, x[:, :1, :1, :2]), compiled, 10, schedule="cosine")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(8),
            keras.layers.Conv2D(2, 1),
        ]
    )
    rates, steps = [], []

    class Seen(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            steps.append(self.params["steps"])

        def on_train_batch_begin(self, batch, logs=None):
            rate = self.model.optimizer.learning_rate
            rates.append(float(keras.ops.convert_to_numpy(rate)))

    original = keras.Model.fit

    def counted(model, *args, callbacks=(), **kwargs):
        return original(model, *args, callbacks=[*callbacks, Seen()], **kwargs)

    monkeypatch.setattr(keras.Model, "fit", counted)
    harness.prune("staged_comp", compiled(model), None, 0.5, 5)
    # 3 rounds of 1 epoch, then 2 final epochs: 5 fits of 4 steps, one cosine.
    assert steps == [4, 4, 4, 4] and len(rates) == 20
    expected = [0.5e-3 * (1 + np.cos(np.pi * t / 20)) for t in range(20)]
    np.testing.assert_allclose(rates, expected, rtol=1e-4)
    rates.clear(), steps.clear()
    harness.prune("callback_l1", compiled(model), None, 0.5, 5)
    assert steps == [4, 4]  # masking for 2 epochs, then 3 after the shrink
    np.testing.assert_allclose(rates, expected, rtol=1e-4)


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


@pytest.mark.parametrize("classes, activation", [(1, "linear"), (3, "softmax")])
def test_benchmark_unet_head(classes, activation, monkeypatch):
    """One class is one logit (a softmax over one channel would always be 1)."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    architectures = importlib.import_module("architectures")
    model = architectures.unet((32, 32, 1), base=4, depth=2, classes=classes)
    head = model.get_layer("mask")
    assert head.activation.__name__ == activation and head.filters == classes


@pytest.mark.slow
def test_coverage_benchmark(run_benchmark, tmp_path):
    out = run_benchmark(
        "coverage.py", ["--only", "Sequential(build),unet", "--json", "c.json"]
    )
    assert "Sequential(build)" in out and "unet" in out
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [r["model"] for r in rows] == ["Sequential(build)", "unet"]
    assert all(r["status"] == "ok" for r in rows), rows


def test_surgery_speed_benchmark(run_benchmark, tmp_path):
    out = run_benchmark(
        "surgery_speed.py", ["--models", "MobileNetV3Small", "--repeat", "1",
                             "--json", "s.json"],
    )  # fmt: skip
    assert "MobileNetV3Small" in out
    (row,) = json.loads((tmp_path / "s.json").read_text())
    assert row["model"] == "MobileNetV3Small" and row["shrink_s"] > 0


@pytest.mark.slow
def test_tflite_speedup_benchmark(run_benchmark, tmp_path):
    args = ["--models", "mobilenetv2", "--runs", "2", "--warmup", "1",
            "--round-to", "8", "--json", "t.json"]  # fmt: skip
    out = run_benchmark("tflite_speedup.py", args)
    assert "mobilenetv2" in out
    rows = json.loads((tmp_path / "t.json").read_text())
    assert {r["variant"] for r in rows} >= {"dense"}


@pytest.mark.slow
def test_op_breakdown_benchmark(run_benchmark, tmp_path):
    args = ["--model", "mobilenetv2", "--round-to", "8", "--runs", "2",
            "--json", "o.json"]  # fmt: skip
    out = run_benchmark("op_breakdown.py", args)
    assert "DepthwiseConv2D" in out
    assert json.loads((tmp_path / "o.json").read_text())


@pytest.mark.slow
def test_tolerance_mnist_benchmark(run_benchmark, tmp_path):
    args = ["--tolerances", "0.05", "--limit", "512", "--epochs", "1",
            "--max-rounds", "2", "--json", "m.json"]  # fmt: skip
    out = run_benchmark("tolerance_mnist.py", args)
    assert "prune_to_tolerance on mnist" in out
    rows = json.loads((tmp_path / "m.json").read_text())
    assert [r["tolerance"] for r in rows] == [None, 0.05]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow_model_optimization") is None,
    reason="pip install -e '.[tfmot]' (.ci/run installs it)",
)
def test_vs_tfmot_benchmark(tmp_path):
    """In a process of its own: importing TF-MOT flips keras_cv into legacy
    mode for the rest of the process."""
    from tests.scripts import run_python

    script = os.path.join(ROOT, "benchmarks", "vs_tfmot.py")
    args = [script, "--sparsities", "0.5", "--epochs", "1", "--runs", "2",
            "--json", "v.json"]  # fmt: skip
    out = run_python(args, tmp_path)
    assert "TF-MOT 50% sparse" in out
    rows = json.loads((tmp_path / "v.json").read_text())
    assert rows[0]["variant"] == "dense" and len(rows) == 3
