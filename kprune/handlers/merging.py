"""Layers and ops that join or split tensors: Add & co., Concatenate, split."""

from __future__ import annotations

import numpy as np

from kprune.handlers.base import LayerHandler, keep, kept, nonzero_at_zero
from kprune.keras_graph import channel_count


def _is_channel_axis(axis: int, rank: int) -> bool:
    return axis % rank == rank - 1


class MergeHandler(LayerHandler):
    """Element-wise merges (`Add`, `Multiply`, ... and `x + y` in a graph).

    Inputs with as many channels as the output are coupled channel by channel. An
    input with one channel that broadcasts across the others (a spatial attention
    map, say) is not coupled; its single channel is frozen. A constant operand
    (`x * c`, `x + c`) whose last axis has one entry per channel is sliced with
    the channels; one that broadcasts (a scalar, a last axis of 1) is kept.
    """

    stateless = True
    takes_constants = True

    def trace(self, call, output_shapes, tracer):
        n = channel_count(output_shapes[0])
        for value in call.constants:
            if n is None or value.shape[-1] not in (1, n):
                return tracer.opaque(
                    call.inputs,
                    output_shapes,
                    f"'{call.name}' broadcasts a constant of shape {value.shape} "
                    "over the channel axis",
                )
        inputs = [info for info in call.inputs if info.ids is not None]
        full = [info.ids for info in inputs if len(info.ids) == n]
        if n is None or not full:
            return tracer.opaque(
                call.inputs, output_shapes, f"'{call.name}' has no channel axis"
            )
        for info in inputs:
            if len(info.ids) == n:
                continue
            if len(info.ids) == 1:
                tracer.freeze(info.ids, f"'{call.name}' broadcasts a 1-channel input")
                continue
            return tracer.opaque(
                call.inputs,
                output_shapes,
                f"'{call.name}' mixes {len(info.ids)} and {n} channels",
            )
        for ids in full[1:]:
            tracer.couple(full[0], ids)
        return [full[0]]

    def shifts_zero(self, call):
        # Only an operand outside the graph (`x + 0.3`, `x + c`) can do it.
        return (len(call.inputs) < 2 or bool(call.constants)) and nonzero_at_zero(call)

    def new_constant(self, layer, value, masks):
        mask = masks.output
        if mask is None or np.ndim(value) == 0 or np.shape(value)[-1] != len(mask):
            return value
        return keep(np.asarray(value), mask, -1)


class ConcatenateHandler(LayerHandler):
    """`Concatenate` and `keras.ops.concatenate`.

    On the channel axis the output channels are the inputs' channels, in order, so
    removing input channels just shortens the output: nothing to configure. On
    another axis every input must keep the same channels, so they are coupled.
    """

    stateless = True

    def trace(self, call, output_shapes, tracer):
        ids = [info.ids for info in call.inputs]
        if any(i is None for i in ids):
            return tracer.opaque(
                call.inputs, output_shapes, f"'{call.name}' has no channel axis"
            )
        rank = len(output_shapes[0])
        if _is_channel_axis(call.layer.axis, rank):
            return [np.concatenate(ids)]
        for other in ids[1:]:
            tracer.couple(ids[0], other)
        return [ids[0]]


class SplitHandler(LayerHandler):
    """`keras.ops.split` (e.g. YOLOv8's C2f blocks).

    On the channel axis, an integer `indices_or_sections` (equal parts) couples
    channel j of every part; explicit split indices are rewritten instead.
    """

    stateless = True

    def trace(self, call, output_shapes, tracer):
        ids = call.input.ids
        op = call.layer
        if ids is None:
            return tracer.opaque(call.inputs, output_shapes, "no channel axis")
        if not _is_channel_axis(op.axis, len(call.input.shape)):
            return [ids for _ in output_shapes]
        if isinstance(op.indices_or_sections, int):
            parts = ids.reshape(op.indices_or_sections, -1)
            for part in parts[1:]:
                tracer.couple(parts[0], part)
            return list(parts)
        return np.split(ids, list(op.indices_or_sections))

    def new_config(self, layer, config, masks):
        if (
            isinstance(layer.indices_or_sections, int)
            or masks.input is None
            or not _is_channel_axis(layer.axis, len(masks.input_shapes[0]))
        ):
            return config
        config = dict(config)
        sizes = [kept(mask, 0) for mask in masks.outputs[:-1]]
        config["indices_or_sections"] = [int(s) for s in np.cumsum(sizes)]
        return config
