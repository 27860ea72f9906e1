"""Model surgery: rebuild a functional model with fewer filters.

The rebuild goes through `keras.models.clone_model` with a `clone_function` that
makes each layer from its config, with the channel counts a plan leaves, so layer
names, shared layers and nested models survive. The sliced weights are set once
the clone is built. The caller's model is never touched.
"""

from __future__ import annotations

import keras
import numpy as np

from kprune.dependency import ChannelGraph
from kprune.dependency import graph as build_graph
from kprune.handlers import Masks, get_handler
from kprune.handlers.base import weight_keys
from kprune.planning.planner import plan as make_plan
from kprune.planning.plans import PruningPlan
from kprune.surgery import folding
from kprune.surgery.cloning import check_rebuildable, rebuild
from kprune.surgery.masks import is_wrapped, masks_plan


def shrink(
    model: keras.Model,
    plan: PruningPlan | None = None,
    *,
    graph: ChannelGraph | None = None,
) -> keras.Model:
    """Build a new, smaller model without the channels that `plan` removes.

    Kernels, biases, normalisation statistics and channel-dependent configs
    (`filters`, `units`, `Reshape` targets, per-channel `Rescaling`...) are
    sliced. The result computes exactly what `model` computes once the removed
    channels are zeroed (see `zero_pruned`).

    A wrapped model (`kprune.wrap`) stays wrapped: each kept filter keeps its
    importance multiplier and mask, so the multipliers can go on training
    through further rounds; `kprune.unwrap` folds them into the weights (the
    exporters do it for you). Without a plan, the channels whose masks are 0
    are removed, so the result computes what the masked model computes.

    Args:
        model: a functional or Sequential Keras model. It is not modified.
        plan: a `PruningPlan` from `kprune.plan(model, ...)`; optional for a
            wrapped model.
        graph: the model's `ChannelGraph`, if already built.

    Returns:
        A new `keras.Model` with the same layer names, inputs and outputs. If
        `model` was compiled, the new model is compiled the same way.

    Raises:
        TypeError: for subclassed models or a `plan` of the wrong type.
        ValueError: if `plan` was made for another model.
    """
    g = graph if graph is not None else build_graph(model)
    if plan is None and is_wrapped(model):
        plan = masks_plan(model, g)
    keep = _keep_units(g, plan)
    return _rebuild(model, g, keep, slice_channels=True, plan=plan)


def zero_pruned(
    model: keras.Model, plan: PruningPlan, *, graph: ChannelGraph | None = None
) -> keras.Model:
    """A copy of `model`, same shapes, with the channels `plan` removes set to zero.

    The output-channel weights of every layer that makes a removed channel are
    zeroed: kernel slices, biases, and the scale and offset of normalisations.
    Use it to evaluate a plan without surgery; `shrink` gives the same outputs.
    """
    g = graph if graph is not None else build_graph(model)
    keep = _keep_units(g, plan)
    return _rebuild(model, g, keep, slice_channels=False, plan=plan)


def prune(
    model: keras.Model,
    ratio: float | None = None,
    criterion="l1",
    **plan_options,
) -> keras.Model:
    """Plan and shrink in one call: `shrink(model, plan(model, ...))`.

    Args:
        model: the Keras model (not modified).
        ratio: share of prunable channels to remove (or pass `flops=`).
        criterion: scoring rule name or callable.
        **plan_options: any other argument of `kprune.plan`.

    Returns:
        The smaller model.
    """
    if plan_options.get("input_shape") is not None:
        # The plan counts MACs at that size; the surgery uses the model's own graph.
        return shrink(model, make_plan(model, criterion, ratio, **plan_options))
    g = build_graph(model)
    p = make_plan(g, criterion, ratio, **plan_options)
    return shrink(model, p, graph=g)


def compensation_merges(g: ChannelGraph, plan) -> dict[int, list]:
    """Per consumer layer, the input-channel folds of the plan's compensation."""
    merges: dict[int, list] = {}
    for name, triples in (getattr(plan, "compensation", None) or {}).items():
        group = g.group(name)
        for member in group.members:
            if member.role != "in":
                continue
            folds = merges.setdefault(id(member.layer), [])
            for removed, into, factor in triples:
                folds.append((member.index[removed], member.index[into], factor))
    return merges


def _keep_units(g: ChannelGraph, plan) -> np.ndarray:
    if plan is None:
        raise ValueError(
            "shrink needs a plan: kprune.shrink(model, kprune.plan(model, ratio=0.5)), "
            "unless the model is wrapped (kprune.wrap), whose masks are the plan"
        )
    if not isinstance(plan, PruningPlan):
        raise TypeError(
            f"plan must be a kprune PruningPlan; got {type(plan).__name__}. Make one "
            "with kprune.plan(model, ...)."
        )
    return plan.keep_units(g)


def layer_masks(g: ChannelGraph, keep_units: np.ndarray) -> dict[int, Masks]:
    """Keep-masks of each layer's first call, keyed by `id(layer)`."""
    result = {}
    for call in g.calls:
        if id(call.layer) not in result:
            result[id(call.layer)] = call_masks(g, call, keep_units)
    return result


def call_masks(g: ChannelGraph, call, keep_units: np.ndarray) -> Masks:
    """Keep-masks of one call's inputs and outputs."""

    def mask(info):
        units = g.units_of(info)
        return None if units is None else keep_units[units]

    return Masks(
        [mask(i) for i in call.inputs],
        [mask(o) for o in call.outputs],
        [i.shape for i in call.inputs],
        [o.shape for o in call.outputs],
    )


def _rebuild(model, g: ChannelGraph, keep: np.ndarray, *, slice_channels: bool, plan):
    check_rebuildable(g.layers())
    masks = layer_masks(g, keep)
    merges = compensation_merges(g, plan)
    constants = {}
    if slice_channels:
        sinks = folding.sinks_to_fold(g, keep)
        if sinks:
            zeroed = _rebuild(model, g, keep, slice_channels=False, plan=plan)
            constants = folding.constant_inputs(zeroed, g, sinks)
    nested = {
        key: [None if u is None else int(keep[u].sum()) for u in map(g.units_of, v)]
        for key, v in g.nested_inputs().items()
    }

    def make_layer(layer):
        handler = get_handler(layer)
        config = handler.config(layer)
        m = masks.get(id(layer))
        changes = m is not None and m.changes
        if slice_channels and changes:
            config = handler.new_config(layer, config, m)
        folded = constants.get(id(layer))
        if folded is not None:
            config = handler.with_bias(layer, config)
        new = handler.clone(layer, config)
        if not getattr(layer, "weights", None):
            return new, None
        return new, lambda: _new_weights(
            layer,
            handler,
            m if changes else None,
            slice_channels,
            merges.get(id(layer)),
            folded,
            new,
        )

    def new_constant(layer, value):
        m = masks.get(id(layer))
        if not slice_channels or m is None or not m.changes:
            return value
        return get_handler(layer).new_constant(layer, value, m)

    return rebuild(model, make_layer, nested if slice_channels else None, new_constant)


def _new_weights(
    old, handler, masks, slice_channels: bool, merges=None, folded=None, new=None
) -> list:
    values = old.get_weights()
    if masks is None and not merges and folded is None:
        return values
    keys = weight_keys(old)
    by_key = dict(zip(keys, values))
    if merges:
        by_key = handler.merge_inputs(old, by_key, merges) or by_key
    if folded is not None:
        by_key = handler.fold_constant_input(old, by_key, folded)
        keys = weight_keys(new)  # a bias may have been added
    if masks is not None and slice_channels:
        by_key = handler.new_weights(old, by_key, masks)
    elif masks is not None:
        by_key = handler.zero_weights(old, by_key, masks)
    # Same class and config, so the new layer lists its weights in this order.
    return [by_key[key] for key in keys]
