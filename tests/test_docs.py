"""The documentation runs as written.

The README's "API in one screen" block, and every Python block of every page
of docs/, run in a fresh Python process, in a scratch directory: the blocks
of a page in order, sharing one namespace, as a reader would paste them. A
block that cannot run here says so in an HTML comment on the line above it,
`<!-- not run: the reason -->`; those are counted, and each must give its
reason. `docs/reference.md` is generated from the docstrings, and lists every
public name.
"""

from __future__ import annotations

import os
import pathlib
import re
import textwrap

import pytest

import kprune
from tests.scripts import ROOT, run_python

DOCS = pathlib.Path(ROOT) / "docs"
BLOCK = re.compile(
    r"(?:<!--\s*not run:\s*(?P<reason>[^>]*?)\s*-->\s*\n)?"
    r"(?P<indent>[ \t]*)```python\n(?P<code>.*?)\n(?P=indent)```",
    re.S,
)
#: Blocks that may be marked as not run, in all: each one a device or a
#: cluster this machine does not have.
MAX_NOT_RUN = 4


def blocks(page: pathlib.Path) -> list[tuple[str, str | None]]:
    """`(code, reason not run or None)` of every Python block of `page`."""
    found = []
    for match in BLOCK.finditer(page.read_text()):
        code = textwrap.dedent(
            "\n".join(
                line[len(match["indent"]) :] if line.strip() else line
                for line in match["code"].splitlines()
            )
        )
        found.append((code, match["reason"]))
    return found


PAGES = sorted(p for p in DOCS.glob("*.md") if blocks(p))


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


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_python_block_of_a_page_runs(page, tmp_path):
    script = []
    for index, (code, reason) in enumerate(blocks(page)):
        if reason is not None:
            continue
        script.append(f"print('--- block {index}', flush=True)\n{code}\n")
    path = tmp_path / "page.py"
    path.write_text("\n".join(script))
    try:
        run_python([str(path)], tmp_path)
    except AssertionError as error:
        raise AssertionError(f"{page.name}: {error}") from None


def test_the_blocks_left_unrun_are_few_and_say_why():
    skipped = [
        (page.name, reason)
        for page in sorted(DOCS.glob("*.md"))
        for _, reason in blocks(page)
        if reason is not None
    ]
    assert len(skipped) <= MAX_NOT_RUN, skipped
    assert all(len(reason.split()) >= 3 for _, reason in skipped), skipped
    total = sum(len(blocks(page)) for page in DOCS.glob("*.md"))
    assert total >= 36  # every page's blocks are found, indented ones too


def test_the_reference_lists_every_public_name():
    """docs/reference.md renders the docstrings (mkdocstrings); a public name
    missing from it would go undocumented."""
    text = (DOCS / "reference.md").read_text()
    listed = set(re.findall(r"^::: kprune\.(\w+)", text, re.M))
    modules = {n for n in kprune.__all__ if not callable(getattr(kprune, n))}
    missing = set(kprune.__all__) - listed - modules - {"__version__"}
    assert not missing, sorted(missing)
