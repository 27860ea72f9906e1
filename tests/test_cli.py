"""The kprune command line."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kprune import cli
from tests import models


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
    with pytest.raises(SystemExit, match="give --ratio or --flops"):
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
