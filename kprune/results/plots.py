"""The drawings of kprune's results, with matplotlib's object API.

Every result that can be drawn (`Sensitivity`, `PruningReport`, `Sweep`)
builds a `Figure` from the helpers here; `save_figure` writes it as PNG, SVG
or PDF by the file's suffix, and `figure_png` renders it for an HTML report.
No pyplot: kprune never touches the user's global figure state or backend.
"""

from __future__ import annotations

import io
import os
from typing import Mapping, Sequence

from matplotlib.figure import Figure

FORMATS = (".png", ".svg", ".pdf")


def new_figure(panels: int = 1, width: float = 6.4, height: float = 4.2):
    """A figure of `panels` side-by-side axes: `(figure, [axes, ...])`."""
    fig = Figure(figsize=(width * panels, height), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def save_figure(fig: Figure, path: str) -> str:
    """Write `fig` to `path` (`.png`, `.svg` or `.pdf`); returns the path."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"cannot tell the image format of {path!r}: end the file name with "
            f"one of {FORMATS}"
        )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=150 if suffix == ".png" else None)
    return str(path)


def figure_png(fig: Figure) -> bytes:
    """`fig` as PNG bytes (for inlining in an HTML page)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def draw_curves(
    ax,
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    labelled: Sequence[str] = (),
    baseline: float | None = None,
) -> None:
    """One line per series over `x`; the `labelled` ones in colour and in the
    legend, the rest in thin grey."""
    for name, values in series.items():
        if name in labelled:
            continue
        ax.plot(x, values, color="0.75", linewidth=1, marker=".", markersize=3)
    for name in labelled:
        ax.plot(x, series[name], linewidth=2, marker="o", label=name)
    if baseline is not None:
        ax.axhline(baseline, color="black", linestyle="--", linewidth=1)
    if labelled:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)


def draw_kept_channels(
    ax, names: Sequence[str], before: Sequence[int], after: Sequence[int]
) -> None:
    """Bars of the channels each group had and kept."""
    positions = range(len(names))
    ax.bar(positions, before, color="0.8", label="before")
    ax.bar(positions, after, color="tab:blue", label="after")
    ax.set_xticks(list(positions))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("channels")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
