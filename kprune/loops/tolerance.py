"""The error-tolerance loop: prune while the metric stays within a tolerance.

The stopping rule of importance-weight filter pruning (Applied Sciences 2022):
instead of guessing a pruning rate, keep pruning while the validation metric stays
within `tolerance` of the unpruned model's.

1. Measure the baseline.
2. Prune a step (a share of the channels, or of the FLOPs).
3. Fine-tune.
4. Within tolerance: accept the step and go on.
5. Not within tolerance: go back to the last accepted model, halve the step, retry.
6. Stop when the step falls below `min_step` or after `max_rounds` rounds.
"""

from __future__ import annotations

import keras

from kprune.checks import check_settings
from kprune.loops.rounds import RunSettings, run_rounds
from kprune.loops.rules import Tolerance, as_tolerance
from kprune.loops.settings import FineTune, tuning_from
from kprune.loops.staged import SCHEDULE_SETS, Staged
from kprune.messages import check_verbose
from kprune.planning import check_options
from kprune.results import PruningReport


def prune_to_tolerance(
    model: keras.Model,
    train_data,
    val_data,
    tolerance: float | Tolerance = 0.01,
    metric=None,
    criterion="l1",
    step: float | None = None,
    by: str | None = None,
    tuning: FineTune | None = None,
    max_rounds: int = 20,
    min_step: float | None = None,
    verbose: int = 1,
    **plan_options,
) -> tuple[keras.Model, PruningReport]:
    """Prune as far as the validation metric allows.

    Args:
        model: the trained, compiled model (not modified).
        train_data: `(x, y)` or a `tf.data.Dataset`, for fine-tuning,
            recalibration and data-driven criteria.
        val_data: `(x, y)` or a dataset the metric is measured on; it is never
            trained on.
        tolerance: the largest allowed drop of the metric below the baseline
            (or rise, for losses), absolute; or a `kprune.Tolerance(drop,
            relative=, mode=)` for a share of the baseline, or to say whether
            higher is better. The baseline is measured as the rounds are:
            on a copy recalibrated on `train_data` when they recalibrate (the
            report's round 0 says when that moved it).
        metric: a compiled metric name (`"accuracy"`), a callable `f(model)`, or
            None for the `Staged` schedule's metric or the first compiled one.
        criterion: a criterion name or callable, or a `kprune.Staged` schedule:
            its stages then pick the criterion of each accepted round, and its
            `by`, `step`, `metric` and plan options apply.
        step: the share pruned first: of the current channels (`by="ratio"`)
            or of the current FLOPs (`by="flops"`); halved after each rejected
            round. Default 0.1, or the `Staged` schedule's `step`.
        by: `"ratio"`, `"flops"` or `"latency"` (with `table=`, a
            `kprune.LatencyTable`: each round removes `step` of the predicted
            latency); default `"ratio"`, or the `Staged` schedule's `by` (a
            different one here raises).
        tuning: a `kprune.FineTune`: how each round fine-tunes (default one
            epoch of `model.fit(train_data)` at the compiled rate, BatchNorm
            recalibrated after each shrink) and `final_epochs` after the
            last accepted round (not judged). At extreme compression, cosine
            from ten times training's rate is what held on the nuclei
            benchmark (docs/results.md).
        max_rounds: rounds tried at most, accepted or not.
        min_step: stop once the step is halved below this (default `step / 8`).
        verbose: 0 silent, 1 a progress bar over the rounds, 2 one line per
            round (as Keras' `fit`).
        **plan_options: passed to `kprune.plan` (`scope`, `round_to`, ...,
            and the criterion's options). With a `Staged` criterion, give
            them to the `Staged` instead.

    Returns:
        `(pruned_model, report)`: the last accepted model (a copy of `model` if no
        step was accepted) and a `PruningReport` of every round.

    Raises:
        ValueError: on bad arguments (including ones a `Staged` criterion would
            leave ignored), or if the model cannot be evaluated.
        TypeError: on an option the criterion does not read.
    """
    tolerance = as_tolerance(tolerance, plan_options, "kprune.prune_to_tolerance")
    if tolerance is None:
        raise ValueError("tolerance= is the largest allowed drop of the metric")
    fn = criterion._fn if isinstance(criterion, Staged) else None
    tuning = tuning_from(tuning, plan_options, "prune_to_tolerance", fn, strict=False)
    if isinstance(criterion, Staged):
        step, by, metric = _schedule_settings(criterion, step, by, metric, plan_options)
    else:
        check_options(prune_to_tolerance, plan_options, [criterion], sets=SCHEDULE_SETS)
        step = 0.1 if step is None else step
        by = "ratio" if by is None else by
    _check_loop(step, by, tolerance, max_rounds, metric, val_data)
    schedule = (
        criterion
        if isinstance(criterion, Staged)
        else Staged([(criterion, 1)], step=step, by=by, **plan_options)
    )
    settings = RunSettings(
        train_data=train_data,
        val_data=val_data,
        tuning=tuning.bind(model, train_data, rounds_known=False),
        metric=metric,
        verbose=check_verbose(verbose),
    )
    return run_rounds(
        model,
        schedule,
        settings,
        size=step,
        max_rounds=max_rounds,
        rule=tolerance,
        min_step=step / 8 if min_step is None else min_step,
        title=f"prune_to_tolerance of '{model.name}' ({_describe(tolerance)})",
    )


def _describe(rule: Tolerance) -> str:
    share = " of the baseline" if rule.relative else ""
    return f"tolerance {rule.drop_allowed:g}{share}"


def _check_loop(step, by, tolerance, max_rounds, metric, val_data) -> None:
    check_settings(step=step, by=by, max_rounds=max_rounds)
    if callable(metric) and tolerance.mode == "auto":
        raise ValueError(
            "with a callable metric=, kprune cannot tell whether higher or lower "
            "is better: pass tolerance=kprune.Tolerance(drop, mode='max') (higher "
            "is better, as for accuracy or Dice) or mode='min' (lower is better, "
            "as for a loss)"
        )
    if val_data is None and not callable(metric):
        raise ValueError(
            "prune_to_tolerance measures the metric on val_data: pass (x, y) or a "
            "dataset, or a callable metric="
        )


def _schedule_settings(schedule: Staged, step, by, metric, options):
    """`step`, `by` and `metric`, filled in from a `Staged`.

    Raises where something given to `prune_to_tolerance` would be ignored: the
    schedule plans every round with its own `by` and plan options.
    """
    if options:
        criteria = [c for c, _ in schedule.stages]
        check_options(prune_to_tolerance, options, criteria, sets=SCHEDULE_SETS)
        given = ", ".join(f"{key}={value!r}" for key, value in options.items())
        raise ValueError(
            "plan options given next to a Staged criterion would be ignored: the "
            "schedule plans every round with its own. Give them to the schedule, "
            f"kprune.Staged(stages, ..., {given}). Received: {given}"
        )
    if by is not None and by != schedule.by:
        raise ValueError(
            f"by= differs from the Staged schedule's by={schedule.by!r}, which "
            "plans every round: set by= on kprune.Staged, or leave it out here. "
            f"Received: by={by!r}"
        )
    if metric is None:
        metric = schedule.metric
    elif schedule.metric is not None and metric != schedule.metric:
        raise ValueError(
            "metric= is given both here and as the Staged schedule's metric=; "
            f"give it once. Received: metric={metric!r}"
        )
    step = schedule.step if step is None else step
    return step, schedule.by, metric
