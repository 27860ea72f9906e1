"""Keras internals: the only package in kprune that reads Keras' private state.

Keras 3 records a functional model as `Node`s joined by `KerasTensor`s, and
keeps what a model was compiled with on private attributes. The rest of kprune
needs both but sees them only as the plain values these modules hand out, so a
Keras upgrade that renames something breaks this package and nothing else:

* `nodes`: walking and replaying a model's graph call by call, the classes of
  the `keras.ops` operations that can appear in one, and Lambda layers;
* `opening`: a layer that holds layers (keras_hub and keras_cv blocks) as a
  nested functional model;
* `compiling`: a model's compile arguments, compiling another model alike, and
  the direction of a compiled metric.
"""

from kprune.keras_graph.compiling import (
    compile_arguments,
    compile_like,
    compile_settings,
    metric_direction,
)
from kprune.keras_graph.nodes import (
    CallSite,
    all_layers,
    channel_count,
    check_graph_model,
    convnext_layer_scale,
    copy_lambda,
    inception_resnet_scale,
    input_structure,
    is_constant_array,
    is_graph_model,
    is_lambda,
    ops_classes,
    replay,
    tensor_name,
    tensor_shape,
    walk,
)
from kprune.keras_graph.opening import forget, open_composite, opened

__all__ = [
    "CallSite",
    "all_layers",
    "channel_count",
    "check_graph_model",
    "compile_arguments",
    "compile_like",
    "compile_settings",
    "convnext_layer_scale",
    "copy_lambda",
    "forget",
    "inception_resnet_scale",
    "input_structure",
    "is_constant_array",
    "is_graph_model",
    "is_lambda",
    "metric_direction",
    "open_composite",
    "opened",
    "ops_classes",
    "replay",
    "tensor_name",
    "tensor_shape",
    "walk",
]
