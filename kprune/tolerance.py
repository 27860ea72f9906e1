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

from kprune.checks import check_settings
from kprune.distillation import as_distillation
from kprune.planner import check_options
from kprune.rebuild import copy_layer, rebuild
from kprune.report import PruningReport
from kprune.rounds import RoundSettings, ToleranceRule, run_rounds
from kprune.staged import SCHEDULE_SETS, Staged


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
    mode: str = "auto",
    fine_tune_fn: Callable | None = None,
    verbose: int = 1,
    recalibrate: bool = True,
    distill=None,
    lr_schedule: str = "constant",
    batch_size: int | None = None,
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
        by: `"ratio"`, `"flops"` or `"latency"` (with `table=`, a
            `kprune.LatencyTable`: each round removes `step` of the predicted
            latency); default `"ratio"`, or the `Staged` schedule's `by` (a
            different one here raises).
        fine_tune_epochs: epochs of `model.fit(train_data)` after each step.
        learning_rate: learning rate for that fine-tuning (default: the one the
            model was compiled with; a tenth of it is often better).
        max_rounds: rounds tried at most, accepted or not.
        min_step: stop once the step is halved below this (default `step / 8`).
        relative: `tolerance` is a share of the baseline value.
        mode: `"max"` if higher values of the metric are better, `"min"` if
            lower are; `"auto"` (as in Keras' `EarlyStopping`) reads it from a
            loss or a compiled Keras metric and otherwise raises, asking for it.
        fine_tune_fn: `f(model) -> model or None` replacing `model.fit`;
            default the `Staged` schedule's `fine_tune`.
        verbose: 0 silent, 1 a progress bar over the rounds, 2 one line per
            round (as Keras' `fit`).
        recalibrate: re-estimate BatchNorm statistics on a few batches of
            `train_data` right after each shrink (see `kprune.recalibrate`).
        distill: fine-tune each round on the labels and on a teacher's
            outputs (knowledge distillation, see `kprune.Distiller`): the
            teacher model, `True` for the unpruned `model`, or
            `kprune.Distillation(teacher, weight=1.0, temperature=2.0)`.
            It applies to kprune's own `model.fit`; with `fine_tune_fn`, or
            without training data or epochs, it raises.
        lr_schedule: `"constant"` (default) or `"cosine"`: each round's
            fine-tuning starts at `learning_rate` (or the compiled rate) and
            decays it to 0 along a half cosine over `fine_tune_epochs`. At
            extreme compression, cosine from ten times training's rate is what
            held on the nuclei benchmark (docs/results.md). Like
            `learning_rate`, it raises with `fine_tune_fn`.
        batch_size: the fine-tuning batch for `(x, y)` arrays (default Keras'
            32); it raises with a dataset (batch that instead) and with
            `fine_tune_fn`.
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
    _check_loop(step, by, tolerance, mode, max_rounds, metric, val_data)
    schedule = (
        criterion
        if isinstance(criterion, Staged)
        else Staged([(criterion, 1)], step=step, by=by, **plan_options)
    )
    settings = RoundSettings(
        train_data=train_data,
        val_data=val_data,
        epochs=fine_tune_epochs,
        learning_rate=learning_rate,
        fine_tune=fine_tune_fn,
        recalibrate=recalibrate,
        distill=as_distillation(distill, model),
        lr_schedule=lr_schedule,
        batch_size=batch_size,
        metric=metric,
        verbose=verbose,
    )
    return run_rounds(
        rebuild(model, copy_layer),  # a compiled copy; `model` stays as it is
        schedule,
        settings,
        step=step,
        max_rounds=max_rounds,
        rule=ToleranceRule(tolerance, relative=relative, mode=mode),
        min_step=step / 8 if min_step is None else min_step,
        title=f"prune_to_tolerance of '{model.name}' (tolerance {tolerance})",
    )


def _check_loop(step, by, tolerance, mode, max_rounds, metric, val_data) -> None:
    check_settings(
        step=step, by=by, tolerance=tolerance, mode=mode, max_rounds=max_rounds
    )
    if callable(metric) and mode == "auto":
        raise ValueError(
            "with a callable metric=, kprune cannot tell whether higher or lower "
            "is better: pass mode='max' (higher is better, as for accuracy or "
            "Dice) or mode='min' (lower is better, as for a loss)"
        )
    if val_data is None and not callable(metric):
        raise ValueError(
            "prune_to_tolerance measures the metric on val_data: pass (x, y) or a "
            "dataset, or a callable metric="
        )


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
