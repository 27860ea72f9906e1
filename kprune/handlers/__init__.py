"""The handler registry: how channels pass through each layer type.

Supporting a new layer type means adding one entry to `_BUILTINS` (or, for a
user's own layer, one call to `register_handler`). Lookups follow the class
hierarchy, so subclasses of a registered layer share its handler.
"""

from __future__ import annotations

import keras

from kprune import keras_graph
from kprune.handlers.base import LayerHandler, Masks, PassThroughHandler
from kprune.handlers.composite import SqueezeExciteHandler
from kprune.handlers.conv import (
    ConvHandler,
    ConvTransposeHandler,
    DenseHandler,
    DepthwiseHandler,
    SeparableHandler,
)
from kprune.handlers.importance import ImportanceHandler
from kprune.handlers.merging import ConcatenateHandler, MergeHandler, SplitHandler
from kprune.handlers.norm import (
    BatchNormHandler,
    ChannelwiseHandler,
    LayerNormHandler,
    LayerScaleHandler,
    NormalizationHandler,
    PReLUHandler,
    RescalingHandler,
)
from kprune.handlers.passthrough import (
    ActivationHandler,
    ActivationOpHandler,
    IdentityHandler,
    ReLUHandler,
    SoftmaxHandler,
)
from kprune.handlers.probing import ProbedHandler
from kprune.handlers.registry import (
    get_handler,
    register_handler,
    registered_classes,
    unregister_handler,
)
from kprune.handlers.reshaping import FlattenHandler, PermuteHandler, ReshapeHandler

__all__ = [
    "ChannelwiseHandler",
    "LayerHandler",
    "Masks",
    "PassThroughHandler",
    "get_handler",
    "register_handler",
    "registered_classes",
    "unregister_handler",
]

_PASS_THROUGH_LAYERS = """
    LeakyReLU ELU
    Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D AlphaDropout
    GaussianNoise GaussianDropout ActivityRegularization
    MaxPooling1D MaxPooling3D AveragePooling1D
    AveragePooling3D GlobalAveragePooling1D
    GlobalAveragePooling3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D
    ZeroPadding1D ZeroPadding3D Cropping1D Cropping2D Cropping3D
    UpSampling1D UpSampling3D Resizing CenterCrop
    RandomFlip RandomRotation RandomZoom RandomTranslation RandomCrop RandomContrast
""".split()
#: Pass-through layers whose cost a latency table measures per channel count.
_TIMED_PASS_THROUGH_LAYERS = """
    MaxPooling2D AveragePooling2D GlobalAveragePooling2D ZeroPadding2D UpSampling2D
""".split()

_PASS_THROUGH_OPS = """
    Relu Relu6 Sigmoid HardSigmoid Silu HardSilu Gelu Elu Selu Softplus LeakyRelu
    Tanh Abs Negative Square ReLU Mish
""".split()


def _layer_classes(names):
    return [getattr(keras.layers, n) for n in names if hasattr(keras.layers, n)]


_BUILTINS = [
    (_layer_classes(["Conv1D", "Conv2D", "Conv3D"]), ConvHandler()),
    (_layer_classes(["Dense"]), DenseHandler()),
    (
        _layer_classes(["Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"]),
        ConvTransposeHandler(),
    ),
    (_layer_classes(["DepthwiseConv1D", "DepthwiseConv2D"]), DepthwiseHandler()),
    (_layer_classes(["SeparableConv1D", "SeparableConv2D"]), SeparableHandler()),
    (_layer_classes(["BatchNormalization"]), BatchNormHandler()),
    (_layer_classes(["LayerNormalization"]), LayerNormHandler()),
    (_layer_classes(["Normalization"]), NormalizationHandler()),
    (_layer_classes(["Rescaling"]), RescalingHandler()),
    (_layer_classes(["PReLU"]), PReLUHandler()),
    ([c for c in [keras_graph.convnext_layer_scale()] if c], LayerScaleHandler()),
    (_layer_classes(["Activation"]), ActivationHandler()),
    (_layer_classes(["ReLU"]), ReLUHandler()),
    (_layer_classes(["Identity"]), IdentityHandler()),
    (_layer_classes(["Softmax"]), SoftmaxHandler()),
    (_layer_classes(["Lambda"]), ProbedHandler()),
    (_layer_classes(_PASS_THROUGH_LAYERS), PassThroughHandler()),
    (
        _layer_classes(_TIMED_PASS_THROUGH_LAYERS),
        PassThroughHandler().timed("channelwise"),
    ),
    (keras_graph.ops_classes(_PASS_THROUGH_OPS), ActivationOpHandler()),
    (_layer_classes(["Add", "Multiply"]), MergeHandler().timed("channelwise")),
    (
        _layer_classes(["Subtract", "Average", "Maximum", "Minimum"])
        + keras_graph.ops_classes(["Add", "Subtract", "Multiply", "Maximum", "Minimum"])
        + [c for c in [keras_graph.inception_resnet_scale()] if c],
        MergeHandler(),
    ),
    (
        _layer_classes(["Concatenate"]) + keras_graph.ops_classes(["Concatenate"]),
        ConcatenateHandler(),
    ),
    (keras_graph.ops_classes(["Split"]), SplitHandler()),
    (_layer_classes(["Flatten"]), FlattenHandler()),
    (_layer_classes(["Reshape"]), ReshapeHandler()),
    (_layer_classes(["Permute"]), PermuteHandler()),
    (["keras_cv>SqueezeAndExcite2D"], SqueezeExciteHandler()),
    (["kprune>ImportanceWrapper"], ImportanceHandler()),
]

for _classes, _handler in _BUILTINS:
    for _cls in _classes:
        register_handler(_cls, _handler)
