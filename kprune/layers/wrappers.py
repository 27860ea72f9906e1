"""The importance wrappers kprune gives each layer family, and how one is chosen.

Every wrapper folds through its wrapped layer's handler (`scale_outputs`); the
subclasses exist so that a wrapped model reads well and a saved one keeps its
class names. The handler names the class (`LayerHandler.wrapper`); a handler
that scales outputs but names none gets the plain `ImportanceWrapper`.

Each is registered with Keras under the `kprune` package, so a wrapped model
saved to `.keras` loads back after `import kprune` with no `custom_objects`.
"""

from __future__ import annotations

import keras

from kprune.handlers import get_handler
from kprune.layers.base import ImportanceWrapper

register = keras.saving.register_keras_serializable(package="kprune")


@register
class ImportanceConv2D(ImportanceWrapper):
    """Multipliers on the filters of a `Conv1D`, `Conv2D` or `Conv3D`."""


@register
class ImportanceDense(ImportanceWrapper):
    """Multipliers on the units of a `Dense` layer."""


@register
class ImportanceConv2DTranspose(ImportanceWrapper):
    """Multipliers on the filters of a `Conv{1,2,3}DTranspose`."""


@register
class ImportanceDepthwiseConv2D(ImportanceWrapper):
    """Multipliers on the `C * depth_multiplier` outputs of a `DepthwiseConv{1,2}D`."""


@register
class ImportanceSeparableConv2D(ImportanceWrapper):
    """Multipliers on the filters of a `SeparableConv{1,2}D` (its pointwise step)."""


@register
class ImportanceBatchNormalization(ImportanceWrapper):
    """Multipliers after a `BatchNormalization`.

    kprune puts the multipliers of a convolution here when a BatchNorm follows it:
    a scale applied before the BatchNorm would be divided out again by the batch
    statistics in training, so it would learn nothing. Folding multiplies the
    BatchNorm's `gamma` and `beta`.
    """


def wrapper_class(layer) -> type | None:
    """The importance wrapper class for `layer`, or None if it cannot have one.

    A layer is wrappable when its handler can scale its output channels
    (`LayerHandler.can_scale`); registering a handler that does makes a user's
    own layer wrappable.
    """
    handler = get_handler(layer)
    if not handler.can_scale(layer):
        return None
    found = keras.saving.get_registered_object(f"kprune>{handler.wrapper}")
    if not (isinstance(found, type) and issubclass(found, ImportanceWrapper)):
        raise TypeError(
            f"{type(handler).__name__}.wrapper is {handler.wrapper!r}, which is no "
            "kprune.layers wrapper; leave it at 'ImportanceWrapper'"
        )
    return found
