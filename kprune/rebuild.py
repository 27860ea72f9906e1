"""Rebuilding a model layer by layer, through `keras.models.clone_model`.

Shrinking, zeroing, wrapping and unwrapping all make a new model of the same
topology in which some layers differ. They share this one path: a
`make_layer(layer) -> (new_layer, weights)` hook says what each layer becomes;
`clone_model` replays the graph (shared layers stay shared, nested models are
rebuilt as nested models); then each new layer gets its weights.
"""

from __future__ import annotations

from typing import Callable

import keras

from kprune.graph import keras_graph

#: `make_layer(layer) -> (new_layer, weights)`; `weights` is a callable returning
#: the new layer's weights (in `new_layer.weights` order) once it is built, or None
#: to keep the new layer's own initial weights.
MakeLayer = Callable[[keras.layers.Layer], tuple]


def rebuild(
    model: keras.Model,
    make_layer: MakeLayer,
    nested_input_channels: dict[int, list] | None = None,
    new_constant: Callable | None = None,
) -> keras.Model:
    """A new model with `make_layer` applied to every layer (the model is untouched).

    Args:
        model: a functional or Sequential model.
        make_layer: the per-layer hook (see `MakeLayer`). Nested models are not
            passed to it; their layers are.
        nested_input_channels: channel counts of the inputs of nested models, by
            `id(nested_model)`, when they change (None entries keep a count).
        new_constant: optional `f(old_layer, value) -> value` for the constant
            array arguments of a call (`c` in `x * c`), which are not layers
            and so do not pass through `make_layer`.
    """
    nested_input_channels = nested_input_channels or {}
    cache: dict[int, object] = {}
    old_of: dict[int, object] = {}
    pending = []

    def clone_layer(layer):
        if id(layer) in cache:
            return cache[id(layer)]
        if keras_graph.is_graph_model(layer):
            new = clone_nested(layer)
        else:
            new, weights = make_layer(layer)
            if weights is not None:
                pending.append((new, weights, _skip_random_init(new)))
        cache[id(layer)] = new
        old_of[id(new)] = layer
        return new

    def call(new, *args, **kwargs):
        if new_constant is not None and id(new) in old_of:
            old = old_of[id(new)]
            args, kwargs = keras.tree.map_structure(
                lambda v: new_constant(old, v)
                if keras_graph.is_constant_array(v)
                else v,
                (args, kwargs),
            )
        return new(*args, **kwargs)

    def clone(sub, channels=None):
        hook = {} if isinstance(sub, keras.Sequential) else {"call_function": call}
        return keras.models.clone_model(
            sub,
            input_tensors=_inputs_like(sub, channels),
            clone_function=clone_layer,
            **hook,
        )

    def clone_nested(sub):
        return clone(sub, nested_input_channels.get(id(sub)))

    new_model = clone(model)
    for new, weights, initializers in pending:
        for owner, attr, initializer in initializers:
            setattr(owner, attr, initializer)
        values = weights()
        if values is not None:
            new.set_weights(values)
    return new_model


def _inputs_like(model, channels=None):
    """New `Input`s for a (nested) model, named after its input layers.

    `clone_model` would name them after the KerasTensors instead.
    """
    structure = keras_graph.input_structure(model)
    flat = keras.tree.flatten(structure)
    channels = channels or [None] * len(flat)
    inputs = []
    for kt, n in zip(flat, channels):
        shape = tuple(kt.shape)
        if n is not None:
            shape = shape[:-1] + (int(n),)
        inputs.append(
            keras.Input(
                batch_shape=shape, dtype=kt.dtype, name=keras_graph.tensor_name(kt)
            )
        )
    return keras.tree.pack_sequence_as(structure, inputs)


def _skip_random_init(layer) -> list:
    """Build `layer` (and a wrapped inner layer) with zero initial weights.

    Their weights are overwritten right after, and drawing random kernels is a
    large part of building a big model. The replaced initializers are returned so
    they can be put back after the build; the configs are then unchanged.
    """
    saved = []
    owners = [layer]
    inner = getattr(layer, "layer", None)
    if isinstance(inner, keras.layers.Layer):
        owners.append(inner)
    for owner in owners:
        for attr, value in list(vars(owner).items()):
            if isinstance(value, keras.initializers.Initializer):
                saved.append((owner, attr, value))
                setattr(owner, attr, keras.initializers.Zeros())
    return saved
