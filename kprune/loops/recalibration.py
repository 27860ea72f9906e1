"""BatchNorm recalibration: re-estimate moving statistics after pruning.

Removing filters changes what every later BatchNorm sees, but its moving mean
and variance still describe the unpruned model, so a freshly shrunk model can
look far worse than it is. `recalibrate` runs a few batches of training data
through the model in training mode, with no gradient step, and replaces each
BatchNorm's moving statistics by their exact average over those batches.
"""

from __future__ import annotations

import keras

from kprune import keras_graph
from kprune.data import batches as data_batches
from kprune.handlers import get_handler


def batch_norms(model: keras.Model) -> list:
    """Every BatchNorm-like layer of `model` (see `LayerHandler.normalizes`),
    inside nested models, wrappers and composite blocks too."""
    return [
        layer
        for layer in keras_graph.all_layers(model)
        if get_handler(layer).normalizes
    ]


def recalibrate(
    model: keras.Model, data, batches: int = 8, batch_size: int = 32
) -> keras.Model:
    """Re-estimate the moving statistics of every BatchNorm of `model`, in place.

    Args:
        model: the (pruned) model; its weights other than the BatchNorm moving
            statistics are not touched, and no gradient step is taken.
        data: `(x, y)`, an array of inputs, or a batched `tf.data.Dataset`;
            the training data, not the validation data.
        batches: how many batches to average over.
        batch_size: batch size for array data.

    Returns:
        `model`, for chaining.

    Raises:
        ValueError: when `data` yields no batch, or `batches` < 1.
    """
    if not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be an int >= 1; got {batches!r}")
    norms = batch_norms(model)
    if not norms:
        return model
    saved = [layer.momentum for layer in norms]
    seen = 0
    try:
        for x, _ in data_batches(data, batch_size, batches, name="data"):
            # moving = moving * m + batch * (1 - m) with m = k / (k + 1) is the
            # running average of the k + 1 batches seen so far.
            for layer in norms:
                layer.momentum = seen / (seen + 1)
            model(x, training=True)
            seen += 1
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum
    if not seen:
        raise ValueError("recalibrate got no batch from data: pass training inputs")
    return model
