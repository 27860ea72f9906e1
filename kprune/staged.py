"""The staged schedule: saliency first, then similarity (I2CT 2022).

The first rounds remove the filters that matter least (a saliency criterion such
as `l1`); once those are gone, the survivors all matter, and later rounds remove
the ones that are redundant next to another (`similarity`), so the output moves as
little as possible. Each round prunes a step and fine-tunes.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras

from kprune.checks import check_settings
from kprune.criteria import get_criterion
from kprune.distillation import as_distillation
from kprune.planner import PLAN_KEYWORDS, check_options
from kprune.planner import plan as make_plan
from kprune.report import PruningReport
from kprune.rounds import RoundSettings, run_rounds

#: Saliency for three rounds, then similarity for three (the paper's order).
DEFAULT_STAGES = (("l1", 3), ("similarity", 3))
#: The `plan()` keywords the schedule sets for every round.
SCHEDULE_SETS = ("ratio", "flops", "latency", "latency_ms", "criterion")


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
        fine_tune: `f(model) -> model or None`, or `f(model, round_index)`,
            to train between rounds; by default `model.fit(train_data,
            epochs=epochs)`.
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
        fine_tune: Callable | None = None,
        metric=None,
        *,
        ratio: float | None = None,
        flops: float | None = None,
        **plan_options,
    ):
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
        self.fine_tune = fine_tune
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
            now = options["table"].predict(model)
            target = {"latency_ms": now * (1.0 - step)}
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
        epochs: int = 1,
        verbose: int = 1,
        learning_rate: float | None = None,
        recalibrate: bool = True,
        distill=None,
        lr_schedule: str = "constant",
        batch_size: int | None = None,
    ) -> tuple[keras.Model, PruningReport]:
        """Run every round. `model` is not modified.

        Args:
            model: the trained model, compiled if `fine_tune` or `metric` rely on
                `fit`/`evaluate`.
            train_data: `(x, y)` or a dataset, for fine-tuning and for
                data-driven criteria (`taylor`, `apoz`).
            val_data: `(x, y)` or a dataset, for the metric.
            epochs: fine-tuning epochs per round.
            verbose: 0 silent, 1 a progress bar over the rounds, 2 one line
                per round (as Keras' `fit`).
            learning_rate: learning rate for fine-tuning (default: the compiled
                one); with `fine_tune=`, which sets its own, it raises.
            recalibrate: re-estimate BatchNorm statistics on a few batches of
                `train_data` right after each shrink (see `kprune.recalibrate`).
            distill: fine-tune each round on the labels and on a teacher's
                outputs (knowledge distillation, see `kprune.Distiller`): the
                teacher model, `True` for the unpruned `model`, or
                `kprune.Distillation(teacher, weight=1.0, temperature=2.0)`.
                It applies to kprune's own `model.fit`; with `fine_tune=`, or
                without training data or epochs, it raises.
            lr_schedule: `"constant"` (default) or `"cosine"`: each round's
                fine-tuning decays its rate from `learning_rate` (or the
                compiled one) to 0 along a half cosine over `epochs`.
            batch_size: the fine-tuning batch for `(x, y)` arrays (default
                Keras' 32); it raises with a dataset (batch that instead) and
                with `fine_tune=`.

        Returns:
            `(pruned_model, report)`; the report lists every round's criterion,
            params, MACs, FLOPs kept and metric.
        """
        settings = RoundSettings(
            train_data=train_data,
            val_data=val_data,
            epochs=epochs,
            learning_rate=learning_rate,
            fine_tune=self.fine_tune,
            recalibrate=recalibrate,
            distill=as_distillation(distill, model),
            lr_schedule=lr_schedule,
            batch_size=batch_size,
            metric=self.metric,
            verbose=verbose,
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
