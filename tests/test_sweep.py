"""kprune.sweep: prune and fine-tune at several FLOPs budgets, with latency."""

import pathlib

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune import cli


def trained():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 12, 12, 1)).astype("float32")
    y = (x[:, :6].mean(axis=(1, 2, 3)) > x[:, 6:].mean(axis=(1, 2, 3))).astype(int)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            layers.Conv2D(16, 3, activation="relu", name="c1"),
            layers.Conv2D(16, 3, activation="relu", name="c2"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, verbose=0)
    return model, (x, y)


@pytest.mark.slow
def test_sweep_measures_every_budget(tmp_path):
    model, data = trained()
    before = [w.copy() for w in model.get_weights()]
    result = kprune.sweep(model, data, data, flops=(0.25, 0.5), runs=3, verbose=0)
    budgets = [p["budget"] for p in result.points]
    assert budgets == [None, 0.5, 0.25]
    kept = [p["flops_kept"] for p in result.points]
    assert kept[0] == 1.0 and kept[1] <= 0.5 and kept[2] <= 0.25
    assert all(p["latency_ms"] > 0 for p in result.points)
    assert result.metric_name == "accuracy"
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert "LiteRT ms" in result.table()
    png = pathlib.Path(result.plot(str(tmp_path / "sweep.png")))
    assert png.read_bytes()[:4] == b"\x89PNG"
    run = str(tmp_path / "sweep.json")
    result.to_json(run)
    assert cli.main(["report", run, "-o", str(tmp_path / "sweep.html")]) == 0
    page = (tmp_path / "sweep.html").read_text()
    assert "data:image/png;base64," in page and "unpruned" in page


def test_sweep_without_latency_and_bad_budgets(capsys):
    model, data = trained()
    result = kprune.sweep(
        model,
        data,
        data,
        flops=[0.5],
        tuning=kprune.FineTune(epochs=0),
        benchmark=False,
        verbose=2,
    )
    assert result.points[1]["latency_ms"] is None
    assert "sweep: 50% of FLOPs: accuracy" in capsys.readouterr().out
    with pytest.raises(ValueError, match="flops is the share of FLOPs"):
        kprune.sweep(model, data, data, flops=[0.5, 1.5])
    with pytest.raises(ValueError, match="non-empty"):
        kprune.sweep(model, data, data, flops=[])
    with pytest.raises(TypeError, match="scpoe"):
        kprune.sweep(model, data, data, flops=[0.5], scpoe="global")
