"""The one round step, and the loop of rounds.

A round is: plan a cut of the current model, `step` (shrink, recalibrate,
fine-tune), evaluate, record. Everything in kprune that prunes and then
measures goes through `step` and `measure`: `Staged.run` and
`prune_to_tolerance` (through `run_rounds`, the loop), `sweep` (one round per
budget, each from the original model), `sensitivity` (one group at a time, no
fine-tuning) and `plan_measured` (timed instead of evaluated).

`run_rounds` accepts every round, or, with a `Tolerance`, rejects a round
whose metric drops too far (or whose model collapsed to one prediction),
halves the step and retries. The reference it judges by is measured as the
rounds are: recalibrated, when the rounds recalibrate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from kprune.dependency import graph as build_graph
from kprune.loops.recalibration import batch_norms, recalibrate
from kprune.loops.rules import Tolerance, degenerate
from kprune.loops.settings import FineTune
from kprune.loops.training import evaluate, fit_phase
from kprune.messages import Steps, say
from kprune.planning import BudgetUnreachable, profile
from kprune.results import PruningReport, Round
from kprune.surgery import copy_layer, rebuild, shrink


def step(
    model: keras.Model,
    plan,
    tuning: FineTune,
    train_data,
    round_index: int = 0,
    rounds: int = 1,
) -> keras.Model:
    """The round step: `model` shrunk by `plan`, recalibrated on `train_data`
    (`tuning.recalibrate`), and fine-tuned for round `round_index` of
    `rounds`. `model` is not modified."""
    candidate = shrink(model, plan)
    return settle(candidate, tuning, train_data, round_index, rounds)


def settle(model, tuning: FineTune, train_data, round_index=0, rounds=1):
    """What the step does after the shrink: recalibrate, then fine-tune."""
    if tuning.recalibrate and train_data is not None:
        recalibrate(model, train_data)
    return fit_phase(model, tuning, train_data, round_index, rounds)


@dataclass
class RunSettings:
    """What every round of a run shares: the data, the fine-tuning (bound, see
    `FineTune.bind`), the metric, and how much to say."""

    train_data: object = None
    val_data: object = None
    tuning: FineTune = field(default_factory=FineTune)
    metric: object = None
    verbose: int = 1


def measure(model, base, settings: RunSettings, number, criterion, size) -> Round:
    """The `Round` of `model` after a step: its size next to `base` (the
    original's profile) and its metric."""
    measured = evaluate(model, settings.metric, settings.val_data)
    prof = profile(model)
    ratio = prof.macs / base.macs if base.macs else 1.0
    value = measured[1] if measured else None
    return Round(number, criterion, size, prof.params, prof.macs, ratio, value)


def baseline_report(model, settings: RunSettings):
    """The reference of a run: `(start, profile, report)`, where `start` is a
    copy of `model` the rounds start from (its BatchNorm statistics
    re-estimated when the rounds recalibrate, so the reference is measured as
    they are), and the report holds round 0, noting when recalibration alone
    moved the metric."""
    base = profile(model)
    start = rebuild(model, copy_layer)  # compiled like `model`, which stays put
    measured = evaluate(start, settings.metric, settings.val_data)
    name, value = measured if measured else ("metric", None)
    note = ""
    recalibrating = settings.tuning.recalibrate and settings.train_data is not None
    if recalibrating and batch_norms(start):
        recalibrate(start, settings.train_data)
        again = evaluate(start, settings.metric, settings.val_data)
        if again is not None and value is not None and abs(again[1] - value) > 1e-4:
            note = (
                f"reference recalibrated as every round is: {name} {value:.4f} "
                f"as given, {again[1]:.4f} recalibrated"
            )
        value = again[1] if again else value
    report = PruningReport(metric_name=name)
    report.rounds.append(
        Round(0, "-", 0.0, base.params, base.macs, 1.0, value, note=note)
    )
    return start, base, report


def run_rounds(
    model: keras.Model,
    schedule,
    settings: RunSettings,
    size: float,
    max_rounds: int,
    rule: Tolerance | None = None,
    min_step: float = 0.0,
    title: str = "",
) -> tuple[keras.Model, PruningReport]:
    """Plan, step and evaluate, round after round; then the final fine-tuning.

    Args:
        model: the starting model (not modified: `shrink` copies).
        schedule: a `kprune.Staged`; `schedule.plan_step(model, k, step, data)`
            plans the `k`-th accepted round.
        settings: data, fine-tuning and metric of every round.
        size: the share pruned per round.
        max_rounds: rounds tried at most, accepted or not.
        rule: None accepts every round. Otherwise a `Tolerance`: a round
            outside it, or whose model has collapsed to a constant prediction
            on the validation data (see `degenerate`), is rejected, the step
            halves, and the loop stops once the step is below `min_step`.
        min_step: see `rule`.
        title: the report's title.

    Returns:
        `(last accepted model, report)`.
    """
    start, base, report = baseline_report(model, settings)
    report.title = title
    rule, guard = _started(rule, start, report, settings)
    state = _LoopState(start)
    with Steps("pruning rounds", max_rounds, settings.verbose) as steps:
        for index in range(max_rounds):
            found = _next_plan(schedule, state, size, min_step, settings)
            if found is None:
                break
            plan, size = found
            if plan.channels_after == plan.channels_before:
                report.rounds[-1].note = "nothing left to prune"
                break
            candidate = step(
                state.current,
                plan,
                settings.tuning,
                settings.train_data,
                state.accepted,
                max_rounds,
            )
            record = measure(candidate, base, settings, index + 1, plan.criterion, size)
            _judge(record, candidate, rule, guard, settings)
            report.rounds.append(record)
            steps.advance(
                _news(record, report.metric_name),
                line=_line(record, report.metric_name, rule),
            )
            if record.accepted:
                state.accept(candidate)
            else:
                state.rejected.add(_cut(plan))
                size /= 2
    _finish(state, base, settings, report, max_rounds)
    report.channels = kept_channels(model, state.current)
    table = getattr(schedule, "plan_options", {}).get("table")
    if table is not None:  # by="latency": the table's prediction, before and after
        report.predicted_ms = {
            "before": table.predict(model),
            "after": table.predict(state.current),
        }
    return state.current, report


def _started(rule, start, report, settings):
    """The rule judging this run's rounds (started on its reference), and
    whether the collapse guard is on: a round whose model predicts one thing
    for every input is rejected, unless the unpruned model already did."""
    if rule is None:
        return None, False
    rule = rule.start(report.metric_name, report.rounds[0].metric, start)
    say(
        f"baseline {rule.name} {rule.baseline:.4f}; tolerance {rule.limit:.4f}",
        settings.verbose,
    )
    return rule, not degenerate(start, settings.val_data)


def _judge(record: Round, model, rule, guard, settings) -> None:
    """Accept or reject a round by the rule and the collapse guard."""
    if rule is None:
        return
    if not rule.holds(record.metric):
        record.accepted = False
        record.note = (
            f"drop {rule.drop(record.metric):.4f} > {rule.limit:.4f}; step halved"
        )
    elif guard and degenerate(model, settings.val_data):
        record.accepted = False
        record.note = "constant prediction on val_data (collapsed); step halved"


def _finish(state, base, settings, report, rounds) -> None:
    """The final fine-tuning (`tuning.final_epochs`), measured as a last row."""
    tuning = settings.tuning
    if tuning.final_epochs <= 0 or tuning.fn is not None or not state.accepted:
        return
    model = fit_phase(
        state.current, tuning, settings.train_data, rounds=rounds, final=True
    )
    record = measure(model, base, settings, len(report.rounds), "-", 0.0)
    record.note = f"final fine-tuning, {tuning.final_epochs} epochs"
    report.rounds.append(record)
    state.current = model


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


def _next_plan(schedule, state, size, min_step, settings):
    """`(plan, step)` of the next round, or None once the step is too small.

    A smaller step that rounds to a cut already rejected is halved again rather
    than fine-tuning the same model twice; so is a FLOPs step below what the
    model can keep (`min_channels`, `round_to`).
    """
    while size >= min_step:
        try:
            plan = schedule.plan_step(
                state.current, state.accepted, step=size, data=settings.train_data
            )
        except BudgetUnreachable:  # below the model's floor: try a smaller step
            plan = None
        if plan is not None and _cut(plan) not in state.rejected:
            return plan, size
        size /= 2
    return None


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
