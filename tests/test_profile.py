"""Counting parameters and MACs."""

import keras
import pytest
from keras import layers

import kprune
from tests import models


def single(layer, input_shape):
    inp = keras.Input(input_shape)
    return keras.Model(inp, layer(inp))


@pytest.mark.parametrize(
    "layer, input_shape, macs",
    [
        # 6x6 outputs * 3x3 window * 4 in * 8 out
        (layers.Conv2D(8, 3), (8, 8, 4), 6 * 6 * 9 * 4 * 8),
        # groups=2: each output sees 4 / 2 input channels
        (layers.Conv2D(8, 3, groups=2), (8, 8, 4), 6 * 6 * 9 * 2 * 8),
        # counted on the 4x4 input positions, not the 8x8 outputs
        (
            layers.Conv2DTranspose(8, 3, strides=2, padding="same"),
            (4, 4, 4),
            16 * 9 * 4 * 8,
        ),
        (layers.DepthwiseConv2D(3, depth_multiplier=2), (8, 8, 4), 6 * 6 * 9 * 8),
        (layers.SeparableConv2D(8, 3), (8, 8, 4), 6 * 6 * (9 * 4 + 4 * 8)),
        (layers.Dense(8), (5,), 5 * 8),
        (layers.Dense(8), (3, 3, 5), 9 * 5 * 8),
        (layers.BatchNormalization(), (8, 8, 4), 0),
    ],
)
def test_macs_per_layer(layer, input_shape, macs):
    p = kprune.profile(single(layer, input_shape))
    assert p.macs == macs
    assert p.flops == 2 * macs


@pytest.mark.parametrize("name", sorted(models.HAND_BUILT))
def test_params_match_keras(name):
    model = models.HAND_BUILT[name]()
    assert kprune.profile(model).params == model.count_params()


def test_profile_prints_a_table_and_compares():
    model = models.vgg()
    before = kprune.profile(model)
    after = kprune.profile(kprune.prune(model, ratio=0.5))
    text = str(before)
    assert "dense" in text and "MACs" in text and "FLOPs per sample" in text
    table = before.compare(after)
    assert "params" in table and "change" in table
    ratio = f"{after.macs / before.macs:.2f}x"
    assert any(line.startswith("MACs") and ratio in line for line in table.split("\n"))


def test_compare_adds_metrics_and_timings():
    before = kprune.profile(models.vgg())
    after = kprune.profile(kprune.prune(models.vgg(), ratio=0.5))
    timings = [
        kprune.TFLiteBenchmark("a.tflite", 4096, 1, 10, 2.0, 2.2, 2.1, 1.9),
        kprune.TFLiteBenchmark("b.tflite", 1024, 1, 10, 0.5, 0.6, 0.55, 0.45),
    ]
    table = before.compare(
        after,
        names=("dense", "pruned"),
        metrics={"accuracy": (0.9, 0.88)},
        timings=timings,
        title="vgg",
    )
    lines = table.split("\n")
    assert lines[0] == "vgg" and "dense" in lines[1] and "pruned" in lines[1]
    assert any(line.startswith("accuracy") and "-0.0200" in line for line in lines)
    assert any(line.startswith("TFLite KiB") and "0.25x" in line for line in lines)
    assert any(
        "LiteRT ms (median, 1 thread)" in line and "4.00x faster" in line
        for line in lines
    )
    assert before.to_dict()["flops"] == before.flops


def test_unknown_spatial_dims_need_a_fixed_input_shape():
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, layers.Conv2D(4, 3)(inp))
    with pytest.raises(ValueError, match=r"input_shape=\(224, 224, 3\)"):
        kprune.profile(model)
