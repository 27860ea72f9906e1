"""`FineTune`: how kprune fine-tunes a pruned model, declared once.

Every loop that fine-tunes (`Staged.run`, `prune_to_tolerance`, `sweep`,
`sensitivity`, `kprune.fine_tune`) takes one `FineTune` and nothing else
about training, so the settings have one name each, one default and one check
everywhere. The object checks what it can alone when it is made; what needs
the model and the data (a rate with nothing to train on, a batch size next to
a dataset, a teacher whose outputs do not match) is checked by `bind`, before
anything is pruned.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Callable

import keras

from kprune.checks import check_settings, take_deprecated
from kprune.loops.distillation import Distillation, as_distillation

#: `"constant"`; `"cosine"`, one half cosine per fine-tuning (each round, and
#: the final fine-tuning); `"cosine_run"`, one half cosine across the run.
LR_SCHEDULES = ("constant", "cosine", "cosine_run")


@dataclass(frozen=True)
class FineTune:
    """How a pruned model is fine-tuned: after every round of a loop, and at
    the end.

    ```python
    tuning = kprune.FineTune(epochs=2, learning_rate=1e-3, lr_schedule="cosine",
                             distill=True)
    small, report = kprune.prune_to_tolerance(model, train, val, tuning=tuning)
    ```

    Args:
        epochs: epochs of `model.fit` after each shrink (0: none). Default 1.
        learning_rate: the rate of the fresh optimizer (default: the rate the
            model was compiled with; pruned models usually want less than
            training did, or, with a cosine, more).
        lr_schedule: `"constant"` (default) keeps the rate; `"cosine"` decays
            it to 0 along a half cosine over each fine-tuning (every round's,
            then the final one's), step by step; `"cosine_run"` spreads one
            half cosine over the whole run (every round's epochs, then
            `final_epochs`), as a one-shot recipe would, so the rate does not
            jump back up each round. The tolerance loop, whose number of
            rounds is not known ahead, takes only the first two.
        batch_size: the batch of `model.fit` for `(x, y)` arrays (default
            Keras' 32); a dataset brings its own batches.
        recalibrate: re-estimate the BatchNorm statistics on a few batches of
            the training data right after each shrink, before fine-tuning
            (`kprune.recalibrate`). Default True.
        distill: learn from a teacher as well as the labels
            (`kprune.Distillation`): the teacher model, True for the model
            being pruned, or a `kprune.Distillation(teacher, weight=,
            temperature=)`.
        fn: your own fine-tuning instead of `model.fit`: `f(model)` or
            `f(model, round_index)`, returning the model or None. It sets its
            own epochs, rates and batches, so those raise beside it.
        final_epochs: epochs of fine-tuning after the last round (default 0).

    Raises:
        ValueError: for a bad value, or a setting that would be ignored.
        TypeError: for `distill=` or `fn=` of the wrong type.
    """

    epochs: int | None = None
    learning_rate: float | None = None
    lr_schedule: str = "constant"
    batch_size: int | None = None
    recalibrate: bool = True
    distill: object = None
    fn: Callable | None = None
    final_epochs: int = 0

    def __post_init__(self):
        for name in ("epochs", "final_epochs"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                raise ValueError(f"{name} must be an int >= 0; got {value!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {LR_SCHEDULES}; got "
                f"{self.lr_schedule!r}. 'cosine' decays the rate to 0 over each "
                "fine-tuning, 'cosine_run' over the whole run."
            )
        check_settings(learning_rate=self.learning_rate, batch_size=self.batch_size)
        if not isinstance(self.recalibrate, bool):
            raise ValueError(
                f"recalibrate must be True or False; got {self.recalibrate!r}"
            )
        if self.fn is not None and not callable(self.fn):
            raise TypeError(f"fn must be a function f(model); got {self.fn!r}")
        if not (
            self.distill in (None, False, True)
            or isinstance(self.distill, (keras.Model, Distillation))
        ):
            raise TypeError(
                "distill= takes the teacher model, True (the unpruned model "
                "teaches), or kprune.Distillation(teacher, weight=, temperature=); "
                f"got {type(self.distill).__name__}"
            )
        if self.fn is not None:
            self._refuse_beside_fn()

    def _refuse_beside_fn(self) -> None:
        given = [
            f"{name}={getattr(self, name)!r}"
            for name, default in (
                ("epochs", None),
                ("learning_rate", None),
                ("lr_schedule", "constant"),
                ("batch_size", None),
                ("final_epochs", 0),
            )
            if getattr(self, name) != default
        ]
        if self.distill not in (None, False):
            given.append("distill=")
        if given:
            raise ValueError(
                f"{', '.join(given)} set kprune's own fine-tuning (model.fit); "
                "fn= trains by itself and would ignore them: set them in it "
                "(fit a kprune.distiller(model, teacher) inside it to distill)"
            )

    @property
    def rounds_epochs(self) -> int:
        """Epochs of kprune's own fine-tuning after each shrink."""
        return 1 if self.epochs is None else self.epochs

    def span(self, rounds: int) -> int:
        """Epochs of a run of `rounds` rounds and the final fine-tuning."""
        return rounds * self.rounds_epochs + self.final_epochs

    def bind(self, model: keras.Model, train_data, rounds_known: bool = True):
        """This `FineTune` checked against the run it will serve: `model` (the
        model about to be pruned, which `distill=True` takes as teacher) and
        `train_data`. Returns a copy whose `distill` is a `Distillation`
        holding its own copy of the teacher (so fitting never touches yours).

        Args:
            rounds_known: False for a loop that cannot tell its rounds ahead
                (the tolerance loop), which refuses `"cosine_run"`.
        """
        if self.lr_schedule == "cosine_run" and not rounds_known:
            raise ValueError(
                "lr_schedule='cosine_run' spreads one cosine over every round, "
                "and the tolerance loop cannot tell ahead how many it will run: "
                "use lr_schedule='cosine' (one cosine per round)"
            )
        own = self.fn is None and train_data is not None
        given = self._kprune_settings()
        if given and not (own and self.span(1) > 0):
            raise ValueError(
                f"{' and '.join(given)} only act on kprune's fine-tuning, and "
                "there is none to do: give training data and at least one "
                "epoch, or leave them unset"
            )
        if self.batch_size is not None and not isinstance(train_data, tuple):
            raise ValueError(
                "batch_size= batches (x, y) arrays; the training data is a "
                "dataset, which is batched already: batch the dataset, or "
                "leave batch_size unset"
            )
        if own and self.span(1) > 0 and not getattr(model, "compiled", False):
            raise ValueError(
                "fine-tuning needs a compiled model: call model.compile(optimizer, "
                "loss, metrics) first (kprune.shrink keeps the compile settings), "
                "or pass tuning=kprune.FineTune(epochs=0)"
            )
        teacher = as_distillation(self.distill, model)
        return dataclasses.replace(self, distill=teacher)

    def _kprune_settings(self) -> list[str]:
        given = [
            f"{name}={getattr(self, name)!r}"
            for name in ("learning_rate", "batch_size")
            if getattr(self, name) is not None
        ]
        if self.lr_schedule != "constant":
            given.append(f"lr_schedule={self.lr_schedule!r}")
        if self.distill not in (None, False):
            given.append("distill=")
        return given


def as_tuning(tuning) -> FineTune:
    """`tuning` as a `FineTune` (None: the defaults)."""
    if tuning is None:
        return FineTune()
    if not isinstance(tuning, FineTune):
        raise TypeError(
            "tuning= takes a kprune.FineTune(epochs=, learning_rate=, ...); got "
            f"{type(tuning).__name__}"
        )
    return tuning


def positional_count(fn) -> int:
    """How many positional arguments `fn` requires (0 when it cannot be told).

    A parameter with a default does not count: `f(model, epochs=3)` is not
    handed the round index as `epochs`.
    """
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.default is p.empty for p in parameters)


#: The keywords of the loops that moved into `FineTune` in kprune 0.2.
MOVED = {
    "epochs": "epochs",
    "fine_tune_epochs": "epochs",
    "learning_rate": "learning_rate",
    "lr_schedule": "lr_schedule",
    "batch_size": "batch_size",
    "recalibrate": "recalibrate",
    "distill": "distill",
    "fine_tune_fn": "fn",
}


def tuning_from(tuning, options: dict, where: str, fn=None, strict=True) -> FineTune:
    """The `FineTune` of a loop: `tuning=`, or one made from the keywords that
    moved into it (popped from `options` with a `DeprecationWarning`), and a
    fine-tuning function given the old way (`Staged(fine_tune=)`).

    Args:
        strict: raise for any keyword left in `options` (a loop without
            `**plan_options`).
    """
    renames = {old: f"tuning=kprune.FineTune({new}=...)" for old, new in MOVED.items()}
    moved = take_deprecated(options, renames, where)
    if strict and options:
        raise TypeError(
            f"{where}() got an unexpected keyword {next(iter(options))!r}; "
            "fine-tuning settings go in tuning=kprune.FineTune(...)"
        )
    settings = {MOVED[old]: value for old, value in moved.items()}
    if fn is not None:
        settings["fn"] = fn
    if not settings:
        return as_tuning(tuning)
    if tuning is not None:
        raise ValueError(
            f"{where}: give the fine-tuning settings once, in tuning=; got "
            f"tuning= and {sorted(settings)} the old way"
        )
    return FineTune(**settings)
