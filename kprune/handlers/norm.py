"""Per-channel layers: the channels pass through, their per-channel state is sliced.

BatchNormalization, LayerNormalization over the channel axis, the preprocessing
`Normalization` and `Rescaling` layers, `PReLU`, and ConvNeXt's `LayerScale`.
"""

from __future__ import annotations

import numpy as np

from kprune.handlers.base import (
    PassThroughHandler,
    keep,
    kept,
    nonzero_at_zero,
    scale_axis,
    zero,
)


class ChannelwiseHandler(PassThroughHandler):
    """Channels pass through; weights whose last axis is the channel axis are sliced.

    Subclasses name the weights that make a removed channel exactly zero
    (`zeroed`) and may refuse some configurations in `unsupported`.
    """

    stateless = False
    #: Names of the weights to zero for a removed channel; None zeroes them all.
    zeroed: tuple | None = ()

    @property
    def zeroes_outputs(self) -> bool:
        return self.zeroed is None or bool(self.zeroed)

    def unsupported(self, call) -> str | None:
        """A reason to freeze this call, or None when it is channel-wise."""
        return None

    def trace(self, call, output_shapes, tracer):
        reason = self.unsupported(call)
        if reason:
            return tracer.opaque(call.inputs, output_shapes, reason)
        return super().trace(call, output_shapes, tracer)

    def new_weights(self, layer, weights, masks):
        return {name: _keep_last(value, masks.input) for name, value in weights.items()}

    def zero_weights(self, layer, weights, masks):
        names = weights if self.zeroed is None else self.zeroed
        return {
            name: zero(value, masks.output, -1)
            if name in names and np.ndim(value)
            else value
            for name, value in weights.items()
        }


def _keep_last(value, mask):
    """Slice the last axis when it is the channel axis; leave scalars alone."""
    value = np.asarray(value)
    if mask is None or value.ndim == 0 or value.shape[-1] != len(mask):
        return value
    return keep(value, mask, -1)


def _last_axis(axis, rank: int) -> bool:
    """True when `axis` (int or list of ints) is exactly the channel axis."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and axes[0] % rank == rank - 1


class BatchNormHandler(ChannelwiseHandler):
    """BatchNormalization over the channel axis.

    A removed channel is zeroed through `gamma`, `beta` and `moving_mean`: a
    BatchNorm built with `scale=False` (as in InceptionV3) has no `gamma`, and
    maps 0 to `-moving_mean / sqrt(moving_variance + epsilon)` unless the mean
    is zeroed too.
    """

    zeroed = ("gamma", "beta", "moving_mean")
    normalizes = True
    wrapper = "ImportanceBatchNormalization"

    def unsupported(self, call):
        if not _last_axis(call.layer.axis, len(call.input.shape)):
            return f"'{call.name}' normalises axis {call.layer.axis}, not channels"
        return None

    def scale_outputs(self, layer, weights, scale):
        weights = dict(weights)
        gamma = weights.get("gamma", np.ones(len(scale), "float32"))
        weights["gamma"] = scale_axis(gamma, scale, 0)
        if "beta" in weights:
            weights["beta"] = scale_axis(weights["beta"], scale, 0)
        return weights

    def scalable_config(self, layer, config):
        return {**config, "scale": True}  # a gamma to scale

    def affine(self, layer, weights):
        mean = weights["moving_mean"]
        gain = weights.get("gamma", np.ones_like(mean))
        scale = gain / np.sqrt(weights["moving_variance"] + layer.epsilon)
        return scale, weights.get("beta", np.zeros_like(mean)) - mean * scale

    def gain(self, layer, weights):
        return weights.get("gamma", np.ones(layer.moving_mean.shape))


class LayerNormHandler(ChannelwiseHandler):
    """LayerNormalization over the channel axis only.

    Removing channels changes the mean and variance the layer computes, so this
    is not an exact operation: fine-tune after pruning through a LayerNorm.
    """

    zeroed = ("gamma", "beta")

    def unsupported(self, call):
        if not _last_axis(call.layer.axis, len(call.input.shape)):
            return (
                f"'{call.name}' normalises over axes {call.layer.axis}, which mixes "
                "channels with other axes"
            )
        return None


class NormalizationHandler(ChannelwiseHandler):
    """The preprocessing `Normalization` layer (per-channel mean and variance).

    A zero channel comes out as `-mean / std`, a constant the next layer's bias
    takes in when the channel is removed.
    """

    def shifts_zero(self, call):
        return nonzero_at_zero(call)

    def unsupported(self, call):
        axis = call.layer.axis
        rank = len(call.input.shape)
        if axis in (None, ()) or _last_axis(axis, rank):
            return None
        return f"'{call.name}' keeps statistics per axis {axis}, not per channel"

    def new_config(self, layer, config, masks):
        config = dict(config)
        for key in ("mean", "variance"):
            if config.get(key) is not None:
                config[key] = _keep_last(config[key], masks.input).tolist()
        return config


class RescalingHandler(ChannelwiseHandler):
    """`Rescaling` whose scale and offset may be per-channel lists.

    A zero channel comes out as the offset.
    """

    def shifts_zero(self, call):
        return nonzero_at_zero(call)

    def new_config(self, layer, config, masks):
        config = dict(config)
        for key in ("scale", "offset"):
            value = config.get(key)
            if isinstance(value, (list, tuple, np.ndarray)):
                config[key] = _keep_last(value, masks.input).tolist()
        return config


class LayerScaleHandler(ChannelwiseHandler):
    """ConvNeXt's `LayerScale`: a learned per-channel gain (its only weight).

    Keras creates that weight without a name, so it is zeroed by position.
    """

    zeroed = None

    def new_config(self, layer, config, masks):
        config = dict(config)
        config["projection_dim"] = kept(masks.input, config["projection_dim"])
        return config


class PReLUHandler(ChannelwiseHandler):
    """`PReLU`: its `alpha` is per channel unless shared over the channel axis."""
