"""The multipliers' own learning phase, before anything is pruned by them.

Trained together with the network for a few epochs at the network's learning
rate, the importance multipliers barely move (0.94-1.05 after 64 Adam updates
on the nuclei U-Net): Adam moves every parameter by about the learning rate per
step, the L1 pull included, so what little they learn is the direction of the
last gradients, not how much each filter matters. Ranked by that, a U-Net
pruned to 5% of its MACs keeps the filters that push every pixel towards the
majority class and predicts background everywhere, worse than a random choice
(docs/results.md).

`learn_importance` gives the multipliers a phase of their own: every other
weight frozen (BatchNorms in inference mode), the multipliers alone trained
under a strong L1 penalty at a higher learning rate. The task loss then holds up
the multipliers of the filters it needs while the penalty drives the others
down, and the spread is wide enough to rank.
"""

from __future__ import annotations

import keras

from kprune import keras_graph
from kprune.importance.layers import ImportanceWrapper, wrapped_layers
from kprune.keras_graph import compile_like, compile_settings
from kprune.loops.training import fit_arguments, require_compiled


def learn_importance(
    wrapped: keras.Model,
    train_data,
    epochs: int = 2,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    verbose: int = 0,
    penalty: float | None = 1e-2,
    optimizer: keras.optimizers.Optimizer | None = None,
) -> keras.Model:
    """Train only the importance multipliers of `wrapped`, in place.

    Args:
        wrapped: a model from `kprune.wrap`, compiled (its loss is used; give
            `wrap` a `regularizer` for the L1 pull).
        train_data: `(x, y)` or a `tf.data.Dataset`, as for `fit`.
        epochs: epochs of the phase.
        learning_rate: of the Adam optimizer the phase uses, default 1e-2
            (ten times a usual fine-tuning rate: the multipliers must move
            far enough to rank).
        batch_size: for `(x, y)` data (default Keras' 32).
        verbose: passed to `fit`.
        penalty: the L1 weight on the multipliers during the phase (it
            replaces the one `wrap` gave them, which comes back after); None
            keeps `wrap`'s. Strong enough that only the multipliers the task
            needs resist it: on the nuclei U-Net at 5% of its MACs, 1e-2 held
            in 2 seeds of 2 where 1e-3 and 1e-4 collapsed in one.
        optimizer: a fresh Keras optimizer for the phase instead of Adam
            (e.g. `keras.optimizers.SGD(1.0, momentum=0.9)`, whose steps
            follow the size of each multiplier's gradient where Adam's are
            about its rate for every multiplier); then set the rate on it,
            not with `learning_rate`.

    Returns:
        `wrapped`, its multipliers trained. Every other weight, the
        trainable flags and the compile settings are as they were.

    Raises:
        ValueError: for a model without wrappers or not compiled, or bad
            `epochs`/`learning_rate`.
    """
    if not wrapped_layers(wrapped):
        raise ValueError(
            f"model '{wrapped.name}' has no importance multipliers: call "
            "kprune.wrap(model) first"
        )
    require_compiled(wrapped, "learn_importance")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1; got {epochs!r}")
    optimizer = _phase_optimizer(optimizer, learning_rate)
    if penalty is not None and (
        isinstance(penalty, bool)
        or not isinstance(penalty, (int, float))
        or penalty < 0
    ):
        raise ValueError(f"penalty must be a number >= 0 or None; got {penalty!r}")
    settings = compile_settings(wrapped)
    flags = {id(layer): layer.trainable for layer in keras_graph.all_layers(wrapped)}
    multipliers = [w.importance for w in wrapped_layers(wrapped)]
    penalties = [v.regularizer for v in multipliers]
    try:
        _freeze_all_but_multipliers(wrapped)
        if penalty is not None:
            for variable in multipliers:
                variable.regularizer = keras.regularizers.L1(float(penalty))
        wrapped.compile(
            optimizer=optimizer,
            loss=wrapped.loss,
            metrics=None,
        )
        sizing = {} if batch_size is None else {"batch_size": batch_size}
        wrapped.fit(
            **fit_arguments(train_data, "train_data"),
            epochs=epochs,
            verbose=verbose,
            **sizing,
        )
    finally:
        for variable, regularizer in zip(multipliers, penalties):
            variable.regularizer = regularizer
        for layer in keras_graph.all_layers(wrapped):
            layer.trainable = flags.get(id(layer), layer.trainable)
        compile_like(wrapped, settings, same_variables=True)
    return wrapped


def _phase_optimizer(optimizer, learning_rate):
    """The phase's optimizer: `optimizer`, or Adam at `learning_rate` (1e-2)."""
    if optimizer is not None:
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "optimizer must be a Keras optimizer, e.g. "
                f"keras.optimizers.SGD(1.0, momentum=0.9); got {optimizer!r}"
            )
        if learning_rate is not None:
            raise ValueError(
                "give the rate to the optimizer you pass, not learning_rate="
            )
        return optimizer
    rate = 1e-2 if learning_rate is None else learning_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}")
    return keras.optimizers.Adam(rate)


def _freeze_all_but_multipliers(model: keras.Model) -> None:
    for layer in keras_graph.all_layers(model):
        if isinstance(layer, ImportanceWrapper):
            layer.trainable = True
            layer.layer.trainable = False
        elif not any(isinstance(sub, ImportanceWrapper) for sub in _inside(layer)):
            layer.trainable = False


def _inside(layer) -> list:
    flatten = getattr(layer, "_flatten_layers", None)
    return list(flatten(include_self=False, recursive=True)) if flatten else []
