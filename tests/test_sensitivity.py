"""kprune.sensitivity: one group at a time, the suggestion, JSON, plots, HTML."""

import json
import pathlib

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from tests.models import randomize


def planted(zeroed: str = "dead"):
    """Three conv groups; `zeroed`, a branch beside "third", has all-zero
    filters (no BatchNorm), so removing any of them changes nothing. Labels
    are the model's own argmax, so the unpruned accuracy is 1."""
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, activation="relu", name="first")(inputs)
    a = layers.Conv2D(8, 3, activation="relu", name="third")(x)
    b = layers.Conv2D(8, 3, activation="relu", name=zeroed)(x)
    x = layers.GlobalAveragePooling2D()(layers.Concatenate()([a, b]))
    model = keras.Model(inputs, layers.Dense(4, name="head")(x))
    randomize(model, seed=3)
    dead = model.get_layer(zeroed)
    dead.set_weights([np.zeros_like(w) for w in dead.get_weights()])
    head = model.get_layer("head")
    head.set_weights([head.get_weights()[0], np.zeros(4)])  # no favoured class
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x = np.random.default_rng(0).normal(size=(96, 12, 12, 3)).astype("float32")
    y = model.predict(x, verbose=0).argmax(-1)
    return model, (x, y)


@pytest.fixture(scope="module")
def analysed():
    model, data = planted()
    before = [w.copy() for w in model.get_weights()]
    result = kprune.sensitivity(model, data, ratios=(0.25, 0.5, 0.75), verbose=0)
    return model, data, result, before


def test_the_planted_insensitive_group_ranks_least_sensitive(analysed):
    model, _, result, before = analysed
    assert result.metric_name == "accuracy" and result.higher_is_better
    assert result.baseline == pytest.approx(1.0)
    assert set(result.scores) == {"first", "dead", "third"}
    assert result.ranking()[-1] == "dead"
    assert result.scores["dead"] == pytest.approx([1.0, 1.0, 1.0])
    assert min(result.scores["first"]) < 0.95  # the others do cost accuracy
    # The user's model is untouched.
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_a_measurement_is_the_shrunk_model_evaluated(analysed):
    model, (x, y), result, _ = analysed
    small = kprune.shrink(model, kprune.plan(model, ratios={"third": 0.5}))
    accuracy = float((small.predict(x, verbose=0).argmax(-1) == y).mean())
    assert result.scores["third"][1] == pytest.approx(accuracy)
    assert 0 < result.flops_kept["third"][1] < 1


def test_suggest_keeps_the_combined_model_within_tolerance(analysed):
    model, (x, y), result, _ = analysed
    for tolerance in (0.0, 0.05, 0.2):
        ratios = result.suggest(tolerance)
        assert ratios.get("dead") == 0.75  # free to cut
        small = kprune.shrink(model, kprune.plan(model, ratios=ratios))
        accuracy = float((small.predict(x, verbose=0).argmax(-1) == y).mean())
        assert 1.0 - accuracy <= tolerance + 1e-9
    # Read back from JSON the model is gone: the groups' own curves decide.
    loaded = kprune.Sensitivity.from_json(result.to_json())
    assert loaded.verifier is None
    assert set(loaded.suggest(0.05)) >= set(result.suggest(0.05))


def test_json_round_trip(analysed, tmp_path):
    _, _, result, _ = analysed
    path = tmp_path / "s.json"
    result.to_json(str(path))
    data = json.loads(path.read_text())
    assert data["kind"] == "sensitivity"
    loaded = kprune.Sensitivity.from_json(str(path))
    assert loaded.scores == result.scores and loaded.ratios == result.ratios
    assert "dead" in loaded.table() and "mean drop" in loaded.table()


def test_plot_and_html_report(analysed, tmp_path):
    _, _, result, _ = analysed
    png = pathlib.Path(result.plot(str(tmp_path / "s.png")))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in pathlib.Path(result.plot(str(tmp_path / "s.svg"))).read_text()
    page = result.save_html(str(tmp_path / "s.html"), tolerance=0.05)
    page = pathlib.Path(page).read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "<table>" in page and "dead" in page and "Suggested ratios" in page
    with pytest.raises(ValueError, match=r"\.png"):
        result.plot(str(tmp_path / "s.bmp"))


def test_a_callable_metric_needs_no_data():
    model, (x, y) = planted()

    def agreement(m):
        return float((m.predict(x, verbose=0).argmax(-1) == y).mean())

    result = kprune.sensitivity(
        model, ratios=[0.5], metric=agreement, groups=["dead"], mode="max", verbose=0
    )
    assert result.metric_name == "agreement" and result.scores == {"dead": [1.0]}


def test_progress_bar_and_lines(capsys):
    model, data = planted()
    kprune.sensitivity(model, data, ratios=[0.5], groups=["third"], verbose=2)
    assert "sensitivity: third at 50%: accuracy" in capsys.readouterr().out
    kprune.sensitivity(model, data, ratios=[0.5], groups=["third"], verbose=1)
    assert "sensitivity" in capsys.readouterr().out
    kprune.sensitivity(model, data, ratios=[0.5], groups=["third"], verbose=0)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"ratios": []}, ValueError, "non-empty"),
        ({"ratios": [0.5, 1.0]}, ValueError, r"ratio must be in \[0, 1\)"),
        ({"groups": ["nope"]}, ValueError, "Prunable groups"),
        ({"batches": 0}, ValueError, "batches"),
        ({"verbose": 3}, ValueError, "verbose"),
        ({"scpoe": "global"}, TypeError, "scpoe"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    model, data = planted()
    with pytest.raises(error, match=match):
        kprune.sensitivity(model, data, **kwargs)


def test_needs_data_or_a_callable():
    model, _ = planted()
    with pytest.raises(ValueError, match="val_data"):
        kprune.sensitivity(model)


def test_batch_budget_limits_the_data():
    model, data = planted()
    result = kprune.sensitivity(
        model, data, ratios=[0.5], groups=["dead"], batches=1, batch_size=8, verbose=0
    )
    assert result.scores == {"dead": [1.0]}


def test_recalibrate_measures_copies_with_fresh_batchnorm_statistics():
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(6, 3, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.GlobalAveragePooling2D()(layers.ReLU()(x))
    model = keras.Model(inputs, layers.Dense(3, name="head")(x))
    randomize(model, seed=1)
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 2)).astype("float32")
    y = rng.normal(size=(64, 3)).astype("float32")
    stats = [w.copy() for w in model.get_layer("bn").get_weights()]
    plain = kprune.sensitivity(model, (x, y), ratios=[0.5], verbose=0)
    fresh = kprune.sensitivity(model, (x, y), ratios=[0.5], train_data=x, verbose=0)
    # The baseline is the unpruned model recalibrated: a different loss.
    assert fresh.baseline != pytest.approx(plain.baseline)
    copy = kprune.shrink(model, kprune.plan(model, ratio=0.5))
    kprune.recalibrate(copy, x)
    assert fresh.scores["conv"][0] == pytest.approx(
        copy.evaluate(x, y, verbose=0), rel=1e-5
    )
    for old, new in zip(stats, model.get_layer("bn").get_weights()):
        np.testing.assert_array_equal(old, new)  # the user's model is untouched


def test_allocate_spends_the_budget_where_it_buys_most():
    from kprune.planning.choosing import allocate

    costs = {"cheap": [0.0, 0.01, 0.02], "dear": [0.05, 0.2, 0.5], "free": [0, 0, 0]}
    gains = {"cheap": [0.1, 0.2, 0.3], "dear": [0.1, 0.2, 0.3], "free": [0.01] * 3}
    assert allocate(costs, gains, 0.02) == {"cheap": 2, "dear": -1, "free": 0}
    assert allocate(costs, gains, 0.07) == {"cheap": 2, "dear": 0, "free": 0}
    assert allocate(costs, gains, 0.0) == {"cheap": 0, "dear": -1, "free": 0}
    # A noisy dip (a drop that shrinks at a larger ratio) costs what came before.
    assert allocate({"a": [0.03, 0.01]}, {"a": [0.1, 0.2]}, 0.02) == {"a": -1}
