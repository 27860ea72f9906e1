"""`PruningReport`: the rounds of an iterative pruning run, one `Round` each.

`Staged.run`, `prune_to_tolerance` and the command line's tolerance loop
return one; it prints as a table, saves as JSON, draws its rounds and writes an
HTML page (see `kprune.results.Result`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from matplotlib.ticker import MaxNLocator

from kprune.results import htmlpage
from kprune.results.base import Result
from kprune.results.plots import draw_kept_channels, figure_png, new_figure
from kprune.results.tables import human


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
class PruningReport(Result):
    """The rounds of an iterative pruning run. Plain data; prints as a table.

    Attributes:
        metric_name: what `metric` measures (e.g. "accuracy").
        rounds: round 0 is the baseline, then one `Round` per round tried.
        title: what ran (`"prune_to_tolerance"`, `"Staged"`), and on which model.
        channels: per group, `[channels before, channels after]`.
        latency_ms: measured latencies, `{"before": ms, "after": ms}`, when
            someone measured them (`kprune prune --tolerance ... --bench` does).
        predicted_ms: the latency table's predictions, `{"before": ms,
            "after": ms}`, for a run planned by latency (`by="latency"`).
    """

    kind: ClassVar[str] = "pruning"

    metric_name: str = "metric"
    rounds: list[Round] = field(default_factory=list)
    title: str = ""
    channels: dict[str, list[int]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    predicted_ms: dict[str, float] = field(default_factory=dict)

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

    def table_data(self) -> tuple[list, list, str]:
        """One row per round: criterion, step, params, MACs, FLOPs kept,
        metric, accepted, note; `(headers, rows, title)`."""
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
        return headers, rows, self.title

    @classmethod
    def from_dict(cls, data: dict) -> "PruningReport":
        """Rebuild from `to_dict`'s output."""
        data = {k: v for k, v in data.items() if k != "kind"}
        rounds = [Round(**r) for r in data.pop("rounds", [])]
        return super().from_dict({**data, "rounds": rounds})

    def figure(self):
        """FLOPs kept and the metric per round (rejected rounds hollow) and,
        when known, the channels each group kept: a matplotlib `Figure`."""
        panels = 3 if self.channels else 2
        fig, axes = new_figure(panels, width=5.0)
        numbers = [r.round for r in self.rounds]
        for ax, values, label in (
            (axes[0], [r.flops_ratio for r in self.rounds], "FLOPs kept"),
            (axes[1], [r.metric for r in self.rounds], self.metric_name),
        ):
            accepted = [r.accepted for r in self.rounds]
            kept = [(n, v) for n, v, a in zip(numbers, values, accepted) if a]
            ax.plot(*zip(*kept), marker="o", label="accepted")
            undone = [(n, v) for n, v, a in zip(numbers, values, accepted) if not a]
            if undone:
                ax.plot(*zip(*undone), "o", mfc="none", label="rejected")
                ax.legend(fontsize=8)
            ax.set_xlabel("round")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        if self.channels:
            names = list(self.channels)
            before, after = zip(*(self.channels[n] for n in names))
            draw_kept_channels(axes[2], names, before, after)
        fig.suptitle(self.title or "pruning rounds")
        return fig

    def html_title(self) -> str:
        return self.title or "Pruning report"

    def html_parts(self) -> list[str]:
        """Before and after, the plots, the rounds."""
        first, last = self.baseline, self.final
        rows = [
            ("params", f"{first.params:,}", f"{last.params:,}"),
            ("MACs", human(first.macs), human(last.macs)),
            ("FLOPs kept", "1.000", f"{last.flops_ratio:.3f}"),
        ]
        if first.metric is not None:
            rows.append((self.metric_name, f"{first.metric:.4f}", f"{last.metric:.4f}"))
        for name, values in (
            ("latency (ms)", self.latency_ms),
            ("predicted latency (ms)", self.predicted_ms),
        ):
            if values:
                rows.append((name, *(f"{values[k]:.2f}" for k in ("before", "after"))))
        parts = [
            htmlpage.heading("Before and after"),
            htmlpage.table(["", "before", "after"], rows),
            htmlpage.image(figure_png(self.figure()), "rounds and kept channels"),
            htmlpage.heading("Rounds"),
            htmlpage.table(*self.table_data()[:2]),
        ]
        return parts
