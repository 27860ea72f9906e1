"""Opening a layer that holds other layers into a nested functional model.

keras_hub and keras_cv build blocks as layers whose `call` runs sub-layers.
`open_composite` records such a call on symbolic inputs, checks that the
recording computes what the block does, and caches the model per layer, so
the graph can read the block from the inside and `rebuild` can put it back as
a nested model. It reads a Keras node's call arguments and a layer's inbound
nodes, as `kprune.keras_graph.nodes` reads the rest of the graph.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np

_OPENED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def opened(layer) -> keras.Model | None:
    """The model a walk opened `layer` into, if it did (see `open_composite`)."""
    try:
        return _OPENED.get(layer)
    except TypeError:  # not weak-referenceable
        return None


def forget(layer) -> None:
    """Drop what a walk opened `layer` into: a walk that keeps it closed."""
    try:
        _OPENED.pop(layer, None)
    except TypeError:  # not weak-referenceable
        pass


def open_composite(layer, node) -> keras.Model | None:
    """A functional model of what a layer holding other layers computes.

    keras_hub and keras_cv build blocks as layers whose `call` runs sub-layers
    (`InvertedResidualBlock`, `CrossStagePartial`). Calling that `call` on
    symbolic inputs records the sub-layers' calls, so the block can be read, and
    rebuilt, as a nested functional model with the block's name. It is only
    done when the block's one tensor argument holds all its inputs and every
    weight of the block is used by a recorded sub-layer; otherwise None.
    The result is cached per layer (`opened`).
    """
    if layer in _OPENED:
        return _OPENED[layer]
    _OPENED[layer] = _inline(layer, node)
    return _OPENED[layer]


def _inline(layer, node) -> keras.Model | None:
    args, kwargs = node.arguments.args, node.arguments.kwargs
    if len(args) != 1 or not getattr(layer, "weights", None):
        return None
    flat = keras.tree.flatten(args[0])
    tensors = list(node.input_tensors)
    if not all(isinstance(t, keras.KerasTensor) for t in flat) or [
        id(t) for t in flat
    ] != [id(t) for t in tensors]:
        return None
    if any(isinstance(v, keras.KerasTensor) for v in keras.tree.flatten(kwargs)):
        return None
    # A block shared across feature-pyramid levels is called at several sizes:
    # it is recorded with open spatial sizes (if it can be), others at their own.
    shapes = {
        tuple(tuple(t.shape) for t in other.input_tensors)
        for other in getattr(layer, "_inbound_nodes", [])
    }
    for open_sizes in (True, False) if len(shapes) > 1 else (False,):

        def new_input(t, name=None):
            shape = _open_spatial(t.shape) if open_sizes else tuple(t.shape)
            return keras.Input(batch_shape=shape, dtype=t.dtype, name=name)

        if isinstance(args[0], dict):  # Keras wants dict inputs named by key
            inputs = {key: new_input(t, key) for key, t in args[0].items()}
        else:
            inputs = keras.tree.map_structure(new_input, args[0])
        try:
            outputs = layer.call(inputs, **kwargs)
            model = keras.Model(inputs, outputs, name=layer.name)
        except Exception:  # noqa: BLE001 - a call that cannot be recorded
            continue
        if {id(v) for v in model.weights} == {
            id(v) for v in layer.weights
        } and _computes_alike(layer, model, args[0], kwargs):
            return model
    return None


def _computes_alike(layer, model, structure, kwargs) -> bool:
    """Run the block and its recorded model on one random input; same outputs?

    A block whose `call` bakes a static shape into a reshape, or branches on
    Python values, can record a graph that fails or differs when run.
    """
    rng = np.random.default_rng(0)
    x = keras.tree.map_structure(
        lambda t: rng.standard_normal(
            (2,) + tuple(8 if d is None else d for d in t.shape[1:])
        ).astype(t.dtype if "float" in str(t.dtype) else "float32"),
        structure,
    )
    # Inference mode, so BatchNorm statistics of the user's block stay as they are.
    flags = {"training": False} if "training" in kwargs else {}
    try:
        want = keras.tree.flatten(layer(x, **{**kwargs, **flags}))
        got = keras.tree.flatten(model(x, **flags))
    except Exception:  # noqa: BLE001 - it cannot even run: keep it closed
        return False
    if len(want) != len(got):
        return False
    for a, b in zip(want, got):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-5):
            return False
    return True


def _open_spatial(shape) -> tuple:
    """`(batch, H, W, C)` with every axis but the channels unknown."""
    shape = tuple(shape)
    return (None,) * (len(shape) - 1) + shape[-1:] if len(shape) > 2 else shape
