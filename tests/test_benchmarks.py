"""Tiny runs of the quality benchmarks, only to keep them from rotting.

Their real figures (and commands) are in docs/; these runs use a few crops
and one epoch, so their numbers mean nothing.
"""

import importlib.util
import json
import os

import pytest

from tests.scripts import ROOT, run_python

needs_nuclei = pytest.mark.skipif(
    importlib.util.find_spec("stardist") is None,
    reason="pip install --no-deps stardist (the image ships in its wheel)",
)


def run_benchmark(name, args, cwd):
    return run_python([os.path.join(ROOT, "benchmarks", name), *args], cwd)


@pytest.mark.slow
@needs_nuclei
def test_recalibration_benchmark(tmp_path):
    args = ["--seeds", "0", "--flops", "0.5", "--epochs", "1", "--crops", "32"]
    out = run_benchmark("recalibration.py", args + ["--json", "r.json"], tmp_path)
    assert "Dice recalibrated" in out
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["flops"] for r in rows] == [1.0, 0.5]


@pytest.mark.slow
@needs_nuclei
def test_importance_vs_l1_benchmark(tmp_path):
    args = ["--seeds", "0", "--epochs", "1", "1", "1", "--crops", "32"]
    out = run_benchmark("importance_vs_l1.py", args + ["--json", "i.json"], tmp_path)
    assert "Dice after fine-tuning" in out
    rows = json.loads((tmp_path / "i.json").read_text())
    assert {(r["method"], r["recalibrated"]) for r in rows} == {
        (m, flag) for m in ("l1", "importance", "bn_scale") for flag in (False, True)
    }
