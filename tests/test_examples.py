"""The examples run end to end (with fewer epochs than their defaults).

CI also runs `examples/quickstart.py` with its defaults, as the README says.
"""

import importlib.util
import os

import pytest

from tests.scripts import ROOT, run_python


def run_example(name, args, cwd):
    return run_python([os.path.join(ROOT, "examples", name), *args], cwd)


@pytest.mark.slow
def test_quickstart(tmp_path):
    out = run_example(
        "quickstart.py",
        ["--epochs", "1", "--fine-tune-epochs", "1", "--out", "q"],
        tmp_path,
    )
    assert "kprune quick start (keep 30% of FLOPs)" in out
    assert "LiteRT ms (median, 1 thread)" in out and "faster" in out
    assert (tmp_path / "q" / "pruned.tflite").exists()


@pytest.mark.slow
def test_segmentation(tmp_path):
    if importlib.util.find_spec("stardist") is None:
        pytest.skip("pip install --no-deps stardist (the image ships in its wheel)")
    args = ["--epochs", "2", "--crops", "64", "--base", "8", "--max-rounds", "2"]
    out = run_example("segmentation.py", args + ["--out", "s"], tmp_path)
    assert "nuclei segmentation, tolerance 0.01" in out
    assert "test foreground IoU" in out and "faster" in out
    assert (tmp_path / "s" / "pruned.tflite").exists()


@pytest.mark.slow
def test_sensitivity_example(tmp_path):
    args = ["--epochs", "1", "--fine-tune-epochs", "0", "--ratios", "0.5"]
    out = run_example(
        "sensitivity.py", args + ["--out", "s", "--verbose", "0"], tmp_path
    )
    assert "mean drop" in out and "uniform L1" in out and "suggested" in out
    assert (tmp_path / "s" / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "s" / "sensitivity.html").read_text()
    assert "data:image/png;base64," in page and "Suggested ratios" in page
