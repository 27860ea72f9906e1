"""LatencyTable (measured per-layer latencies) and plan(latency=...)."""

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune.latency import Cost, LatencyTable, _signatures
from tests.models import randomize


def two_convs(size=16):
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="cheap"),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="dear"),
            layers.Conv2D(8, 1, name="head"),
        ]
    )
    return randomize(model)


def planted(model, per_channel):
    """A synthetic table: each conv costs `per_channel[name]` ms per output
    channel (and nothing per input channel), plus 1 ms of overhead."""
    g = kprune.graph(model)
    signatures, calls = _signatures(g)
    table = LatencyTable(model.name, g.fingerprint(), dense_ms=0.0, calls=calls)
    widths = [1, 16]
    for key, signature in calls.items():
        name = key.split(":")[0]
        rate = per_channel.get(name, 0.0)
        table.costs[signature] = Cost(widths, widths, [[rate * o for o in widths]] * 2)
    table.overhead_ms = 1.0
    table.dense_ms = table.predict(model)
    return table


def test_the_planner_removes_from_the_expensive_group_first():
    model = two_convs()
    table = planted(model, {"cheap": 0.001, "dear": 1.0})
    plan = kprune.plan(model, latency=0.6, table=table)
    assert len(plan.groups["dear"].keep) < 16
    assert len(plan.groups["cheap"].keep) == 16  # free to keep
    assert plan.target["predicted_ms"] <= 0.6 * table.dense_ms + 1e-9


def test_a_synthetic_budget_is_met_to_one_channel():
    model = two_convs()
    table = planted(model, {"cheap": 0.5, "dear": 0.5})
    for share in (0.9, 0.5, 0.3):
        budget = share * table.dense_ms
        plan = kprune.plan(model, latency=share, table=table)
        predicted = plan.target["predicted_ms"]
        assert budget - 0.5 - 1e-9 <= predicted <= budget + 1e-9
        # the prediction is that of the shrunk model
        assert table.predict(kprune.shrink(model, plan)) == pytest.approx(predicted)
    plan = kprune.plan(model, latency_ms=10.0, table=table)
    assert plan.target["predicted_ms"] <= 10.0


def test_round_to_and_floors_hold():
    model = two_convs()
    table = planted(model, {"cheap": 0.5, "dear": 0.5})
    plan = kprune.plan(model, latency=0.5, table=table, round_to=4, min_channels=4)
    for decision in plan.groups.values():
        assert len(decision.keep) % 4 == 0 and len(decision.keep) >= 4
    with pytest.raises(ValueError, match="cannot be reached"):
        kprune.plan(model, latency=0.05, table=table, min_channels=8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"latency": 0.0}, r"in \(0, 1\)"),
        ({"latency": 1.0}, r"in \(0, 1\)"),
        ({"latency_ms": -1.0}, "> 0"),
        ({"latency": 0.5, "latency_ms": 3.0}, "exactly one target"),
        ({"latency": 0.5, "table": None}, "LatencyTable.measure"),
        ({"ratio": 0.5, "table": "t"}, "only read with latency"),
    ],
)
def test_bad_latency_arguments_name_the_fix(kwargs, match):
    model = two_convs()
    kwargs = {"table": planted(model, {"dear": 1.0}), **kwargs}
    with pytest.raises(ValueError, match=match):
        kprune.plan(model, **kwargs)


def test_a_table_for_another_model_is_refused():
    table = planted(two_convs(), {"dear": 1.0})
    other = randomize(
        keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3, name="x")])
    )
    with pytest.raises(ValueError, match="LatencyTable.measure"):
        kprune.plan(other, latency=0.5, table=table)


@pytest.mark.slow
def test_measured_table_round_trips_and_predicts(tmp_path):
    model = two_convs(size=32)
    table = LatencyTable.measure(model, widths=(0.5, 1.0), runs=10, verbose=0)
    assert table.dense_ms > 0 and table.seconds > 0
    assert table.predict(model) == pytest.approx(table.dense_ms)
    path = tmp_path / "t.json"
    table.to_json(str(path))
    loaded = LatencyTable.from_json(str(path))
    assert loaded == table
    small = kprune.shrink(model, kprune.plan(model, latency=0.8, table=loaded))
    assert loaded.predict(small) < table.dense_ms
    # Three convs (their activations are fused, so not timed). Only channels
    # that can be pruned get a grid: the image's 3 and the head's outputs
    # (the model's output) are timed at their one width.
    shapes = sorted(np.asarray(c.ms).shape for c in table.costs.values())
    assert shapes == [(1, 2), (2, 1), (2, 2)]


def test_staged_and_the_tolerance_loop_step_by_predicted_latency():
    model = two_convs()
    model.compile("adam", "mse")
    table = planted(model, {"cheap": 0.5, "dear": 0.5})
    staged = kprune.Staged([("l1", 2)], step=0.2, by="latency", table=table)
    small, report = staged.run(model, verbose=0)
    assert len(report.rounds) == 3
    # each round removes ~20% of the current predicted latency
    assert table.predict(small) <= table.dense_ms * 0.8**2 + 1e-9
    assert table.predict(small) >= table.dense_ms * 0.8**2 - 1.0
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype("float32")
    y = model.predict(x, verbose=0)
    _, report = kprune.prune_to_tolerance(
        model,
        (x, y),
        (x, y),
        tolerance=10.0,
        step=0.3,
        by="latency",
        table=table,
        max_rounds=1,
        verbose=0,
        mode="min",
    )
    assert report.rounds[1].accepted
    with pytest.raises(ValueError, match="table="):
        kprune.Staged([("l1", 1)], step=0.2, by="latency")
    with pytest.raises(ValueError, match="only with by='latency'"):
        kprune.Staged([("l1", 1)], step=0.2, table=table)


@pytest.mark.slow
def test_int8_table():
    model = two_convs(size=32)
    table = LatencyTable.measure(
        model, widths=(0.5, 1.0), runs=5, quantize="int8", verbose=0
    )
    assert table.quantize == "int8" and table.dense_ms > 0
    assert table.predict(model) == pytest.approx(table.dense_ms)
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        LatencyTable.measure(model, quantize="float16")
    with pytest.raises(ValueError, match="runtime must be 'litert'"):
        LatencyTable.measure(model, runtime="tflite-gpu")
    with pytest.raises(ValueError, match="include 1.0"):
        LatencyTable.measure(model, widths=(0.5,))
