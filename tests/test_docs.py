"""The README's code runs exactly as written.

The "API in one screen" block is cut out of README.md and run in a fresh Python
process, in a scratch directory, so an API change that breaks the README fails
here before a user finds it.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_block(heading: str) -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split(f"## {heading}", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block under '## {heading}' in README.md"
    return match.group(1)


@pytest.mark.slow
def test_readme_api_block_runs(tmp_path):
    code = readme_block("The API in one screen")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = result.stdout
    assert "FLOPs per sample" in out  # print(kprune.profile(model))
    assert "Channel graph of 'resnet50'" in out  # print(g.explain())
    assert "Pruning plan for 'resnet50'" in out  # print(plan)
    assert "median" in out  # print(kprune.benchmark_tflite(...))
    assert (tmp_path / "out" / "model.tflite").stat().st_size > 0
    assert (tmp_path / "out" / "int8.tflite").stat().st_size > 0
