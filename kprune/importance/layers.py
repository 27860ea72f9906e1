"""Importance-weight wrappers: a trainable multiplier and a mask per channel.

`ImportanceWrapper` computes `activation(layer(x) * importance * mask)`, where
`layer` is the wrapped layer with its activation moved out to the wrapper, so
that the multiplier acts on the pre-activation and folds exactly into the
kernel. How it folds, which is what `kprune.unwrap` does, is the wrapped
layer's handler's `scale_outputs`: any layer whose handler can scale its
outputs can be wrapped.

`kprune.wrap(model)` puts wrappers in a model. The classes:

* `ImportanceConv2D` (wraps `Conv1D`, `Conv2D`, `Conv3D`), `ImportanceDense`,
  `ImportanceConv2DTranspose`, `ImportanceDepthwiseConv2D`,
  `ImportanceSeparableConv2D`: multipliers on the layer's output channels;
* `ImportanceBatchNormalization`: multipliers after the BatchNorm that follows a
  convolution, where the batch statistics cannot cancel them;
* `ImportanceWrapper`: any other layer whose handler can scale its outputs
  (see docs/custom-layers.md). The handler names the class
  (`LayerHandler.wrapper`).

Each is registered with Keras under the `kprune` package, so a wrapped model
saved to `.keras` loads back after `import kprune` with no `custom_objects`.
"""

from __future__ import annotations

import keras
import numpy as np

from kprune.handlers import get_handler
from kprune.handlers.base import weight_keys
from kprune.surgery.masks import is_wrapped

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

#: Length of the `pruning_state` vector every wrapper carries.
STATE_SIZE = 4


@keras.saving.register_keras_serializable(package="kprune")
class ImportanceWrapper(keras.layers.Wrapper):
    """Base class of kprune's importance wrappers (see `kprune.importance.layers`).

    Args:
        layer: the layer to wrap. Its activation, if any, moves to the wrapper.
        activation: the activation applied after the multiplier; by default the
            wrapped layer's own.
        importance_initializer: initializer of the multipliers (default ones,
            which keeps the model's outputs).
        importance_regularizer: e.g. `keras.regularizers.L1(1e-4)`, the
            Network-Slimming penalty that drives useless channels to zero.
        importance_constraint: e.g. `"non_neg"`.
    """

    def __init__(
        self,
        layer,
        activation=None,
        importance_initializer="ones",
        importance_regularizer=None,
        importance_constraint=None,
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"{type(self).__name__} wraps a Keras layer; got {type(layer).__name__}"
            )
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        inner_activation = getattr(layer, "activation", None)
        if activation is None and inner_activation is not None:
            activation = inner_activation
        if inner_activation is not None:
            layer.activation = keras.activations.get("linear")
        self.activation = keras.activations.get(activation or "linear")
        self.importance_initializer = keras.initializers.get(importance_initializer)
        self.importance_regularizer = keras.regularizers.get(importance_regularizer)
        self.importance_constraint = keras.constraints.get(importance_constraint)

    def build(self, input_shape=None):
        super().build(input_shape)
        channels = int(self.compute_output_shape(input_shape)[-1])
        self.importance = self.add_weight(
            name="importance",
            shape=(channels,),
            initializer=self.importance_initializer,
            regularizer=self.importance_regularizer,
            constraint=self.importance_constraint,
            trainable=True,
        )
        # The mask (0 = pruned); the bookkeeping of kprune.PruningCallback
        # (baseline metric, target, stopped flag, steps taken), kept with the
        # masks so that a run restored from a checkpoint resumes its schedule;
        # and the mask before the callback's last step, which a tolerance
        # breach undoes (a variable, so it too survives a BackupAndRestore).
        for attribute, name, size, start in (
            ("channel_mask", "mask", channels, "ones"),
            ("pruning_state", "pruning_state", STATE_SIZE, "zeros"),
            ("previous_mask", "previous_mask", channels, "ones"),
        ):
            variable = self.add_weight(
                name=name, shape=(size,), initializer=start, trainable=False
            )
            setattr(self, attribute, variable)
        self.built = True

    def call(self, inputs, **kwargs):
        # Takes the wrapped layer's call arguments (a BatchNorm's `mask`), so
        # graph nodes replay on either (wrap and unwrap swap one for the other).
        # `training` reaches the wrapped layer through Keras' call context.
        return self.scaled(self.layer(inputs, **kwargs))

    def scaled(self, outputs):
        scale = keras.ops.cast(self.importance * self.channel_mask, outputs.dtype)
        return self.activation(outputs * scale)

    def compute_output_shape(self, input_shape):
        # compute_output_spec traces the call for layers (often users' own)
        # that do not implement compute_output_shape.
        spec = keras.KerasTensor(input_shape, dtype=self.layer.compute_dtype)
        return tuple(self.layer.compute_output_spec(spec).shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": keras.activations.serialize(self.activation),
                "importance_initializer": keras.initializers.serialize(
                    self.importance_initializer
                ),
                "importance_regularizer": keras.regularizers.serialize(
                    self.importance_regularizer
                ),
                "importance_constraint": keras.constraints.serialize(
                    self.importance_constraint
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # keras.layers.Wrapper.from_config pops "layer" from the dict it gets.
        return super().from_config(dict(config), custom_objects=custom_objects)

    # ------------------------------------------------------------ folding
    def scale(self) -> np.ndarray:
        """The effective multiplier of each channel: `importance * mask`."""
        importance = keras.ops.convert_to_numpy(self.importance)
        mask = keras.ops.convert_to_numpy(self.channel_mask)
        return np.asarray(importance * mask, dtype=np.float64)

    def plain_config(self) -> dict:
        """Config of the plain layer that `unwrap` puts back (same name)."""
        config = dict(self.layer.get_config())
        config["name"] = self.name
        if "activation" in config:
            config["activation"] = keras.activations.serialize(self.activation)
        return get_handler(self.layer).scalable_config(self.layer, config)

    def plain_weights(self, keys: list[str] | None = None) -> list[np.ndarray]:
        """The wrapped layer's weights with the multipliers folded in.

        Args:
            keys: the weight keys of the plain layer, in its order (see
                `weight_keys`); by default the wrapped layer's own. They differ
                when folding adds a weight (a BatchNorm without `gamma`).
        """
        own = weight_keys(self.layer)
        weights = dict(zip(own, self.layer.get_weights()))
        folded = self.fold(weights, self.scale())
        dtypes = {k: np.asarray(v).dtype for k, v in weights.items()}
        return [
            np.asarray(folded[k], dtype=dtypes.get(k, "float32")) for k in keys or own
        ]

    def fold(self, weights: dict, scale: np.ndarray) -> dict:
        """Multiply each output channel of the wrapped layer by `scale`."""
        folded = get_handler(self.layer).scale_outputs(self.layer, weights, scale)
        if folded is None:
            raise TypeError(
                f"cannot fold multipliers into {type(self.layer).__name__} "
                f"'{self.layer.name}': its handler does not scale outputs"
            )
        return folded


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
            "kprune.importance.layers wrapper; leave it at 'ImportanceWrapper'"
        )
    return found


def wrapped_layers(model: keras.Model) -> list[ImportanceWrapper]:
    """Every importance wrapper in `model`, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, ImportanceWrapper):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(wrapped_layers(layer))
    return found
