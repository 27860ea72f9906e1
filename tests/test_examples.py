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
    args = ["--epochs", "1", "--fine-tune-epochs", "1", "--train-images", "640"]
    out = run_example("quickstart.py", args + ["--out", "q"])
    assert "kprune quick start (keep 30% of FLOPs)" in out
    assert "LiteRT ms (median, 1 thread)" in out and "faster" in out
    assert (tmp_path / "q" / "pruned.tflite").exists()


@pytest.mark.slow
def test_segmentation(run_example, tmp_path):
    if importlib.util.find_spec("stardist") is None:
        pytest.skip("pip install --no-deps stardist (the image ships in its wheel)")
    args = ["--epochs", "1", "--crops", "32", "--base", "8", "--max-rounds", "1"]
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


def test_quickstart_rejects_a_bad_image_count(run_example, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_example("quickstart.py", ["--train-images", "0"])
    assert exit_.value.code == 2
    assert "--train-images must be >= 1" in capsys.readouterr().err
