"""Reference architectures for examples, benchmarks and tests.

`keras.applications` has no U-Net; this one is the classic encoder-decoder with
Conv2DTranspose up-sampling and concatenated skip connections.
"""

from __future__ import annotations

import keras
from keras import layers


def conv_bn_relu(x, filters: int, kernel: int = 3, name: str | None = None):
    """Conv2D (same padding, no bias) -> BatchNormalization -> ReLU."""
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def unet(
    input_shape=(128, 128, 3),
    base: int = 32,
    depth: int = 4,
    classes: int = 2,
    name: str = "unet",
    activation: str | None = "auto",
) -> keras.Model:
    """A U-Net: `depth` levels of two conv-BN-ReLU blocks, halving the size and
    doubling the filters (from `base`); a bottleneck; Conv2DTranspose up-sampling
    with concatenated skips; a 1x1 head over `classes` (softmax, or one logit).

    Args:
        input_shape: `(H, W, C)`, with H and W divisible by `2 ** depth`.
        base: filters of the first level.
        depth: levels (poolings).
        classes: output channels.
        name: model name.
        activation: of the 1x1 head; `"auto"` is softmax over 2 or more
            classes and none (one logit, for a sigmoid loss) for 1 class.
    """
    if any(d % 2**depth for d in input_shape[:2]):
        raise ValueError(
            f"input_shape {input_shape} must be divisible by 2**depth = {2**depth}"
        )
    inputs = keras.Input(input_shape, name="image")
    skips, x = [], inputs
    for level in range(depth):
        x = conv_bn_relu(x, base * 2**level, name=f"down{level}_a")
        x = conv_bn_relu(x, base * 2**level, name=f"down{level}_b")
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = conv_bn_relu(x, base * 2**depth, name="bottleneck_a")
    x = conv_bn_relu(x, base * 2**depth, name="bottleneck_b")
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(
            base * 2**level, 2, strides=2, padding="same", name=f"up{level}_t"
        )(x)
        x = layers.Concatenate(name=f"up{level}_cat")([x, skips[level]])
        x = conv_bn_relu(x, base * 2**level, name=f"up{level}_a")
        x = conv_bn_relu(x, base * 2**level, name=f"up{level}_b")
    if activation == "auto":
        activation = "softmax" if classes > 1 else None
    outputs = layers.Conv2D(classes, 1, activation=activation, name="mask")(x)
    return keras.Model(inputs, outputs, name=name)
