"""Everything kprune tells the user goes through here.

`verbose` follows Keras: 0 is silent, 1 shows a progress bar for long loops
(and the few lines that frame them), 2 prints one line per step instead of a
bar (for logs and notebooks that do not redraw). `say` prints one line;
`Steps` is a loop's progress, shown as a bar or as lines.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

VERBOSE_LEVELS = (0, 1, 2)


def check_verbose(verbose) -> int:
    """`verbose` as 0, 1 or 2 (True counts as 1); anything else raises."""
    if isinstance(verbose, bool):
        return int(verbose)
    if verbose not in VERBOSE_LEVELS:
        raise ValueError(
            f"verbose must be 0 (silent), 1 (progress bar) or 2 (one line per "
            f"step); got {verbose!r}"
        )
    return int(verbose)


def say(text: str, verbose: int = 1, level: int = 1) -> None:
    """Print `text` on its own line when `verbose >= level`."""
    if check_verbose(verbose) >= level:
        sys.stdout.write(f"{text}\n")
        sys.stdout.flush()


class Steps:
    """The progress of a loop of `total` steps (None when unknown).

    Use it as a context manager and call `advance(text)` after each step: with
    `verbose=1` a bar advances and shows `text` as its latest news, with
    `verbose=2` `text` is printed as a line, with 0 nothing shows.
    """

    def __init__(self, description: str, total: int | None, verbose: int = 1):
        self.description = description
        self.total = total
        self.verbose = check_verbose(verbose)
        self._progress = None
        self._task = None

    def __enter__(self) -> "Steps":
        if self.verbose == 1:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[news]}"),
                console=Console(file=sys.stdout),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.description, total=self.total, news=""
            )
        return self

    def advance(self, text: str = "", line: str | None = None, steps: int = 1):
        """One step (or `steps`) done; `text` says what it gave, briefly (the
        bar shows it), and `line` at length (printed with `verbose=2`;
        `text` when not given)."""
        if self._progress is not None:
            self._progress.update(self._task, advance=steps, news=text)
            return
        line = text if line is None else line
        if line:
            say(f"{self.description}: {line}", self.verbose, level=2)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            # A loop that stops early (a tolerance reached) ends as a full bar.
            done = self._progress.tasks[0].completed
            self._progress.update(self._task, total=max(done, 1), completed=done)
            self._progress.stop()
            self._progress = None
