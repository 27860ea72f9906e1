"""Plain-text tables and the report of iterative pruning runs.

Profiles, plans, pruning reports and benchmarks all print through `format_table`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence], title: str = ""
) -> str:
    """Align `rows` under `headers`; numbers go right, text goes left.

    Args:
        headers: column titles.
        rows: one sequence of cells per row (any objects; they are `str()`-ed).
        title: optional line printed above the table.
    """
    rows = [[_cell(c) for c in row] for row in rows]
    numeric = [
        all(_is_number(row[i]) for row in rows if row[i] != "") if rows else False
        for i in range(len(headers))
    ]
    widths = [
        max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)
    ]

    def line(cells):
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric)
        ]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    out.append(line(headers))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def human(n: float) -> str:
    """`12345678` -> `'12.35M'`: short counts for tables."""
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _is_number(text: str) -> bool:
    text = text.rstrip("%xKMG").replace(",", "")
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class Round:
    """One pruning round: what was tried and what it gave.

    Attributes:
        round: 1-based index (0 is the unpruned baseline).
        criterion: the scoring rule used.
        step: the share pruned this round (of channels, or of FLOPs).
        params, macs: of the model after the round.
        flops_ratio: MACs over the original model's MACs.
        metric: the validation metric after fine-tuning (None if not measured).
        accepted: False when the round was rolled back.
        note: anything else worth saying (why it was rejected, say).
    """

    round: int
    criterion: str
    step: float
    params: int
    macs: int
    flops_ratio: float
    metric: float | None = None
    accepted: bool = True
    note: str = ""


@dataclass
class PruningReport:
    """The rounds of an iterative pruning run. Plain data; prints as a table.

    Attributes:
        metric_name: what `metric` measures (e.g. "accuracy").
        rounds: round 0 is the baseline, then one `Round` per round tried.
    """

    metric_name: str = "metric"
    rounds: list[Round] = field(default_factory=list)

    @property
    def baseline(self) -> Round | None:
        return self.rounds[0] if self.rounds else None

    @property
    def accepted(self) -> list[Round]:
        return [r for r in self.rounds[1:] if r.accepted]

    @property
    def final(self) -> Round | None:
        """The last accepted round (the baseline if none was accepted)."""
        accepted = self.accepted
        return accepted[-1] if accepted else self.baseline

    def table(self) -> str:
        """One row per round: criterion, step, params, MACs, FLOPs, metric."""
        rows = [
            (
                r.round,
                r.criterion,
                f"{r.step:.3f}" if r.round else "-",
                f"{r.params:,}",
                human(r.macs),
                f"{r.flops_ratio:.3f}",
                "-" if r.metric is None else f"{r.metric:.4f}",
                "yes" if r.accepted else "no",
                r.note,
            )
            for r in self.rounds
        ]
        headers = [
            "round",
            "criterion",
            "step",
            "params",
            "MACs",
            "FLOPs kept",
            self.metric_name,
            "accepted",
            "note",
        ]
        return format_table(headers, rows)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        """The report as plain Python data."""
        return asdict(self)
