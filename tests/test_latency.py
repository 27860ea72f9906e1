"""LatencyTable (measured per-layer latencies) and plan(latency=...)."""

import json
import math

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from keras import layers

import kprune
from kprune.latency.costs import detect, probe_counts
from kprune.latency.layerfiles import _signatures, parse_benchmark_log
from kprune.latency.table import Cost, LatencyTable, fit_scale
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


def planted(model, per_channel, step=1):
    """A synthetic table: each conv costs `per_channel[name]` ms per output
    channel (and nothing per input channel), plus 1 ms of overhead; with a
    `step`, its kernels run output channels in tiles of `step`."""
    g = kprune.graph(model)
    signatures, calls = _signatures(g)
    table = LatencyTable(model.name, g.fingerprint(), dense_ms=0.0, calls=calls)
    widths = [1, 16] if step == 1 else list(range(step, 17, step))
    for key, signature in calls.items():
        name = key.split(":")[0]
        rate = per_channel.get(name, 0.0)
        ms = [[rate * o for o in widths]] * len(widths)
        table.costs[signature] = Cost(widths, widths, ms, step)
    if step > 1:
        table.steps = {"Conv2D": step}
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
    plan = kprune.plan(model, latency=10.0 / table.dense_ms, table=table)
    assert plan.target["predicted_ms"] <= 10.0
    with pytest.warns(DeprecationWarning, match="latency=ms / table.dense_ms"):
        old = kprune.plan(model, latency_ms=10.0, table=table)  # kprune 0.1's name
    assert old.groups == plan.groups


def test_round_to_and_floors_hold():
    model = two_convs()
    table = planted(model, {"cheap": 0.5, "dear": 0.5})
    plan = kprune.plan(model, latency=0.5, table=table, round_to=4, min_channels=4)
    for decision in plan.groups.values():
        assert len(decision.keep) % 4 == 0 and len(decision.keep) >= 4
    with pytest.raises(ValueError, match="cannot be reached"):
        kprune.plan(model, latency=0.05, table=table, min_channels=8)


def tiles(step, counts, noise=0.0, seed=0):
    """Milliseconds of a kernel that runs channels in tiles of `step`."""
    rng = np.random.default_rng(seed)
    return {c: (1 + math.ceil(c / step)) * (1 + noise * rng.normal()) for c in counts}


@pytest.mark.parametrize("channels", [96, 40, 16])
def test_probes_find_the_channel_step(channels):
    counts = probe_counts(channels)
    assert max(counts) <= channels and len(counts) == len(set(counts))
    for step in (2, 4, 8, 32):
        if step * 2 <= max(counts):
            assert detect(tiles(step, counts)) == step
        if step >= 8 and step * 2 <= max(counts):  # tiles well above the noise
            assert detect(tiles(step, counts, noise=0.01, seed=step)) == step
    # linear in the channels: no step; a flat (memory-bound) layer shows none
    assert detect({c: 0.01 * c for c in counts}) == 1
    assert detect({c: 0.5 for c in counts}) == 1
    assert probe_counts(6) == [] and detect({}) == 1


@pytest.mark.parametrize("steps", ["yes", {"Conv2D": 0}, {"Conv2D": 8.0}, [32]])
def test_bad_steps_are_refused_before_any_work(steps):
    with pytest.raises(TypeError, match="layer type -> channel step"):
        LatencyTable.measure(two_convs(), steps=steps)


def test_costs_round_up_to_the_step():
    cost = Cost([64], [32, 64], [[1.0, 2.0]], step=32)
    assert cost.at(64, 40) == 2.0 and cost.at(64, 32) == 1.0  # a whole tile
    assert Cost([64], [32, 64], [[1.0, 2.0]]).at(64, 40) == pytest.approx(1.25)
    channelwise = Cost([16, 32], [], [[1.0], [2.0]], step=16)
    assert channelwise.at(17) == 2.0


def test_a_latency_plan_moves_in_the_measured_steps():
    """round_to follows from the table: the kept counts are whole tiles,
    since channels within a tile cost the same."""
    model = two_convs()
    table = planted(model, {"cheap": 0.5, "dear": 0.5}, step=8)
    for share in (0.8, 0.6):
        plan = kprune.plan(model, latency=share, table=table)
        kept = [len(d.keep) for d in plan.groups.values()]
        assert all(k % 8 == 0 for k in kept) and min(kept) < 16
        assert plan.target["predicted_ms"] <= share * table.dense_ms + 1e-9
        assert plan.target["steps"] == {"Conv2D": 8}
    # with no step a 0.8 budget is met to one channel, not to a tile
    plain = kprune.plan(model, latency=0.8, table=planted(model, {"dear": 1.0}))
    assert any(len(d.keep) % 8 for d in plain.groups.values())
    # a channel kept below a tile costs the whole tile: a tile is the floor
    with pytest.raises(ValueError, match="least this model can take is 9.000"):
        kprune.plan(model, latency=0.5, table=table)
    # round_to and the step combine (their least common multiple)
    table = planted(model, {"cheap": 0.5, "dear": 0.5}, step=4)
    plan = kprune.plan(model, latency=0.6, table=table, round_to=8)
    assert all(len(d.keep) % 8 == 0 for d in plan.groups.values())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"latency": 0.0}, r"in \(0, 1\)"),
        ({"latency": 1.0}, r"in \(0, 1\)"),
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
    assert set(table.steps) == {"Conv2D"} and table.steps["Conv2D"] >= 1
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
    # the report holds the prediction before and after (and keeps it in JSON)
    assert report.predicted_ms == {
        "before": pytest.approx(table.dense_ms),
        "after": pytest.approx(table.predict(small)),
    }
    assert type(report).from_json(report.to_json()).predicted_ms == report.predicted_ms
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype("float32")
    y = model.predict(x, verbose=0)
    _, report = kprune.prune_to_tolerance(
        model,
        (x, y),
        (x, y),
        step=0.3,
        by="latency",
        table=table,
        max_rounds=1,
        verbose=0,
        tolerance=kprune.Tolerance(10.0, mode="min"),
    )
    assert report.rounds[1].accepted
    with pytest.raises(ValueError, match="table="):
        kprune.Staged([("l1", 1)], step=0.2, by="latency")
    with pytest.raises(ValueError, match="only with by='latency'"):
        kprune.Staged([("l1", 1)], step=0.2, table=table)


@pytest.mark.slow
def test_int8_table(tmp_path):
    model = two_convs(size=32)
    # one width: a file per layer and the model (int8 conversions are slow)
    table = LatencyTable.measure(
        model, widths=(1.0,), runs=5, quantize="int8", verbose=0
    )
    assert table.quantize == "int8" and table.dense_ms > 0
    assert table.predict(model) == pytest.approx(table.dense_ms)
    # The single layers run int8 end to end, as inside the int8 model; the
    # model itself keeps float ends. (Float-ended layer files once timed a
    # quantize and a dequantize of every activation besides the layer.)
    LatencyTable.write_layers(
        model, str(tmp_path), widths=(1.0,), quantize="int8", verbose=0
    )
    ends = {}
    for name in ("layer_0000.tflite", "model.tflite"):
        interpreter = Interpreter(model_path=str(tmp_path / name))
        details = interpreter.get_input_details() + interpreter.get_output_details()
        ends[name] = {np.dtype(d["dtype"]).name for d in details}
    assert ends == {"layer_0000.tflite": {"int8"}, "model.tflite": {"float32"}}
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        LatencyTable.measure(model, quantize="float16")
    with pytest.raises(TypeError, match="runtime"):  # it times in LiteRT, always
        LatencyTable.measure(model, runtime="tflite-gpu")
    with pytest.raises(ValueError, match="include 1.0"):
        LatencyTable.measure(model, widths=(0.5,))


def test_the_scale_fits_whole_model_timings_through_the_dense_point():
    # the whole model runs at 2 ms + half of what its single layers sum to
    points = [
        {"width": w, "layers_ms": 10 * w, "measured_ms": 2 + 5 * w}
        for w in (1.0, 0.25, 0.5)
    ]
    assert fit_scale(points) == pytest.approx(0.5)
    assert fit_scale(points[:1]) == 1.0  # nothing to fit
    flat = [{**p, "measured_ms": 7.0} for p in points]  # never gets faster
    assert fit_scale(flat) == 0.05  # the lower bound
    # the scale multiplies every layer's term; the overhead is added once
    model = two_convs()
    table = planted(model, {"cheap": 0.5, "dear": 0.5})
    layers_ms = table.predict(model) - table.overhead_ms
    table.scale = 0.5
    assert table.predict(model) == pytest.approx(1.0 + 0.5 * layers_ms)


LOG_MEDIAN = """INFO: Running benchmark for at least 30 iterations
INFO: count=5 first=900 curr=700 min=690 max=900 avg=750 std=80 median=720
INFO: count=30 first=512 curr=498 min=480 max=530 avg=501 median=1.5e+03
INFO: Inference timings in us: Init: 812, First inference: 900, Warmup (avg): 750, \
Inference (avg): 501.2
"""
LOG_AVERAGE = "Inference timings in us: Init: 8, First inference: 9, Warmup (avg): \
1.2e+03, Inference (avg): 1.24027e+06\n"


def test_benchmark_model_logs_are_read():
    # the last run's median where the tool prints one, else the average
    assert parse_benchmark_log(LOG_MEDIAN) == pytest.approx(1.5)
    assert parse_benchmark_log(LOG_AVERAGE) == pytest.approx(1240.27)
    with pytest.raises(ValueError, match="benchmark_model"):
        parse_benchmark_log("Segmentation fault", "layer_0001.log")


def test_files_timed_elsewhere_make_a_table(tmp_path, monkeypatch):
    """The phone path: write the files, time them anywhere, load the timings."""
    # The timings here are made up, so the files' contents do not matter: empty
    # files stand in for the ~20 conversions (a minute on 2 cores). Real files
    # are written and run in test_int8_table and the CLI's latency test.
    monkeypatch.setattr(
        kprune.latency.layerfiles,
        "write_tflite",
        lambda model, path, *a, **k: open(path, "wb").close(),
    )
    model = two_convs(size=32)
    folder = tmp_path / "layers"
    LatencyTable.write_layers(model, str(folder), widths=(0.5, 1.0), verbose=0)
    written = sorted(p.name for p in folder.iterdir())
    assert {"kprune_layers.json", "run_benchmark.sh", "model.tflite"} <= set(written)
    assert "width_50.tflite" in written
    manifest = json.loads((folder / "kprune_layers.json").read_text())
    # the step probes: the widest conv (16 outputs) at 16, 8 and 16 - s + 1
    assert sorted(p["count"] for p in manifest["probes"]) == [8, 9, 13, 15, 16]
    assert {p["kind"] for p in manifest["probes"]} == {"Conv2D"}
    # synthetic device timings: a layer costs 0.01 ms per in x out channel
    # pair; the whole model 1 ms + half of its layers' sum; the probes show
    # tiles of 8 output channels
    timings = {
        e["file"]: 0.01 * e["c_in"] * (e["c_out"] or 1) for e in manifest["layers"]
    }
    probes = tiles(8, [p["count"] for p in manifest["probes"]])
    timings.update({p["file"]: probes[p["count"]] for p in manifest["probes"]})
    zeros = {e["file"]: 0.0 for e in manifest["models"]}
    table = LatencyTable.from_timings(str(folder), {**timings, **zeros})
    for entry in manifest["models"]:
        timings[entry["file"]] = 1.0 + 0.5 * table.layers_ms(entry["channels"])
    table = LatencyTable.from_timings(str(folder), timings, runtime="pixel 7")
    assert table.steps == {"Conv2D": 8}
    assert {c.step for c in table.costs.values() if c.out_widths} == {8}
    assert table.scale == pytest.approx(0.5) and table.runtime == "pixel 7"
    assert table.overhead_ms == pytest.approx(1.0)
    assert table.predict(model) == pytest.approx(table.dense_ms)
    half = kprune.shrink(model, kprune.plan(model, "l1", ratio=0.5))
    assert table.predict(half) == pytest.approx(timings["width_50.tflite"])
    # benchmark_model's logs next to the files give the same table
    for name, ms in timings.items():
        log = f"count=30 first=1 curr=1 min=1 max=1 avg=1 std=0 median={ms * 1000}"
        (folder / name.replace(".tflite", ".log")).write_text(log)
    assert LatencyTable.from_timings(str(folder), runtime="pixel 7") == table
    (folder / "layer_0000.log").unlink()
    with pytest.raises(ValueError, match="no timing for 1 of"):
        LatencyTable.from_timings(str(folder))
    with pytest.raises(ValueError, match="write_layers wrote"):
        LatencyTable.from_timings(str(tmp_path))
    with pytest.raises(TypeError, match="dict of milliseconds"):
        LatencyTable.from_timings(str(folder), [1.0])
    # the grid can be laid on the steps the device showed (a second round)
    again = tmp_path / "again"
    LatencyTable.write_layers(
        model, str(again), widths=(0.25, 1.0), steps=table.steps, verbose=0
    )
    manifest = json.loads((again / "kprune_layers.json").read_text())
    assert manifest["steps"] == {"Conv2D": 8}
    assert {e["c_out"] for e in manifest["layers"]} == {8, 16}  # not 4: a tile
    with pytest.raises(TypeError, match="layer type -> channel step"):
        LatencyTable.write_layers(model, str(again), steps=True)


def test_the_callback_masks_to_a_latency_budget(tmp_path):
    model = two_convs()
    table = planted(model, {"cheap": 0.5, "dear": 0.5})
    wrapped = kprune.wrap(model)
    wrapped.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(16, 16, 16, 3)).astype("float32")
    y = model.predict(x, verbose=0)
    callback = kprune.PruningCallback(latency=0.5, table=table, end_epoch=1)
    history = wrapped.fit(x, y, epochs=3, callbacks=[callback], verbose=0)
    kept = history.history["pruning_latency_kept"]
    assert kept[0] == 1.0  # the ramp starts at epoch 0 with nothing masked
    assert 0.45 < kept[1] <= 0.5 + 1e-9 and kept[2] == kept[1]
    small = kprune.shrink(wrapped)
    assert table.predict(small) == pytest.approx(kept[-1] * table.dense_ms)
    # the table travels in the config, and loads from its JSON file
    again = kprune.PruningCallback.from_config(callback.get_config())
    assert again.table == table and again.latency == 0.5
    table.to_json(str(tmp_path / "t.json"))
    loaded = kprune.PruningCallback(latency=0.5, table=str(tmp_path / "t.json"))
    assert loaded.table == table


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"latency": 0.5}, ValueError, "table=kprune.LatencyTable.measure"),
        ({"ratio": 0.5, "table": "t.json"}, ValueError, "only read with latency="),
        ({"latency": 0.5, "table": 3}, TypeError, "path of its JSON file"),
        ({"latency": 1.5, "table": "t.json"}, ValueError, r"in \(0, 1\)"),
        ({"latency": 0.5, "flops": 0.5}, ValueError, "exactly one target"),
        ({"latency": 0.5, "table": "t.json", "step": 0.1}, ValueError, "ignored"),
    ],
)
def test_the_callback_refuses_bad_latency_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        kprune.PruningCallback(**kwargs)


def test_plan_measured_times_each_try_and_corrects_the_budget():
    """The closed loop: every try is timed in LiteRT; the next budget is the
    last one corrected by the miss; the closest try is returned."""
    model = two_convs(size=32)
    table = planted(model, {"cheap": 0.5, "dear": 0.5})
    plan = kprune.plan_measured(
        model, 0.5, table, tries=3, within=0.001, runs=3, verbose=0
    )
    tries = plan.target["tries"]
    assert 1 <= len(tries) <= 3 and tries[0]["asked"] == 0.5
    for before, after in zip(tries, tries[1:]):
        corrected = before["asked"] * 0.5 / before["measured_share"]
        assert after["asked"] == pytest.approx(min(max(corrected, 0.01), 0.99))
    misses = [abs(t["measured_share"] - 0.5) for t in tries]
    assert (
        plan.target["measured_share"]
        == tries[misses.index(min(misses))]["measured_share"]
    )
    assert plan.target["goal"] == 0.5 and all(t["dense_ms"] > 0 for t in tries)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"tries": 0}, ValueError, "tries must be an int >= 1"),
        ({"within": 1.5}, ValueError, r"within must be in \(0, 1\)"),
        ({"flops": 0.5}, TypeError, "plan_measured plans for latency="),
        ({"scpoe": "global"}, TypeError, "scpoe"),
        ({"latency": 1.2}, ValueError, r"in \(0, 1\)"),
    ],
)
def test_plan_measured_refuses_bad_arguments(kwargs, error, match):
    model = two_convs()
    table = planted(model, {"dear": 1.0})
    kwargs = {"latency": 0.5, **kwargs}
    with pytest.raises(error, match=match):
        kprune.plan_measured(model, table=table, verbose=0, **kwargs)


def test_plan_measured_needs_a_table_timed_here():
    model = two_convs()
    table = planted(model, {"dear": 1.0})
    table.runtime = "pixel 7"
    with pytest.raises(ValueError, match="timed on 'pixel 7'"):
        kprune.plan_measured(model, 0.5, table, verbose=0)
    table.runtime = "litert"
    with pytest.raises(ValueError, match="cannot be reached"):
        kprune.plan_measured(model, 0.05, table, verbose=0, min_channels=8)


def test_which_layers_a_table_times_is_the_handlers_say():
    """No second table of layer classes: a handler's `timing` decides, so a
    user's layer registered with a timed handler is timed too."""
    from kprune.handlers import PassThroughHandler, register_handler
    from kprune.handlers.registry import unregister_handler

    @keras.saving.register_keras_serializable(package="kprune_tests")
    class Glow(keras.layers.Layer):
        def call(self, x):
            return x * 1.0

    def timed_kinds():
        model = keras.Sequential(
            [keras.Input((8, 8, 3)), layers.Conv2D(4, 3, name="conv"), Glow()]
        )
        _, calls = _signatures(kprune.graph(model))
        return sorted(key.split(":")[0].split("_")[0] for key in calls)

    assert timed_kinds() == ["conv"]
    register_handler(Glow, PassThroughHandler().timed("channelwise"))
    try:
        assert timed_kinds() == ["conv", "glow"]
    finally:
        unregister_handler(Glow)
    with pytest.raises(ValueError, match="timing must be 'grid' or 'channelwise'"):
        PassThroughHandler().timed("sometimes")
