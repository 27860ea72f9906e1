"""The importance wrappers, one per layer family, and how each folds.

Each is registered with Keras under the `kprune` package, so a wrapped model
saved to `.keras` loads back after `import kprune` with no `custom_objects`.
"""

from __future__ import annotations

import keras
import numpy as np

from kprune.layers.base import ImportanceWrapper, scale_axis

register = keras.saving.register_keras_serializable(package="kprune")


def _fold_bias(weights: dict, scale: np.ndarray) -> dict:
    if "bias" in weights:
        weights["bias"] = weights["bias"] * scale
    return weights


@register
class ImportanceConv2D(ImportanceWrapper):
    """Multipliers on the filters of a `Conv2D` (also `Conv1D` and `Conv3D`)."""

    def fold(self, weights, scale):
        weights = dict(weights)
        weights["kernel"] = scale_axis(weights["kernel"], scale, -1)
        return _fold_bias(weights, scale)


@register
class ImportanceDense(ImportanceWrapper):
    """Multipliers on the units of a `Dense` layer."""

    def fold(self, weights, scale):
        weights = dict(weights)
        weights["kernel"] = scale_axis(weights["kernel"], scale, -1)
        return _fold_bias(weights, scale)


@register
class ImportanceConv2DTranspose(ImportanceWrapper):
    """Multipliers on the filters of a `Conv2DTranspose` (kernel `(..., out, in)`)."""

    def fold(self, weights, scale):
        weights = dict(weights)
        weights["kernel"] = scale_axis(weights["kernel"], scale, -2)
        return _fold_bias(weights, scale)


@register
class ImportanceDepthwiseConv2D(ImportanceWrapper):
    """Multipliers on the `C * depth_multiplier` outputs of a `DepthwiseConv2D`."""

    def fold(self, weights, scale):
        weights = dict(weights)
        kernel = weights["kernel"]
        weights["kernel"] = kernel * scale.reshape(kernel.shape[-2:])
        return _fold_bias(weights, scale)


@register
class ImportanceSeparableConv2D(ImportanceWrapper):
    """Multipliers on the filters of a `SeparableConv2D` (its pointwise step)."""

    def fold(self, weights, scale):
        weights = dict(weights)
        weights["pointwise_kernel"] = scale_axis(weights["pointwise_kernel"], scale, -1)
        return _fold_bias(weights, scale)


@register
class ImportanceBatchNormalization(ImportanceWrapper):
    """Multipliers after a `BatchNormalization`.

    kprune puts the multipliers of a convolution here when a BatchNorm follows it:
    a scale applied before the BatchNorm would be divided out again by the batch
    statistics in training, so it would learn nothing. Folding multiplies the
    BatchNorm's `gamma` and `beta`.
    """

    def call(self, inputs, training=None, mask=None):
        return self.scaled(self.layer(inputs, training=training, mask=mask))

    def fold(self, weights, scale):
        weights = dict(weights)
        weights["gamma"] = weights.get("gamma", 1.0) * scale
        if "beta" in weights:
            weights["beta"] = weights["beta"] * scale
        return weights

    def plain_config(self):
        config = super().plain_config()
        config["scale"] = True  # a BatchNorm without gamma needs one to fold into
        return config

    def plain_weights(self):
        names = [v.name for v in self.layer.weights]
        weights = self.fold(dict(zip(names, self.layer.get_weights())), self.scale())
        order = ["gamma", "beta", "moving_mean", "moving_variance"]
        return [np.asarray(weights[n], dtype="float32") for n in order if n in weights]


#: Wrapper class for each wrappable layer class (looked up along the hierarchy).
WRAPPERS = {
    keras.layers.Conv1D: ImportanceConv2D,
    keras.layers.Conv2D: ImportanceConv2D,
    keras.layers.Conv3D: ImportanceConv2D,
    keras.layers.Dense: ImportanceDense,
    keras.layers.Conv2DTranspose: ImportanceConv2DTranspose,
    keras.layers.DepthwiseConv2D: ImportanceDepthwiseConv2D,
    keras.layers.SeparableConv2D: ImportanceSeparableConv2D,
    keras.layers.BatchNormalization: ImportanceBatchNormalization,
}


def wrapper_class(layer) -> type | None:
    """The importance wrapper for `layer`'s class, or None if it has none."""
    for cls in type(layer).__mro__:
        if cls in WRAPPERS:
            return WRAPPERS[cls]
    return None
