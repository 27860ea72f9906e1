"""Folding the constants of removed channels into the next layer's bias.

A removed channel is zero where it is made, but some layers turn zero into a
constant: `sigmoid(0) = 0.5`, `softplus(0) = log 2`, `x + c`, a `Rescaling`
offset. In the zeroed model that constant still reaches the next convolution
or Dense layer and adds a fixed amount to each of its outputs; the shrunk model
has no such input. `shrink` therefore adds that amount to the consumer's bias.
The constants are read off the zeroed model itself, run once on a probe input,
so every handler (and every probed Lambda) is covered without a rule of its own.
"""

from __future__ import annotations

import numpy as np

from kprune import keras_graph
from kprune.dependency import ChannelGraph

#: Spatial size used for probe inputs whose dimensions the model leaves open.
UNKNOWN_DIM = 32


def sinks_to_fold(g: ChannelGraph, keep_units: np.ndarray) -> dict[int, tuple]:
    """The calls whose removed inputs arrive as constants a fold can absorb.

    Returns:
        `{call_index: (call, input_index, removed_mask)}`; empty when the plan
        removes no channel that stops being zero on its way.
    """
    found = {}
    for call, k, fold in g.constant_sinks:
        info = call.inputs[k]
        removed = ~keep_units[g.units_of(info)] & info.shifted
        if fold is not None and removed.any() and call.index not in found:
            found[call.index] = (call, k, removed)
    return found


def constant_inputs(zeroed, g: ChannelGraph, sinks: dict) -> dict[int, np.ndarray]:
    """Per sink layer (`id(layer)`), the constant each removed input channel holds.

    Args:
        zeroed: the model with the removed channels zeroed (`zero_pruned`).
        g: the channel graph of the original model (same call numbering).
        sinks: from `sinks_to_fold`.

    Returns:
        One array per layer, as long as its input's channels: the constant
        where a removed channel arrives, 0 elsewhere. A layer called twice
        keeps its first call's constants.
    """
    shapes = g.input_shapes or [tuple(kt.shape) for kt in g.model.inputs]
    rng = np.random.default_rng(0)
    xs = [
        rng.standard_normal(
            (1,) + tuple(UNKNOWN_DIM if d is None else d for d in s[1:])
        ).astype("float32")
        for s in shapes
    ]
    values: dict[int, np.ndarray] = {}

    def on_inputs(index, inputs):
        if index not in sinks:
            return
        call, k, removed = sinks[index]
        x = np.asarray(inputs[k])
        per_channel = x.reshape(-1, x.shape[-1]).mean(axis=0)
        values.setdefault(id(call.layer), np.where(removed, per_channel, 0.0))

    keras_graph.replay(zeroed, xs, lambda index, outputs: None, on_inputs)
    return values
