"""PruningReport as JSON, a plot and an HTML page; progress output of the loop."""

import pathlib

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune.messages import Steps, say
from kprune.results import PruningReport, Round


def small_run(verbose=0):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(8, 3, activation="relu", name="c1"),
            layers.Conv2D(8, 3, activation="relu", name="c2"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(3, activation="softmax"),
        ],
        name="small",
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(32, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 32))
    return kprune.prune_to_tolerance(
        model, data, data, tolerance=1.0, step=0.3, max_rounds=2, verbose=verbose
    )


@pytest.fixture(scope="module")
def report():
    return small_run()[1]


def test_the_loop_records_title_and_kept_channels(report):
    assert report.title.startswith("prune_to_tolerance of 'small'")
    assert set(report.channels) == {"c1", "c2"}
    before, after = report.channels["c1"]
    assert before == 8 and after < 8


def test_json_round_trip(report, tmp_path):
    path = tmp_path / "run.json"
    report.to_json(str(path))
    loaded = PruningReport.from_json(str(path))
    assert loaded == report
    assert PruningReport.from_json(report.to_json()) == report


def test_plot_and_html(report, tmp_path):
    png = pathlib.Path(report.plot(str(tmp_path / "r.png")))
    assert png.read_bytes()[:4] == b"\x89PNG"
    report.latency_ms = {"before": 2.0, "after": 1.0}
    page = pathlib.Path(report.save_html(str(tmp_path / "r.html"))).read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "Before and after" in page and "latency (ms)" in page
    assert page.count("<tr>") == 1 + 5 + 1 + len(report.rounds)


def test_a_report_without_rounds_channels_or_metric_still_draws(tmp_path):
    bare = PruningReport(rounds=[Round(0, "-", 0.0, 10, 100, 1.0)])
    assert (
        "<table>" in pathlib.Path(bare.save_html(str(tmp_path / "b.html"))).read_text()
    )
    with pytest.raises(ValueError, match=".html"):
        bare.save_html(str(tmp_path / "b.txt"))


def test_verbose_levels_of_the_round_loop(capsys):
    small_run(verbose=2)
    lines = capsys.readouterr().out
    assert "baseline accuracy" in lines and "pruning rounds: round 1" in lines
    small_run(verbose=1)
    out = capsys.readouterr().out
    assert "pruning rounds" in out and "2/2" in out and "FLOPs 0." in out
    small_run(verbose=0)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="verbose must be 0"):
        small_run(verbose=5)


def test_messages(capsys):
    say("shown", 1)
    say("hidden", 0)
    say("detail", 1, level=2)
    with Steps("work", 2, verbose=2) as steps:
        steps.advance("half")
        steps.advance()
    assert capsys.readouterr().out == "shown\nwork: half\n"


def test_every_result_reads_back_by_its_kind(report, tmp_path):
    """One base for plans, reports, sensitivity, sweeps and latency tables:
    a table, JSON with a kind that `kprune.results.load` dispatches on, a
    plot where there is something to draw, and an HTML page."""
    from kprune.results import Result, kinds, load
    from tests import models

    model = models.randomize(models.resnet())
    plan = kprune.plan(model, ratio=0.5)
    assert set(kinds()) >= {"plan", "pruning", "sensitivity", "sweep", "latency_table"}
    for result in (plan, report):
        assert isinstance(result, Result)
        path = tmp_path / f"{result.kind}.json"
        result.to_json(str(path))
        again = load(str(path))
        assert type(again) is type(result) and again.to_dict() == result.to_dict()
        page = pathlib.Path(result.save_html(str(tmp_path / f"{result.kind}.html")))
        assert "data:image/png;base64," in page.read_text()
    assert "Pruning plan for 'resnet'" in plan.table() and str(plan) == plan.summary()
    with pytest.raises(ValueError, match="holds a 'plan' result, not a 'pruning'"):
        PruningReport.from_json(str(tmp_path / "plan.json"))
    with pytest.raises(ValueError, match="the kinds are"):
        load('{"kind": "mystery"}')


def test_a_plan_written_by_kprune_0_1_still_loads():
    here = pathlib.Path(__file__).parent / "data"
    plan = kprune.PruningPlan.from_json(str(here / "plan_v0_1.json"))
    assert plan.groups["c1"].keep == (2, 3, 5) and plan.criterion == "l1"
    assert plan.to_dict()["kind"] == "plan"


def test_a_result_kind_is_taken_once():
    from dataclasses import dataclass

    from kprune.results import Result

    with pytest.raises(ValueError, match="kind 'plan' is taken"):

        @dataclass
        class Other(Result):
            kind = "plan"
