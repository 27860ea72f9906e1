"""Sensitivity analysis: what pruning each group alone costs, with no fine-tuning.

`sensitivity(model, val_data)` prunes one group at a time at each ratio,
measures the metric, and returns a `Sensitivity`: a table, JSON, a plot, an
HTML report, and `suggest(tolerance)`, the per-group ratios to hand to
`kprune.plan(model, ratios=...)`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import keras
import numpy as np

from kprune.checks import check_shares
from kprune.curves import Sensitivity
from kprune.data import batches as data_batches
from kprune.graph import graph as build_graph
from kprune.messages import Steps, check_verbose
from kprune.planner import plan as make_plan
from kprune.plans import PruningPlan
from kprune.profile import MacCounter
from kprune.recalibration import recalibrate as recalibrate_bn
from kprune.rounds import ToleranceRule
from kprune.surgery import shrink
from kprune.training import evaluate

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
    batches: int | None = None,
    batch_size: int = 32,
    recalibrate=None,
    mode: str = "auto",
    verbose: int = 1,
    input_shape=None,
    **plan_options,
) -> Sensitivity:
    """Prune each group alone at each ratio, with no fine-tuning, and measure.

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
        batches: evaluate on at most this many batches of `val_data`.
        batch_size: batch size for array data.
        recalibrate: training data (`(x, y)`, inputs, or a dataset): every
            model measured, the unpruned one too, first gets its BatchNorm
            statistics re-estimated on 8 batches of it (`kprune.recalibrate`;
            on a copy, never on `model`). Pruning shifts what the BatchNorms
            after a group see; without this the curves mix that shift, which
            recalibration or a little fine-tuning undoes, with what the
            channels carried. None measures the pruned copies as they are.
        mode: `"max"`/`"min"` when kprune cannot tell the metric's direction.
        verbose: 0 silent, 1 a progress bar, 2 one line per measurement.
        input_shape: `(H, W, C)` for a model built for any image size.
        **plan_options: passed to `kprune.plan` (`round_to`, `min_channels`,
            the criterion's options).

    Returns:
        A `Sensitivity`.
    """
    start = time.perf_counter()
    ratios = check_shares("ratio", ratios)
    verbose = check_verbose(verbose)
    data, count = _held(val_data, batches, batch_size, metric)
    g = build_graph(model, input_shape)
    names = _chosen(g, groups)
    score = _scorer(metric, data, count <= EAGER_BATCHES, recalibrate)
    name, baseline = evaluate(model, metric, data)
    if recalibrate is not None:  # the unpruned model, statistics re-estimated
        baseline = score(shrink(model, _none(g)))
    rule = ToleranceRule(0.0, mode=mode).start(name, baseline, model)
    plans = {
        r: make_plan(model, criterion, ratio=r, graph=g, **plan_options) for r in ratios
    }
    names = [n for n in names if n in plans[ratios[0]].groups]  # exclude=
    scores, flops_kept = _measure(model, g, names, plans, score, name, verbose)

    def verifier(chosen: dict[str, float]) -> float:
        combined = make_plan(model, criterion, ratios=chosen, graph=g, **plan_options)
        return score(shrink(model, combined))

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


def _measure(model, g, names, plans, score, metric_name, verbose):
    """Per group, the metric and the share of MACs kept at each ratio."""
    counter = MacCounter(g)
    scores = {n: [] for n in names}
    flops_kept = {n: [] for n in names}
    with Steps("sensitivity", len(names) * len(plans), verbose) as steps:
        for group in names:
            for r, plan in plans.items():
                single = _only(plan, group, g, counter)
                value = score(shrink(model, single))
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


def _scorer(metric, data, eager: bool, recalibrate_data) -> Callable:
    """`f(pruned copy) -> float`, evaluated eagerly for a small budget, after
    re-estimating its BatchNorm statistics when `recalibrate_data` is given."""

    def score(pruned) -> float:
        if recalibrate_data is not None:
            recalibrate_bn(pruned, recalibrate_data)
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
