"""Masks of a wrapped model, read and written as pruning plans.

`set_masks(model, plan)` writes a plan into the masks (0 = removed);
`masks_plan` reads the masks back as a plan, which is what `shrink(wrapped)`
uses; `PruningCallback` does both on every step.
"""

from __future__ import annotations

import keras
import numpy as np

from kprune.graph import ChannelGraph, Group
from kprune.graph import graph as build_graph
from kprune.layers import ImportanceWrapper
from kprune.plans import GroupPlan, PruningPlan
from kprune.profile import MacCounter


def carriers(group: Group):
    """The members of `group` whose multipliers act on its channels.

    Returns `(wrapper, index)` pairs; wrappers that only consume the group's
    channels (role "in") do not count.
    """
    return [
        (m.layer, m.index)
        for m in group.members
        if isinstance(m.layer, ImportanceWrapper) and m.role in ("out", "through")
    ]


def masked_units(group: Group) -> np.ndarray:
    """Which units of `group` are masked: all their channels at 0 in every
    wrapper that carries them (False everywhere when none carries them)."""
    held = carriers(group)
    masked = np.full(group.size, bool(held))
    for wrapper, index in held:
        mask = np.asarray(keras.ops.convert_to_numpy(wrapper.channel_mask))
        masked &= mask[index].max(axis=1) == 0
    return masked


def _covered(g: ChannelGraph, group: Group) -> bool:
    """True when every filter-making layer of the group carries a multiplier."""
    for member in group.producers():
        if isinstance(member.layer, ImportanceWrapper):
            continue
        norm = g.norm_after(g.calls_of(member.layer)[0])
        if norm is None or not isinstance(norm.layer, ImportanceWrapper):
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
            mask = np.asarray(keras.ops.convert_to_numpy(wrapper.channel_mask))
            mask[index[kept].ravel()] = 1.0
            mask[index[~kept].ravel()] = 0.0
            wrapper.channel_mask.assign(mask)


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
