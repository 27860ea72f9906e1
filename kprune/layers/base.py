"""`ImportanceWrapper`: a trainable multiplier and a mask on each output channel.

The wrapper computes `activation(layer(x) * importance * mask)`, where `layer` is
the wrapped layer with its activation moved out to the wrapper, so that the
multiplier acts on the pre-activation and folds exactly into the kernel.

How the multiplier folds into the wrapped layer's weights, which is what
`kprune.unwrap` does, is the wrapped layer's handler's `scale_outputs`: any
layer whose handler can scale its outputs can be wrapped.
"""

from __future__ import annotations

import keras
import numpy as np

from kprune.handlers import get_handler
from kprune.handlers.base import weight_keys

#: Length of the `pruning_state` vector every wrapper carries.
STATE_SIZE = 4


@keras.saving.register_keras_serializable(package="kprune")
class ImportanceWrapper(keras.layers.Wrapper):
    """Base class of kprune's importance wrappers (see `kprune.layers`).

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
