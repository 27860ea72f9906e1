"""Fine-tuning and evaluating between pruning rounds (staged and tolerance runs)."""

from __future__ import annotations

import inspect
import math
from typing import Callable

import keras

from kprune.checks import check_settings
from kprune.compiling import compile_like, compile_settings
from kprune.distillation import Distillation


def fit_arguments(data, name: str) -> dict:
    if isinstance(data, tuple) and len(data) == 2:
        return {"x": data[0], "y": data[1]}
    if isinstance(data, (list, tuple)):
        raise ValueError(f"{name} must be (x, y) or a tf.data.Dataset of (x, y)")
    return {"x": data}


def require_compiled(model: keras.Model, what: str) -> None:
    if not getattr(model, "compiled", False):
        raise ValueError(
            f"{what} needs a compiled model: call model.compile(optimizer, loss, "
            "metrics) first (kprune.shrink keeps the compile settings)"
        )


def check_tuning(
    learning_rate,
    lr_schedule,
    batch_size,
    train_data,
    epochs,
    custom: Callable | None = None,
) -> dict:
    """Check the settings of kprune's own fine-tuning before anything is
    pruned: valid values, and never given where they would be ignored (beside
    a custom fine-tuning function `custom`, or with nothing to fine-tune on;
    `batch_size` with a dataset, which is batched already).

    Returns:
        The three settings, as keyword arguments of `fine_tune`.
    """
    settings = {
        "learning_rate": learning_rate,
        "lr_schedule": lr_schedule,
        "batch_size": batch_size,
    }
    check_settings(
        learning_rate=learning_rate, lr_schedule=lr_schedule, batch_size=batch_size
    )
    given = [f"learning_rate={learning_rate!r}"] if learning_rate is not None else []
    if lr_schedule != "constant":
        given.append(f"lr_schedule={lr_schedule!r}")
    if batch_size is not None:
        given.append(f"batch_size={batch_size!r}")
        if train_data is not None and not isinstance(train_data, tuple):
            raise ValueError(
                "batch_size= batches (x, y) arrays; train_data is a dataset, "
                "which is batched already: batch the dataset, or leave "
                "batch_size unset"
            )
    if not given:
        return settings
    names = " and ".join(given)
    if custom is not None:
        raise ValueError(
            f"{names} set kprune's own fine-tuning (model.fit); your fine-tuning "
            "function trains by itself and would ignore them: set them in it"
        )
    if train_data is None or epochs <= 0:
        raise ValueError(
            f"{names} only act on kprune's fine-tuning, and there is none to do: "
            "give train data and at least one epoch, or leave them unset"
        )
    return settings


def fine_tune(
    model: keras.Model,
    fine_tune: Callable | None = None,
    train_data=None,
    epochs: int = 1,
    verbose: int = 0,
    learning_rate: float | None = None,
    round_index: int | None = None,
    distill: Distillation | None = None,
    lr_schedule: str = "constant",
    batch_size: int | None = None,
) -> keras.Model:
    """Train `model` a little after a pruning step.

    Args:
        model: the pruned model.
        fine_tune: `f(model) -> model or None`, your own training; it wins.
            One that takes two arguments, `f(model, round_index)`, also gets
            the 0-based index of the round.
        train_data: `(x, y)` or a `tf.data.Dataset` for `model.fit`.
        epochs: epochs of `model.fit` (0 skips training).
        verbose: passed to `model.fit`.
        learning_rate: learning rate of the (fresh) optimizer for `model.fit`;
            by default the one the model was compiled with. Fine-tuning a
            pruned model usually wants a smaller one than training did.
        round_index: the pruning round, passed to a two-argument `fine_tune`.
        distill: a `Distillation` (teacher, weight, temperature): `model.fit`
            then trains on the labels and on the teacher's outputs. A custom
            `fine_tune` does its own training and gets no distillation.
        lr_schedule: `"constant"` keeps the rate through the fine-tuning;
            `"cosine"` starts at it and decays it to 0 along a half cosine,
            step by step, over the `epochs` (then puts it back). A custom
            `fine_tune` sets its own rates.
        batch_size: the batch of `model.fit` for `(x, y)` arrays (default
            Keras' 32); a dataset brings its own batches.

    Returns:
        The fine-tuned model (the same object unless `fine_tune` returned another).
    """
    if fine_tune is not None:
        takes_round = round_index is not None and _positional_count(fine_tune) >= 2
        result = fine_tune(model, round_index) if takes_round else fine_tune(model)
        return model if result is None else result
    if train_data is None or epochs <= 0:
        return model
    require_compiled(model, "fine-tuning")
    trainer = model
    if distill is not None:
        trainer = distill.harness(model)
        compile_like(trainer, compile_settings(model))
    if learning_rate is not None:
        _set_rate(trainer.optimizer, learning_rate)
    callbacks = [CosineRate()] if lr_schedule == "cosine" else []
    trainer.fit(
        **fit_arguments(train_data, "train_data"),
        batch_size=batch_size,
        epochs=epochs,
        verbose=verbose,
        callbacks=callbacks,
    )
    return model


def _set_rate(optimizer, rate: float) -> None:
    try:
        optimizer.learning_rate = rate
    except TypeError as error:  # Keras: built with a LearningRateSchedule
        raise ValueError(
            "the model was compiled with a learning-rate schedule, which kprune "
            "cannot set a rate on: compile it with a float learning rate for "
            "learning_rate= or lr_schedule='cosine', or leave both unset"
        ) from error


class CosineRate(keras.callbacks.Callback):
    """Decay the optimizer's rate from its value at the start of `fit` to 0
    along a half cosine, one step at a time, over all of `fit`'s epochs; put
    the starting rate back at the end.

    When `fit` cannot tell the steps per epoch (a dataset of unknown length),
    the rate moves once per epoch instead.
    """

    def on_train_begin(self, logs=None):
        self.peak = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        self.epochs = self.params.get("epochs") or 1
        self.steps = self.params.get("steps")
        self.epoch = 0

    def _to(self, progress: float) -> None:
        rate = 0.5 * self.peak * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        _set_rate(self.model.optimizer, rate)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if not self.steps:
            self._to(epoch / self.epochs)

    def on_train_batch_begin(self, batch, logs=None):
        if self.steps:
            self._to((self.epoch * self.steps + batch) / (self.epochs * self.steps))

    def on_train_end(self, logs=None):
        _set_rate(self.model.optimizer, self.peak)


def evaluate(
    model: keras.Model, metric=None, val_data=None
) -> tuple[str, float] | None:
    """The validation metric of `model`: `(name, value)`, or None without data.

    Args:
        model: the model.
        metric: a callable `f(model) -> float`, a metric name from
            `model.compile(metrics=...)` (e.g. `"accuracy"`), or None for the first
            compiled metric (the loss if there is none).
        val_data: `(x, y)` or a `tf.data.Dataset`; not needed with a callable.
    """
    if callable(metric):
        return getattr(metric, "__name__", "metric"), float(metric(model))
    if val_data is None:
        return None
    require_compiled(model, "evaluating")
    results = model.evaluate(
        **fit_arguments(val_data, "val_data"), return_dict=True, verbose=0
    )
    if metric is None:
        others = [k for k in results if k != "loss"]
        metric = others[0] if others else "loss"
    if metric not in results:
        raise ValueError(
            f"metric {metric!r} is not among the compiled metrics {sorted(results)}; "
            "compile the model with it or pass a callable"
        )
    return metric, float(results[metric])


def _positional_count(fn) -> int:
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
