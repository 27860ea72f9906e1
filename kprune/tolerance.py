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

from typing import Callable

import keras

from kprune.planner import check_options
from kprune.profile import profile
from kprune.rebuild import rebuild
from kprune.report import PruningReport, Round
from kprune.staged import SCHEDULE_SETS, STEP_UNITS, Staged
from kprune.surgery import shrink
from kprune.training import drop, evaluate, fine_tune
from kprune.wrapping import copy_layer


def prune_to_tolerance(
    model: keras.Model,
    train_data,
    val_data,
    tolerance: float = 0.01,
    metric=None,
    criterion="l1",
    step: float | None = None,
    by: str | None = None,
    fine_tune_epochs: int = 1,
    learning_rate: float | None = None,
    max_rounds: int = 20,
    min_step: float | None = None,
    relative: bool = False,
    fine_tune_fn: Callable | None = None,
    verbose: int = 1,
    **plan_options,
) -> tuple[keras.Model, PruningReport]:
    """Prune as far as the validation metric allows.

    Args:
        model: the trained, compiled model (not modified).
        train_data: `(x, y)` or a `tf.data.Dataset`, for fine-tuning (and for
            data-driven criteria).
        val_data: `(x, y)` or a dataset the metric is measured on; it is never
            trained on.
        tolerance: the largest allowed drop of the metric below the baseline (or
            rise, for losses); absolute unless `relative=True`.
        metric: a compiled metric name (`"accuracy"`), a callable `f(model)`, or
            None for the `Staged` schedule's metric or the first compiled one.
        criterion: a criterion name or callable, or a `kprune.Staged` schedule:
            its stages then pick the criterion of each accepted round, and its
            `by`, `step`, `metric`, `fine_tune` and plan options apply.
        step: the share pruned first: of the current channels (`by="ratio"`)
            or of the current FLOPs (`by="flops"`); halved after each rejected
            round. Default 0.1, or the `Staged` schedule's `step`.
        by: `"ratio"` or `"flops"`; default `"ratio"`, or the `Staged`
            schedule's `by` (a different one here raises).
        fine_tune_epochs: epochs of `model.fit(train_data)` after each step.
        learning_rate: learning rate for that fine-tuning (default: the one the
            model was compiled with; a tenth of it is often better).
        max_rounds: rounds tried at most, accepted or not.
        min_step: stop once the step is halved below this (default `step / 8`).
        relative: `tolerance` is a share of the baseline value.
        fine_tune_fn: `f(model) -> model or None` replacing `model.fit`;
            default the `Staged` schedule's `fine_tune`.
        verbose: 1 prints one line per round.
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
    if isinstance(criterion, Staged):
        step, by, metric, fine_tune_fn = _schedule_settings(
            criterion, step, by, metric, fine_tune_fn, plan_options
        )
    else:
        check_options(prune_to_tolerance, plan_options, [criterion], sets=SCHEDULE_SETS)
        step = 0.1 if step is None else step
        by = "ratio" if by is None else by
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0; got {tolerance}")
    if not 0 < step < 1:
        raise ValueError(f"step must be in (0, 1); got {step}")
    if by not in STEP_UNITS:
        raise ValueError(f"by must be one of {STEP_UNITS}; got {by!r}")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1; got {max_rounds}")
    min_step = step / 8 if min_step is None else min_step
    schedule = (
        criterion
        if isinstance(criterion, Staged)
        else Staged([(criterion, 1)], step=step, by=by, **plan_options)
    )
    if val_data is None and not callable(metric):
        raise ValueError(
            "prune_to_tolerance measures the metric on val_data: pass (x, y) or a "
            "dataset, or a callable metric="
        )

    base = profile(model)
    name, baseline = evaluate(model, metric, val_data)
    limit = tolerance * (abs(baseline) if relative else 1.0)
    report = PruningReport(metric_name=name)
    report.rounds.append(Round(0, "-", 0.0, base.params, base.macs, 1.0, baseline))
    if verbose:
        print(f"baseline {name} {baseline:.4f}; tolerance {limit:.4f}", flush=True)

    current = rebuild(model, copy_layer)  # a compiled copy; `model` stays as it is
    accepted = 0
    rejected: set = set()  # cuts tried and rejected since the last accepted round
    for index in range(max_rounds):
        if step < min_step:
            break
        p = schedule.plan_step(current, accepted, step=step, data=train_data)
        while _cut(p) in rejected and step >= min_step:
            # A smaller step that rounds to a cut already rejected: halve again
            # rather than fine-tune the same model twice.
            step /= 2
            if step >= min_step:
                p = schedule.plan_step(current, accepted, step=step, data=train_data)
        if step < min_step:
            break
        if p.channels_after == p.channels_before:
            report.rounds[-1].note = "nothing left to prune"
            break
        candidate = fine_tune(
            shrink(current, p),
            fine_tune_fn,
            train_data,
            fine_tune_epochs,
            learning_rate=learning_rate,
        )
        _, value = evaluate(candidate, metric, val_data)
        prof = profile(candidate)
        ok = drop(name, baseline, value) <= limit + 1e-9
        record = Round(
            index + 1,
            p.criterion,
            step,
            prof.params,
            prof.macs,
            prof.macs / base.macs if base.macs else 1.0,
            value,
            ok,
            ""
            if ok
            else f"drop {drop(name, baseline, value):.4f} > {limit:.4f}; step halved",
        )
        report.rounds.append(record)
        if verbose:
            verdict = "accepted" if ok else "rejected"
            print(
                f"round {record.round}: {p.criterion} step {step:.3f} -> FLOPs kept "
                f"{record.flops_ratio:.3f}, {name} {value:.4f} ({verdict})",
                flush=True,
            )
        if ok:
            current, accepted = candidate, accepted + 1
            rejected.clear()
        else:
            rejected.add(_cut(p))
            step /= 2
    return current, report


def _schedule_settings(schedule: Staged, step, by, metric, fine_tune_fn, options):
    """`step`, `by`, `metric` and `fine_tune_fn`, filled in from a `Staged`.

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
    settings = {"metric": metric, "fine_tune_fn": fine_tune_fn}
    theirs = {"metric": "metric", "fine_tune_fn": "fine_tune"}
    for name, attribute in theirs.items():
        value = getattr(schedule, attribute)
        if settings[name] is None:
            settings[name] = value
        elif value is not None and settings[name] != value:
            raise ValueError(
                f"{name}= is given both here and as the Staged schedule's "
                f"{attribute}=; give it once. Received: {name}={settings[name]!r}"
            )
    step = schedule.step if step is None else step
    return step, schedule.by, settings["metric"], settings["fine_tune_fn"]


def _cut(plan) -> tuple:
    """What a plan removes, as a hashable value."""
    return tuple(sorted((name, d.keep) for name, d in plan.groups.items()))
