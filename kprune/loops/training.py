"""Fitting and evaluating a pruned model, and the cosine learning-rate schedule.

`fit_phase` runs one fine-tuning of a run (a round's, or the final one) as a
`FineTune` asks, and `fine_tune` recalibrates and fine-tunes a model pruned by
hand the way the loops do; `evaluate` measures the metric every loop reads;
`CosineRate` is the schedule, which knows where in the run's one cosine a fit
starts and stops.
"""

from __future__ import annotations

import math

import keras

from kprune.keras_graph import compile_like, compile_settings
from kprune.loops.recalibration import recalibrate as recalibrate_bn
from kprune.loops.settings import FineTune, as_tuning, positional_count


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


def fit_phase(
    model: keras.Model,
    tuning: FineTune,
    train_data,
    round_index: int = 0,
    rounds: int = 1,
    final: bool = False,
    callbacks=None,
) -> keras.Model:
    """One fine-tuning of a run, as `tuning` (bound, see `FineTune.bind`) asks.

    Args:
        model: the pruned model, trained in place.
        tuning: the settings.
        train_data: `(x, y)` or a dataset for `model.fit`.
        round_index: the 0-based round this fine-tuning follows (handed to a
            two-argument `tuning.fn`).
        rounds: the rounds of the run, for `"cosine_run"`.
        final: the final fine-tuning (`tuning.final_epochs`) rather than a
            round's.
        callbacks: more Keras callbacks for `fit`.

    Returns:
        The fine-tuned model (the same object unless `tuning.fn` returned
        another).
    """
    if tuning.fn is not None:
        if final:
            return model
        takes_round = positional_count(tuning.fn) >= 2
        result = tuning.fn(model, round_index) if takes_round else tuning.fn(model)
        return model if result is None else result
    epochs = tuning.final_epochs if final else tuning.rounds_epochs
    if train_data is None or epochs <= 0:
        return model
    require_compiled(model, "fine-tuning")
    trainer = model
    if tuning.distill is not None:
        trainer = tuning.distill.distiller(model)
        compile_like(trainer, compile_settings(model))
    if tuning.learning_rate is not None:
        _set_rate(trainer.optimizer, tuning.learning_rate)
    schedule = _schedule(tuning, epochs, round_index, rounds, final)
    trainer.fit(
        **fit_arguments(train_data, "train_data"),
        batch_size=tuning.batch_size,
        epochs=epochs,
        verbose=0,
        callbacks=list(callbacks or []) + schedule,
    )
    return model


def _schedule(tuning, epochs, round_index, rounds, final) -> list:
    """The `CosineRate` of this fine-tuning, or none for a constant rate."""
    if tuning.lr_schedule == "constant":
        return []
    if tuning.lr_schedule == "cosine":
        return [CosineRate()]
    total = tuning.span(rounds)
    start = rounds * tuning.rounds_epochs if final else round_index * epochs
    return [CosineRate(start / total, (start + epochs) / total)]


def fine_tune(
    model: keras.Model, train_data, tuning: FineTune | None = None, **deprecated
):
    """Recalibrate and fine-tune a model you pruned yourself, as kprune's loops
    do after each shrink: BatchNorm statistics re-estimated on `train_data`
    (`tuning.recalibrate`), `tuning.epochs` of fine-tuning, then
    `tuning.final_epochs` more (one cosine across both with
    `lr_schedule="cosine_run"`).

    ```python
    small = kprune.prune(model, flops=0.3)
    small = kprune.fine_tune(small, (x, y), kprune.FineTune(
        epochs=3, learning_rate=1e-3, lr_schedule="cosine", distill=model))
    ```

    Args:
        model: the pruned, compiled model; trained in place.
        train_data: `(x, y)` or a `tf.data.Dataset` of `(x, y)` batches.
        tuning: a `kprune.FineTune` (default: one epoch at the compiled rate,
            recalibrated first). `distill=True` takes `model` itself as the
            teacher, which teaches nothing new: pass the unpruned model.

    Returns:
        The fine-tuned model.
    """
    if deprecated:
        raise TypeError(
            f"fine_tune() got an unexpected keyword {next(iter(deprecated))!r}; "
            "its settings go in tuning=kprune.FineTune(...)"
        )
    tuning = as_tuning(tuning).bind(model, train_data)
    if tuning.recalibrate and train_data is not None:
        recalibrate_bn(model, train_data)
    model = fit_phase(model, tuning, train_data)
    return fit_phase(model, tuning, train_data, final=True)


def _set_rate(optimizer, rate: float) -> None:
    try:
        optimizer.learning_rate = rate
    except TypeError as error:  # Keras: built with a LearningRateSchedule
        raise ValueError(
            "the model was compiled with a learning-rate schedule, which kprune "
            "cannot set a rate on: compile it with a float learning rate for "
            "learning_rate= or a cosine lr_schedule, or leave both unset"
        ) from error


class CosineRate(keras.callbacks.Callback):
    """Decay the optimizer's rate along a half cosine, one step at a time.

    The cosine runs from the rate at the start of `fit` (its peak) to 0 over
    a whole run; this `fit` covers the part of it from `start` to `stop`
    (shares of the run: `0, 1` for a fit that is the whole run). The starting
    rate is put back at the end. When `fit` cannot tell the steps per epoch
    (a dataset of unknown length), the rate moves once per epoch instead.

    Args:
        start, stop: where this fit starts and stops in the run's cosine.
    """

    def __init__(self, start: float = 0.0, stop: float = 1.0):
        super().__init__()
        if not 0.0 <= start <= stop <= 1.0:
            raise ValueError(f"need 0 <= start <= stop <= 1; got {start}, {stop}")
        self.start, self.stop = float(start), float(stop)

    def on_train_begin(self, logs=None):
        self.peak = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        self.epochs = self.params.get("epochs") or 1
        self.steps = self.params.get("steps")
        self.epoch = 0

    def _to(self, progress: float) -> None:
        where = self.start + (self.stop - self.start) * min(progress, 1.0)
        rate = 0.5 * self.peak * (1.0 + math.cos(math.pi * where))
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
