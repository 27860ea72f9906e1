"""Plain-text tables: every result, profile, plan and benchmark prints through
`format_table`, and counts read short through `human`."""

from __future__ import annotations

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
