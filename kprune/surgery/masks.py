"""Masks of a wrapped model, read and written as pruning plans.

`set_masks(model, plan)` writes a plan into the masks (0 = removed);
`masks_plan` reads the masks back as a plan, which is what `shrink(wrapped)`
uses; `PruningCallback` does both on every step. A layer holds a mask when its
handler says so (`LayerHandler.mask`), so nothing here needs the wrapper
classes themselves.
"""

from __future__ import annotations

import keras
import numpy as np

from kprune import keras_graph
from kprune.dependency import ChannelGraph, Group
from kprune.dependency import graph as build_graph
from kprune.handlers import get_handler
from kprune.planning.plans import GroupPlan, PruningPlan
from kprune.planning.profiling import MacCounter


def masked_layers(model: keras.Model) -> list:
    """Every layer of `model` that holds a channel mask (kprune's importance
    wrappers), inside nested models too."""
    return [
        layer
        for layer in keras_graph.all_layers(model)
        if get_handler(layer).mask(layer) is not None
    ]


def is_wrapped(model: keras.Model) -> bool:
    """True if `model` holds importance wrappers (see `kprune.wrap`)."""
    return bool(masked_layers(model))


def _holds_mask(layer) -> bool:
    return get_handler(layer).mask(layer) is not None


def carriers(group: Group):
    """The members of `group` whose multipliers act on its channels.

    Returns `(wrapper, index)` pairs; wrappers that only consume the group's
    channels (role "in") do not count.
    """
    return [
        (m.layer, m.index)
        for m in group.members
        if m.role in ("out", "through") and _holds_mask(m.layer)
    ]


def masked_units(group: Group) -> np.ndarray:
    """Which units of `group` are masked: all their channels at 0 in every
    wrapper that carries them (False everywhere when none carries them)."""
    held = carriers(group)
    masked = np.full(group.size, bool(held))
    for wrapper, index in held:
        mask = get_handler(wrapper).mask(wrapper)
        masked &= mask[index].max(axis=1) == 0
    return masked


def _covered(g: ChannelGraph, group: Group) -> bool:
    """True when every filter-making layer of the group carries a multiplier."""
    for member in group.producers():
        if _holds_mask(member.layer):
            continue
        norm = g.norm_after(g.calls_of(member.layer)[0])
        if norm is None or not _holds_mask(norm.layer):
            return False
    return True


def set_masks(model: keras.Model, plan: PruningPlan, graph: ChannelGraph | None = None):
    """Write `plan` into the masks of a wrapped model: 0 for removed channels.

    The structure does not change; masked channels output exactly zero. Groups the
    plan does not mention keep their masks.
    """
    g = graph if graph is not None else build_graph(model)
    keep_units = plan.keep_units(g)
    for name in plan.groups:
        group = g.group(name)
        kept = keep_units[group.units]
        for wrapper, index in carriers(group):
            handler = get_handler(wrapper)
            mask = handler.mask(wrapper)
            mask[index[kept].ravel()] = 1.0
            mask[index[~kept].ravel()] = 0.0
            handler.set_mask(wrapper, mask)


def masks_plan(model: keras.Model, graph: ChannelGraph | None = None) -> PruningPlan:
    """The plan the masks of a wrapped model describe.

    A channel counts as removed when every layer that makes it has its mask at 0
    there (a residual stream fed by two convs is zero only if both are masked).
    Groups whose filter-making layers are not all wrapped keep every channel.
    """
    g = graph if graph is not None else build_graph(model)
    decisions = {}
    for group in g.prunable:
        held = carriers(group)
        if not held or not _covered(g, group):
            continue
        keep = np.flatnonzero(~masked_units(group))
        if len(keep) == 0:
            keep = np.array([0])  # a layer needs one channel; it outputs zeros
        decisions[group.name] = GroupPlan(
            group.name, group.size, tuple(int(i) for i in keep)
        )
    result = PruningPlan(
        model=model.name,
        fingerprint=g.fingerprint(),
        groups=decisions,
        criterion="masks",
    )
    counter = MacCounter(g)
    if counter.known:  # not for a model built for any image size
        result.macs_before = counter.base
        result.macs_after = counter(result.keep_units(g))
    return result
