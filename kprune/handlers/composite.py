"""Composite layers from keras_cv that kprune can see through.

They are registered by their Keras serialization name, so kprune never imports
keras_cv itself.
"""

from __future__ import annotations

from kprune.handlers.base import keep, kept
from kprune.handlers.norm import ChannelwiseHandler


class SqueezeExciteHandler(ChannelwiseHandler):
    """keras_cv `SqueezeAndExcite2D`: `x * excite(squeeze(mean(x)))`.

    Channels pass through. The squeeze conv `(1, 1, C, B)` loses input rows, the
    excite conv `(1, 1, B, C)` loses output columns; the bottleneck B stays.
    """

    def new_config(self, layer, config, masks):
        return {**config, "filters": kept(masks.input, config["filters"])}

    def new_weights(self, layer, weights, masks):
        weights = dict(weights)
        weights["kernel:0"] = keep(weights["kernel:0"], masks.input, -2)
        weights["kernel:1"] = keep(weights["kernel:1"], masks.input, -1)
        weights["bias:1"] = keep(weights["bias:1"], masks.input, 0)
        return weights

    def macs(self, layer, input_shapes, output_shapes):
        return 2 * input_shapes[0][-1] * layer.bottleneck_filters
