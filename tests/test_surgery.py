"""Surgery is exact, never touches the caller's model, and round-trips."""

import keras
import numpy as np
import pytest

import kprune
from tests import models


@pytest.mark.parametrize("name", sorted(models.HAND_BUILT))
@pytest.mark.parametrize("criterion, ratio", [("l1", 0.5), ("random", 0.3)])
def test_shrink_equals_zeroed_model(name, criterion, ratio):
    model = models.randomize(models.HAND_BUILT[name]())
    plan = kprune.plan(model, criterion=criterion, ratio=ratio)
    assert plan.channels_after < plan.channels_before
    small = models.assert_exact(model, plan)
    assert small.count_params() < model.count_params()


@pytest.mark.parametrize("name", sorted(models.HAND_BUILT))
def test_outputs_keep_their_shape(name):
    model = models.HAND_BUILT[name]()
    small = kprune.prune(model, ratio=0.9)
    for a, b in zip(model.outputs, small.outputs):
        assert tuple(a.shape) == tuple(b.shape)


def test_caller_model_is_untouched():
    model = models.randomize(models.mobile_se())
    before = models.weights_of(model)
    configs = [layer.get_config() for layer in model.layers]
    x = models.inputs_for(model)
    y = models.outputs(model, x)
    kprune.shrink(model, kprune.plan(model, ratio=0.5))
    kprune.prune(model, flops=0.5)
    kprune.zero_pruned(model, kprune.plan(model, ratio=0.5))
    for a, b in zip(before, models.weights_of(model)):
        np.testing.assert_array_equal(a, b)
    assert configs == [layer.get_config() for layer in model.layers]
    np.testing.assert_array_equal(y[0], models.outputs(model, x)[0])


def test_names_configs_and_initializers_are_kept():
    model = models.resnet()
    small = kprune.prune(model, ratio=0.5)
    assert [layer.name for layer in small.layers] == [
        layer.name for layer in model.layers
    ]
    old, new = model.get_layer("s0_a"), small.get_layer("s0_a")
    assert new.filters < old.filters
    for key in ("kernel_initializer", "bias_initializer", "padding", "activation"):
        assert new.get_config()[key] == old.get_config()[key]


def test_shrunk_model_saves_and_loads(tmp_path):
    model = models.randomize(models.mobile_se())
    small = kprune.prune(model, ratio=0.5)
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.models.load_model(path)
    x = models.inputs_for(model)
    np.testing.assert_allclose(
        models.outputs(loaded, x)[0], models.outputs(small, x)[0], rtol=1e-6, atol=1e-6
    )


def test_compiled_model_stays_compiled():
    model = models.vgg()
    model.compile(optimizer="adam", loss="mse")
    small = kprune.prune(model, ratio=0.5)
    assert small.compiled
    small.fit(np.zeros((4, 16, 16, 3)), np.zeros((4, 5)), epochs=1, verbose=0)


def test_plan_for_another_model_is_refused():
    plan = kprune.plan(models.vgg(), ratio=0.5)
    with pytest.raises(ValueError, match="made for model 'vgg'.*kprune.plan"):
        kprune.shrink(models.resnet(), plan)


def test_plan_must_be_a_plan():
    with pytest.raises(TypeError, match="PruningPlan"):
        kprune.shrink(models.vgg(), {"ratio": 0.5})
    with pytest.raises(ValueError, match="needs a plan"):
        kprune.shrink(models.vgg())


def test_reshape_target_and_rescaling_are_rewritten():
    model = models.randomize(models.mobile_se())
    small = kprune.prune(model, ratio=0.5)
    reshape = small.get_layer("se_reshape0")
    conv = small.get_layer("expand0")
    assert conv.filters == 8
    assert tuple(reshape.target_shape) == (1, 1, 8)

    model = models.randomize(models.assorted())
    small = kprune.prune(model, ratio=0.5)
    scale = small.get_layer("scale").get_config()["scale"]
    assert len(scale) == small.get_layer("stem").filters == 4


def test_lambda_model_shrinks_around_the_lambda():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, name="before")(inp)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = models.randomize(keras.Model(inp, out))
    plan = kprune.plan(model, ratio=0.5)
    small = models.assert_exact(model, plan)
    assert small.get_layer("before").filters == 6
    assert small.get_layer("double").function is model.get_layer("double").function


def test_per_channel_layers_are_sliced():
    """Layers that do not map 0 to 0 are outside the exactness check; slice them."""
    from kprune.graph import keras_graph

    layer_scale = keras_graph.convnext_layer_scale()
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 1, name="c")(inp)
    x = keras.layers.Normalization(
        axis=-1, mean=list(range(8)), variance=[1.0 + i for i in range(8)], name="norm"
    )(x)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = layer_scale(0.5, 8, name="scale")(x)
    x = keras.layers.Dense(6, name="d4")(x)
    out = keras.layers.Conv2D(2, 1)(x)
    model = models.randomize(keras.Model(inp, out))
    plan = kprune.plan(model, ratio=0.5)
    kept = list(plan.groups["c"].keep)
    small = kprune.shrink(model, plan)

    norm = small.get_layer("norm").get_config()
    assert norm["mean"] == [float(i) for i in kept]
    assert norm["variance"] == [1.0 + i for i in kept]
    old_ln, new_ln = model.get_layer("ln"), small.get_layer("ln")
    np.testing.assert_array_equal(
        new_ln.get_weights()[0], old_ln.get_weights()[0][kept]
    )
    assert small.get_layer("scale").projection_dim == 4
    np.testing.assert_array_equal(
        small.get_layer("scale").get_weights()[0],
        model.get_layer("scale").get_weights()[0][kept],
    )
    rows, cols = kept, list(plan.groups["d4"].keep)
    np.testing.assert_array_equal(
        small.get_layer("d4").get_weights()[0],
        model.get_layer("d4").get_weights()[0][rows][:, cols],
    )
    # With no channel removed from those layers' inputs, outputs are unchanged.
    keep_all = kprune.plan(model, ratio=0.0)
    x = models.inputs_for(model)
    np.testing.assert_allclose(
        models.outputs(kprune.shrink(model, keep_all), x)[0],
        models.outputs(model, x)[0],
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("scale, center", [(False, True), (False, False)])
def test_batchnorm_without_gamma_is_exact(scale, center):
    """BN(scale=False), as in InceptionV3, maps a zeroed channel to -mean/std
    unless its moving mean is zeroed too; shrink must match the zeroed model."""
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c")(inp)
    x = keras.layers.BatchNormalization(scale=scale, center=center)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    model = models.randomize(keras.Model(inp, keras.layers.GlobalMaxPooling2D()(x)))
    models.assert_exact(model, kprune.plan(model, ratio=0.5))
