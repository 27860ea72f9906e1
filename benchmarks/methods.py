"""The pruning methods the quality benchmarks compare, under one fine-tuning budget.

`Harness(data, compile_model, batch)` holds the training data, how to compile
a model for it, and the fine-tuning rate; `Harness.prune(method, ...)` prunes a
trained model to a share of its MACs by one of `METHODS` and fine-tunes it for
`tune` epochs in all, optionally learning from a teacher (`kprune.Distillation`).
Every method fine-tunes with kprune's own `FineTune` (or, for the callback's
two phases, through `Harness.fit` and kprune's `CosineRate`): the same batch
size, and with the cosine schedule one cosine over the whole budget, however
many fits (the rounds of `Staged`, the callback's two phases) the method
splits it into.
"""

from __future__ import annotations

import kprune
from kprune.results import format_table

METHODS = (
    "l1_global",
    "l1_repeat",
    "l1_layer",
    "l1_floor",
    "staged",
    "staged_comp",
    "importance",
    "importance_global",
    "importance_fold",
    "importance_l1",
    "importance_rounds",
    "callback_importance",
    "callback_l1",
)
#: `l1_repeat` fine-tunes `l1_global`'s plan under the seed plus this: how far
#: one plan's score moves with the fine-tuning's randomness alone.
REPEAT_OFFSET = 1000
#: The channels every group keeps in `l1_floor` (global L1 with `min_channels`).
FLOOR = 3
#: The methods that read the wrapped model's multipliers.
WRAPPED = (
    "importance",
    "importance_global",
    "importance_fold",
    "importance_l1",
    "importance_rounds",
)


def method_seed(method: str, seed: int) -> int:
    """The random seed a method prunes and fine-tunes under (set just before
    `Harness.prune`): the run's seed, but another one for `l1_repeat`."""
    return seed + REPEAT_OFFSET if method == "l1_repeat" else seed


class Harness:
    """Training data, compile settings, batch size and fine-tuning rate shared
    by every method.

    `compile_model(model, rate=None)` compiles `model` (at its default rate
    when `rate` is None). After pruning, every method fine-tunes through
    kprune's own loop and schedule (`kprune.FineTune`, `kprune.fine_tune`,
    `Staged.run`, `kprune.loops.CosineRate`) at `tune_lr`, constant or
    (`schedule="cosine"`) decaying to 0 along one cosine over the method's
    whole budget, however many fits it is split into.
    """

    def __init__(
        self,
        data,
        compile_model,
        batch: int,
        outputs: str = "auto",
        tune_lr: float = 1e-3,
        schedule: str = "constant",
    ):
        self.data, self.compile_model, self.batch = data, compile_model, batch
        self.outputs = outputs  # what distillation compares (kprune.Distillation)
        self.tune_lr, self.schedule = tune_lr, schedule

    def tuning(self, epochs: int, teacher=None, final: int = 0) -> kprune.FineTune:
        """The `FineTune` of a method: `epochs` after each shrink and `final`
        after the last, on one cosine over both with `schedule="cosine"`."""
        distill = None
        if teacher is not None:
            distill = kprune.Distillation(teacher, outputs=self.outputs)
        return kprune.FineTune(
            epochs=epochs,
            final_epochs=final,
            learning_rate=self.tune_lr,
            lr_schedule="cosine_run" if self.schedule == "cosine" else "constant",
            batch_size=self.batch,
            distill=distill,
        )

    def fit(self, model, epochs, teacher=None, callbacks=None, tuning=None):
        """Train `model` in place (learning from `teacher` when set).

        `tuning=(start, total)` makes it fine-tuning: epochs `start` to
        `start + epochs` of a budget of `total`, at `tune_lr` on that slice of
        the budget's cosine (`kprune.loops.CosineRate`).
        """
        if epochs <= 0:
            return model
        trainer = model
        if teacher is not None:
            trainer = kprune.distiller(model, teacher, outputs=self.outputs)
        callbacks = list(callbacks or [])
        if tuning is None:
            self.compile_model(trainer)
        else:
            self.compile_model(trainer, self.tune_lr)
            start, total = tuning
            if self.schedule == "cosine":
                span = (start / total, (start + epochs) / total)
                callbacks.append(kprune.loops.CosineRate(*span))
        trainer.fit(
            *self.data,
            batch_size=self.batch,
            epochs=epochs,
            verbose=0,
            callbacks=callbacks,
        )
        return model

    def one_shot(self, source, criterion, target, tune, teacher, fold=False, **options):
        """One plan and shrink (then `kprune.unwrap` when `fold`), then
        `kprune.fine_tune`: recalibration and all of the budget."""
        plan = kprune.plan(source, criterion, flops=target, **options)
        small = kprune.shrink(source, plan)
        if fold:
            small = kprune.unwrap(small)
        return kprune.fine_tune(small, self.data, self.tuning(tune, teacher))

    def staged(self, source, stages, target, tune, teacher, **options):
        """`Staged.run`: rounds of `tune // rounds` epochs each (recalibrated
        after each shrink), then the rest of the budget as its final epochs."""
        schedule = kprune.Staged(stages, flops=target, **options)
        per_round = tune // schedule.total_rounds
        rest = tune - per_round * schedule.total_rounds
        tuning = self.tuning(per_round, teacher, final=rest)
        small, _ = schedule.run(source, self.data, None, tuning=tuning, verbose=0)
        return small

    def with_callback(self, model, criterion, target, tune, teacher):
        """Mask over the first 40% of the epochs, then shrink and fine-tune."""
        wrapped = kprune.wrap(model)
        masking = max(1, round(0.4 * tune))
        callback = kprune.PruningCallback(
            flops=target, criterion=criterion, end_epoch=masking - 1
        )
        self.fit(wrapped, masking, teacher, callbacks=[callback], tuning=(0, tune))
        small = kprune.shrink(wrapped)
        kprune.recalibrate(small, self.data[0])
        return self.fit(small, tune - masking, teacher, tuning=(masking, tune))

    def prune(self, method, model, wrapped, target, tune, teacher=None):
        """The pruned, fine-tuned (and unwrapped) model of one method."""
        if method in ("l1_global", "l1_layer", "l1_repeat"):
            scope = "layer" if method == "l1_layer" else "global"
            small = self.one_shot(model, "l1", target, tune, teacher, scope=scope)
        elif method == "l1_floor":
            small = self.one_shot(
                model, "l1", target, tune, teacher, min_channels=FLOOR
            )
        elif method in ("staged", "staged_comp"):
            stages, comp = [("l1", 1), ("similarity", 2)], method == "staged_comp"
            small = self.staged(model, stages, target, tune, teacher, compensate=comp)
        elif method in ("importance", "importance_global"):
            scope = "global" if method.endswith("global") else "layer"
            small = self.one_shot(
                wrapped, "importance", target, tune, teacher, scope=scope
            )
        elif method == "importance_fold":
            small = self.one_shot(wrapped, "importance", target, tune, teacher, True)
        elif method == "importance_l1":  # L1 of the filters times their multipliers
            small = self.one_shot(
                wrapped, "importance_l1", target, tune, teacher, True, scope="global"
            )
        elif method == "importance_rounds":
            small = self.staged(wrapped, [("importance", 3)], target, tune, teacher)
        else:
            criterion = method.split("_")[1]
            small = self.with_callback(model, criterion, target, tune, teacher)
        return kprune.unwrap(small) if kprune.layers.is_wrapped(small) else small


def name(row) -> str:
    """The method of a result row, with its init for the importance methods."""
    return row["method"] + (f" ({row['init']})" if row.get("init") else "")


def results_table(rows, title, score="Dice", group=("arch",)) -> str:
    """`score` per (group..., target, method, distill), the seeds side by side."""
    cells: dict = {}
    for r in rows:
        key = (*(r[k] for k in group), r["target"], name(r), r["distill"])
        cells.setdefault(key, []).append(r["score"])
    body = [
        (*key[:-3], f"{key[-3]:.0%}", key[-2], "yes" if key[-1] else "no",
         " / ".join(f"{v:.3f}" for v in values), f"{min(values):.3f}")
        for key, values in cells.items()
    ]  # fmt: skip
    header = [*group, "MACs kept", "method", "distill", f"{score} per seed", "worst"]
    return format_table(header, body, title=title)


def paired_table(rows, reference="l1_global", group=("arch",)) -> str:
    """Each method's score minus `reference`'s in the same seed (and group,
    target, distillation): the mean, the worst and best seed, and in how many
    seeds it is at least as good. `l1_repeat`'s row is the noise of one cell:
    the reference's own plan fine-tuned again under another seed."""
    scores: dict = {}
    for r in rows:
        key = (*(r[k] for k in group), r["target"], r["distill"])
        scores.setdefault(key, {}).setdefault(name(r), {})[r["seed"]] = r["score"]
    body = []
    for key, methods in scores.items():
        base = methods.get(reference, {})
        for method, by_seed in methods.items():
            diffs = [v - base[s] for s, v in by_seed.items() if s in base]
            if method == reference or not diffs:
                continue
            body.append(
                (*key[:-2], f"{key[-2]:.0%}", method, "yes" if key[-1] else "no",
                 f"{sum(diffs) / len(diffs):+.3f}", f"{min(diffs):+.3f}",
                 f"{max(diffs):+.3f}", f"{sum(d >= 0 for d in diffs)} of {len(diffs)}")
            )  # fmt: skip
    header = [*group, "MACs kept", "method", "distill", "mean", "worst", "best"]
    header.append(f">= {reference}")
    return format_table(header, body, title=f"minus {reference}, seed by seed")


def print_tables(rows, title, score="Dice", group=("arch",)) -> None:
    """Print `results_table`, then `paired_table` when global L1 and another
    method ran."""
    print(results_table(rows, title, score, group))
    methods = {r["method"] for r in rows}
    if "l1_global" in methods and len(methods) > 1:
        print(paired_table(rows, group=group))
