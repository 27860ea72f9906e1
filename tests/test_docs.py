"""The README's code runs exactly as written.

The "API in one screen" block is cut out of README.md and run in a fresh Python
process, in a scratch directory, so an API change that breaks the README fails
here before a user finds it.
"""

import os
import re

import pytest

from tests.scripts import ROOT, run_python


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
    out = run_python(["-c", code], tmp_path)
    assert "FLOPs per sample" in out  # print(kprune.profile(model))
    assert "Channel graph of 'resnet50'" in out  # print(g.explain())
    assert "Pruning plan for 'resnet50'" in out  # print(plan)
    assert "median" in out  # print(kprune.benchmark_tflite(...))
    assert (tmp_path / "out" / "model.tflite").stat().st_size > 0
    assert (tmp_path / "out" / "int8.tflite").stat().st_size > 0
