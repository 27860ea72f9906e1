"""The staged schedule: saliency first, then similarity (I2CT 2022).

The first rounds remove the filters that matter least (a saliency criterion such
as `l1`); once those are gone, the survivors all matter, and later rounds remove
the ones that are redundant next to another (`similarity`), so the output moves as
little as possible. Each round prunes a step and fine-tunes.
"""

from __future__ import annotations

from typing import Sequence

import keras

from kprune.checks import check_settings, take_deprecated
from kprune.criteria import get_criterion
from kprune.loops.rounds import RunSettings, run_rounds
from kprune.loops.settings import FineTune, tuning_from
from kprune.messages import check_verbose
from kprune.planning import PLAN_KEYWORDS, check_options
from kprune.planning import plan as make_plan
from kprune.results import PruningReport

#: Saliency for three rounds, then similarity for three (the paper's order).
DEFAULT_STAGES = (("l1", 3), ("similarity", 3))
#: The `plan()` keywords the schedule sets for every round.
SCHEDULE_SETS = ("ratio", "flops", "latency", "criterion")


class Staged:
    """A schedule of pruning rounds, each with the criterion of its stage.

    ```python
    staged = kprune.Staged([("l1", 4), ("similarity", 3)], step=0.1)
    small, report = staged.run(model, train_data=(x, y), val_data=(xv, yv))
    print(report)
    ```

    Args:
        stages: `(criterion, rounds)` pairs, run in order. Criteria are names or
            callables, as for `kprune.plan`.
        step: share pruned per round: of the current channels (`by="ratio"`) or
            of the current FLOPs (`by="flops"`); default 0.1.
        by: `"ratio"` (default), `"flops"`, or `"latency"`: each round then
            removes `step` of the current model's latency as predicted by
            the `table=` (a `kprune.LatencyTable`) passed among the plan
            options.
        ratio: instead of `step`, the share of channels to remove over all
            rounds; each round removes `1 - (1 - ratio) ** (1 / rounds)`.
        flops: instead of `step`, the share of FLOPs to keep after all rounds;
            each round keeps `flops ** (1 / rounds)` of the current FLOPs.
        metric: callable `f(model) -> float`, or the name of a compiled metric.
        **plan_options: `kprune.plan` keywords for every round (`scope`,
            `round_to`, `min_channels`, ...) and criterion options, each
            passed to the rounds whose criterion reads it (`compensate=` to
            the `similarity` rounds only).

    Raises:
        ValueError: on bad arguments, each message naming the fix.
        TypeError: on an option that no stage's criterion reads.
    """

    def __init__(
        self,
        stages: Sequence[tuple] = DEFAULT_STAGES,
        step: float | None = None,
        by: str | None = None,
        metric=None,
        *,
        ratio: float | None = None,
        flops: float | None = None,
        **plan_options,
    ):
        moved = take_deprecated(
            plan_options,
            {"fine_tune": "Staged(...).run(..., tuning=kprune.FineTune(fn=...))"},
            "kprune.Staged",
        )
        self._fn = moved.get("fine_tune")
        stages = [tuple(s) for s in stages]
        if not stages:
            raise ValueError("stages must list at least one (criterion, rounds) pair")
        for stage in stages:
            if len(stage) != 2 or not isinstance(stage[1], int) or stage[1] < 1:
                raise ValueError(
                    f"each stage is (criterion, rounds) with rounds >= 1; got {stage!r}"
                )
            get_criterion(stage[0])  # fail now on an unknown name
        step, by = _spread(step, by, ratio, flops, sum(r for _, r in stages))
        if (by == "latency") != ("table" in plan_options):
            raise ValueError(
                "by='latency' plans each round against a measured latency table: "
                "pass table=kprune.LatencyTable.measure(model) with it (and table= "
                "only with by='latency')"
            )
        for key in SCHEDULE_SETS:
            if key in plan_options:
                raise ValueError(
                    f"{key}= is set by the schedule; use step=, by= and stages="
                )
        check_options(Staged, plan_options, [c for c, _ in stages], sets=SCHEDULE_SETS)
        self.stages = stages
        self.ratio, self.flops = ratio, flops
        self.step = step
        self.by = by
        self.metric = metric
        self.plan_options = plan_options

    @property
    def total_rounds(self) -> int:
        return sum(rounds for _, rounds in self.stages)

    def criterion_at(self, round_index: int):
        """The criterion of round `round_index` (0-based; the last stage repeats)."""
        for criterion, rounds in self.stages:
            if round_index < rounds:
                return criterion
            round_index -= rounds
        return self.stages[-1][0]

    def plan_step(
        self, model: keras.Model, round_index: int, step: float | None = None, data=None
    ):
        """Plan one round of `step` (default `self.step`) on `model`."""
        step = self.step if step is None else step
        criterion = self.criterion_at(round_index)
        crit = get_criterion(criterion)
        options = {
            key: value
            for key, value in self.plan_options.items()
            if key in PLAN_KEYWORDS or crit.accepts(key)
        }
        if crit.needs_data and "data" not in options:
            options["data"] = data
        if self.by == "latency":
            table = options["table"]
            target = {"latency": table.predict(model) * (1.0 - step) / table.dense_ms}
        elif self.by == "ratio":
            target = {"ratio": step}
        else:
            target = {"flops": 1.0 - step}
        return make_plan(model, criterion, **target, **options)

    def run(
        self,
        model: keras.Model,
        train_data=None,
        val_data=None,
        tuning: FineTune | None = None,
        verbose: int = 1,
        **deprecated,
    ) -> tuple[keras.Model, PruningReport]:
        """Run every round. `model` is not modified.

        Args:
            model: the trained model, compiled if the fine-tuning or `metric`
                rely on `fit`/`evaluate`.
            train_data: `(x, y)` or a dataset, for fine-tuning, recalibration
                and data-driven criteria (`taylor`, `apoz`).
            val_data: `(x, y)` or a dataset, for the metric.
            tuning: a `kprune.FineTune`: how each round fine-tunes (default
                one epoch at the compiled rate, BatchNorm recalibrated after
                each shrink), and `final_epochs` after the last round.
                `lr_schedule="cosine_run"` spreads one cosine over all of it.
            verbose: 0 silent, 1 a progress bar over the rounds, 2 one line
                per round (as Keras' `fit`).

        Returns:
            `(pruned_model, report)`; the report lists every round's criterion,
            params, MACs, FLOPs kept and metric.
        """
        tuning = tuning_from(tuning, deprecated, "Staged.run", self._fn)
        settings = RunSettings(
            train_data=train_data,
            val_data=val_data,
            tuning=tuning.bind(model, train_data),
            metric=self.metric,
            verbose=check_verbose(verbose),
        )
        stages = " -> ".join(
            f"{getattr(c, '__name__', c)} x{n}" for c, n in self.stages
        )
        title = f"Staged '{model.name}': {stages}, step {self.step:g} by {self.by}"
        return run_rounds(
            model, self, settings, self.step, self.total_rounds, title=title
        )


def _spread(step, by, ratio, flops, rounds: int) -> tuple[float, str]:
    """`(step, by)`: as given, or an overall target spread evenly over `rounds`."""
    check_settings(step=step, by=by, ratio=ratio, flops=flops)
    if ratio is None and flops is None:
        return (0.1 if step is None else step), (by or "ratio")
    if step is not None or (ratio is not None and flops is not None):
        raise ValueError(
            "give the schedule either step= (per round) or one overall target, "
            f"ratio= or flops=. Received: step={step}, ratio={ratio}, flops={flops}"
        )
    unit = "ratio" if ratio is not None else "flops"
    if by is not None and by != unit:
        raise ValueError(f"{unit}= prunes by {unit!r}; leave by= out or set it so")
    kept = 1.0 - ratio if ratio is not None else flops
    step = 1.0 - kept ** (1.0 / rounds)
    if not 0 < step < 1:
        raise ValueError(
            f"{unit}={ratio if ratio is not None else flops} leaves nothing to prune"
        )
    return step, unit
