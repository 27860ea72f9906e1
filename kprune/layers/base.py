"""`ImportanceWrapper`: a trainable multiplier and a mask on each output channel.

The wrapper computes `activation(layer(x) * importance * mask)`, where `layer` is
the wrapped layer with its activation moved out to the wrapper, so that the
multiplier acts on the pre-activation and folds exactly into the kernel.

Subclasses say how the multiplier folds into the wrapped layer's weights
(`fold`), which is what `kprune.unwrap` does.
"""

from __future__ import annotations

import keras
import numpy as np

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
        channels = int(self.layer.compute_output_shape(input_shape)[-1])
        self.importance = self.add_weight(
            name="importance",
            shape=(channels,),
            initializer=self.importance_initializer,
            regularizer=self.importance_regularizer,
            constraint=self.importance_constraint,
            trainable=True,
        )
        self.channel_mask = self.add_weight(
            name="mask",
            shape=(channels,),
            initializer="ones",
            trainable=False,
        )
        # Bookkeeping of kprune.PruningCallback (baseline metric, target, stopped
        # flag, steps taken), kept with the masks so that a run restored from a
        # checkpoint resumes its schedule.
        self.pruning_state = self.add_weight(
            name="pruning_state",
            shape=(STATE_SIZE,),
            initializer="zeros",
            trainable=False,
        )
        # The mask before the callback's last step, which a tolerance breach
        # undoes; a variable, so it survives a BackupAndRestore resume.
        self.previous_mask = self.add_weight(
            name="previous_mask",
            shape=(channels,),
            initializer="ones",
            trainable=False,
        )
        self.built = True

    def call(self, inputs):
        # Same call signature as the wrapped layer, so graph nodes replay on
        # either (wrap and unwrap swap one for the other).
        return self.scaled(self.layer(inputs))

    def scaled(self, outputs):
        scale = keras.ops.cast(self.importance * self.channel_mask, outputs.dtype)
        return self.activation(outputs * scale)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

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
        return config

    def plain_weights(self) -> list[np.ndarray]:
        """The wrapped layer's weights with the multipliers folded in."""
        names = [v.name for v in self.layer.weights]
        weights = dict(zip(names, self.layer.get_weights()))
        folded = self.fold(weights, self.scale())
        return [
            np.asarray(folded[n], dtype=w.dtype)
            for n, w in zip(names, self.layer.weights)
        ]

    def fold(self, weights: dict, scale: np.ndarray) -> dict:
        """Multiply each output channel's weights by `scale` (per subclass)."""
        raise NotImplementedError


def scale_axis(array: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """`array` with its entries along `axis` multiplied by `scale`."""
    shape = [1] * array.ndim
    shape[axis] = -1
    return array * scale.reshape(shape)
