"""Model surgery: rebuild a functional model with fewer filters.

The rebuild goes through `keras.models.clone_model` with a `clone_function` that
makes each layer from its config, with the channel counts a plan leaves, so layer
names, shared layers and nested models survive. The sliced weights are set once
the clone is built. The caller's model is never touched.
"""

from __future__ import annotations

import keras
import numpy as np

from kprune.graph import ChannelGraph, keras_graph
from kprune.graph import graph as build_graph
from kprune.handlers import get_handler
from kprune.handlers.base import weight_keys
from kprune.planner import PruningPlan
from kprune.planner import plan as make_plan


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

    Args:
        model: a functional or Sequential Keras model. It is not modified.
        plan: a `PruningPlan` from `kprune.plan(model, ...)`.
        graph: the model's `ChannelGraph`, if already built.

    Returns:
        A new `keras.Model` with the same layer names, inputs and outputs. If
        `model` was compiled, the new model is compiled the same way.

    Raises:
        TypeError: for subclassed models or a `plan` of the wrong type.
        ValueError: if `plan` was made for another model.
    """
    g = graph if graph is not None else build_graph(model)
    keep = _keep_units(g, plan)
    return _rebuild(model, g, keep, slice_channels=True)


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
    return _rebuild(model, g, keep, slice_channels=False)


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
    g = build_graph(model)
    p = make_plan(model, criterion, ratio, graph=g, **plan_options)
    return _rebuild(model, g, p.keep_units(g), slice_channels=True)


def _keep_units(g: ChannelGraph, plan) -> np.ndarray:
    if plan is None:
        raise ValueError(
            "shrink needs a plan: kprune.shrink(model, kprune.plan(model, ratio=0.5))"
        )
    if not isinstance(plan, PruningPlan):
        raise TypeError(
            f"plan must be a kprune PruningPlan; got {type(plan).__name__}. Make one "
            "with kprune.plan(model, ...)."
        )
    return plan.keep_units(g)


def _rebuild(model, g: ChannelGraph, keep: np.ndarray, *, slice_channels: bool):
    masks = g.masks(keep)
    nested_masks = g.nested_input_masks(keep)
    nested_shapes = g.nested_input_shapes()
    cache: dict[int, object] = {}
    pairs = []

    def clone_layer(layer):
        if id(layer) in cache:
            return cache[id(layer)]
        if keras_graph.is_graph_model(layer):
            new = clone_nested(layer)
        else:
            handler = get_handler(layer)
            config = layer.get_config()
            m = masks.get(id(layer))
            if slice_channels and m is not None and m.changes:
                config = handler.new_config(layer, config, m)
            new = handler.clone(layer, config)
            pairs.append((layer, new, m, _skip_random_init(new)))
        cache[id(layer)] = new
        return new

    def clone_nested(sub):
        flat = keras.tree.flatten(sub.input)
        shapes = nested_shapes.get(id(sub), [tuple(kt.shape) for kt in flat])
        sub_masks = nested_masks.get(id(sub), [None] * len(flat))
        inputs = []
        for kt, shape, mask in zip(flat, shapes, sub_masks):
            if slice_channels and mask is not None:
                shape = tuple(shape[:-1]) + (int(mask.sum()),)
            inputs.append(_input_like(kt, shape))
        return keras.models.clone_model(
            sub,
            input_tensors=keras.tree.pack_sequence_as(sub.input, inputs),
            clone_function=clone_layer,
        )

    # Model inputs keep their channels, and their names (clone_model would name
    # them after the KerasTensors instead of the input layers).
    inputs = [
        _input_like(kt, tuple(kt.shape)) for kt in keras.tree.flatten(model.input)
    ]
    new_model = keras.models.clone_model(
        model,
        input_tensors=keras.tree.pack_sequence_as(model.input, inputs),
        clone_function=clone_layer,
    )
    for old, new, m, initializers in pairs:
        for attr, initializer in initializers.items():
            setattr(new, attr, initializer)
        _transfer_weights(old, new, m, slice_channels)
    return new_model


def _input_like(kt, shape):
    return keras.Input(
        batch_shape=shape, dtype=kt.dtype, name=keras_graph.tensor_name(kt)
    )


def _skip_random_init(layer) -> dict:
    """Build `layer` with zero initial weights, since they are overwritten anyway.

    Drawing random kernels is a large part of building a big model. The layer's
    own initializers are returned so they can be put back after the build; its
    config is then exactly what it was.
    """
    saved = {
        attr: value
        for attr, value in vars(layer).items()
        if isinstance(value, keras.initializers.Initializer)
    }
    for attr in saved:
        setattr(layer, attr, keras.initializers.Zeros())
    return saved


def _transfer_weights(old, new, masks, slice_channels: bool) -> None:
    variables = getattr(old, "weights", None)
    if not variables:
        return
    values = old.get_weights()
    if masks is not None and masks.changes:
        keys = weight_keys(old)
        handler = get_handler(old)
        by_key = dict(zip(keys, values))
        if slice_channels:
            by_key = handler.new_weights(old, by_key, masks)
        else:
            by_key = handler.zero_weights(old, by_key, masks)
        # Same class and config, so the new layer lists its weights in this order.
        values = [by_key[key] for key in keys]
    new.set_weights(values)
