"""Layers that move channels between axes: Flatten, Reshape, Permute.

Channels-last and row-major means the channel index runs fastest. Flattening an
`(H, W, C)` tensor puts channel `c` of position `p` at `p * C + c`, so a removed
channel removes `H * W` entries of the flat vector ("index expansion"), and a
Dense after the Flatten loses the matching kernel rows.
"""

from __future__ import annotations

import math

import numpy as np

from kprune.handlers.base import LayerHandler, PassThroughHandler, kept


def _static_spatial(shape) -> int | None:
    dims = shape[1:-1]
    if any(d is None for d in dims):
        return None
    return math.prod(dims)


class FlattenHandler(LayerHandler):
    stateless = True

    def trace(self, call, output_shapes, tracer):
        ids = call.input.ids
        if getattr(call.layer, "data_format", None) == "channels_first":
            reason = f"'{call.name}' flattens channels_first data"
            return tracer.opaque(call.inputs, output_shapes, reason)
        spatial = _static_spatial(call.input.shape)
        if ids is None or spatial is None:
            reason = f"'{call.name}' flattens a tensor of unknown size"
            return tracer.opaque(call.inputs, output_shapes, reason)
        return [np.tile(ids, spatial)]


class ReshapeHandler(LayerHandler):
    """`Reshape` when it keeps the channel axis last, or flattens.

    `(C,) -> (1, 1, C)` (squeeze-excite) keeps channel i as channel i: the literal
    `target_shape` is rewritten with the new channel count. `(H, W, C) ->
    (H * W * C,)` is a flatten. Any other reshape mixes channels with other axes
    and is frozen.
    """

    def trace(self, call, output_shapes, tracer):
        ids = call.input.ids
        in_shape, out_shape = call.input.shape, output_shapes[0]
        if ids is not None and out_shape[-1] == in_shape[-1]:
            return [ids]
        spatial = _static_spatial(in_shape)
        if (
            ids is not None
            and spatial is not None
            and len(out_shape) == 2
            and out_shape[-1] == spatial * len(ids)
        ):
            return [np.tile(ids, spatial)]
        reason = (
            f"'{call.name}' reshapes {in_shape[1:]} to {out_shape[1:]}, which "
            "mixes channels with other axes"
        )
        return tracer.opaque(call.inputs, output_shapes, reason)

    def new_config(self, layer, config, masks):
        target = list(config["target_shape"])
        if masks.output is None or target[-1] == -1:
            return config
        # The output mask covers the last axis, whether it holds the channels or
        # the flattened (position, channel) pairs.
        target[-1] = kept(masks.output, target[-1])
        return {**config, "target_shape": tuple(target)}


class PermuteHandler(PassThroughHandler):
    """`Permute` that leaves the channel axis last (it only moves spatial axes)."""

    def trace(self, call, output_shapes, tracer):
        rank = len(call.input.shape)
        if tuple(call.layer.dims)[-1] != rank - 1:
            reason = f"'{call.name}' moves the channel axis (dims={call.layer.dims})"
            return tracer.opaque(call.inputs, output_shapes, reason)
        return super().trace(call, output_shapes, tracer)
