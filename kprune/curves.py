"""`Sensitivity`: the result of a sensitivity analysis, one curve per group.

Plain data (JSON round trip), with a table, a plot, an HTML report, and
`suggest(tolerance)`, which turns the curves into per-group ratios for
`kprune.plan(model, ratios=...)`. `kprune.sensitivity` makes one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from kprune import htmlpage
from kprune.checks import check_settings
from kprune.choosing import allocate
from kprune.plots import draw_curves, figure_png, new_figure, save_figure
from kprune.report import JsonResult, format_table


@dataclass
class Sensitivity(JsonResult):
    """The metric after pruning each group alone at each ratio.

    Attributes:
        model: the model's name.
        criterion: how channels were chosen within a group.
        metric_name: what was measured; `higher_is_better` its direction.
        baseline: the metric of the unpruned model.
        ratios: the shares of channels removed.
        sizes: channels per group.
        scores: per group, the metric at each ratio.
        flops_kept: per group, the share of the model's MACs kept at each
            ratio (NaN for a model built for any image size).
        seconds: how long the analysis took.
    """

    model: str
    criterion: str
    metric_name: str
    higher_is_better: bool
    baseline: float
    ratios: list[float]
    sizes: dict[str, int]
    scores: dict[str, list[float]]
    flops_kept: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    verifier: Callable | None = field(default=None, repr=False, compare=False)

    def drops(self, group: str) -> list[float]:
        """How much worse than the baseline each ratio leaves `group` (> 0 is worse)."""
        sign = 1.0 if self.higher_is_better else -1.0
        return [sign * (self.baseline - v) for v in self.scores[group]]

    def ranking(self) -> list[str]:
        """Groups from the most sensitive to the least (mean drop over ratios)."""
        return sorted(self.scores, key=lambda g: -float(np.mean(self.drops(g))))

    def table(self) -> str:
        """One row per group, most sensitive first: the metric at each ratio."""
        return format_table(*self.table_data())

    def table_data(self) -> tuple[list, list, str]:
        """`(headers, rows, title)` of `table()`, for other renderers."""
        headers = ["group", "channels", *(f"{r:.0%}" for r in self.ratios)]
        headers.append("mean drop")
        rows = [
            [g, self.sizes[g], *(f"{v:.4f}" for v in self.scores[g])]
            + [f"{np.mean(self.drops(g)):.4f}"]
            for g in self.ranking()
        ]
        title = (
            f"Sensitivity of '{self.model}' ({self.criterion}): {self.metric_name} "
            f"after pruning one group, unpruned {self.baseline:.4f}"
        )
        return headers, rows, title

    def __str__(self) -> str:
        return self.table()

    def suggest(
        self, tolerance: float, relative: bool = False, verify: bool = True
    ) -> dict[str, float]:
        """Per-group ratios that keep the metric within `tolerance`.

        The drops of separate groups roughly add up when they are pruned
        together, so the tolerance is shared out: greedily, each step goes to
        the group whose next ratio removes the most FLOPs (channels, for a
        model built for any image size) per unit of measured drop, while the
        summed drops stay within the tolerance. Fresh from
        `kprune.sensitivity` (which keeps the model and data; not after
        `from_json`) and with `verify`, the combined plan is then measured,
        and the shared budget lowered by bisection until the combined drop is
        within `tolerance` too.

        Args:
            tolerance: the largest allowed drop of the metric (a rise, for a
                loss); a share of the baseline with `relative=True`.
            relative: see `tolerance`.
            verify: measure the combined plan (see above).

        Returns:
            `{group: ratio}` for `kprune.plan(model, ratios=...)`; groups that
            cannot lose even the smallest ratio are left out.
        """
        check_settings(tolerance=tolerance)
        limit = tolerance * (abs(self.baseline) if relative else 1.0)
        chosen = self._within(limit)
        if not verify or self.verifier is None or self._holds(chosen, limit):
            return chosen
        low, high, best = 0.0, limit, {}
        for _ in range(7):
            allowance = (low + high) / 2
            candidate = self._within(allowance)
            if self._holds(candidate, limit):
                low, best = allowance, candidate
            else:
                high = allowance
        return best

    def _within(self, budget: float) -> dict[str, float]:
        """The ratios whose summed drops fit `budget`, the most saved first."""
        gains = {}
        for group in self.scores:
            kept = np.asarray(self.flops_kept.get(group, []), dtype=float)
            if kept.size and np.all(np.isfinite(kept)):
                gains[group] = 1.0 - kept
            else:  # any image size: the channels removed
                gains[group] = np.asarray(self.ratios) * self.sizes[group]
        costs = {group: self.drops(group) for group in self.scores}
        steps = allocate(costs, gains, budget)
        return {g: self.ratios[i] for g, i in steps.items() if i >= 0}

    def _holds(self, ratios: dict[str, float], limit: float) -> bool:
        if not ratios:
            return True
        value = self.verifier(ratios)
        sign = 1.0 if self.higher_is_better else -1.0
        return sign * (self.baseline - value) <= limit + 1e-12

    def figure(self, label: int = 5):
        """The curves as a matplotlib `Figure`: one per group, metric against
        share of channels removed (0: the baseline, dashed); the `label` most
        sensitive groups in colour, the others in grey."""
        fig, (ax,) = new_figure()
        curves = {g: [self.baseline, *v] for g, v in self.scores.items()}
        labelled = self.ranking()[:label]
        draw_curves(ax, [0.0, *self.ratios], curves, labelled, self.baseline)
        if len(curves) > len(labelled):
            ax.text(
                0.01,
                0.01,
                f"grey: the {len(curves) - len(labelled)} other groups",
                transform=ax.transAxes,
                fontsize=8,
                color="0.5",
            )
        ax.set_xlabel("share of the group's channels removed")
        ax.set_ylabel(self.metric_name)
        ax.set_title(f"{self.model}: {self.metric_name} after pruning one group")
        return fig

    def plot(self, path: str, label: int = 5) -> str:
        """Save `figure(label)` to `path` (.png, .svg or .pdf); returns it."""
        return save_figure(self.figure(label), path)

    def save_html(self, path: str, tolerance: float | None = None) -> str:
        """A self-contained HTML report: the plot, the table, and the
        suggestion for `tolerance` when given."""
        ranking = self.ranking()
        rows = [[g, self.sizes[g], *self.scores[g]] for g in ranking]
        parts = [
            htmlpage.paragraph(
                f"criterion {self.criterion}; {self.metric_name} of the unpruned "
                f"model {self.baseline:.4f}; {len(self.scores)} groups x "
                f"{len(self.ratios)} ratios in {self.seconds:.0f} s",
                meta=True,
            ),
            htmlpage.image(figure_png(self.figure()), "sensitivity curves"),
            htmlpage.heading(f"{self.metric_name} after pruning one group"),
            htmlpage.table(
                ["group", "channels", *(f"{r:.0%}" for r in self.ratios)], rows
            ),
        ]
        if tolerance is not None:
            suggestion = self.suggest(tolerance)
            parts += [
                htmlpage.heading(f"Suggested ratios for a tolerance of {tolerance}"),
                htmlpage.table(["group", "ratio"], sorted(suggestion.items())),
            ]
        title = f"Sensitivity of {self.model}"
        return htmlpage.write_page(path, title, parts)

    def to_dict(self) -> dict:
        """The result as plain data (the model and data it keeps are left out)."""
        data = dataclasses.asdict(self)
        data.pop("verifier")
        return {"kind": "sensitivity", **data}

    @classmethod
    def from_dict(cls, data: dict) -> "Sensitivity":
        """Rebuild from `to_dict`'s output (`suggest` then uses the curves only)."""
        data = {k: v for k, v in data.items() if k != "kind"}
        return cls(**data)
