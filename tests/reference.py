"""An exactness reference written without kprune's surgery code.

`zeroed_by_hand(model, plan)` zeroes, variable by variable and in place, what
each layer type needs zeroed so that the channels the plan removes are zero
where they are made, and puts every weight back on exit. It reads only the
plan's kept units and the graph's members (which layer carries which channels
of a group); the per-type rules are written out here again on purpose, from the
Keras kernel layouts, so a wrong mask mapping or a wrong axis in a handler
cannot pass by agreeing with itself.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
from keras import layers

import kprune


def _zero(variable, channels, axis):
    value = np.array(keras.ops.convert_to_numpy(variable), copy=True)
    index = [slice(None)] * value.ndim
    index[axis] = channels
    value[tuple(index)] = 0
    variable.assign(value)


def _zero_made(layer, channels):
    """Zero output channels `channels` of a layer that makes them."""
    if isinstance(layer, (layers.Conv1DTranspose, layers.Conv2DTranspose)) or (
        isinstance(layer, layers.Conv3DTranspose)
    ):
        _zero(layer.kernel, channels, -2)  # (..., out, in)
    elif isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        kernel = np.array(keras.ops.convert_to_numpy(layer.kernel), copy=True)
        flat = kernel.reshape(kernel.shape[:-2] + (-1,))  # (..., C * multiplier)
        flat[..., channels] = 0
        layer.kernel.assign(flat.reshape(kernel.shape))
    elif isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
        _zero(layer.pointwise_kernel, channels, -1)
    elif isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
        _zero(layer.kernel, channels, -1)  # (..., in / groups, out)
    elif isinstance(layer, layers.Dense):
        _zero(layer.kernel, channels, -1)
        if getattr(layer, "lora_enabled", False):
            _zero(layer.lora_kernel_b, channels, -1)
    elif getattr(layer, "kernel", None) is not None:  # a user's (in, ..., out)
        _zero(layer.kernel, channels, -1)
    else:
        return False
    if getattr(layer, "bias", None) is not None:
        _zero(layer.bias, channels, 0)
    return True


def _zero_passed(layer, channels):
    """Zero what a layer adds to channels that reach it as zeros."""
    if isinstance(layer, layers.BatchNormalization):
        # y = gamma * (x - mean) / std + beta: zero mean and beta (and gamma).
        for variable in (layer.gamma, layer.beta, layer.moving_mean):
            if variable is not None:
                _zero(variable, channels, 0)
    elif isinstance(
        layer,
        (
            layers.Conv1D,
            layers.Conv2D,
            layers.Conv3D,
            layers.DepthwiseConv1D,
            layers.DepthwiseConv2D,
        ),
    ):
        if layer.bias is not None:  # per-channel (depthwise or grouped) convs
            _zero(layer.bias, channels, 0)
    elif isinstance(layer, layers.LayerNormalization):
        for variable in (layer.gamma, layer.beta):
            if variable is not None:
                _zero(variable, channels, 0)
    # Every other layer the channels pass through maps 0 to 0, or keeps a
    # constant that kprune folds into the next layer's bias (checked there).


@contextlib.contextmanager
def zeroed_by_hand(model: keras.Model, plan):
    """Zero the channels `plan` removes in `model` itself, for the duration."""
    graph = kprune.graph(model)
    saved = [np.array(v) for v in model.get_weights()]
    try:
        for name, decision in plan.groups.items():
            group = graph.group(name)
            removed = np.setdiff1d(np.arange(group.size), np.asarray(decision.keep))
            for member in group.members if len(removed) else []:
                _zero_member(member, member.index[removed].ravel())
            for src, dst, factor in plan.compensation.get(name, []):
                for member in group.members:
                    if member.role == "in" and isinstance(member.layer, layers.Layer):
                        _merge_input(member, src, dst, factor)
        yield model
    finally:
        model.set_weights(saved)


def _merge_input(member, src, dst, factor):
    """Compensation: what read input unit `src` is added, times `factor`, to
    what reads unit `dst` (the removed filter's work moves to its twin)."""
    layer = member.layer
    if isinstance(layer, layers.Dense):
        axis = 0  # (in, out)
    elif isinstance(layer, (layers.Conv1DTranspose, layers.Conv2DTranspose)):
        axis = -1  # (..., out, in)
    elif isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
        axis = -2  # (..., in, out)
    else:
        raise NotImplementedError(f"no compensation reference for {layer.name}")
    kernel = np.moveaxis(np.array(keras.ops.convert_to_numpy(layer.kernel)), axis, 0)
    kernel[member.index[dst]] += factor * kernel[member.index[src]]
    layer.kernel.assign(np.moveaxis(kernel, 0, axis))


def _zero_member(member, channels):
    layer = member.layer
    if not isinstance(layer, keras.layers.Layer) or member.role == "in":
        return  # keras.ops calls hold nothing
    if member.role == "through":
        _zero_passed(layer, channels)
    elif layer.weights and not _zero_made(layer, channels):  # not Flatten, Concat
        raise NotImplementedError(
            f"the reference does not know how {type(layer).__name__} makes channels"
        )
