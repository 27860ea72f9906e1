"""Importance-weight wrappers: a trainable multiplier per filter, and a mask.

`kprune.wrap(model)` puts them in a model and `kprune.unwrap(model)` folds them
back into the kernels. The classes:

* `ImportanceConv2D` (wraps `Conv1D`, `Conv2D`, `Conv3D`), `ImportanceDense`,
  `ImportanceConv2DTranspose`, `ImportanceDepthwiseConv2D`,
  `ImportanceSeparableConv2D`: multipliers on the layer's output channels;
* `ImportanceBatchNormalization`: multipliers after the BatchNorm that follows a
  convolution, where the batch statistics cannot cancel them;
* `ImportanceWrapper`: any other layer whose handler can scale its outputs
  (see docs/custom-layers.md).
"""

import keras

from kprune.layers.base import ImportanceWrapper
from kprune.layers.wrappers import (
    ImportanceBatchNormalization,
    ImportanceConv2D,
    ImportanceConv2DTranspose,
    ImportanceDense,
    ImportanceDepthwiseConv2D,
    ImportanceSeparableConv2D,
    wrapper_class,
)

__all__ = [
    "ImportanceBatchNormalization",
    "ImportanceConv2D",
    "ImportanceConv2DTranspose",
    "ImportanceDense",
    "ImportanceDepthwiseConv2D",
    "ImportanceSeparableConv2D",
    "ImportanceWrapper",
    "is_wrapped",
    "wrapped_layers",
    "wrapper_class",
]


def wrapped_layers(model: keras.Model) -> list[ImportanceWrapper]:
    """Every importance wrapper in `model`, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, ImportanceWrapper):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(wrapped_layers(layer))
    return found


def is_wrapped(model: keras.Model) -> bool:
    """True if `model` holds importance wrappers (see `kprune.wrap`)."""
    return bool(wrapped_layers(model))
