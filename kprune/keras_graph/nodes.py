"""A functional model's graph, call by call, as plain values.

Keras 3 records a functional model as `Node`s (one per call of an operation) joined
by `KerasTensor`s. The public API gives `model.inputs`, `model.outputs` and
`model.layers`, but not the call order or which tensors each call consumed. This
module reads those (`_nodes_by_depth`, `Sequential._functional`, the classes of the
`keras.ops` operations that can appear in a graph) and hands them to the rest of
kprune as plain values. Each private access is wrapped in one small function.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import keras
from keras.src.activations import activations as _activations
from keras.src.applications import convnext as _convnext
from keras.src.applications import inception_resnet_v2 as _inception_resnet_v2
from keras.src.models.functional import Functional as _Functional
from keras.src.ops import core as _ops_core
from keras.src.ops import nn as _ops_nn
from keras.src.ops import numpy as _ops_numpy

from kprune.keras_graph.opening import forget, open_composite, opened


def is_graph_model(obj: Any) -> bool:
    """True for a functional model or a built `Sequential` (graphs kprune can read)."""
    return _inner_function(obj) is not None


def check_graph_model(model: Any) -> None:
    """Raise a TypeError/ValueError naming the fix if kprune cannot read `model`."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "kprune works on keras.Model instances (functional or Sequential). "
            f"Received: model={type(model).__name__}"
        )
    if isinstance(model, keras.Sequential) and not model.built:
        raise ValueError(
            f"Sequential model '{model.name}' is not built, so its shapes are "
            "unknown. Start it with keras.Input(shape=...) or call "
            "model.build(input_shape) first."
        )
    if _inner_function(model) is None:
        raise TypeError(
            f"Model '{model.name}' ({type(model).__name__}) is a subclassed model: "
            "its call() is Python code that kprune cannot read. Rebuild it as a "
            "functional model, keras.Model(inputs, outputs), or as a "
            "keras.Sequential, then prune that."
        )


def input_structure(model: keras.Model):
    """The model's inputs as the nested structure it is called with.

    `model.input` raises on a top-level `Sequential` that was built from a
    `keras.Input` but never called; its inner functional model knows them.
    """
    return _inner_function(model).input


def _inner_function(obj: Any):
    """The `Functional` that holds the graph of `obj`, or None."""
    if isinstance(obj, keras.Sequential):
        return getattr(obj, "_functional", None)
    if isinstance(obj, _Functional):
        return obj
    return None


def walk(
    model: keras.Model,
    on_input: Callable[[Any], Any],
    on_call: Callable[[Any, list, list, tuple], list],
    on_model: Callable[[keras.Model, list, tuple], None] | None = None,
    input_shapes: list | None = None,
    should_open: Callable[[Any], bool] | None = None,
) -> list:
    """Visit every leaf operation call of `model` in execution order.

    Nested functional and Sequential models are entered, not visited, so the caller
    sees one flat graph; a nested model called twice is entered twice. Shapes are
    those the call really sees: a nested model built for `(None, None, C)` inputs
    but called on `(32, 32, C)` reports 32x32 shapes inside.

    Args:
        model: a functional or built Sequential model.
        on_input: `f(keras_tensor, shape) -> value` for each model input.
        on_call: `f(operation, input_values, output_shapes, scope, site)`
            returning one value per output. `scope` is the tuple of names of the
            nested models around the call (empty at the top level); `site` is a
            `CallSite` (the call's constant arguments, and a way to run it).
        on_model: optional `f(nested_model, input_values, scope)`, called when a
            nested model is entered.
        input_shapes: shapes (batch axis included) to walk the graph with instead
            of the inputs' own, one per model input; `on_input` still gets the
            input's KerasTensor. Output shapes are then recomputed call by call.
        should_open: optional `f(layer) -> bool`: whether to open a layer that
            holds other layers (see `open_composite`) and walk its inside as a
            nested model. `replay` and `kprune.surgery.cloning` then open it too.

    Returns:
        The values of the model outputs, in `model.outputs` order.
    """
    function = _inner_function(model)
    shapes = input_shapes or [tuple(kt.shape) for kt in function.inputs]
    env = {
        id(kt): (on_input(kt, tuple(shape)), tuple(shape))
        for kt, shape in zip(function.inputs, shapes)
    }
    _walk_function(function, env, on_call, on_model, (), should_open)
    return [env[id(kt)][0] for kt in function.outputs]


def _walk_function(function, env, on_call, on_model, scope, should_open=None):
    def visit(node, entries, scope):
        shapes = _output_shapes(node, list(node.input_tensors), [e[1] for e in entries])
        values = on_call(
            node.operation, [e[0] for e in entries], shapes, scope, CallSite(node)
        )
        return list(zip(values, shapes))

    def enter(operation, entries, scope):
        if on_model is not None:
            on_model(operation, [e[0] for e in entries], scope)

    def expand(operation, node):
        if should_open is None or not isinstance(operation, keras.layers.Layer):
            return opened(operation)
        if should_open(operation):
            return open_composite(operation, node)
        forget(operation)
        return None

    _traverse(function, env, visit, enter, scope, expand)


def _traverse(function, env, visit, enter, scope, expand=None):
    """Run `visit(node, input_entries, scope)` on every leaf node, in order.

    `env` maps `id(KerasTensor)` to an entry; `visit` returns one entry per node
    output. Nested models are entered (after `enter(model, entries, scope)`) with
    their inputs bound to the caller's entries, and so are the layers that
    `expand(layer, node)` opens into a model. `walk` and `replay` share this, so
    they number calls identically.
    """
    by_depth = function._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            operation = node.operation
            if operation is None or node.is_input:
                continue
            tensors = list(node.input_tensors)
            if any(id(kt) not in env for kt in tensors):
                continue  # not reachable from this model's inputs (as Keras does)
            entries = [env[id(kt)] for kt in tensors]
            inner = _inner_function(operation)
            if inner is None:
                inner = expand(operation, node) if expand else opened(operation)
                if inner is not None:
                    operation = inner
            if inner is not None:
                enter(operation, entries, scope)
                sub_env = {id(kt): e for kt, e in zip(inner.inputs, entries)}
                _traverse(
                    inner, sub_env, visit, enter, scope + (operation.name,), expand
                )
                results = [sub_env[id(kt)] for kt in inner.outputs]
            else:
                results = visit(node, entries, scope)
            for kt, result in zip(node.outputs, results):
                env[id(kt)] = result


def replay(
    model: keras.Model,
    inputs: list,
    on_output: Callable[[int, list], None],
    on_inputs: Callable[[int, list], None] | None = None,
):
    """Run `model` eagerly call by call, showing every call's outputs.

    Calls are numbered as in `walk` (and so as in `kprune.graph`'s `calls`).
    Layers run in inference mode.

    Args:
        model: the model.
        inputs: one tensor per model input.
        on_output: `f(call_index, outputs)` for every leaf call.
        on_inputs: optional `f(call_index, inputs)`, called before each call with
            the tensors it consumes.

    Returns:
        The model outputs.
    """
    function = _inner_function(model)
    env = {id(kt): x for kt, x in zip(function.inputs, inputs)}
    counter = [0]

    def visit(node, values, scope):
        if on_inputs is not None:
            on_inputs(counter[0], values)
        outputs = _run_node(node, values)
        on_output(counter[0], outputs)
        counter[0] += 1
        return outputs

    _traverse(function, env, visit, lambda *a: None, ())
    return [env[id(kt)] for kt in function.outputs]


class CallSite:
    """One call of an operation in a graph, as a handler may need it.

    Attributes:
        constants: the array arguments that are not graph tensors (`c` in
            `x + c`), as NumPy arrays.
    """

    def __init__(self, node):
        self._node = node
        values = keras.tree.flatten((node.arguments.args, node.arguments.kwargs))
        self.constants = [
            keras.ops.convert_to_numpy(v) for v in values if is_constant_array(v)
        ]

    def run(self, inputs: list, operation=None) -> list:
        """Run the call eagerly on `inputs` (one array per graph input).

        Args:
            inputs: arrays in place of the call's input tensors; the other
                arguments are those of the graph.
            operation: another operation to call in place of the graph's (a
                clone of it), with the same arguments.

        Returns:
            The outputs as NumPy arrays.
        """
        outputs = _run_node(self._node, inputs, operation)
        return [keras.ops.convert_to_numpy(y) for y in outputs]


def _run_node(node, inputs: list, operation=None) -> list:
    """Call a node's operation (or `operation`) eagerly, in inference mode, on
    `inputs` in place of its input tensors; its outputs, flattened."""
    filled = {id(kt): x for kt, x in zip(node.input_tensors, inputs)}
    args, kwargs = node.arguments.fill_in(filled)
    if "training" in kwargs:
        kwargs["training"] = False
    return keras.tree.flatten((operation or node.operation)(*args, **kwargs))


def is_constant_array(value) -> bool:
    """True for an array (NumPy, backend tensor or variable) that is not symbolic."""
    if isinstance(value, keras.KerasTensor) or not hasattr(value, "shape"):
        return False
    return len(getattr(value, "shape", ())) > 0


def _output_shapes(node, tensors, input_shapes) -> list[tuple]:
    """Output shapes of a node for the input shapes it really gets."""
    if all(tuple(kt.shape) == s for kt, s in zip(tensors, input_shapes)):
        return [tuple(kt.shape) for kt in node.outputs]
    specs = {
        id(kt): keras.KerasTensor(shape, dtype=kt.dtype)
        for kt, shape in zip(tensors, input_shapes)
    }
    args, kwargs = node.arguments.fill_in(specs)
    try:
        spec = node.operation.compute_output_spec(*args, **kwargs)
    except TypeError:
        # Some layers' compute_output_spec refuses call keywords (`training`).
        kwargs = {k: v for k, v in kwargs.items() if k not in ("training", "mask")}
        spec = node.operation.compute_output_spec(*args, **kwargs)
    return [tuple(x.shape) for x in keras.tree.flatten(spec)]


def tensor_shape(kt) -> tuple:
    """The static shape of a KerasTensor as a tuple (None for unknown dims)."""
    return tuple(kt.shape)


def tensor_name(kt) -> str:
    """The name of the layer that produced a KerasTensor (for model inputs/outputs)."""
    history = getattr(kt, "_keras_history", None)
    if history is not None and history.operation is not None:
        return history.operation.name
    return getattr(kt, "name", "tensor")


def ops_classes(names: Iterable[str]) -> list[type]:
    """Classes of `keras.ops` operations (e.g. `"Add"`) that can sit in a graph.

    `x + y` on KerasTensors adds a `keras.src.ops.numpy.Add` node to a functional
    model, so handlers must be able to register for these classes too.
    """
    modules = (_ops_numpy, _ops_nn, _ops_core, _activations)
    found = []
    for name in names:
        for module in modules:
            cls = getattr(module, name, None)
            if isinstance(cls, type):
                found.append(cls)
                break
    return found


def is_lambda(layer) -> bool:
    """True for a `keras.layers.Lambda`."""
    return isinstance(layer, keras.layers.Lambda)


def copy_lambda(
    layer: keras.layers.Lambda, output_shape: Any = None
) -> keras.layers.Lambda:
    """A new `Lambda` around the same Python function.

    `Lambda.from_config` refuses Python lambdas in safe mode, and the function is
    the only thing a Lambda holds, so the copy reuses it. `output_shape`
    replaces a fixed output shape (after pruning, its channel count changes).
    """
    if output_shape is None or callable(layer._output_shape):
        output_shape = layer._output_shape
    return keras.layers.Lambda(
        layer.function,
        output_shape=output_shape,
        mask=layer.mask,
        arguments=layer.arguments,
        name=layer.name,
        dtype=layer.dtype_policy,
    )


def convnext_layer_scale() -> type | None:
    """ConvNeXt's `LayerScale`, which Keras defines but does not export."""
    return getattr(_convnext, "LayerScale", None)


def inception_resnet_scale() -> type | None:
    """InceptionResNetV2's `CustomScaleLayer` (`x + scale * y`), not exported."""
    return getattr(_inception_resnet_v2, "CustomScaleLayer", None)


def channel_count(shape) -> int | None:
    """Channels of a channels-last tensor shape, or None when there is no such axis."""
    if shape is None or len(shape) < 2 or shape[-1] is None:
        return None
    return int(shape[-1])


def all_layers(model) -> list:
    """Every layer inside `model`, recursively (nested models, wrapped layers,
    the sub-layers of composite blocks)."""
    return list(model._flatten_layers(include_self=False, recursive=True))
