"""learn_importance: the multipliers' own learning phase."""

import keras
import numpy as np
import pytest
from keras import layers

import kprune


def planted(seed=0):
    """conv(8) -> BN -> ReLU -> conv(1): channels 4..7 of the first conv feed
    nothing (their weights in the second conv are zero)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 2))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inp)
    x = layers.ReLU()(layers.BatchNormalization(name="bn")(x))
    out = layers.Conv2D(1, 1, name="head")(x)
    model = keras.Model(inp, out)
    kernel, bias = model.get_layer("head").get_weights()
    kernel[..., 4:, :] = 0.0
    model.get_layer("head").set_weights([kernel, bias])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 8, 8, 2)).astype("float32")
    y = model.predict(x, verbose=0)  # the model is exact for its own outputs
    return model, (x, y + rng.normal(0, 0.05, y.shape).astype("float32"))


def test_the_phase_ranks_the_filters_that_feed_nothing_last():
    model, data = planted()
    wrapped = kprune.wrap(model, regularizer=1e-3)
    wrapped.compile(keras.optimizers.SGD(0.1), "mse")
    frozen = {
        v.path: np.array(v) for v in wrapped.weights if "importance" not in v.path
    }
    flags = [layer.trainable for layer in wrapped.layers]
    kprune.learn_importance(wrapped, data, epochs=8, batch_size=32, penalty=None)
    scale = kprune.layers.wrapped_layers(wrapped)[0].scale()
    assert scale[4:].max() < 0.5 * scale[:4].min(), scale
    plan = kprune.plan(wrapped, criterion="importance", ratio=0.5)
    assert set(plan.groups["c1"].keep) == {0, 1, 2, 3}
    # Nothing but the multipliers moved; flags and compile settings are back.
    for v in wrapped.weights:
        if v.path in frozen and "pruning_state" not in v.path:
            np.testing.assert_array_equal(np.array(v), frozen[v.path], err_msg=v.path)
    assert [layer.trainable for layer in wrapped.layers] == flags
    assert isinstance(wrapped.optimizer, keras.optimizers.SGD)
    assert len(wrapped.trainable_weights) > len(kprune.layers.wrapped_layers(wrapped))


def test_the_phase_restores_a_custom_loss_that_does_not_deserialize():
    """A loss function the user did not register used to make the phase raise
    at its end (compile_from_config cannot find it), leaving the model compiled
    with the phase's own optimizer."""

    def my_loss(y_true, y_pred):
        return keras.ops.mean(keras.ops.square(y_true - y_pred))

    model, data = planted()
    wrapped = kprune.wrap(model)
    optimizer = keras.optimizers.SGD(0.05)
    wrapped.compile(optimizer, my_loss)
    kprune.learn_importance(wrapped, data, epochs=1, batch_size=64)
    assert wrapped.loss is my_loss
    assert wrapped.optimizer is optimizer  # same variables: the user's object
    wrapped.fit(*data, epochs=1, batch_size=64, verbose=0)


def test_bad_arguments():
    model, data = planted()
    with pytest.raises(ValueError, match="kprune.wrap"):
        kprune.learn_importance(model, data)
    wrapped = kprune.wrap(model)
    with pytest.raises(ValueError, match="compiled model"):
        kprune.learn_importance(wrapped, data)
    wrapped.compile("adam", "mse")
    with pytest.raises(ValueError, match="epochs must be"):
        kprune.learn_importance(wrapped, data, epochs=0)
    with pytest.raises(ValueError, match="learning_rate must be"):
        kprune.learn_importance(wrapped, data, learning_rate=0)
    with pytest.raises(ValueError, match="penalty must be"):
        kprune.learn_importance(wrapped, data, penalty=-1)
    with pytest.raises(TypeError, match="optimizer must be a Keras optimizer"):
        kprune.learn_importance(wrapped, data, optimizer="sgd")
    with pytest.raises(ValueError, match="give the rate to the optimizer"):
        sgd = keras.optimizers.SGD(1.0)
        kprune.learn_importance(wrapped, data, learning_rate=1e-2, optimizer=sgd)
    assert isinstance(wrapped.optimizer, keras.optimizers.Adam)  # untouched


def test_the_phase_can_train_with_another_optimizer():
    """SGD's steps follow each multiplier's gradient, Adam's are about its rate
    whatever the gradient: the two phases end with different multipliers, and
    the model's own optimizer comes back after either."""
    model, data = planted()
    scales = {}
    for name, optimizer in (("adam", None), ("sgd", keras.optimizers.SGD(5.0))):
        wrapped = kprune.wrap(model, regularizer=1e-3)
        wrapped.compile(keras.optimizers.RMSprop(1e-3), "mse")
        kprune.learn_importance(
            wrapped, data, epochs=4, batch_size=32, optimizer=optimizer
        )
        scales[name] = kprune.layers.wrapped_layers(wrapped)[0].scale()
        assert isinstance(wrapped.optimizer, keras.optimizers.RMSprop)
    assert scales["sgd"][4:].max() < 0.5 * scales["sgd"][:4].min(), scales["sgd"]
    assert not np.allclose(scales["sgd"], scales["adam"], atol=1e-3)


def test_the_phase_penalty_replaces_the_wraps_for_its_duration():
    model, data = planted()
    wrapped = kprune.wrap(model, regularizer=1e-6)
    wrapped.compile("sgd", "mse")
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            layer = kprune.layers.wrapped_layers(wrapped)[0]
            seen.append(float(layer.importance.regularizer.l1))

    original = wrapped.fit
    wrapped.fit = lambda *a, **k: original(*a, **{**k, "callbacks": [Spy()]})
    kprune.learn_importance(wrapped, data, epochs=1, penalty=0.5)
    assert seen and set(seen) == {0.5}
    layer = kprune.layers.wrapped_layers(wrapped)[0]
    assert float(layer.importance.regularizer.l1) == pytest.approx(1e-6)


def test_a_short_joint_fit_cannot_rank_but_the_phase_can():
    """Issue 11's failure in small: trained with the network for a few dozen
    Adam updates, the multipliers of filters that feed nothing sit among the
    others (Adam moves each by about the learning rate per step, so the L1
    pull cannot separate them), and ranking by them keeps useless filters.
    The phase of their own puts those filters last."""
    model, data = planted()
    joint = kprune.wrap(model, regularizer=1e-4)
    joint.compile(keras.optimizers.Adam(1e-3), "mse")
    joint.fit(*data, epochs=8, batch_size=32, verbose=0)  # 64 updates
    scale = kprune.layers.wrapped_layers(joint)[0].scale()
    assert scale.max() - scale.min() < 0.15, scale  # they barely moved
    assert scale[4:].max() > 0.8 * scale[:4].min(), scale  # no gap to rank by

    phased = kprune.wrap(model, regularizer=1e-4)
    phased.compile(keras.optimizers.Adam(1e-3), "mse")
    kprune.learn_importance(phased, data, epochs=8, batch_size=32)
    scale = kprune.layers.wrapped_layers(phased)[0].scale()
    assert scale[4:].max() < 0.8 * scale[:4].min(), scale  # a gap to rank by
    plan = kprune.plan(phased, criterion="importance", ratio=0.5)
    assert set(plan.groups["c1"].keep) == {0, 1, 2, 3}
