"""A latency plan checked against the runtime, and corrected by what it
measured.

A latency table predicts a plan's latency from single layers and a
calibration on uniform cuts. The planner then picks exactly the layers whose
savings the table may overstate most, so a far-from-uniform plan can miss its
budget (docs/latency.md measures by how much). `plan_measured` closes the
loop the way a user would by hand: plan, shrink, export, time the result
with the dense model in LiteRT, and, when the measured share misses the goal
by more than `within`, plan again for a budget corrected by the miss
(`asked * goal / measured`), up to `tries` plans. It returns the plan whose
measured share came closest, with every try in its target.
"""

from __future__ import annotations

import os
import tempfile

import keras

from kprune.checks import check_settings
from kprune.exporters import benchmark_tflite
from kprune.latency.layerfiles import write_tflite
from kprune.latency.table import as_table
from kprune.loops import FineTune
from kprune.loops.rounds import step
from kprune.messages import check_verbose, say
from kprune.planning import BudgetUnreachable, PruningPlan
from kprune.planning import plan as make_plan

#: The round step of a try: shrink, nothing to recalibrate or fine-tune on.
AS_SHRUNK = FineTune(epochs=0, recalibrate=False)


def plan_measured(
    model: keras.Model,
    latency: float,
    table,
    *,
    tries: int = 3,
    within: float = 0.05,
    runs: int = 30,
    threads: int = 1,
    representative_data=None,
    verbose: int = 1,
    **plan_options,
) -> PruningPlan:
    """`kprune.plan(model, latency=..., table=...)`, timed and corrected.

    Each try plans for a budget (the goal first), shrinks a copy, exports it
    as the table was measured (`table.quantize`) and times it in LiteRT
    together with the dense model (`runs` interleaved runs, medians). When
    the measured share is within `within` of `latency` (relatively), or
    after `tries` plans, it stops; otherwise the next budget is the last one
    times `latency / measured share`.

    Args:
        model: the model the table was measured for (or one pruned from it).
        latency: the share of the dense model's latency to keep, in (0, 1).
        table: a `kprune.LatencyTable` measured in LiteRT on this machine (or
            its JSON path). A table timed on a device cannot be checked here:
            plan with `kprune.plan(latency=...)` and time it there.
        tries: most plans made and timed (each one shrink, one export, and
            `runs` timings of two models).
        within: the relative miss accepted (0.05: within 5% of the goal).
        runs: timed LiteRT runs of each try (interleaved with the dense model).
        threads: LiteRT threads.
        representative_data: int8 calibration inputs for the exports of an
            int8 table (random data when None; it does not change the graph
            that is timed).
        verbose: 0 silent, 1 one line per try.
        **plan_options: anything else `kprune.plan` takes (criterion, scope,
            min_channels, round_to, exclude, data, ...), except a target.

    Returns:
        The closest plan; its `target` adds `measured_share` and `tries`
        (per try: `asked`, `predicted_share`, `measured_share`, `dense_ms`).

    Raises:
        ValueError: bad `latency`/`tries`/`within`, a table from elsewhere, or
            a budget the table says no plan reaches (`BudgetUnreachable`).
    """
    table = as_table(table)
    check_settings(latency=latency)
    _check(table, tries, within, runs, plan_options)
    verbose = check_verbose(verbose)
    asked, found, best, last = latency, [], None, None
    timing = {"runs": runs, "threads": threads, "data": representative_data}
    with tempfile.TemporaryDirectory() as tmp:
        dense = write_tflite(
            model,
            os.path.join(tmp, "dense.tflite"),
            table.quantize,
            representative_data,
        )
        for index in range(tries):
            try:
                plan = make_plan(model, latency=asked, table=table, **plan_options)
            except BudgetUnreachable:
                if index == 0:
                    raise
                break  # a corrected budget below what the table allows
            if last is not None and plan.groups == last.groups:
                break  # the correction no longer changes the plan
            last = plan
            dense_ms, ms = _timed(model, plan, dense, index, table, timing)
            share = ms / dense_ms
            found.append(
                {
                    "asked": asked,
                    "predicted_share": plan.target["predicted_ms"] / table.dense_ms,
                    "measured_share": share,
                    "dense_ms": dense_ms,
                }
            )
            say(
                f"latency try {index + 1}/{tries}: planned for {asked:.3f}, "
                f"measured {share:.3f} ({share / latency - 1:+.1%} of the goal "
                f"{latency:.3f})",
                verbose,
            )
            if best is None or abs(share - latency) < abs(best[1] - latency):
                best = (plan, share)
            if abs(share / latency - 1) <= within:
                break
            asked = min(max(asked * latency / share, 0.01), 0.99)
    plan, share = best
    plan.target.update(measured_share=share, tries=found, goal=latency)
    return plan


def _timed(model, plan, dense: str, index: int, table, timing) -> tuple:
    """Milliseconds of the dense file and of `model` shrunk by `plan`,
    exported as the table was measured and timed together."""
    path = write_tflite(
        step(model, plan, AS_SHRUNK, None),
        os.path.join(os.path.dirname(dense), f"try_{index}.tflite"),
        table.quantize,
        timing["data"],
    )
    found = benchmark_tflite(
        [dense, path], threads=timing["threads"], runs=timing["runs"], verbose=0
    )
    return found[0].median_ms, found[1].median_ms


def _check(table, tries, within, runs, plan_options) -> None:
    if table.runtime != "litert":
        raise ValueError(
            f"this table was timed on {table.runtime!r}; plan_measured times the "
            "plans in this machine's LiteRT. Plan with kprune.plan(model, "
            "latency=..., table=table) and time the pruned model there."
        )
    for name, value in (("tries", tries), ("runs", runs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    if not isinstance(within, (int, float)) or not 0 < within < 1:
        raise ValueError(
            f"within must be in (0, 1), the relative miss accepted (0.05 is "
            f"5%); got {within!r}"
        )
    targets = {"ratio", "flops", "ratios", "latency_ms", "table", "latency"}
    given = sorted(targets.intersection(plan_options))
    if given:
        raise TypeError(
            f"plan_measured plans for latency= with its table; drop {given} "
            "(use kprune.plan for other targets)"
        )
