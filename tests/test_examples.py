"""The examples run end to end (with fewer epochs than their defaults).

CI also runs `examples/quickstart.py` with its defaults, as the README says.
"""

import importlib.util
import os
import runpy
import sys

import pytest

from tests.scripts import ROOT


@pytest.fixture
def run_example(tmp_path, monkeypatch, capsys):
    """Run an example as `python examples/NAME ARGS` would, but in this process
    (a fresh interpreter costs ~8 s of imports), in `tmp_path`; return what it
    printed."""
    monkeypatch.chdir(tmp_path)
    examples = os.path.join(ROOT, "examples")
    monkeypatch.syspath_prepend(examples)  # as `python examples/x.py` puts it first

    def run(name, args):
        path = os.path.join(examples, name)
        monkeypatch.setattr(sys, "argv", [path, *args])
        runpy.run_path(path, run_name="__main__")
        return capsys.readouterr().out

    return run


@pytest.mark.slow
def test_quickstart(run_example, tmp_path):
    out = run_example(
        "quickstart.py", ["--epochs", "1", "--fine-tune-epochs", "1", "--out", "q"]
    )
    assert "kprune quick start (keep 30% of FLOPs)" in out
    assert "LiteRT ms (median, 1 thread)" in out and "faster" in out
    assert (tmp_path / "q" / "pruned.tflite").exists()


@pytest.mark.slow
def test_segmentation(run_example, tmp_path):
    if importlib.util.find_spec("stardist") is None:
        pytest.skip("pip install --no-deps stardist (the image ships in its wheel)")
    args = ["--epochs", "2", "--crops", "64", "--base", "8", "--max-rounds", "2"]
    out = run_example("segmentation.py", args + ["--out", "s"])
    assert "nuclei segmentation, tolerance 0.01" in out
    assert "test foreground IoU" in out and "faster" in out
    assert (tmp_path / "s" / "pruned.tflite").exists()


@pytest.mark.slow
def test_sensitivity_example(run_example, tmp_path):
    args = ["--epochs", "1", "--fine-tune-epochs", "0", "--ratios", "0.5"]
    out = run_example("sensitivity.py", args + ["--out", "s", "--verbose", "0"])
    assert "mean drop" in out and "uniform L1" in out and "suggested" in out
    assert (tmp_path / "s" / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "s" / "sensitivity.html").read_text()
    assert "data:image/png;base64," in page and "Suggested ratios" in page
