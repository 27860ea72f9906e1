"""The kprune command line."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import kprune
from kprune import cli
from tests import mnist, models


@pytest.fixture
def model_file(tmp_path):
    path = str(tmp_path / "vgg.keras")
    models.randomize(models.vgg()).save(path)
    return path


def test_info(model_file, capsys):
    assert cli.main(["info", model_file, "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "MACs" in out and "prunable" in out and "frozen" in out
    assert cli.main(["info", model_file, "--explain"]) == 0
    assert "prune out-channels of" in capsys.readouterr().out


def test_prune_export_bench(model_file, tmp_path, capsys):
    small = str(tmp_path / "small.keras")
    plan = str(tmp_path / "plan.json")
    assert (
        cli.main(
            [
                "prune",
                model_file,
                "-o",
                small,
                "--flops",
                "0.5",
                "--round-to",
                "2",
                "--plan-out",
                plan,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Pruning plan" in out and "change" in out
    assert (
        keras.models.load_model(small).count_params()
        < keras.models.load_model(model_file).count_params()
    )
    with open(plan) as f:
        assert json.load(f)["target"]["flops"] == 0.5

    again = str(tmp_path / "again.keras")
    assert cli.main(["prune", model_file, "-o", again, "--plan", plan]) == 0

    data = str(tmp_path / "x.npy")
    np.save(data, models.inputs_for(models.vgg(), batch=32))
    tflite = str(tmp_path / "small.tflite")
    assert (
        cli.main(
            [
                "export",
                small,
                "-o",
                tflite,
                "--quantize",
                "int8",
                "--representative",
                data,
            ]
        )
        == 0
    )
    assert "int8" in capsys.readouterr().out and os.path.exists(tflite)

    assert cli.main(["bench", tflite, "--runs", "3", "--warmup", "1"]) == 0
    assert "median ms" in capsys.readouterr().out


def test_errors(model_file, tmp_path, capsys):
    with pytest.raises(SystemExit, match="give one of --ratio, --flops"):
        cli.main(["prune", model_file, "-o", str(tmp_path / "x.keras")])
    with pytest.raises(SystemExit, match="no such file"):
        cli.main(["info", str(tmp_path / "missing.keras")])
    assert (
        cli.main(
            ["prune", model_file, "-o", str(tmp_path / "x.keras"), "--ratio", "1.5"]
        )
        == 2
    )
    assert "ratio must be in [0, 1)" in capsys.readouterr().err


def test_console_script_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "kprune", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "info" in out.stdout and "bench" in out.stdout


def mnist_sequential():
    """The first CNN most Keras users write: a top-level `keras.Sequential`."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def keras2_h5(path):
    """Save a compiled model as `.h5`, with the optimizer config Keras 2 wrote.

    Keras 2 stored `Adam(lr=...)` as `{"lr": ..., "decay": ...}` in the
    `training_config` attribute; Keras 3 rejects those names when it compiles.
    """
    import h5py

    model = models.randomize(mnist_sequential())
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.save(path)
    with h5py.File(path, "r+") as f:
        training = json.loads(f.attrs["training_config"])
        training["optimizer_config"] = {
            "class_name": "Adam",
            "config": {
                "name": "Adam",
                "lr": 0.0001,
                "decay": 0.0,
                "beta_1": 0.9,
                "beta_2": 0.999,
                "epsilon": 1e-07,
                "amsgrad": False,
            },
        }
        f.attrs["training_config"] = json.dumps(training).encode("utf8")
        f.attrs["keras_version"] = b"2.13.1"
    return model


def run_info_prune_export(path, tmp_path, capsys):
    """`info`, `prune` and `export` on `path`; returns the pruned model."""
    assert cli.main(["info", path]) == 0
    assert "MACs per sample" in capsys.readouterr().out
    small = str(tmp_path / "small.keras")
    assert cli.main(["prune", path, "-o", small, "--ratio", "0.5"]) == 0
    assert "Pruning plan" in capsys.readouterr().out
    tflite = str(tmp_path / "model.tflite")
    assert cli.main(["export", path, "-o", tflite]) == 0
    capsys.readouterr()
    assert os.path.getsize(tflite) > 0
    return keras.models.load_model(small)


def test_keras2_h5_loads_without_its_optimizer(tmp_path, capsys):
    path = str(tmp_path / "keras2.h5")
    model = keras2_h5(path)
    # The file is as Keras 2 wrote it: compiling from it fails in Keras 3.
    with pytest.raises(ValueError, match="'lr'"):
        keras.models.load_model(path)
    small = run_info_prune_export(path, tmp_path, capsys)
    assert small.count_params() < model.count_params()
    assert small.predict(np.zeros((2, 28, 28, 1)), verbose=0).shape == (2, 10)


def test_top_level_sequential_keras_file(tmp_path, capsys):
    path = str(tmp_path / "sequential.keras")
    model = models.randomize(mnist_sequential())
    model.save(path)
    small = run_info_prune_export(path, tmp_path, capsys)
    assert small.count_params() < model.count_params()
    assert small.predict(np.zeros((2, 28, 28, 1)), verbose=0).shape == (2, 10)


@pytest.mark.parametrize("name", ["model.tflite", "saved_model"])
def test_unsupported_model_file_names_the_fix(tmp_path, name):
    path = tmp_path / name
    if name == "saved_model":
        path.mkdir()
    else:
        path.write_bytes(b"TFL3")
    with pytest.raises(SystemExit, match=r"give a \.keras or \.h5 model file"):
        cli.main(["info", str(path)])


def _trained_file(tmp_path, compile_in_file=True):
    """A compiled Sequential saved to .keras, and .npz data it was trained on."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int64")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
            keras.layers.Conv2D(8, 3, activation="relu", name="c2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    if compile_in_file:
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=2, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    data = str(tmp_path / "d.npz")
    np.savez(data, x=x, y=y)
    return path, data


@pytest.mark.slow
def test_prune_to_tolerance_from_the_shell(tmp_path, capsys):
    path, data = _trained_file(tmp_path)
    out, run, page = (str(tmp_path / n) for n in ("s.keras", "run.json", "r.html"))
    args = ["prune", path, "-o", out, "--tolerance", "1.0", "--data", data]
    args += ["--max-rounds", "2", "--step", "0.3", "--report", run, "--html", page]
    args += ["--lr", "1e-2", "--lr-schedule", "cosine", "--batch-size", "16"]
    assert cli.main(args + ["--bench", "--verbose", "0"]) == 0
    text = capsys.readouterr().out
    assert "FLOPs kept" in text and f"wrote {page}" in text
    assert (
        keras.models.load_model(out).count_params()
        < keras.models.load_model(path).count_params()
    )
    saved = json.loads(pathlib.Path(run).read_text())
    assert saved["kind"] == "pruning" and len(saved["rounds"]) == 3
    assert saved["latency_ms"]["before"] > 0
    again = str(tmp_path / "again.html")
    assert cli.main(["report", run, "-o", again]) == 0
    with open(again) as f:
        assert "data:image/png;base64," in f.read()


@pytest.mark.slow
def test_sensitivity_from_the_shell(tmp_path, capsys):
    path, data = _trained_file(tmp_path)
    result, plot = str(tmp_path / "s.json"), str(tmp_path / "s.png")
    args = ["sensitivity", path, "--data", data, "--ratios", "0.5", "-o", result]
    args += ["--train", data]
    assert (
        cli.main(args + ["--plot", plot, "--tolerance", "0.1", "--verbose", "0"]) == 0
    )
    text = capsys.readouterr().out
    assert "mean drop" in text and "suggested ratios" in text
    with open(plot, "rb") as f:
        assert f.read(4) == b"\x89PNG"
    assert cli.main(["report", result, "-o", str(tmp_path / "s.html")]) == 0


def test_data_commands_name_the_fix(tmp_path, capsys):
    path, data = _trained_file(tmp_path, compile_in_file=False)
    bad = str(tmp_path / "bad.npz")
    np.savez(bad, inputs=np.zeros((2, 8, 8, 1)), labels=np.zeros(2))
    with pytest.raises(
        SystemExit, match=r"'x' \(inputs\) and 'y'.*\['inputs', 'labels'\]"
    ):
        cli.main(["sensitivity", path, "--data", bad, "--loss", "mse"])
    with pytest.raises(SystemExit, match="give --loss"):
        cli.main(["sensitivity", path, "--data", data])
    with pytest.raises(SystemExit, match="--data train.npz"):
        cli.main(["prune", path, "-o", str(tmp_path / "o.keras"), "--tolerance", "0.1"])
    half = ["prune", path, "-o", str(tmp_path / "o.keras"), "--ratio", "0.5"]
    with pytest.raises(SystemExit, match="--epochs only apply with --tolerance"):
        cli.main(half + ["--epochs", "3"])
    with pytest.raises(SystemExit, match="--lr-schedule only apply with --tolerance"):
        cli.main(half + ["--lr-schedule", "cosine"])
    with pytest.raises(SystemExit, match="--batch-size only apply with --tolerance"):
        cli.main(half + ["--batch-size", "16"])
    with pytest.raises(SystemExit, match="--ratio cannot be used with --tolerance"):
        cli.main(half + ["--tolerance", "0.1", "--data", data])
    (tmp_path / "other.json").write_text('{"rounds": []}')
    with pytest.raises(SystemExit, match="'kind'"):
        cli.main(["report", str(tmp_path / "other.json"), "-o", "x.html"])


@pytest.mark.slow
def test_latency_table_and_latency_budget_from_the_shell(tmp_path, capsys):
    path = str(tmp_path / "m.keras")
    models.randomize(
        keras.Sequential(
            [
                keras.Input((32, 32, 3)),
                keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(4),
            ]
        )
    ).save(path)
    table = str(tmp_path / "t.json")
    args = ["table", path, "-o", table, "--widths", "0.5", "1.0", "--runs", "5"]
    assert cli.main(args + ["--verbose", "0"]) == 0
    assert "layer signatures, dense" in capsys.readouterr().out
    assert "Conv2D" in kprune.LatencyTable.from_json(table).steps  # probed
    out = str(tmp_path / "s.keras")
    args = ["prune", path, "-o", out, "--latency", "0.8", "--table", table]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "predicted ms" in text and "measured ms" in text and "budget ms" in text
    with pytest.raises(SystemExit, match="--table table.json"):
        cli.main(["prune", path, "-o", out, "--latency", "0.8"])
    # --tries: each plan timed, the budget corrected (kprune.plan_measured)
    args = ["prune", path, "-o", out, "--latency", "0.8", "--table", table]
    assert cli.main(args + ["--tries", "2"]) == 0
    assert "latency try 1/2" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--tries only applies with --latency"):
        cli.main(["prune", path, "-o", out, "--ratio", "0.5", "--tries", "2"])
    # the device path: write the files, time them elsewhere, build the table
    folder = tmp_path / "layers"
    args = ["table", path, "--write", str(folder), "--widths", "1.0"]
    assert cli.main(args + ["--verbose", "0", "--steps", table]) == 0
    assert "run_benchmark.sh" in capsys.readouterr().out
    manifest = json.loads((folder / "kprune_layers.json").read_text())
    assert manifest["steps"] == kprune.LatencyTable.from_json(table).steps
    for tflite in folder.glob("*.tflite"):
        log = (
            "Inference timings in us: Init: 5, First inference: 9, Inference (avg): 250"
        )
        tflite.with_suffix(".log").write_text(log)
    args = ["table", "--timings", str(folder), "-o", table, "--runtime", "pixel"]
    assert cli.main(args) == 0
    assert kprune.LatencyTable.from_json(table).runtime == "pixel"
    for args, match in [
        (["table", "-o", table], "give a model to measure"),
        (["table", "--timings", str(folder), "--widths", "0.5"], "--widths would be"),
        (["table", path, "--runtime", "pixel"], "--runtime only applies"),
        (["table", path, "--write", str(folder), "-o", table], "--output has no"),
        (["table", path, "--write", str(folder), "--no-steps"], "writes the probes"),
        (["table", path, "-o", table, "--steps", table, "--no-steps"], "not both"),
    ]:
        with pytest.raises(SystemExit, match=match):
            cli.main(args)


def test_the_shells_tolerance_loop_judges_by_a_recalibrated_reference(tmp_path, capsys):
    """A model saved with stale BatchNorm statistics: the loop recalibrates
    every round, so its reference is recalibrated too, and the table says so
    (it once took the stale score as round 0 and accepted every round)."""
    (x, y), (xv, yv), _ = mnist.data()
    model = mnist.trained()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(layer.moving_mean * 3.0 + 0.5)
    path = str(tmp_path / "stale.keras")
    model.save(path)
    train, val = str(tmp_path / "t.npz"), str(tmp_path / "v.npz")
    np.savez(train, x=x[:512], y=y[:512])
    np.savez(val, x=xv, y=yv)
    run = str(tmp_path / "run.json")
    args = ["prune", path, "-o", str(tmp_path / "s.keras"), "--tolerance", "0.02"]
    args += ["--data", train, "--val", val, "--epochs", "0", "--step", "0.5"]
    args += ["--max-rounds", "2", "--report", run, "--verbose", "0"]
    assert cli.main(args) == 0
    assert "reference recalibrated as every round is" in capsys.readouterr().out
    rounds = json.loads(pathlib.Path(run).read_text())["rounds"]
    reference = rounds[0]["metric"]
    for r in rounds[1:]:
        assert r["accepted"] == (reference - r["metric"] <= 0.02 + 1e-9)


def test_report_reads_any_result(tmp_path, capsys):
    """`kprune report` turns any kprune result's JSON into a page: a plan
    written by `kprune prune --plan-out` too."""
    path, _ = _trained_file(tmp_path)
    plan = str(tmp_path / "plan.json")
    args = ["prune", path, "-o", str(tmp_path / "s.keras"), "--ratio", "0.5"]
    assert cli.main(args + ["--plan-out", plan]) == 0
    page = tmp_path / "plan.html"
    assert cli.main(["report", plan, "-o", str(page)]) == 0
    text = page.read_text()
    assert "Pruning plan for" in text and "data:image/png;base64," in text
