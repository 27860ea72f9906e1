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
    x = keras.layers.Lambda(center, name="center")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = models.randomize(keras.Model(inp, out))
    plan = kprune.plan(model, ratio=0.5)
    small = models.assert_exact(model, plan)
    assert small.get_layer("before").filters == 6
    assert small.get_layer("center").function is model.get_layer("center").function


def center(t):
    return t - keras.ops.mean(t, axis=-1, keepdims=True)


def test_a_probed_lambda_is_pruned_through_and_keeps_its_function():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, name="before")(inp)
    x = keras.layers.Lambda(lambda t: t * 2.0, output_shape=(6, 6, 6), name="dbl")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = models.randomize(keras.Model(inp, out))
    small = models.assert_exact(model, kprune.plan(model, ratio=0.5))
    assert small.get_layer("before").filters == 3
    assert small.get_layer("dbl").function is model.get_layer("dbl").function
    assert small.get_layer("dbl").output.shape[-1] == 3


def test_per_channel_layers_are_sliced():
    """Layers that do not map 0 to 0 are outside the exactness check; slice them."""
    from kprune import keras_graph

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


def shifted_net(middle, *, head="conv", kernel=1, padding="valid", use_bias=True):
    """conv(8) -> `middle` -> a head reading all 8 channels."""
    inp = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="first")(inp)
    x = middle(x)
    if head == "dense":
        out = keras.layers.Dense(4, use_bias=use_bias, name="head")(
            keras.layers.Flatten()(x)
        )
    else:
        out = keras.layers.Conv2D(
            4, kernel, padding=padding, use_bias=use_bias, name="head"
        )(x)
    return models.randomize(keras.Model(inp, out))


SHIFTING = {
    "sigmoid_layer": keras.layers.Activation("sigmoid"),
    "sigmoid_op": lambda t: keras.ops.sigmoid(t),
    "softplus_op": lambda t: keras.ops.softplus(t),
    "plus_scalar": lambda t: t + 0.3,
    "plus_vector": lambda t: t + np.linspace(-1, 1, 8).astype("float32"),
    "sigmoid_lambda": keras.layers.Lambda(lambda t: keras.ops.sigmoid(t)),
    "rescaling_offset": keras.layers.Rescaling(2.0, offset=0.5),
}


@pytest.mark.parametrize(
    "middle, head, kernel, padding, use_bias",
    [(name, "conv", 1, "valid", True) for name in sorted(SHIFTING)]
    + [
        ("sigmoid_op", "conv", 3, "valid", False),
        ("plus_vector", "dense", 1, "", True),
    ],
)
def test_a_removed_channel_that_is_not_zero_is_folded_into_the_next_bias(
    middle, head, kernel, padding, use_bias
):
    """sigmoid(0) = 0.5, x + c = c: exact for Dense, 1x1 and 'valid' convolutions."""
    model = shifted_net(
        SHIFTING[middle], head=head, kernel=kernel, padding=padding, use_bias=use_bias
    )
    g = kprune.graph(model)
    assert any(
        "shrink folds it into that layer's bias: exact" in n
        for n in g.group("first").notes
    )
    plan = kprune.plan(model, criterion="random", ratio=0.5, seed=3)
    small = models.assert_exact(model, plan, atol=1e-5, rtol=1e-5)
    assert small.get_layer("head").use_bias


def test_a_fold_into_a_same_padded_conv_is_exact_away_from_the_border():
    model = shifted_net(SHIFTING["sigmoid_op"], kernel=3, padding="same")
    g = kprune.graph(model)
    assert any("exact away from the border" in n for n in g.group("first").notes)
    assert "exact away from the border" in g.explain()
    plan = kprune.plan(model, ratio=0.5)
    small, zeroed = kprune.shrink(model, plan), kprune.zero_pruned(model, plan)
    x = models.inputs_for(model)
    (a,), (b,) = models.outputs(zeroed, x), models.outputs(small, x)
    np.testing.assert_allclose(b[:, 1:-1, 1:-1], a[:, 1:-1, 1:-1], atol=1e-5)
    assert np.abs(b - a).max() > 1e-3  # the border does differ, as documented


def test_a_shifted_channel_that_a_batchnorm_zeroes_again_needs_no_fold():
    model = shifted_net(
        lambda t: keras.layers.BatchNormalization()(keras.ops.sigmoid(t))
    )
    g = kprune.graph(model)
    assert not g.constant_sinks
    models.assert_exact(model, kprune.plan(model, ratio=0.5))


@pytest.mark.parametrize(
    "arithmetic",
    [
        lambda t, c: t * c,
        lambda t, c: t + c,
        lambda t, c: keras.ops.subtract(c, t),
        lambda t, c: keras.ops.maximum(t, c),
    ],
    ids=["mul", "add", "rsub", "maximum"],
)
def test_per_channel_constants_in_raw_arithmetic_are_sliced(arithmetic):
    """Used to crash inside Keras: Cannot broadcast shape ... 4 ... 8."""
    c = np.linspace(0.5, 1.5, 8, dtype="float32").reshape(1, 1, 1, 8)
    model = shifted_net(lambda t: arithmetic(t, c))
    plan = kprune.plan(model, ratio=0.5)
    small = models.assert_exact(model, plan, atol=1e-5, rtol=1e-5)
    assert small.get_layer("first").filters == 4


def test_a_call_with_a_constant_kprune_cannot_slice_freezes_its_group():
    inp = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, name="first")(inp)
    x = keras.ops.concatenate([x, np.ones((1, 8, 8, 8), "float32")], axis=0)
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(x))
    g = kprune.graph(model)
    assert g.group("first").frozen
    assert any("constant array of shape" in r for r in g.group("first").reasons)
    plan = kprune.plan(model, ratio=0.5)
    assert plan.channels_after == plan.channels_before  # no Keras error either


class ConvBlock(keras.layers.Layer):
    """A block written as a layer holding layers (as keras_hub and keras_cv do)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = keras.layers.Conv2D(filters, 3, padding="same")
        self.bn = keras.layers.BatchNormalization()

    def call(self, x, training=None):
        return keras.ops.relu(self.bn(self.conv(x), training=training))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def block_net():
    inp = keras.Input((12, 12, 3))
    x = ConvBlock(8, name="block1")(inp)
    x = ConvBlock(12, name="block2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return models.randomize(keras.Model(inp, keras.layers.Dense(3)(x)))


def test_a_block_written_as_a_layer_is_opened_and_pruned():
    model = block_net()
    g = kprune.graph(model)
    assert not g.group("block1/conv2d").frozen
    assert "block2/batch_normalization_1" in g.layer_names()
    small = models.assert_exact(model, kprune.plan(model, ratio=0.5))
    block = small.get_layer("block1")
    assert isinstance(block, keras.Model)  # comes back as a nested model
    assert block.layers[1].filters == 4
    models.assert_exact(model, kprune.plan(model, ratio=0.5))  # opened once, reused


def test_an_opened_block_survives_wrap_and_a_keras_round_trip(tmp_path):
    model = block_net()
    wrapped = kprune.wrap(model, init="uniform", seed=2)
    x = models.inputs_for(model)
    for other in (kprune.unwrap(wrapped), kprune.shrink(wrapped)):
        np.testing.assert_allclose(
            models.outputs(other, x)[0], models.outputs(wrapped, x)[0], atol=1e-5
        )
    small = kprune.prune(model, ratio=0.5)
    small.save(tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    np.testing.assert_allclose(
        models.outputs(loaded, x)[0], models.outputs(small, x)[0], atol=1e-6
    )


class Unrebuildable(keras.layers.Layer):
    """Its config names an argument its constructor refuses."""

    def call(self, x):
        return x * 2.0

    def get_config(self):
        return {**super().get_config(), "typo_argument": 1}


class ConfigLosesAWeight(keras.layers.Layer):
    """Makes one weight more when built from its config than it was made with."""

    def __init__(self, extra=False, **kwargs):
        super().__init__(**kwargs)
        self.extra = extra

    def build(self, input_shape):
        self.gain = self.add_weight(shape=(), initializer="ones", name="gain")
        if self.extra:
            self.spare = self.add_weight(shape=(), initializer="ones", name="spare")

    def call(self, x):
        return x * self.gain

    def get_config(self):
        return {**super().get_config(), "extra": True}


@pytest.mark.parametrize(
    "layer, problem",
    [
        (Unrebuildable, "typo_argument"),
        (ConfigLosesAWeight, "has 2 weights where the original has 1"),
    ],
)
def test_a_layer_that_cannot_be_rebuilt_names_itself_and_the_fix(layer, problem):
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, name="before")(inp)
    x = layer(name="odd")(x)
    model = keras.Model(inp, keras.layers.Conv2D(4, 1)(x))
    before = models.weights_of(model)
    with pytest.raises(ValueError, match="cannot rebuild layer 'odd'") as info:
        kprune.prune(model, ratio=0.5)
    assert problem in str(info.value) and "register_handler" in str(info.value)
    for a, b in zip(before, models.weights_of(model)):
        np.testing.assert_array_equal(a, b)


def test_identity_with_a_dtype_policy_object_is_rebuilt():
    """keras_hub builds Identity(dtype=DTypePolicy(...)); its get_config raises."""
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, name="before")(inp)
    policy = keras.DTypePolicy("float32")
    x = keras.layers.Identity(dtype=policy, name="same")(x)
    model = models.randomize(keras.Model(inp, keras.layers.Conv2D(4, 1)(x)))
    small = models.assert_exact(model, kprune.plan(model, ratio=0.5))
    assert isinstance(small.get_layer("same"), keras.layers.Identity)


def unregistered_loss(y_true, y_pred):
    return keras.ops.mean(keras.ops.square(y_true - y_pred))


def test_a_custom_loss_that_does_not_deserialize_is_kept(recwarn):
    """An unregistered loss function (the commonest custom setting) defeats
    compile_from_config; the pruned model is compiled with the function itself."""
    model = models.vgg()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=unregistered_loss)
    small = kprune.prune(model, ratio=0.5)
    assert not [w for w in recwarn if "could not compile" in str(w.message)]
    assert small.compiled and small.loss is unregistered_loss
    assert isinstance(small.optimizer, keras.optimizers.SGD)
    assert small.optimizer is not model.optimizer  # built for other variables
    x = np.zeros((2, *model.input_shape[1:]), "float32")
    small.fit(x, small.predict(x, verbose=0), verbose=0)
    assert model.compiled and model.loss is unregistered_loss


def test_compile_settings_that_cannot_be_restored_warn_and_still_shrink(
    monkeypatch,
):
    def fails(*args, **kwargs):
        raise TypeError("no way to compile this")

    monkeypatch.setattr("kprune.surgery.cloning.compile_like", fails)
    model = models.vgg()
    model.compile(optimizer="adam", loss=unregistered_loss)
    with pytest.warns(UserWarning, match="could not compile it as the original"):
        small = kprune.prune(model, ratio=0.5)
    assert small.count_params() < model.count_params()
    assert model.compiled


def test_the_independent_reference_catches_a_wrong_unit_mapping(monkeypatch):
    """A bug shared by shrink and zero_pruned (both read plan.keep_units) agrees
    with itself; the hand-written reference does not read it, so it fails."""
    from kprune.planning import plans

    model = models.randomize(models.vgg())
    plan = kprune.plan(model, ratio=0.5)
    models.assert_exact(model, plan)
    right = plans.PruningPlan.keep_units
    monkeypatch.setattr(
        plans.PruningPlan, "keep_units", lambda self, g: np.roll(right(self, g), 1)
    )
    x = models.inputs_for(model)
    np.testing.assert_allclose(
        models.outputs(kprune.shrink(model, plan), x)[0],
        models.outputs(kprune.zero_pruned(model, plan), x)[0],
        rtol=1e-4,
        atol=1e-4,
    )
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        models.assert_exact(model, plan)
