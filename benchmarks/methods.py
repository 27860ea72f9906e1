"""The pruning methods the quality benchmarks compare, under one fine-tuning budget.

`Harness(data, compile_model, batch)` holds the training data and how to
compile a model for it (and, optionally, a different compile for fine-tuning);
`Harness.prune(method, ...)` prunes a trained model to
a share of its MACs by one of `METHODS` and fine-tunes it for `tune` epochs in
all, optionally learning from a teacher (`kprune.Distiller`).
"""

from __future__ import annotations

import kprune
from kprune.report import format_table

METHODS = (
    "l1_global",
    "l1_layer",
    "l1_floor",
    "staged",
    "staged_comp",
    "importance",
    "importance_rounds",
    "callback_importance",
    "callback_l1",
)
#: The channels every group keeps in `l1_floor` (global L1 with `min_channels`).
FLOOR = 3
#: The methods that read the wrapped model's multipliers.
WRAPPED = ("importance", "importance_rounds")


class Harness:
    """Training data, compile settings and batch size shared by every method."""

    def __init__(
        self, data, compile_model, batch: int, outputs: str = "auto", tune=None
    ):
        self.data, self.compile_model, self.batch = data, compile_model, batch
        self.outputs = outputs  # what the Distiller compares (kprune.Distiller)
        self.tune_compile = tune or compile_model  # for everything after pruning

    def fit(self, model, epochs, teacher=None, callbacks=None, tuning=False):
        """Train `model` in place (through a Distiller when `teacher` is set),
        compiled for fine-tuning when `tuning`."""
        if epochs <= 0:
            return model
        trainer = model
        if teacher is not None:
            trainer = kprune.Distiller(model, teacher, outputs=self.outputs)
        (self.tune_compile if tuning else self.compile_model)(trainer)
        trainer.fit(
            *self.data,
            batch_size=self.batch,
            epochs=epochs,
            verbose=0,
            callbacks=callbacks,
        )
        return model

    def one_shot(self, source, criterion, target, tune, teacher, **options):
        plan = kprune.plan(source, criterion, flops=target, **options)
        small = kprune.shrink(source, plan)
        kprune.recalibrate(small, self.data[0])
        return self.fit(small, tune, teacher, tuning=True)

    def staged(self, source, stages, target, tune, teacher, **options):
        schedule = kprune.Staged(stages, flops=target, **options)
        rounds = schedule.total_rounds
        self.tune_compile(source)
        per_round = tune // rounds
        small, _ = schedule.run(
            source,
            self.data,
            None,
            epochs=per_round,
            verbose=0,
            distill=kprune.Distillation(teacher, outputs=self.outputs)
            if teacher is not None and per_round
            else None,
        )
        return self.fit(small, tune - rounds * per_round, teacher, tuning=True)

    def with_callback(self, model, criterion, target, tune, teacher):
        """Mask over the first 40% of the epochs, then shrink and fine-tune."""
        wrapped = kprune.wrap(model)
        masking = max(1, round(0.4 * tune))
        callback = kprune.PruningCallback(
            flops=target, criterion=criterion, end_epoch=masking - 1
        )
        self.fit(wrapped, masking, teacher, callbacks=[callback], tuning=True)
        small = kprune.shrink(wrapped)
        kprune.recalibrate(small, self.data[0])
        return self.fit(small, tune - masking, teacher, tuning=True)

    def prune(self, method, model, wrapped, target, tune, teacher=None):
        """The pruned, fine-tuned (and unwrapped) model of one method."""
        if method in ("l1_global", "l1_layer"):
            scope = method.split("_")[1]
            small = self.one_shot(model, "l1", target, tune, teacher, scope=scope)
        elif method == "l1_floor":
            small = self.one_shot(
                model, "l1", target, tune, teacher, min_channels=FLOOR
            )
        elif method in ("staged", "staged_comp"):
            stages, comp = [("l1", 1), ("similarity", 2)], method == "staged_comp"
            small = self.staged(model, stages, target, tune, teacher, compensate=comp)
        elif method == "importance":
            small = self.one_shot(wrapped, "importance", target, tune, teacher)
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
