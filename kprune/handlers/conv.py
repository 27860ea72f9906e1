"""Convolutions and Dense: the layers that make new channels.

Kernel layouts (Keras, channels-last):

* `Conv{1,2,3}D`: `(*kernel_size, in // groups, filters)`
* `Dense`: `(in, units)`
* `Conv{1,2,3}DTranspose`: `(*kernel_size, filters, in)`
* `DepthwiseConv{1,2}D`: `(*kernel_size, in, depth_multiplier)`; output channel
  `c * depth_multiplier + j` comes from input channel `c`
* `SeparableConv{1,2}D`: a depthwise kernel as above, then a pointwise kernel
  `(1, ..., in * depth_multiplier, filters)`
"""

from __future__ import annotations

import math

import numpy as np

from kprune.handlers.base import (
    LayerHandler,
    fold_rows,
    keep,
    kept,
    refuse_channels_first,
    scale_axis,
    spatial_size,
)


def _fold_into_bias(weights: dict, shift: np.ndarray) -> dict:
    weights = dict(weights)
    bias = weights.get("bias")
    weights["bias"] = (np.zeros_like(shift) if bias is None else bias) + shift
    return weights


class ConvHandler(LayerHandler):
    """`Conv1D/2D/3D`, including grouped convolutions.

    With `groups > 1` every group must keep the same number of input and output
    channels. Two couplings keep that true:

    * **whole groups** when each group has one input or one output channel (a
      depthwise convolution written as `Conv2D(groups=C)`, as in ConvNeXt): a
      group's input and output channels form one unit, and `groups` shrinks;
    * **same index in every group** otherwise (ResNeXt): channel `j` of every
      group is removed together, and `groups` stays.
    """

    timing = "grid"
    tiles = "out"

    zeroes_outputs = True
    output_axes = {"kernel": -1, "bias": 0}
    wrapper = "ImportanceConv2D"

    def trace(self, call, output_shapes, tracer):
        refused = refuse_channels_first(call, output_shapes, tracer)
        if refused:
            return refused
        layer = call.layer
        groups = getattr(layer, "groups", 1) or 1
        filters = output_shapes[0][-1]
        if groups == 1:
            return [tracer.new(filters)]
        rows = call.input.ids.reshape(groups, -1)
        per_group_out = filters // groups
        if _whole_groups(rows.shape[1], per_group_out):
            for i in range(1, rows.shape[1]):
                tracer.couple(rows[:, i], rows[:, 0])
            return [np.repeat(rows[:, 0], per_group_out)]
        for g in range(1, groups):
            tracer.couple(rows[g], rows[0])
        return [np.tile(tracer.new(per_group_out), groups)]

    def new_config(self, layer, config, masks):
        config = dict(config)
        config["filters"] = kept(masks.output, config["filters"])
        groups = config.get("groups", 1) or 1
        if groups > 1 and self._is_whole_groups(layer):
            per_group_in = layer.kernel.shape[-2]
            config["groups"] = kept(masks.input, groups * per_group_in) // per_group_in
        return config

    def new_weights(self, layer, weights, masks):
        weights = dict(weights)
        kernel = weights["kernel"]
        in_mask = masks.input
        groups = getattr(layer, "groups", 1) or 1
        if groups > 1 and in_mask is not None:
            in_mask = (
                None if self._is_whole_groups(layer) else in_mask.reshape(groups, -1)[0]
            )
        kernel = keep(kernel, in_mask, -2)
        weights["kernel"] = keep(kernel, masks.output, -1)
        if "bias" in weights:
            weights["bias"] = keep(weights["bias"], masks.output, 0)
        return weights

    def constant_fold(self, layer):
        if (getattr(layer, "groups", 1) or 1) > 1:
            return None
        if layer.padding == "valid" or all(k == 1 for k in layer.kernel_size):
            return "exact"
        return "exact away from the border (padding='same')"

    def fold_constant_input(self, layer, weights, values):
        kernel = weights["kernel"]
        window_sum = kernel.reshape((-1,) + kernel.shape[-2:]).sum(axis=0)
        return _fold_into_bias(weights, values.astype(kernel.dtype) @ window_sum)

    def merge_inputs(self, layer, weights, merges):
        if (getattr(layer, "groups", 1) or 1) > 1:
            return None
        return {**weights, "kernel": fold_rows(weights["kernel"], merges, -2)}

    def macs(self, layer, input_shapes, output_shapes):
        cin, cout = input_shapes[0][-1], output_shapes[0][-1]
        groups = getattr(layer, "groups", 1) or 1
        per_group_in = layer.kernel.shape[-2]
        if groups > 1 and self._is_whole_groups(layer):
            groups = cin // per_group_in
        window = math.prod(layer.kernel_size)
        return spatial_size(output_shapes[0]) * window * (cin // groups) * cout

    @staticmethod
    def _is_whole_groups(layer) -> bool:
        groups = layer.groups
        return _whole_groups(layer.kernel.shape[-2], layer.filters // groups)


def _whole_groups(per_group_in: int, per_group_out: int) -> bool:
    return per_group_in == 1 or per_group_out == 1


class DenseHandler(LayerHandler):
    """`Dense` on the last axis of a 2-D or channels-last N-D input."""

    timing = "grid"
    tiles = "out"

    zeroes_outputs = True
    output_axes = {"kernel": -1, "bias": 0, "lora_kernel_b": -1}
    wrapper = "ImportanceDense"

    def trace(self, call, output_shapes, tracer):
        return [tracer.new(output_shapes[0][-1])]

    def new_config(self, layer, config, masks):
        config = dict(config)
        config["units"] = kept(masks.output, config["units"])
        return config

    def new_weights(self, layer, weights, masks):
        weights = dict(weights)
        kernel = keep(weights["kernel"], masks.input, 0)
        weights["kernel"] = keep(kernel, masks.output, 1)
        if "bias" in weights:
            weights["bias"] = keep(weights["bias"], masks.output, 0)
        if "lora_kernel_a" in weights:
            weights["lora_kernel_a"] = keep(weights["lora_kernel_a"], masks.input, 0)
            weights["lora_kernel_b"] = keep(weights["lora_kernel_b"], masks.output, 1)
        return weights

    def constant_fold(self, layer):
        return None if getattr(layer, "lora_enabled", False) else "exact"

    def fold_constant_input(self, layer, weights, values):
        shift = values.astype(weights["kernel"].dtype) @ weights["kernel"]
        return _fold_into_bias(weights, shift)

    def merge_inputs(self, layer, weights, merges):
        if "lora_kernel_a" in weights:
            return None
        return {**weights, "kernel": fold_rows(weights["kernel"], merges, 0)}

    def macs(self, layer, input_shapes, output_shapes):
        cin, cout = input_shapes[0][-1], output_shapes[0][-1]
        return spatial_size(input_shapes[0]) * cin * cout


class _NewFiltersHandler(LayerHandler):
    """A layer whose `filters` output channels are all new (no groups)."""

    zeroes_outputs = True

    def trace(self, call, output_shapes, tracer):
        refused = refuse_channels_first(call, output_shapes, tracer)
        return refused or [tracer.new(output_shapes[0][-1])]

    def new_config(self, layer, config, masks):
        config = dict(config)
        config["filters"] = kept(masks.output, config["filters"])
        return config


class ConvTransposeHandler(_NewFiltersHandler):
    """`Conv{1,2,3}DTranspose`.

    MACs are counted once per *input* position: each input pixel is multiplied by
    the whole kernel once. Counting per output position over-counts by stride².
    """

    timing = "grid"
    tiles = "out"

    output_axes = {"kernel": -2, "bias": 0}
    wrapper = "ImportanceConv2DTranspose"

    def new_weights(self, layer, weights, masks):
        weights = dict(weights)
        kernel = keep(weights["kernel"], masks.output, -2)
        weights["kernel"] = keep(kernel, masks.input, -1)
        if "bias" in weights:
            weights["bias"] = keep(weights["bias"], masks.output, 0)
        return weights

    def merge_inputs(self, layer, weights, merges):
        return {**weights, "kernel": fold_rows(weights["kernel"], merges, -1)}

    def macs(self, layer, input_shapes, output_shapes):
        cin, cout = input_shapes[0][-1], output_shapes[0][-1]
        window = math.prod(layer.kernel_size)
        return spatial_size(input_shapes[0]) * window * cin * cout


class DepthwiseHandler(LayerHandler):
    """`DepthwiseConv{1,2}D`: input channel c owns outputs c*m .. c*m + m - 1."""

    timing = "channelwise"
    tiles = "in"

    zeroes_outputs = True
    wrapper = "ImportanceDepthwiseConv2D"

    def trace(self, call, output_shapes, tracer):
        refused = refuse_channels_first(call, output_shapes, tracer)
        return refused or [np.repeat(call.input.ids, call.layer.depth_multiplier)]

    def new_weights(self, layer, weights, masks):
        weights = dict(weights)
        weights["kernel"] = keep(weights["kernel"], masks.input, -2)
        if "bias" in weights:
            weights["bias"] = keep(weights["bias"], masks.output, 0)
        return weights

    def scale_outputs(self, layer, weights, scale):
        weights = dict(weights)
        kernel = weights["kernel"]
        factor = np.reshape(scale, kernel.shape[-2:])
        weights["kernel"] = (kernel * factor).astype(kernel.dtype)
        if "bias" in weights:
            weights["bias"] = scale_axis(weights["bias"], scale, 0)
        return weights

    def filters(self, layer, weights):
        kernel = weights["kernel"]
        channels = kernel.shape[-2] * kernel.shape[-1]
        return kernel.reshape(-1, channels).T

    def macs(self, layer, input_shapes, output_shapes):
        window = math.prod(layer.kernel_size)
        return spatial_size(output_shapes[0]) * window * output_shapes[0][-1]


class SeparableHandler(_NewFiltersHandler):
    """`SeparableConv{1,2}D`: a depthwise step on the inputs, then a pointwise conv."""

    timing = "grid"

    output_axes = {"pointwise_kernel": -1, "bias": 0}
    wrapper = "ImportanceSeparableConv2D"

    def new_weights(self, layer, weights, masks):
        weights = dict(weights)
        multiplier = layer.depth_multiplier
        weights["depthwise_kernel"] = keep(weights["depthwise_kernel"], masks.input, -2)
        rows = None if masks.input is None else np.repeat(masks.input, multiplier)
        pointwise = keep(weights["pointwise_kernel"], rows, -2)
        weights["pointwise_kernel"] = keep(pointwise, masks.output, -1)
        if "bias" in weights:
            weights["bias"] = keep(weights["bias"], masks.output, 0)
        return weights

    def macs(self, layer, input_shapes, output_shapes):
        cin, cout = input_shapes[0][-1], output_shapes[0][-1]
        window = math.prod(layer.kernel_size)
        expanded = cin * layer.depth_multiplier
        return spatial_size(output_shapes[0]) * (window * expanded + expanded * cout)
