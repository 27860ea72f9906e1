"""Layers whose channel i out is channel i in, with nothing per channel to slice."""

from __future__ import annotations

import keras

from kprune.handlers.base import PassThroughHandler, nonzero_at_zero

# Functions that mix all channels of a position, so removing one changes the rest.
_CHANNEL_MIXING = {"softmax", "log_softmax", "sparsemax"}


class ActivationHandler(PassThroughHandler):
    """`Activation(...)`: pass-through, except softmax-like functions over channels."""

    def trace(self, call, output_shapes, tracer):
        fn = getattr(call.layer.activation, "__name__", "")
        if fn in _CHANNEL_MIXING:
            reason = f"'{call.name}' applies {fn} across channels"
            return tracer.opaque(call.inputs, output_shapes, reason)
        return super().trace(call, output_shapes, tracer)


class ReLUHandler(PassThroughHandler):
    """`ReLU`: rectifies unless it has a negative slope or a threshold."""

    def rectifies(self, layer):
        return not layer.negative_slope and not layer.threshold


class SoftmaxHandler(PassThroughHandler):
    """`Softmax` layer: frozen when it normalises over the channel axis."""

    def trace(self, call, output_shapes, tracer):
        axes = call.layer.axis
        axes = list(axes) if isinstance(axes, (list, tuple)) else [axes]
        rank = len(call.input.shape)
        if any(a % rank == rank - 1 for a in axes):
            reason = f"'{call.name}' applies softmax across channels"
            return tracer.opaque(call.inputs, output_shapes, reason)
        return super().trace(call, output_shapes, tracer)


class ActivationOpHandler(PassThroughHandler):
    """Element-wise `keras.ops` activations in a graph (`keras.ops.sigmoid(x)`).

    Some map zero elsewhere (`sigmoid(0) = 0.5`, `softplus(0) = log 2`); the
    next layer's bias then takes in a removed channel's constant.
    """

    def shifts_zero(self, call):
        return nonzero_at_zero(call)


class IdentityHandler(PassThroughHandler):
    """`keras.layers.Identity`, rebuilt without its config.

    Keras derives an Identity's config from its constructor arguments and
    cannot when one is an object (keras_hub passes a `DTypePolicy`), so
    `get_config()` raises; a name and a dtype policy are all it holds.
    """

    def config(self, layer):
        return {"name": layer.name, "trainable": layer.trainable}

    def clone(self, layer, config):
        return keras.layers.Identity(**config, dtype=layer.dtype_policy)
