"""The one pruning round loop, the tolerance rule, and the checks they share.

A round is: plan a step on the current model, shrink, fine-tune, evaluate,
record. `Staged.run` runs its rounds through `run_rounds` and accepts every
one; `prune_to_tolerance` runs the same loop with a `ToleranceRule`, which
rejects a round whose metric drops too far, halves the step and retries.
`PruningCallback` masks instead of shrinking, inside `fit`, but judges each
step with the same `ToleranceRule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from kprune.checks import check_settings
from kprune.choosing import BudgetUnreachable
from kprune.data import first_inputs
from kprune.distillation import Distillation
from kprune.graph import graph as build_graph
from kprune.messages import Steps, check_verbose, say
from kprune.profile import profile
from kprune.recalibration import recalibrate
from kprune.report import PruningReport, Round
from kprune.surgery import shrink
from kprune.training import check_tuning, evaluate, fine_tune


# ----------------------------------------------------------- tolerance rule
class ToleranceRule:
    """How far a metric may fall from its baseline.

    Args:
        tolerance: the largest allowed drop (a rise, for a metric to minimise);
            absolute, or a share of the baseline with `relative=True`.
        relative: see `tolerance`.
        mode: `"max"` when higher is better (accuracy), `"min"` when lower is
            better (a loss), or `"auto"`, which, like Keras' `EarlyStopping`,
            takes `"min"` for a loss and the direction a compiled Keras metric
            declares, and otherwise asks for `mode=`.
    """

    def __init__(self, tolerance: float, relative: bool = False, mode: str = "auto"):
        check_settings(tolerance=tolerance, mode=mode)
        self.tolerance, self.relative, self.mode = tolerance, relative, mode
        self.name: str | None = None
        self.baseline: float | None = None
        self.higher_is_better: bool | None = None

    def start(self, name: str, baseline: float, model: keras.Model | None = None):
        """Fix the baseline of the metric `name` (and its direction)."""
        self.name, self.baseline = name, float(baseline)
        self.higher_is_better = _direction(self.mode, name, model)
        return self

    @property
    def limit(self) -> float:
        """The largest drop allowed."""
        scale = abs(self.baseline) if self.relative else 1.0
        return self.tolerance * scale

    def drop(self, value: float) -> float:
        """How much worse `value` is than the baseline (positive = worse)."""
        worse = self.baseline - value
        return worse if self.higher_is_better else -worse

    def holds(self, value: float) -> bool:
        """True while `value` is within the tolerance of the baseline."""
        return self.drop(value) <= self.limit + 1e-9


def _direction(mode: str, name: str, model) -> bool:
    """True when higher values of the metric are better."""
    if mode != "auto":
        return mode == "max"
    bare = name.removeprefix("val_")
    if bare == "loss":
        return False
    for metric in _compiled_metrics(model):
        if metric.name == bare and getattr(metric, "_direction", None) in (
            "up",
            "down",
        ):
            return metric._direction == "up"
    raise ValueError(
        f"cannot tell whether the metric {name!r} should be maximised or "
        "minimised: pass mode='max' (higher is better, as for accuracy) or "
        "mode='min' (lower is better, as for a loss)"
    )


def _compiled_metrics(model) -> list:
    found = []
    for metric in getattr(model, "metrics", None) or []:
        found.extend(getattr(metric, "metrics", None) or [metric])
    return found


# ------------------------------------------------------------------- loop
@dataclass
class RoundSettings:
    """How each round fine-tunes and measures the pruned model.

    `recalibrate`: re-estimate BatchNorm statistics on `train_data` right
    after each shrink, before fine-tuning (see `kprune.recalibrate`).
    `distill`: fine-tune on the teacher's outputs too (see `kprune.Distiller`).
    `lr_schedule`: `"constant"` or `"cosine"`, and `batch_size` (see
    `kprune.training.fine_tune`).
    """

    train_data: object = None
    val_data: object = None
    epochs: int = 1
    learning_rate: float | None = None
    fine_tune: Callable | None = None
    metric: object = None
    verbose: int = 1
    recalibrate: bool = True
    distill: Distillation | None = None
    lr_schedule: str = "constant"
    batch_size: int | None = None

    def __post_init__(self):
        self.verbose = check_verbose(self.verbose)
        check_tuning(
            self.learning_rate,
            self.lr_schedule,
            self.batch_size,
            self.train_data,
            self.epochs,
            self.fine_tune,
        )
        if self.distill is None:
            return
        if self.fine_tune is not None:
            raise ValueError(
                "distill= applies to kprune's own fine-tuning (model.fit); your "
                "fine-tuning function trains by itself: fit a "
                "kprune.Distiller(model, teacher) inside it instead"
            )
        if self.train_data is None or self.epochs <= 0:
            raise ValueError(
                "distill= needs fine-tuning to act on: give train_data and "
                "at least one epoch"
            )


def baseline_report(model, settings: RoundSettings):
    """The profile of `model`, its metric, and a report holding round 0."""
    base = profile(model)
    measured = evaluate(model, settings.metric, settings.val_data)
    name, value = measured if measured else ("metric", None)
    report = PruningReport(metric_name=name)
    report.rounds.append(Round(0, "-", 0.0, base.params, base.macs, 1.0, value))
    return base, report


def run_rounds(
    model: keras.Model,
    schedule,
    settings: RoundSettings,
    step: float,
    max_rounds: int,
    rule: ToleranceRule | None = None,
    min_step: float = 0.0,
    title: str = "",
) -> tuple[keras.Model, PruningReport]:
    """Plan, shrink, fine-tune and evaluate, round after round.

    Args:
        model: the starting model (not modified: `shrink` copies).
        schedule: a `kprune.Staged`; `schedule.plan_step(model, k, step, data)`
            plans the `k`-th accepted round.
        settings: fine-tuning and evaluation of every round.
        step: the share pruned per round.
        max_rounds: rounds tried at most, accepted or not.
        rule: None accepts every round. Otherwise a `ToleranceRule`: a round
            outside it, or whose model has collapsed to a constant prediction
            on the validation data (see `degenerate`), is rejected, the step
            halves, and the loop stops once the step is below `min_step`.
        min_step: see `rule`.
        title: the report's title.

    Returns:
        `(last accepted model, report)`.
    """
    base, report = baseline_report(model, settings)
    report.title = title
    if rule is not None:
        rule.start(report.metric_name, report.rounds[0].metric, model)
        say(
            f"baseline {rule.name} {rule.baseline:.4f}; tolerance {rule.limit:.4f}",
            settings.verbose,
        )
    # Collapse guard: a round whose model predicts one thing for every input
    # is rejected, unless the unpruned model already did on this data.
    guard = rule is not None and not degenerate(model, settings.val_data)
    state = _LoopState(model)
    with Steps("pruning rounds", max_rounds, settings.verbose) as steps:
        for index in range(max_rounds):
            found = _next_plan(schedule, state, step, min_step, settings)
            if found is None:
                break
            plan, step = found
            if plan.channels_after == plan.channels_before:
                report.rounds[-1].note = "nothing left to prune"
                break
            candidate = _tuned(shrink(state.current, plan), index, settings)
            record = _record(
                index + 1, plan, step, candidate, base, settings, rule, guard
            )
            report.rounds.append(record)
            steps.advance(
                _news(record, report.metric_name),
                line=_line(record, report.metric_name, rule),
            )
            if record.accepted:
                state.accept(candidate)
            else:
                state.rejected.add(_cut(plan))
                step /= 2
    report.channels = kept_channels(model, state.current)
    table = getattr(schedule, "plan_options", {}).get("table")
    if table is not None:  # by="latency": the table's prediction, before and after
        report.predicted_ms = {
            "before": table.predict(model),
            "after": table.predict(state.current),
        }
    return state.current, report


def kept_channels(before: keras.Model, after: keras.Model) -> dict[str, list[int]]:
    """Per prunable group of `before`: `[its channels, channels in after]`."""
    sizes = {grp.name: grp.size for grp in build_graph(after).groups}
    return {
        grp.name: [grp.size, sizes.get(grp.name, grp.size)]
        for grp in build_graph(before).prunable
    }


class _LoopState:
    """The model the next round starts from, and the cuts rejected since."""

    def __init__(self, model):
        self.current, self.accepted = model, 0
        self.rejected: set = set()

    def accept(self, model) -> None:
        self.current, self.accepted = model, self.accepted + 1
        self.rejected.clear()


def _tuned(candidate, index, settings):
    """`candidate` recalibrated (when asked) and fine-tuned for round `index`."""
    if settings.recalibrate and settings.train_data is not None:
        recalibrate(candidate, settings.train_data)
    return fine_tune(
        candidate,
        settings.fine_tune,
        settings.train_data,
        settings.epochs,
        learning_rate=settings.learning_rate,
        round_index=index,
        distill=settings.distill,
        lr_schedule=settings.lr_schedule,
        batch_size=settings.batch_size,
    )


def _next_plan(schedule, state, step, min_step, settings):
    """`(plan, step)` of the next round, or None once the step is too small.

    A smaller step that rounds to a cut already rejected is halved again rather
    than fine-tuning the same model twice; so is a FLOPs step below what the
    model can keep (`min_channels`, `round_to`).
    """
    while step >= min_step:
        try:
            plan = schedule.plan_step(
                state.current, state.accepted, step=step, data=settings.train_data
            )
        except BudgetUnreachable:  # below the model's floor: try a smaller step
            plan = None
        if plan is not None and _cut(plan) not in state.rejected:
            return plan, step
        step /= 2
    return None


def _record(number, plan, step, model, base, settings, rule, guard) -> Round:
    measured = evaluate(model, settings.metric, settings.val_data)
    value = measured[1] if measured else None
    prof = profile(model)
    ok = rule is None or rule.holds(value)
    note = "" if ok else f"drop {rule.drop(value):.4f} > {rule.limit:.4f}; step halved"
    if guard and ok and degenerate(model, settings.val_data):
        ok, note = False, "constant prediction on val_data (collapsed); step halved"
    ratio = prof.macs / base.macs if base.macs else 1.0
    return Round(
        number, plan.criterion, step, prof.params, prof.macs, ratio, value, ok, note
    )


def degenerate(model, data, samples: int = 32) -> bool:
    """True when `model` predicts the same thing for every input of `data`: one
    class everywhere (argmax over several channels; one side of 0, or of 0.5
    for values in [0, 1], for one channel), or a constant output.

    A model pruned too far can collapse this way (every pixel background)
    while a metric such as pixel accuracy still looks acceptable; the
    tolerance loop rejects such a round. Without `data`, False.
    """
    if data is None:
        return False
    inputs = first_inputs(data, samples, "val_data")
    if not inputs:
        return False
    batch = [np.concatenate(parts) for parts in zip(*inputs)]
    outputs = model(batch if len(batch) > 1 else batch[0], training=False)
    for y in keras.tree.flatten(outputs):
        y = np.asarray(keras.ops.convert_to_numpy(y), dtype=np.float64)
        if y.ndim < 2:
            continue
        if np.ptp(y) <= 1e-6 * max(np.abs(y).max(), 1e-12):
            return True
        if y.shape[-1] > 1:
            labels = y.argmax(-1)
        else:
            labels = y > (0.5 if y.min() >= 0 and y.max() <= 1 else 0.0)
        if np.all(labels == labels.flat[0]):
            return True
    return False


def _line(record: Round, name: str, rule) -> str:
    metric = "" if record.metric is None else f", {name} {record.metric:.4f}"
    verdict = ""
    if rule is not None:
        verdict = " (accepted)" if record.accepted else " (rejected)"
    return (
        f"round {record.round} ({record.criterion}, step {record.step:.3f}): "
        f"{record.params:,} params, FLOPs kept {record.flops_ratio:.3f}"
        f"{metric}{verdict}"
    )


def _news(record: Round, name: str) -> str:
    """A round in a few words, for the progress bar."""
    metric = "" if record.metric is None else f" {name} {record.metric:.4f}"
    return f"FLOPs {record.flops_ratio:.3f}{metric}" + (
        "" if record.accepted else " (rejected)"
    )


def _cut(plan) -> tuple:
    """What a plan removes, as a hashable value."""
    return tuple(sorted((name, d.keep) for name, d in plan.groups.items()))
