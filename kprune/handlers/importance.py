"""How channels pass through kprune's own importance wrappers.

A wrapper behaves like the layer it wraps, plus two per-channel vectors
(`importance`, `mask`) on its outputs. The handler delegates to the wrapped
layer's handler and slices those vectors. It is registered by the wrappers'
Keras name (`kprune>ImportanceWrapper`) so the handler registry does not import
`kprune.importance.layers`.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from kprune.handlers.base import LayerHandler, keep, weight_keys, zero
from kprune.handlers.registry import get_handler

OWN = ("importance", "mask", "pruning_state", "previous_mask")
PER_CHANNEL = ("importance", "mask", "previous_mask")


class ImportanceHandler(LayerHandler):
    def inner(self, layer):
        return layer.layer

    def multipliers(self, layer):
        return layer.scale()

    def mask(self, layer):
        return np.asarray(keras.ops.convert_to_numpy(layer.channel_mask))

    def set_mask(self, layer, mask):
        layer.channel_mask.assign(np.asarray(mask, dtype="float32"))

    def unwrapped(self, layer):
        plain = layer.layer.__class__.from_config(layer.plain_config())
        return plain, lambda: layer.plain_weights(weight_keys(plain))

    def can_scale(self, layer):
        return False  # a wrapper is not wrapped again

    def trace(self, call, output_shapes, tracer):
        inner = call.layer.layer
        proxy = dataclasses.replace(call, layer=inner)
        return get_handler(inner).trace(proxy, output_shapes, tracer)

    def new_config(self, layer, config, masks):
        inner = layer.layer
        inner_config = get_handler(inner).new_config(
            inner, config["layer"]["config"], masks
        )
        # The wrapped layer's serialized build shape is the old one: drop it,
        # so it builds on the new input when the wrapper does.
        layer_config = {k: v for k, v in config["layer"].items() if k != "build_config"}
        return {**config, "layer": {**layer_config, "config": inner_config}}

    def _split(self, layer, weights):
        inner = {k: weights[k] for k in weight_keys(layer.layer)}
        return inner, {k: weights[k] for k in OWN}

    def new_weights(self, layer, weights, masks):
        inner, own = self._split(layer, weights)
        out = get_handler(layer.layer).new_weights(layer.layer, inner, masks)
        out.update(
            {k: keep(v, masks.output, 0) for k, v in own.items() if k in PER_CHANNEL}
        )
        out["pruning_state"] = own["pruning_state"]
        return out

    def zero_weights(self, layer, weights, masks):
        inner, own = self._split(layer, weights)
        out = get_handler(layer.layer).zero_weights(layer.layer, inner, masks)
        out["importance"] = zero(own["importance"], masks.output, 0)
        for key in ("mask", "pruning_state", "previous_mask"):
            out[key] = own[key]
        return out

    def merge_inputs(self, layer, weights, merges):
        inner, own = self._split(layer, weights)
        out = get_handler(layer.layer).merge_inputs(layer.layer, inner, merges)
        return None if out is None else {**out, **own}

    def constant_fold(self, layer):
        # A constant input reaches the wrapped layer before the multiplier.
        return get_handler(layer.layer).constant_fold(layer.layer)

    def fold_constant_input(self, layer, weights, values):
        inner, own = self._split(layer, weights)
        out = get_handler(layer.layer).fold_constant_input(layer.layer, inner, values)
        return {**out, **own}

    def with_bias(self, layer, config):
        inner = get_handler(layer.layer).with_bias(
            layer.layer, config["layer"]["config"]
        )
        return {**config, "layer": {**config["layer"], "config": inner}}

    def filters(self, layer, weights):
        inner, _ = self._split(layer, weights)
        return get_handler(layer.layer).filters(layer.layer, inner)

    def macs(self, layer, input_shapes, output_shapes):
        return get_handler(layer.layer).macs(layer.layer, input_shapes, output_shapes)
