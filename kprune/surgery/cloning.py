"""Rebuilding a model layer by layer, through `keras.models.clone_model`.

Shrinking, zeroing, wrapping and unwrapping all make a new model of the same
topology in which some layers differ. They share this one path: a
`make_layer(layer) -> (new_layer, weights)` hook says what each layer becomes;
`clone_model` replays the graph (shared layers stay shared, nested models are
rebuilt as nested models); then each new layer gets its weights.
"""

from __future__ import annotations

import warnings
from typing import Callable

import keras

from kprune import keras_graph
from kprune.handlers import get_handler
from kprune.keras_graph import compile_like, compile_settings

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
        elif keras_graph.opened(layer) is not None:
            # A block kprune read from the inside comes back as a nested
            # functional model of its sub-layers, with the block's name.
            new = clone_nested(keras_graph.opened(layer))
        else:
            try:
                new, weights = make_layer(layer)
            except Exception as error:  # noqa: BLE001 - named for the user below
                raise RebuildError(layer, f"{type(error).__name__}: {error}") from error
            if weights is not None:
                pending.append((layer, new, weights, _skip_random_init(new)))
        cache[id(layer)] = new
        old_of[id(new)] = layer
        return new

    def call(new, *args, **kwargs):
        if new_constant is not None and id(new) in old_of:
            old = old_of[id(new)]
            args, kwargs = keras.tree.map_structure(
                lambda v: (
                    new_constant(old, v) if keras_graph.is_constant_array(v) else v
                ),
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

    new_model = _without_compiling(model, clone)
    _set_weights(pending)
    return new_model


def _set_weights(pending) -> None:
    """Give each rebuilt layer its weights, and its initializers back."""
    for old, new, weights, initializers in pending:
        for owner, attr, initializer in initializers:
            setattr(owner, attr, initializer)
        values = weights()
        if values is None:
            continue
        if len(values) != len(new.weights):
            raise RebuildError(
                old,
                f"rebuilt from its config it has {len(new.weights)} weights where "
                f"the original has {len(values)}, so its get_config() does not "
                "describe it",
            )
        new.set_weights(values)


class RebuildError(ValueError):
    """A layer that kprune cannot rebuild from its config.

    kprune makes every smaller, wrapped or unwrapped model by rebuilding each
    layer from `get_config()` and copying its weights; a layer whose config
    does not round-trip stops that, and this error names it and the fix.
    """

    def __init__(self, layer, problem: str):
        cls = type(layer)
        super().__init__(
            f"kprune cannot rebuild layer '{layer.name}' ({cls.__module__}."
            f"{cls.__qualname__}): {problem}. kprune rebuilds every layer from "
            "its config to make a new model. Fix the layer's get_config() / "
            "from_config(), or register a handler for its class whose config() "
            "and clone() rebuild it (kprune.register_handler(..., override=True); "
            "see docs/custom-layers.md)."
        )
        self.layer_name = layer.name


def check_rebuildable(layers) -> None:
    """Raise a `RebuildError` now for a layer that cannot be rebuilt.

    `shrink` and `zero_pruned` run it before rebuilding anything, so a model
    they cannot rebuild fails at once with the layer's name (the loops that
    fine-tune copy the model first, through `rebuild`, and fail as early).
    Keras' and kprune's own layers are trusted; the others (keras_hub,
    keras_cv, a user's) are rebuilt once from their config here, the way
    surgery will.
    """
    for layer in layers:
        if type(layer).__module__.startswith(("keras.", "kprune.")):
            continue
        handler = get_handler(layer)
        try:
            handler.clone(layer, handler.config(layer))
        except Exception as error:  # noqa: BLE001 - named for the user
            raise RebuildError(layer, f"{type(error).__name__}: {error}") from error


def _without_compiling(model, clone):
    """`clone(model)`, then compiled as `model` is, where that can be done.

    `clone_model` compiles the copy itself and fails on a compile config that
    does not deserialize (a keras_hub task's custom loss, say), after the whole
    graph was rebuilt. The copy is made uncompiled instead, then compiled
    (`compile_like`: from the config, else from the objects `compile` was
    given); settings that cannot be restored leave it uncompiled, with a
    warning.
    """
    compiled = getattr(model, "compiled", False)
    if not compiled:
        return clone(model)
    settings = compile_settings(model)
    model.compiled = False  # read by clone_model; restored at once
    try:
        new_model = clone(model)
    finally:
        model.compiled = compiled
    try:
        compile_like(new_model, settings)
    except Exception as error:  # noqa: BLE001 - reported, the model is still good
        warnings.warn(
            f"kprune rebuilt '{model.name}' but could not compile it as the "
            f"original ({type(error).__name__}: {error}); compile the result "
            "yourself before fit() or evaluate().",
            stacklevel=3,
        )
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


def copy_layer(layer):
    """A `make_layer` result that copies `layer` unchanged."""
    handler = get_handler(layer)
    new = handler.clone(layer, handler.config(layer))
    if not getattr(layer, "weights", None):
        return new, None
    return new, layer.get_weights
