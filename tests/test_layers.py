"""Importance wrappers: placement, training, folding, masks, serialisation."""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import kprune
from kprune.importance.layers import (
    ImportanceBatchNormalization,
    ImportanceConv2D,
    ImportanceConv2DTranspose,
    ImportanceDense,
    ImportanceDepthwiseConv2D,
    ImportanceSeparableConv2D,
    wrapped_layers,
)
from kprune.surgery.shrinking import layer_masks
from tests import models


def conv_bn_relu_net(filters=8, classes=3):
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(filters, 3, padding="same", name="conv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(classes, name="head")(x))


def carriers_by_name(model):
    return {w.name: w for w in wrapped_layers(model)}


def test_multiplier_sits_after_the_batchnorm():
    wrapped = kprune.wrap(conv_bn_relu_net())
    assert isinstance(wrapped.get_layer("bn"), ImportanceBatchNormalization)
    assert type(wrapped.get_layer("conv")) is layers.Conv2D
    # Without a BatchNorm after it, the conv carries the multiplier itself.
    wrapped = kprune.wrap(models.vgg())
    assert any(isinstance(w, ImportanceDense) for w in wrapped_layers(wrapped))


def importance_gradient(model, carrier):
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")
    y = np.arange(16) % 3
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        loss = tf.reduce_mean(loss)
    return float(tf.norm(tape.gradient(loss, carrier.importance)))


def test_multiplier_gets_a_gradient_in_conv_bn_relu():
    model = models.randomize(conv_bn_relu_net())
    wrapped = kprune.wrap(model)
    assert importance_gradient(wrapped, wrapped.get_layer("bn")) > 1e-3


def test_a_multiplier_before_the_batchnorm_would_learn_nothing():
    """The pitfall the placement avoids: BN's batch statistics cancel the scale."""
    model = models.randomize(conv_bn_relu_net())
    inp = keras.Input((8, 8, 3))
    conv = ImportanceConv2D(layers.Conv2D(8, 3, padding="same"))
    x = layers.BatchNormalization()(conv(inp))
    x = layers.GlobalAveragePooling2D()(layers.ReLU()(x))
    naive = keras.Model(inp, layers.Dense(3)(x))
    naive.layers[1].layer.set_weights(model.get_layer("conv").get_weights())
    assert importance_gradient(naive, conv) < 1e-4


def planted_task(n=256, seed=0):
    """Channels 4..7 of the conv are dead (zero, frozen filters): only 0..3 help."""
    rng = np.random.default_rng(seed)
    model = conv_bn_relu_net(classes=1)
    conv = model.get_layer("conv")
    kernel, bias = conv.get_weights()
    kernel = rng.normal(0, 0.5, kernel.shape).astype("float32")
    kernel[..., 4:] = 0.0
    conv.set_weights([kernel, bias])
    conv.trainable = False
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    feats = np.maximum(np.einsum("nhwc,cf->nhwf", x, kernel[1, 1]), 0).mean(axis=(1, 2))
    y = (feats[:, :4] @ np.array([1.0, -1.0, 0.5, 2.0])).astype("float32")
    return model, x, y[:, None]


def test_l1_penalty_separates_useless_channels():
    model, x, y = planted_task()
    wrapped = kprune.wrap(model, regularizer=1e-3, layers=["conv"])
    wrapped.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    wrapped.fit(x, y, epochs=20, batch_size=64, verbose=0)
    scale = np.abs(wrapped.get_layer("bn").scale())
    # The dead channels' multipliers only feel the penalty; the useful ones stay.
    assert scale[4:].max() < 0.5 * scale[:4].min(), scale
    plan = kprune.plan(wrapped, criterion="importance", ratio=0.5)
    assert set(plan.groups["conv"].keep) == {0, 1, 2, 3}


def test_wrap_fit_plan_shrink_matches_the_masked_model():
    model = models.randomize(models.mobile_se())
    wrapped = kprune.wrap(model, init="l1", regularizer=1e-4)
    wrapped.compile(optimizer="adam", loss="mse")
    x = models.inputs_for(model, batch=16)
    wrapped.fit(x, np.zeros((16, 5)), epochs=2, verbose=0)
    plan = kprune.plan(wrapped, criterion="importance", ratio=0.5)
    kprune.set_masks(wrapped, plan)
    small = kprune.shrink(wrapped, plan)
    np.testing.assert_allclose(
        models.outputs(small, x)[0], models.outputs(wrapped, x)[0], rtol=1e-4, atol=1e-4
    )
    # The shrunk model stays wrapped (the multipliers can go on training);
    # unwrap folds them exactly.
    assert kprune.layers.is_wrapped(small)
    plain = kprune.unwrap(small)
    assert not kprune.layers.is_wrapped(plain)
    np.testing.assert_allclose(
        models.outputs(plain, x)[0], models.outputs(small, x)[0], rtol=1e-4, atol=1e-4
    )
    # The masks alone describe the same plan.
    again = kprune.masks_plan(wrapped)
    assert {k: v.keep for k, v in again.groups.items() if v.removed} == {
        k: v.keep for k, v in plan.groups.items() if v.removed
    }
    smaller = kprune.shrink(wrapped)
    assert smaller.count_params() == small.count_params()


@pytest.mark.parametrize("name", sorted(models.HAND_BUILT))
def test_unwrap_and_shrink_keep_the_wrapped_outputs(name):
    model = models.randomize(models.HAND_BUILT[name]())
    x = models.inputs_for(model)
    want = models.outputs(model, x)
    wrapped = kprune.wrap(model)  # ones: same outputs
    for got in (models.outputs(wrapped, x), models.outputs(kprune.unwrap(wrapped), x)):
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    wrapped = kprune.wrap(model, init="uniform", seed=3)
    want = models.outputs(wrapped, x)
    for other in (kprune.unwrap(wrapped), kprune.shrink(wrapped)):
        for a, b in zip(want, models.outputs(other, x)):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_masked_channels_are_exactly_zero():
    model = models.randomize(conv_bn_relu_net())
    wrapped = kprune.wrap(model)
    bn = wrapped.get_layer("bn")
    bn.channel_mask.assign(np.array([1, 0, 1, 0, 1, 1, 1, 1], "float32"))
    probe = keras.Model(wrapped.input, bn.output)
    out = probe(models.inputs_for(model), training=True)
    assert np.all(np.asarray(out)[..., [1, 3]] == 0)


def test_partly_masked_residual_stream_is_not_removed():
    model = models.randomize(models.resnet())
    wrapped = kprune.wrap(model)
    g = kprune.graph(wrapped)
    group = g.group("s1_proj")
    carriers = kprune.surgery.masks.carriers(group)
    assert len(carriers) == 3
    wrapper, index = carriers[0]
    mask = np.ones(16, "float32")
    mask[index[0]] = 0
    wrapper.channel_mask.assign(mask)
    assert "s1_proj" not in kprune.masks_plan(wrapped).groups or (
        0 in kprune.masks_plan(wrapped).groups["s1_proj"].keep
    )
    for w, idx in carriers:
        w.channel_mask.assign(
            np.where(np.isin(np.arange(16), idx[0]), 0, 1).astype("float32")
        )
    assert 0 not in kprune.masks_plan(wrapped).groups["s1_proj"].keep


def test_init_strategies():
    model = models.randomize(conv_bn_relu_net())
    bn = model.get_layer("bn")
    conv = model.get_layer("conv")
    gamma = bn.get_weights()[0]
    norms = np.abs(conv.get_weights()[0]).reshape(-1, 8).sum(0)

    def importance(**kwargs):
        return np.asarray(kprune.wrap(model, **kwargs).get_layer("bn").importance)

    np.testing.assert_allclose(importance(init="l1"), norms / norms.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        importance(init="bn_gamma"), np.abs(gamma) / np.abs(gamma).mean(), rtol=1e-5
    )
    np.testing.assert_allclose(importance(init=0.3), 0.3)
    np.testing.assert_allclose(
        importance(init=lambda layer, n: np.arange(n)), np.arange(8)
    )
    normal = importance(init="normal", seed=1)
    assert abs(normal.mean() - 1) < 0.2 and normal.std() > 0
    uniform = importance(init="uniform", seed=1)
    assert uniform.min() >= 0.5 and uniform.max() <= 1.5
    with pytest.raises(ValueError, match="init must be one of"):
        kprune.wrap(model, init="zeros")
    with pytest.raises(ValueError, match="gave shape"):
        kprune.wrap(model, init=lambda layer, n: np.ones(n + 1))


def test_wrap_options_and_errors():
    model = conv_bn_relu_net()
    wrapped = kprune.wrap(model, regularizer=1e-3, non_negative=True)
    bn = wrapped.get_layer("bn")
    assert isinstance(bn.importance_regularizer, keras.regularizers.L1)
    assert isinstance(bn.importance_constraint, keras.constraints.NonNeg)
    with pytest.raises(ValueError, match="wrapped already"):
        kprune.wrap(wrapped)
    with pytest.raises(ValueError, match="no such layer"):
        kprune.wrap(model, layers=["nope"])
    with pytest.raises(ValueError, match="prunable group"):
        kprune.wrap(model, layers=["head"])


def build_wrapper(cls, inner, shape):
    wrapper = cls(inner, importance_regularizer=keras.regularizers.L1(0.01))
    wrapper.build((None,) + shape)
    return wrapper


WRAPPERS = [
    (ImportanceConv2D, lambda: layers.Conv2D(4, 3, activation="relu"), (8, 8, 3)),
    (ImportanceDense, lambda: layers.Dense(4, activation="swish"), (5,)),
    (
        ImportanceConv2DTranspose,
        lambda: layers.Conv2DTranspose(4, 2, strides=2),
        (4, 4, 3),
    ),
    (
        ImportanceDepthwiseConv2D,
        lambda: layers.DepthwiseConv2D(3, depth_multiplier=2),
        (8, 8, 3),
    ),
    (ImportanceSeparableConv2D, lambda: layers.SeparableConv2D(4, 3), (8, 8, 3)),
    (ImportanceBatchNormalization, lambda: layers.BatchNormalization(), (8, 8, 3)),
]


@pytest.mark.parametrize(
    "cls, make, shape", WRAPPERS, ids=lambda v: getattr(v, "__name__", "")
)
def test_config_round_trip(cls, make, shape):
    wrapper = build_wrapper(cls, make(), shape)
    config = wrapper.get_config()
    again = cls.from_config(config)
    again.build((None,) + shape)
    assert again.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(wrapper)
    )
    assert type(restored) is cls and restored.get_config() == config


@pytest.mark.parametrize(
    "cls, make, shape", WRAPPERS, ids=lambda v: getattr(v, "__name__", "")
)
def test_each_wrapper_folds_exactly(cls, make, shape):
    inp = keras.Input(shape)
    model = models.randomize(keras.Model(inp, build_wrapper(cls, make(), shape)(inp)))
    wrapper = model.layers[1]
    rng = np.random.default_rng(0)
    wrapper.importance.assign(
        rng.uniform(0.2, 2.0, wrapper.importance.shape).astype("float32")
    )
    mask = np.ones(wrapper.channel_mask.shape, "float32")
    mask[1] = 0
    wrapper.channel_mask.assign(mask)
    x = models.inputs_for(model)
    np.testing.assert_allclose(
        models.outputs(kprune.unwrap(model), x)[0],
        models.outputs(model, x)[0],
        rtol=1e-5,
        atol=1e-5,
    )


def test_wrapped_model_saves_and_loads(tmp_path):
    model = models.randomize(models.mobile_se())
    wrapped = kprune.wrap(model, init="uniform", regularizer=1e-4, non_negative=True)
    path = tmp_path / "wrapped.keras"
    wrapped.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    x = models.inputs_for(model)
    np.testing.assert_allclose(
        models.outputs(loaded, x)[0],
        models.outputs(wrapped, x)[0],
        rtol=1e-6,
        atol=1e-6,
    )
    assert len(wrapped_layers(loaded)) == len(wrapped_layers(wrapped))


def test_a_shrunk_wrapped_model_stays_wrapped_saves_and_unwraps_exactly(tmp_path):
    """Issue 11: the multipliers of the kept filters survive shrink, so they can
    go on training through further rounds (before, shrink folded them away)."""
    model = models.randomize(models.mobile_se())
    wrapped = kprune.wrap(model, init="uniform", regularizer=1e-4)
    plan = kprune.plan(wrapped, criterion="importance", ratio=0.5)
    small = kprune.shrink(wrapped, plan)
    x = models.inputs_for(model)
    kept = {w.name: w for w in wrapped_layers(small)}
    assert set(kept) == {w.name for w in wrapped_layers(wrapped)}
    g = kprune.graph(wrapped)
    masks = layer_masks(g, plan.keep_units(g))
    for layer in wrapped_layers(wrapped):
        kept_channels = masks[id(layer)].output
        assert kept_channels is not None and not kept_channels.all()
        np.testing.assert_allclose(
            small.get_layer(layer.name).scale(), layer.scale()[kept_channels]
        )
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.models.load_model(path)
    assert wrapped_layers(loaded)
    want = models.outputs(kprune.zero_pruned(wrapped, plan), x)[0]
    for other in (small, loaded, kprune.unwrap(loaded)):
        np.testing.assert_allclose(models.outputs(other, x)[0], want, atol=1e-5)
    assert not wrapped_layers(kprune.unwrap(loaded))
    # A second round plans on the kept multipliers, not on a fallback.
    again = kprune.plan(small, criterion="importance", ratio=0.25)
    assert again.channels_after < plan.channels_after


def test_wrap_refuses_a_model_with_nothing_to_wrap():
    inp = keras.Input((8, 8, 3))
    x = layers.Lambda(lambda t: t[..., ::-1], name="opaque")(layers.Conv2D(4, 3)(inp))
    model = keras.Model(inp, layers.Conv2D(2, 1)(x))
    with pytest.raises(ValueError, match="no filters kprune can give.*explain"):
        kprune.wrap(model)


def pre_activation_net():
    """DenseNet / ResNetV2 style: BatchNorms that do not follow a conv directly."""
    inp = keras.Input((8, 8, 3))
    stem = layers.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = layers.ReLU()(layers.BatchNormalization(name="pre_a")(stem))
    grown = layers.Conv2D(4, 3, padding="same", name="grow")(x)
    x = layers.Concatenate()([stem, grown])
    x = layers.ReLU()(layers.BatchNormalization(name="pre_b")(x))
    x = layers.Conv2D(6, 1, name="transition")(x)
    x = layers.BatchNormalization(name="bn_c")(x)
    x = layers.ReLU()(layers.BatchNormalization(name="bn_after_bn")(x))
    out = layers.Dense(3)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def test_masks_zero_a_channel_at_every_batchnorm_it_passes():
    """A BatchNorm maps a zero channel to beta - gamma * mean / std. Masking only
    where the filter is made left that constant in the masked model, which then
    differed from shrink(wrapped) (by 15% on DenseNet121 and ResNet50V2)."""
    model = models.randomize(pre_activation_net())
    wrapped = kprune.wrap(model, init="uniform")
    masked_bns = {"pre_a", "pre_b", "bn_after_bn"}
    assert masked_bns <= set(carriers_by_name(wrapped))
    kprune.set_masks(wrapped, kprune.plan(wrapped, criterion="random", ratio=0.5))
    x = models.inputs_for(model)
    small = kprune.shrink(wrapped)
    assert small.count_params() < model.count_params()
    np.testing.assert_allclose(
        models.outputs(small, x)[0], models.outputs(wrapped, x)[0], rtol=1e-4, atol=1e-5
    )


#: One small model per layer type whose handler can scale its outputs, with
#: the layer to wrap named "target". Adding such a handler without an entry
#: here fails `test_every_scalable_handler_is_covered`.
def _typed(make, shape, before=None):
    def build():
        inp = keras.Input(shape)
        x = before()(inp) if before else inp
        x = make(name="target")(x)
        x = layers.Flatten()(x) if len(shape) > 1 else x
        return keras.Model(inp, layers.Dense(3, name="head")(x))

    return build


LAYER_TYPES = {
    layers.Conv1D: _typed(lambda **k: layers.Conv1D(4, 3, **k), (10, 3)),
    layers.Conv2D: _typed(lambda **k: layers.Conv2D(4, 3, **k), (8, 8, 3)),
    layers.Conv3D: _typed(lambda **k: layers.Conv3D(4, 3, **k), (5, 5, 5, 2)),
    layers.Dense: _typed(lambda **k: layers.Dense(4, activation="relu", **k), (5,)),
    layers.Conv1DTranspose: _typed(
        lambda **k: layers.Conv1DTranspose(4, 2, strides=2, **k), (5, 3)
    ),
    layers.Conv2DTranspose: _typed(
        lambda **k: layers.Conv2DTranspose(4, 2, strides=2, **k), (4, 4, 3)
    ),
    layers.Conv3DTranspose: _typed(
        lambda **k: layers.Conv3DTranspose(4, 2, strides=2, **k), (3, 3, 3, 2)
    ),
    layers.DepthwiseConv1D: _typed(
        lambda **k: layers.DepthwiseConv1D(3, depth_multiplier=2, **k),
        (10, 3),
        before=lambda: layers.Conv1D(3, 1),
    ),
    layers.DepthwiseConv2D: _typed(
        lambda **k: layers.DepthwiseConv2D(3, depth_multiplier=2, **k),
        (8, 8, 3),
        before=lambda: layers.Conv2D(3, 1),
    ),
    layers.SeparableConv1D: _typed(
        lambda **k: layers.SeparableConv1D(4, 3, **k), (10, 3)
    ),
    layers.SeparableConv2D: _typed(
        lambda **k: layers.SeparableConv2D(4, 3, **k), (8, 8, 3)
    ),
    layers.BatchNormalization: _typed(
        lambda **k: layers.BatchNormalization(**k),
        (8, 8, 3),
        before=lambda: layers.Conv2D(4, 3),
    ),
}


def test_every_scalable_handler_is_covered():
    from kprune.handlers import get_handler, registered_classes

    scalable = {
        cls
        for cls in registered_classes()
        if isinstance(cls, type) and get_handler(cls).can_scale(None)
    }
    assert scalable == set(LAYER_TYPES), scalable ^ set(LAYER_TYPES)


@pytest.mark.parametrize("cls", list(LAYER_TYPES), ids=lambda c: c.__name__)
def test_wrap_covers_every_layer_type_with_a_handler(cls):
    from kprune.handlers import get_handler

    model = models.randomize(LAYER_TYPES[cls]())
    wrapped = kprune.wrap(model, init="uniform")
    target = wrapped.get_layer("target")
    wanted = keras.saving.get_registered_object(f"kprune>{get_handler(cls).wrapper}")
    assert type(target) is wanted
    plan = kprune.plan(wrapped, "l1", ratio=0.5)
    kprune.set_masks(wrapped, plan)
    assert not keras.ops.convert_to_numpy(target.channel_mask).all()
    x = models.inputs_for(model)
    want = models.outputs(wrapped, x)[0]
    np.testing.assert_allclose(
        models.outputs(kprune.unwrap(wrapped), x)[0], want, rtol=1e-5, atol=1e-5
    )
    assert kprune.masks_plan(wrapped).channels_after == plan.channels_after
    small = kprune.shrink(wrapped)
    np.testing.assert_allclose(models.outputs(small, x)[0], want, rtol=1e-5, atol=1e-5)


def test_a_wrapped_batchnorm_trains_in_training_mode():
    """`training` reaches the wrapped BatchNorm through Keras' call context."""
    model = LAYER_TYPES[layers.BatchNormalization]()
    wrapped = kprune.wrap(model)
    x = np.random.default_rng(0).normal(3.0, 2.0, (16, 8, 8, 3)).astype("float32")
    bn = wrapped.get_layer("target").layer
    assert not np.allclose(
        keras.ops.convert_to_numpy(wrapped(x, training=True)),
        keras.ops.convert_to_numpy(wrapped(x, training=False)),
    )
    before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    wrapped.compile(optimizer="sgd", loss="mse")
    wrapped.fit(x, np.zeros((16, 3)), epochs=1, verbose=0)
    assert not np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), before)


def test_a_wrapped_model_saved_by_kprune_0_1_loads_unwraps_and_shrinks():
    """Its layers were `kprune.layers.wrappers.ImportanceConv2D` then; Keras
    finds them by their registered names, wherever the module moved."""
    here = pathlib.Path(__file__).parent / "data"
    model = keras.models.load_model(here / "wrapped_v0_1.keras")
    x = np.load(here / "wrapped_v0_1_inputs.npy")
    want = np.load(here / "wrapped_v0_1_outputs.npy")
    assert kprune.layers.is_wrapped(model)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), want, atol=1e-5)
    plain = kprune.unwrap(model)
    assert not kprune.layers.is_wrapped(plain)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)), want, atol=1e-5)
    small = kprune.shrink(model, kprune.plan(model, "importance", ratio=0.5))
    assert small.count_params() < model.count_params()
