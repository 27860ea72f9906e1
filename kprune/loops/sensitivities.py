"""Sensitivity analysis: what pruning each group alone costs.

`sensitivity(model, val_data)` prunes one group at a time at each ratio, with
kprune's round step (shrink, then, when given training data, recalibrate,
and fine-tune as `tuning` says: by default not at all), measures the metric,
and returns a `Sensitivity`: a table, JSON, a plot, an HTML report, and
`suggest(tolerance)`, the per-group ratios to hand to
`kprune.plan(model, ratios=...)`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import keras
import numpy as np

from kprune.checks import check_settings, check_shares, take_deprecated
from kprune.data import batches as data_batches
from kprune.dependency import graph as build_graph
from kprune.loops.rounds import step
from kprune.loops.rules import Tolerance
from kprune.loops.settings import FineTune
from kprune.loops.training import evaluate
from kprune.messages import Steps, check_verbose
from kprune.planning import MacCounter, PruningPlan
from kprune.planning import plan as make_plan
from kprune.planning.choosing import allocate
from kprune.results import Result, htmlpage
from kprune.results.plots import draw_curves, figure_png, new_figure, save_figure

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Up to this many batches, pruned copies are evaluated eagerly (no graph
#: trace per copy, which costs more than a few batches).
EAGER_BATCHES = 16


def sensitivity(
    model: keras.Model,
    val_data=None,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    criterion="l1",
    metric=None,
    groups: Sequence[str] | None = None,
    *,
    train_data=None,
    tuning: FineTune | None = None,
    batches: int | None = None,
    batch_size: int = 32,
    mode: str = "auto",
    verbose: int = 1,
    input_shape=None,
    **plan_options,
) -> Sensitivity:
    """Prune each group alone at each ratio and measure, by default with no
    fine-tuning.

    The cost is groups x ratios evaluations (each on a pruned copy), so keep
    the data small: `batches` caps it.

    Args:
        model: the trained model (not modified).
        val_data: `(x, y)` arrays or a batched `tf.data.Dataset`. Not needed
            when `metric` is a callable.
        ratios: shares of each group's channels to remove, in (0, 1).
        criterion: which channels go within a group, as for `kprune.plan`.
        metric: a callable `f(model) -> float`, a compiled metric name, or None
            for the first compiled metric (the loss if there is none).
        groups: names of the groups to analyse (default: every prunable one).
        train_data: training data (`(x, y)`, inputs, or a dataset): every
            model measured, the unpruned one too, first gets its BatchNorm
            statistics re-estimated on 8 batches of it (`kprune.recalibrate`;
            on a copy, never on `model`). Pruning shifts what the BatchNorms
            after a group see; without this the curves mix that shift, which
            recalibration or a little fine-tuning undoes, with what the
            channels carried. None measures the pruned copies as they are.
        tuning: a `kprune.FineTune` for every model measured (default
            `FineTune(epochs=0)`: recalibration only, when `train_data` is
            given; `epochs=1` measures each after an epoch of fine-tuning,
            at groups x ratios times the cost).
        batches: evaluate on at most this many batches of `val_data`.
        batch_size: batch size for array data.
        mode: `"max"`/`"min"` when kprune cannot tell the metric's direction.
        verbose: 0 silent, 1 a progress bar, 2 one line per measurement.
        input_shape: `(H, W, C)` for a model built for any image size.
        **plan_options: passed to `kprune.plan` (`round_to`, `min_channels`,
            the criterion's options).

    Returns:
        A `Sensitivity`.
    """
    start = time.perf_counter()
    moved = take_deprecated(
        plan_options, {"recalibrate": "train_data="}, "kprune.sensitivity"
    )
    if moved.get("recalibrate") is not None:
        train_data = moved["recalibrate"]
    ratios = check_shares("ratio", ratios)
    verbose = check_verbose(verbose)
    tuning = (FineTune(epochs=0) if tuning is None else tuning).bind(model, train_data)
    data, count = _held(val_data, batches, batch_size, metric)
    g = build_graph(model, input_shape)
    names = _chosen(g, groups)
    score = _scorer(model, metric, data, count <= EAGER_BATCHES, tuning, train_data)
    name, baseline = evaluate(model, metric, data)
    if train_data is not None:  # the unpruned model, measured as the others
        baseline = score(_none(g))
    rule = Tolerance(0.0, mode=mode).start(name, baseline, model)
    plans = {r: make_plan(g, criterion, ratio=r, **plan_options) for r in ratios}
    names = [n for n in names if n in plans[ratios[0]].groups]  # exclude=
    scores, flops_kept = _measure(g, names, plans, score, name, verbose)

    def verifier(chosen: dict[str, float]) -> float:
        return score(make_plan(g, criterion, ratios=chosen, **plan_options))

    return Sensitivity(
        model=model.name,
        criterion=plans[ratios[0]].criterion,
        metric_name=name,
        higher_is_better=bool(rule.higher_is_better),
        baseline=float(baseline),
        ratios=list(ratios),
        sizes={n: g.group(n).size for n in names},
        scores=scores,
        flops_kept=flops_kept,
        seconds=time.perf_counter() - start,
        verifier=verifier,
    )


def _measure(g, names, plans, score, metric_name, verbose):
    """Per group, the metric and the share of MACs kept at each ratio."""
    counter = MacCounter(g)
    scores = {n: [] for n in names}
    flops_kept = {n: [] for n in names}
    with Steps("sensitivity", len(names) * len(plans), verbose) as steps:
        for group in names:
            for r, plan in plans.items():
                single = _only(plan, group, g, counter)
                value = score(single)
                scores[group].append(value)
                flops_kept[group].append(
                    single.flops_ratio if counter.known else np.nan
                )
                steps.advance(f"{group} at {r:.0%}: {metric_name} {value:.4f}")
    return scores, flops_kept


def _held(val_data, batches, batch_size, metric):
    """The evaluation data as `(x, y)` arrays (within the batch budget) and its
    number of batches; `(None, 0)` with a callable metric and no data."""
    if val_data is None:
        if callable(metric):
            return None, 0
        raise ValueError(
            "sensitivity needs val_data=(x, y) (or a tf.data.Dataset) to measure "
            "the metric on, or metric= as a callable f(model) -> float"
        )
    if batches is not None and (not isinstance(batches, int) or batches < 1):
        raise ValueError(f"batches must be an int >= 1 or None; got {batches!r}")
    held = list(data_batches(val_data, batch_size, batches, name="val_data"))
    if any(y is None for _, y in held):
        raise ValueError("val_data must hold targets: (x, y) arrays or (x, y) batches")
    xs = [x for x, _ in held]
    ys = [y for _, y in held]
    return (
        keras.tree.map_structure(lambda *a: np.concatenate(a), *xs),
        keras.tree.map_structure(lambda *a: np.concatenate(a), *ys),
    ), len(held)


def _chosen(g, groups) -> list[str]:
    prunable = [grp.name for grp in g.prunable]
    if groups is None:
        return prunable
    if isinstance(groups, str):
        groups = [groups]
    unknown = [n for n in groups if n not in prunable]
    if unknown:
        raise ValueError(
            f"groups names groups that are not prunable in '{g.model.name}': "
            f"{unknown}. Prunable groups: {prunable}"
        )
    return list(groups)


def _scorer(model, metric, data, eager: bool, tuning, train_data) -> Callable:
    """`f(plan) -> float`: the metric of `model` after the round step with
    `plan`, evaluated eagerly for a small budget."""

    def score(plan) -> float:
        pruned = step(model, plan, tuning, train_data)
        if eager and getattr(pruned, "compiled", False):
            pruned.run_eagerly = True
        return evaluate(pruned, metric, data)[1]

    return score


def _none(g):
    """A plan that removes nothing (`shrink` with it makes a copy)."""
    return PruningPlan(model=g.model.name, fingerprint=g.fingerprint())


def _only(plan, group: str, g, counter):
    """`plan` cut down to `group` alone (the other groups keep everything)."""
    single = dataclasses.replace(
        plan,
        groups={group: plan.groups[group]},
        compensation={k: v for k, v in plan.compensation.items() if k == group},
        notes=[],
    )
    if counter.known:
        single.macs_after = counter(single.keep_units(g))
    return single


@dataclass
class Sensitivity(Result):
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

    kind: ClassVar[str] = "sensitivity"

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
    verifier: Callable | None = field(
        default=None, repr=False, compare=False, metadata={"save": False}
    )

    def drops(self, group: str) -> list[float]:
        """How much worse than the baseline each ratio leaves `group` (> 0 is worse)."""
        sign = 1.0 if self.higher_is_better else -1.0
        return [sign * (self.baseline - v) for v in self.scores[group]]

    def ranking(self) -> list[str]:
        """Groups from the most sensitive to the least (mean drop over ratios)."""
        return sorted(self.scores, key=lambda g: -float(np.mean(self.drops(g))))

    def table_data(self) -> tuple[list, list, str]:
        """One row per group, most sensitive first: the metric at each ratio;
        `(headers, rows, title)`."""
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
