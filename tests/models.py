"""Small hand-built models shared by the tests, and helpers to check surgery."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

import kprune
from benchmarks.zoo import randomize  # noqa: F401  (the tests' random weights)


def inputs_for(model: keras.Model, batch: int = 2, seed: int = 1):
    rng = np.random.default_rng(seed)
    xs = [
        rng.normal(size=(batch,) + tuple(kt.shape[1:])).astype("float32")
        for kt in model.inputs
    ]
    return xs[0] if len(xs) == 1 else xs


def outputs(model, x):
    y = model(x, training=False)
    ys = y if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in ys]


def assert_exact(model, plan, atol=1e-4, rtol=1e-4):
    """shrink(model, plan) must match the model with the removed channels zeroed,
    both by `kprune.zero_pruned` and by the independent `tests.reference`."""
    from tests.reference import zeroed_by_hand

    small = kprune.shrink(model, plan)
    x = inputs_for(model)
    got = outputs(small, x)
    with zeroed_by_hand(model, plan):
        by_hand = outputs(model, x)
    for want in (outputs(kprune.zero_pruned(model, plan), x), by_hand):
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)
    return small


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def conv_bn_relu(x, filters, kernel=3, strides=1, name=None):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", name=name)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def vgg(input_shape=(16, 16, 3), classes=5):
    inp = keras.Input(input_shape)
    x = conv_bn_relu(inp, 8)
    x = conv_bn_relu(x, 8)
    x = layers.MaxPooling2D()(x)
    x = conv_bn_relu(x, 16)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    out = layers.Dense(classes)(x)
    return keras.Model(inp, out, name="vgg")


def resnet(input_shape=(16, 16, 3), classes=5):
    """Stages s0 (8), s1 (16, stride 2, projection shortcut) and s2 (16)."""
    inp = keras.Input(input_shape)
    x = conv_bn_relu(inp, 8, name="stem")
    for i, (filters, strides) in enumerate(((8, 1), (16, 2), (16, 1))):
        shortcut = x
        y = conv_bn_relu(x, filters, strides=strides, name=f"s{i}_a")
        y = layers.Conv2D(filters, 3, padding="same", name=f"s{i}_b")(y)
        y = layers.BatchNormalization()(y)
        if strides != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=strides, name=f"s{i}_proj")(
                shortcut
            )
            shortcut = layers.BatchNormalization()(shortcut)
        x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(classes)(x), name="resnet")


def unet(input_shape=(32, 32, 3), base=8, depth=3, classes=2):
    inp = keras.Input(input_shape)
    skips, x = [], inp
    for level in range(depth):
        x = conv_bn_relu(x, base * 2**level)
        x = conv_bn_relu(x, base * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = conv_bn_relu(x, base * 2**depth)
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(base * 2**level, 2, strides=2, padding="same")(x)
        x = layers.Concatenate()([x, skips[level]])
        x = conv_bn_relu(x, base * 2**level)
    out = layers.Conv2D(classes, 1, activation="softmax")(x)
    return keras.Model(inp, out, name="unet")


def mobile_se(input_shape=(16, 16, 3), classes=5):
    """Inverted residuals with depthwise convs and squeeze-excite (Reshape SE)."""
    inp = keras.Input(input_shape)
    x = conv_bn_relu(inp, 8, name="stem")
    for i, expand in enumerate((16, 24)):
        shortcut = x
        y = conv_bn_relu(x, expand, kernel=1, name=f"expand{i}")
        y = layers.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(y)
        y = layers.BatchNormalization()(y)
        y = layers.Activation("swish")(y)
        se = layers.GlobalAveragePooling2D()(y)
        se = layers.Reshape((1, 1, expand), name=f"se_reshape{i}")(se)
        se = layers.Conv2D(4, 1, activation="swish", name=f"se_reduce{i}")(se)
        se = layers.Conv2D(expand, 1, activation="sigmoid", name=f"se_expand{i}")(se)
        y = layers.Multiply(name=f"se_mul{i}")([y, se])
        y = layers.Conv2D(8, 1)(y)
        y = layers.BatchNormalization()(y)
        x = layers.Add()([shortcut, y])
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    x = layers.ReLU()(x)
    x = layers.SeparableConv2D(12, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = layers.Flatten()(x)
    return keras.Model(inp, layers.Dense(classes)(x), name="mobile_se")


def nested(input_shape=(16, 16, 3), classes=5):
    """A functional model around a nested Sequential backbone and a nested head."""
    backbone = keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.Conv2D(12, 3, padding="same", activation="relu"),
        ],
        name="backbone",
    )
    head_in = keras.Input((None, None, 12))
    h = layers.Conv2D(10, 1, activation="relu")(head_in)
    head = keras.Model(head_in, layers.GlobalAveragePooling2D()(h), name="head")
    inp = keras.Input(input_shape)
    x = head(backbone(inp))
    return keras.Model(inp, layers.Dense(classes)(x), name="nested")


def shared(input_shape=(16, 16, 3), classes=5):
    """One conv (and one BN) called on two branches."""
    inp = keras.Input(input_shape)
    a = conv_bn_relu(inp, 8, name="branch_a")
    b = conv_bn_relu(inp, 8, name="branch_b")
    conv = layers.Conv2D(12, 3, padding="same", name="shared_conv")
    bn = layers.BatchNormalization(name="shared_bn")
    a = layers.ReLU()(bn(conv(a)))
    b = layers.ReLU()(bn(conv(b)))
    x = layers.Concatenate()([a, b])
    x = conv_bn_relu(x, 8)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(classes)(x), name="shared")


def two_in_two_out(classes=5):
    img = keras.Input((16, 16, 3), name="image")
    aux = keras.Input((16, 16, 2), name="aux")
    x = conv_bn_relu(img, 8)
    y = conv_bn_relu(aux, 8)
    x = layers.Add()([x, y])
    x = conv_bn_relu(x, 12)
    logits = layers.Dense(classes, name="logits")(layers.GlobalAveragePooling2D()(x))
    mask = layers.Conv2D(1, 1, name="mask")(x)
    return keras.Model([img, aux], [logits, mask], name="two_io")


def grouped(input_shape=(16, 16, 3), classes=5):
    """ResNeXt-style grouped conv and a ConvNeXt-style depthwise Conv2D(groups=C)."""
    inp = keras.Input(input_shape)
    x = conv_bn_relu(inp, 16, name="stem")
    x = layers.Conv2D(16, 3, padding="same", groups=4, name="grouped4")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(16, 3, padding="same", groups=16, name="dw16")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(8, 1, groups=2, name="pw_groups2")(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(classes)(x), name="grouped")


def assorted(input_shape=(16, 16, 3), classes=5):
    """Many pass-through, per-channel and merge layers in one graph."""
    inp = keras.Input(input_shape)
    x = conv_bn_relu(inp, 8, name="stem")
    x = layers.ZeroPadding2D(1)(x)
    x = layers.Cropping2D(1)(x)
    x = layers.Rescaling(
        scale=[0.5 + 0.1 * i for i in range(8)], offset=0.0, name="scale"
    )(x)
    x = layers.PReLU(shared_axes=[1, 2])(x)
    a = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    b = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.Maximum()([a, b])
    x = layers.Subtract()([x, layers.Minimum()([a, b])])
    x = layers.Average()([x, a])
    x = layers.Conv2D(12, 1, activation="gelu")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.UpSampling2D()(x)
    x = layers.Resizing(12, 12)(x)
    x = layers.SpatialDropout2D(0.1)(x)
    x = layers.Permute((2, 1, 3))(x)
    attention = layers.Conv2D(1, 1, activation="sigmoid")(x)
    x = layers.Multiply()([x, attention])
    x = x + layers.Conv2D(12, 1)(x)
    x = layers.Dense(10, activation="relu")(x)
    x = layers.GlobalMaxPooling2D()(x)
    return keras.Model(inp, layers.Dense(classes)(x), name="assorted")


def sequential(input_shape=(16, 16, 3), classes=5):
    """The first CNN most Keras users write: a top-level `keras.Sequential`."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.Conv2D(16, 3),
            layers.ReLU(),
            layers.Flatten(),
            layers.Dense(32, activation="relu"),
            layers.Dropout(0.1),
            layers.Dense(classes),
        ],
        name="sequential_cnn",
    )


HAND_BUILT = {
    "sequential": sequential,
    "vgg": vgg,
    "resnet": resnet,
    "unet": unet,
    "mobile_se": mobile_se,
    "nested": nested,
    "shared": shared,
    "two_in_two_out": two_in_two_out,
    "grouped": grouped,
    "assorted": assorted,
}
