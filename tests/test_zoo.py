"""Smoke tests on real architectures: keras.applications, keras_cv and keras_hub.

Each model is built at a small input size with `weights=None`, planned at ratio
0.3 and shrunk. The output shape must stay, parameters must drop, the forward pass
must run, and it must match the zeroed model (except through LayerNorm, which
renormalises over the channels that remain).
"""

import keras
import numpy as np
import pytest

import kprune
from benchmarks import zoo
from benchmarks.zoo import keras_cv_backbones
from tests import models

A = keras.applications
#: The zoo's applications at the smallest size each builds at, for speed.
APPLICATIONS = {
    **{name: (build, 32 if size == 64 else size)
       for name, (build, size) in zoo.APPLICATIONS.items()},
    "InceptionResNetV2": (A.InceptionResNetV2, 75),
}  # fmt: skip
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
    plan = kprune.plan(g, ratio=ratio)
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
def test_keras_cv_csp_darknet_lambdas_and_blocks_are_seen_through():
    """It wraps every activation in a Lambda and builds CrossStagePartial blocks
    as layers: 0 of its channel units were prunable before probing and opening."""
    import keras_cv

    model = keras_cv.models.CSPDarkNetBackbone(
        stackwise_channels=[16, 32, 64, 128],
        stackwise_depth=[1, 1, 1, 1],
        include_rescaling=False,
        input_shape=(64, 64, 3),
    )
    g = kprune.graph(model)
    text = g.explain()
    assert "Lambda" in text and "proven channel-wise by probing" in text
    assert "opaque" not in text
    assert any(c.name.startswith("dark2_csp/") for c in g.calls)  # opened
    assert inside_share(g) >= 0.9
    small = check_exact(models.randomize(model), ratio=0.5)
    # The opened block comes back as a nested model with the block's name.
    assert isinstance(small.get_layer("dark2_csp"), keras.Model)


def inside_share(g) -> float:
    """Prunable share of the channel units that model inputs/outputs do not pin."""
    pinned = sum(
        grp.size
        for grp in g.groups
        if grp.reasons
        and all(r.startswith(("model input", "model output")) for r in grp.reasons)
    )
    total = sum(grp.size for grp in g.groups)
    return sum(grp.size for grp in g.prunable) / (total - pinned)


def check_exact(model, ratio=0.3, atol=1e-4):
    """shrink matches zero_pruned on every output (dicts of outputs included)."""
    plan = kprune.plan(model, criterion="random", ratio=ratio)
    small = kprune.shrink(model, plan)
    assert small.count_params() < model.count_params()
    x = models.inputs_for(model)
    want = keras.tree.flatten(kprune.zero_pruned(model, plan)(x))
    got = keras.tree.flatten(small(x))
    for a, b in zip(want, got):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(b, a, atol=atol * max(np.abs(a).max(), 1.0))
    return small


HUB_EXACT = [
    "ResNet50V2",  # pads with -inf before its max pool (a probed op)
    "MobileNetV3Small",  # every block is a layer holding layers
    "CSPDarkNet53",
    "DeepLabV3Plus",  # spatial pyramid pooling block
    "RetinaNet",  # one head block shared by every pyramid level
]


@pytest.mark.slow
@pytest.mark.parametrize("name", HUB_EXACT)
def test_keras_hub_models_prune_exactly(name):
    pytest.importorskip("keras_hub")
    from benchmarks.zoo import HUB

    model = models.randomize(HUB[name]())
    g = kprune.graph(model)
    assert inside_share(g) >= 0.9, g.explain()
    check_exact(model)


@pytest.mark.slow
def test_keras_hub_backbone_built_for_any_image_size():
    pytest.importorskip("keras_hub")
    from benchmarks.zoo import ANY, HUB

    model = HUB["MobileNetV3Small"](ANY)
    small = kprune.prune(model, ratio=0.3)  # a ratio plan needs no image size
    assert small.count_params() < model.count_params()
    flops = kprune.plan(model, flops=0.5, input_shape=(64, 64, 3))
    assert flops.flops_ratio <= 0.5


@pytest.mark.slow
def test_a_keras_hub_layer_that_cannot_be_rebuilt_gets_a_kprune_error():
    """MiT's layers do not round-trip their config (clone_model fails too)."""
    pytest.importorskip("keras_hub")
    from benchmarks.zoo import HUB

    model = HUB["MiT-B0"]()
    before = models.weights_of(model)
    with pytest.raises(ValueError, match=r"(?s)cannot rebuild layer '.*'.*register a"):
        kprune.prune(model, ratio=0.3)
    for a, b in zip(before, models.weights_of(model)):
        np.testing.assert_array_equal(a, b)


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
