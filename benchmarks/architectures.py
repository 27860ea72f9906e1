"""The architectures the quality and speed benchmarks prune.

`keras.applications` has no U-Net; `unet` is the classic encoder-decoder with
Conv2DTranspose up-sampling and concatenated skip connections, `ternausnet` a
U-Net on VGG11's encoder. `NUCLEI_ARCHS` are the two nets of the nuclei
benchmarks, `SPEEDUP_MODELS` the three whose LiteRT latency the speed
benchmarks measure.
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


def ternausnet(
    input_shape=(128, 128, 3),
    base: int = 64,
    classes: int = 1,
    name: str = "ternausnet",
) -> keras.Model:
    """TernausNet (Iglovikov and Shvets, 2018): a U-Net whose encoder is VGG11.

    The encoder is VGG11's eight 3x3 convolutions with ReLU and five max-pools
    (no BatchNorm, as in VGG11); each decoder block is a 3x3 conv-ReLU
    followed by a stride-2 Conv2DTranspose-ReLU, fed the previous block
    concatenated with the encoder's output at that size; a last conv-ReLU and
    a 1x1 head give the mask. `base=64` gives the published widths; a smaller
    `base` scales every layer down in proportion.

    Args:
        input_shape: `(H, W, C)`, H and W divisible by 32.
        base: width of the first convolution (the others are multiples).
        classes: output channels (one logit for 1, softmax for more).
        name: model name.
    """
    if any(d % 32 for d in input_shape[:2]):
        raise ValueError(f"input_shape {input_shape} must be divisible by 32")
    b = base

    def conv(x, filters, label):
        return layers.Conv2D(filters, 3, padding="same", activation="relu", name=label)(
            x
        )

    def decoder(x, middle, out, label):
        x = conv(x, middle, f"{label}_conv")
        return layers.Conv2DTranspose(
            out, 3, strides=2, padding="same", activation="relu", name=f"{label}_up"
        )(x)

    inputs = keras.Input(input_shape, name="image")
    stages, x = [], inputs
    for level, widths in enumerate(
        ([b], [2 * b], [4 * b] * 2, [8 * b] * 2, [8 * b] * 2)
    ):
        for k, width in enumerate(widths):
            x = conv(x, width, f"conv{level + 1}{'ab'[k]}")
        stages.append(x)
        x = layers.MaxPooling2D(name=f"pool{level + 1}")(x)
    x = decoder(x, 8 * b, 4 * b, "center")
    for level, (middle, out) in zip(
        (5, 4, 3, 2), ((8 * b, 4 * b), (8 * b, 2 * b), (4 * b, b), (2 * b, b // 2))
    ):
        x = layers.Concatenate(name=f"cat{level}")([x, stages[level - 1]])
        x = decoder(x, middle, out, f"dec{level}")
    x = layers.Concatenate(name="cat1")([x, stages[0]])
    x = conv(x, b // 2, "dec1")
    activation = "softmax" if classes > 1 else None
    outputs = layers.Conv2D(classes, 1, activation=activation, name="mask")(x)
    return keras.Model(inputs, outputs, name=name)


#: The nets of the nuclei benchmarks (64x64 grey tiles, one logit a pixel).
NUCLEI_ARCHS = {
    "unet": lambda: unet((64, 64, 1), base=16, depth=3, classes=1),
    "ternausnet": lambda: ternausnet((64, 64, 1), base=16),
}

#: The models whose LiteRT latency the speed benchmarks measure.
SPEEDUP_MODELS = {
    "resnet50": lambda: keras.applications.ResNet50(
        weights=None, input_shape=(96, 96, 3), classes=10
    ),
    "mobilenetv2": lambda: keras.applications.MobileNetV2(
        weights=None, input_shape=(128, 128, 3), classes=10
    ),
    "unet": lambda: unet((128, 128, 3), base=32, depth=4, classes=2),
}
