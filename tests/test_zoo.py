"""Smoke tests on real architectures: keras.applications and keras_cv backbones.

Each model is built at a small input size with `weights=None`, planned at ratio
0.3 and shrunk. The output shape must stay, parameters must drop, the forward pass
must run, and it must match the zeroed model (except through LayerNorm, which
renormalises over the channels that remain).
"""

import keras
import numpy as np
import pytest

import kprune
from tests import models

A = keras.applications

APPLICATIONS = {
    "VGG16": (A.VGG16, 32),
    "ResNet50": (A.ResNet50, 32),
    "MobileNetV2": (A.MobileNetV2, 32),
    "MobileNetV3Small": (A.MobileNetV3Small, 32),
    "DenseNet121": (A.DenseNet121, 32),
    "EfficientNetB0": (A.EfficientNetB0, 32),
    "InceptionV3": (A.InceptionV3, 75),
    "InceptionResNetV2": (A.InceptionResNetV2, 75),
    "Xception": (A.Xception, 71),
    "NASNetMobile": (A.NASNetMobile, 32),
    "ConvNeXtTiny": (A.ConvNeXtTiny, 32),
}
RENORMALISING = {"ConvNeXtTiny"}
EXPECTED_FREEZES = ("model input", "model output", "softmax across channels")


def check_prunes(model, name, ratio=0.3):
    # Random weights and BatchNorm statistics: fresh ones (mean 0, variance 1)
    # would hide a wrongly sliced or zeroed statistic.
    models.randomize(model)
    g = kprune.graph(model)
    # kprune sees through every layer of these models: the only frozen channels
    # are the model's inputs and outputs (and a softmax head over the classes).
    for grp in g.groups:
        for reason in grp.reasons:
            assert any(ok in reason for ok in EXPECTED_FREEZES), str(grp)
    plan = kprune.plan(model, ratio=ratio, graph=g)
    small = kprune.shrink(model, plan, graph=g)
    for a, b in zip(model.outputs, small.outputs):
        assert tuple(a.shape) == tuple(b.shape)
    assert small.count_params() < model.count_params()
    x = models.inputs_for(model)
    got = models.outputs(small, x)
    assert all(np.all(np.isfinite(y)) for y in got)
    if name not in RENORMALISING:
        want = models.outputs(kprune.zero_pruned(model, plan), x)
        for a, b in zip(want, got):
            scale = max(float(np.abs(a).max()), 1.0)
            np.testing.assert_allclose(b, a, atol=1e-4 * scale, rtol=1e-4)
    return plan, small


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_applications(name):
    build, size = APPLICATIONS[name]
    model = build(weights=None, input_shape=(size, size, 3), classes=7)
    check_prunes(model, name)


def keras_cv_backbones():
    import keras_cv

    m = keras_cv.models
    small = (64, 64, 3)
    return {
        "ResNet18": lambda: m.ResNetBackbone(
            stackwise_filters=[64, 128, 256, 512],
            stackwise_blocks=[2, 2, 2, 2],
            stackwise_strides=[1, 2, 2, 2],
            block_type="basic_block",
            include_rescaling=True,
            input_shape=small,
        ),
        "ResNet50V2": lambda: m.ResNetV2Backbone(
            stackwise_filters=[64, 128, 256, 512],
            stackwise_blocks=[3, 4, 6, 3],
            stackwise_strides=[1, 2, 2, 2],
            include_rescaling=True,
            input_shape=small,
        ),
        "MobileNetV3Small": lambda: m.MobileNetV3Backbone(
            stackwise_expansion=[1, 4.5, 88 / 24, 4, 6, 6, 3, 3, 6, 6, 6],
            stackwise_filters=[16, 24, 24, 40, 40, 40, 48, 48, 96, 96, 96],
            stackwise_kernel_size=[3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5],
            stackwise_stride=[2, 2, 1, 2, 1, 1, 1, 1, 2, 1, 1],
            stackwise_se_ratio=[0.25, None, None] + [0.25] * 8,
            stackwise_activation=["relu"] * 3 + ["hard_swish"] * 8,
            include_rescaling=True,
            input_shape=small,
        ),
        "YOLOV8": lambda: m.YOLOV8Backbone(
            stackwise_channels=[32, 64, 128, 256],
            stackwise_depth=[1, 2, 2, 1],
            include_rescaling=True,
            input_shape=small,
        ),
        "EfficientNetLiteB0": lambda: m.EfficientNetLiteBackbone(
            width_coefficient=1.0,
            depth_coefficient=1.0,
            stackwise_kernel_sizes=[3, 3, 5, 3, 5, 5, 3],
            stackwise_num_repeats=[1, 2, 2, 3, 3, 4, 1],
            stackwise_input_filters=[32, 16, 24, 40, 80, 112, 192],
            stackwise_output_filters=[16, 24, 40, 80, 112, 192, 320],
            stackwise_expansion_ratios=[1, 6, 6, 6, 6, 6, 6],
            stackwise_strides=[1, 2, 2, 2, 1, 2, 1],
            include_rescaling=True,
            input_shape=small,
        ),
        "DenseNet121": lambda: m.DenseNetBackbone(
            stackwise_num_repeats=[6, 12, 24, 16],
            include_rescaling=True,
            input_shape=small,
        ),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "ResNet18",
        "ResNet50V2",
        "MobileNetV3Small",
        "YOLOV8",
        "EfficientNetLiteB0",
        "DenseNet121",
    ],
)
def test_keras_cv_backbones(name):
    model = keras_cv_backbones()[name]()
    check_prunes(model, name)


@pytest.mark.slow
def test_keras_cv_lambdas_are_probed_and_composite_blocks_frozen():
    import keras_cv

    model = keras_cv.models.CSPDarkNetBackbone(
        stackwise_channels=[16, 32, 64, 128],
        stackwise_depth=[1, 1, 1, 1],
        include_rescaling=False,
        input_shape=(64, 64, 3),
    )
    g = kprune.graph(model)
    text = g.explain()
    assert "CrossStagePartial" in text and "opaque to kprune" in text
    assert "Lambda" in text and "proven channel-wise by probing" in text
    # What kprune cannot read keeps its channels; the rest shrinks exactly.
    model = models.randomize(model)
    models.assert_exact(model, kprune.plan(model, criterion="random", ratio=0.5))


@pytest.mark.slow
@pytest.mark.parametrize(
    "build", [A.DenseNet121, A.ResNet50V2, A.MobileNetV2], ids=lambda b: b.__name__
)
def test_masked_model_equals_its_shrunk_model(build):
    """The training-time path (wrap, mask, shrink) on real architectures."""
    model = models.randomize(build(weights=None, input_shape=(32, 32, 3), classes=7))
    wrapped = kprune.wrap(model, init="uniform")
    kprune.set_masks(wrapped, kprune.plan(wrapped, criterion="random", ratio=0.3))
    small = kprune.shrink(wrapped)
    assert small.count_params() < model.count_params()
    x = models.inputs_for(model)
    want, got = models.outputs(wrapped, x)[0], models.outputs(small, x)[0]
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=1e-4)
