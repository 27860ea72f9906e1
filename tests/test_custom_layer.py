"""Registering a handler for your own layer (this test doubles as the docs).

A custom layer kprune does not know freezes every channel it touches. One call
to `kprune.register_handler` makes it prunable: the handler says how channels
flow through the layer and how to slice its weights and config.
"""

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune.handlers import (
    ChannelwiseHandler,
    LayerHandler,
    PassThroughHandler,
    unregister_handler,
)
from kprune.handlers.base import keep
from tests import models


@keras.saving.register_keras_serializable(package="kprune_tests")
class ChannelGain(layers.Layer):
    """y = x * gain, one learned gain per channel."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def build(self, input_shape):
        self.gain = self.add_weight(
            shape=(self.channels,), initializer="ones", name="gain"
        )

    def call(self, x):
        return x * self.gain

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class ChannelGainHandler(ChannelwiseHandler):
    """Channels pass through; `gain` is sliced; `channels` in the config shrinks."""

    zeroed = ("gain",)

    def new_config(self, layer, config, masks):
        return {**config, "channels": int(masks.input.sum())}

    def new_weights(self, layer, weights, masks):
        return {"gain": keep(weights["gain"], masks.input, 0)}


def gain_model():
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = ChannelGain(8, name="gain")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(4, 3, padding="same", name="next")(x)
    out = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    return models.randomize(keras.Model(inp, out))


@pytest.fixture
def gain_handler():
    kprune.register_handler(ChannelGain, ChannelGainHandler())
    yield
    unregister_handler(ChannelGain)


def test_unknown_layer_is_frozen():
    g = kprune.graph(gain_model())
    (grp,) = [
        x for x in g.groups_of("conv") if "conv" in {p.name for p in x.producers()}
    ]
    assert any("ChannelGain 'gain' is opaque" in r for r in grp.reasons)


def test_registered_layer_is_pruned_exactly(gain_handler, tmp_path):
    model = gain_model()
    g = kprune.graph(model)
    grp = [x for x in g.groups_of("gain") if not x.frozen][0]
    assert "prune out-channels of conv => gain => prune in-channels of next" in str(grp)
    plan = kprune.plan(model, ratio=0.5)
    small = models.assert_exact(model, plan)
    assert small.get_layer("gain").channels == 4
    small.save(tmp_path / "gain.keras")
    keras.models.load_model(tmp_path / "gain.keras")


def test_double_registration_needs_override(gain_handler):
    with pytest.raises(ValueError, match="override=True"):
        kprune.register_handler(ChannelGain, ChannelGainHandler())
    kprune.register_handler(ChannelGain, ChannelGainHandler(), override=True)


def test_register_checks_its_arguments():
    with pytest.raises(TypeError, match="layer class"):
        kprune.register_handler(ChannelGain(4), ChannelGainHandler())
    with pytest.raises(TypeError, match="LayerHandler"):
        kprune.register_handler(ChannelGain, object())


def test_subclasses_inherit_handlers():
    class MyConv(layers.Conv2D):
        pass

    assert isinstance(
        kprune.handlers.get_handler(MyConv(4, 3)),
        type(kprune.handlers.get_handler(layers.Conv2D(4, 3))),
    )


def test_register_by_serialization_name():
    @keras.saving.register_keras_serializable(package="kprune_tests")
    class Twice(layers.Layer):
        def call(self, x):
            return 2.0 * x

    try:
        kprune.register_handler("kprune_tests>Twice", PassThroughHandler())
        assert isinstance(kprune.handlers.get_handler(Twice()), PassThroughHandler)
    finally:
        unregister_handler("kprune_tests>Twice")
    assert not isinstance(kprune.handlers.get_handler(Twice()), PassThroughHandler)


def test_registry_lists_builtins():
    registered = kprune.handlers.registered_classes()
    assert layers.Conv2D in registered and layers.Concatenate in registered
    assert np.all([isinstance(c, (type, str)) for c in registered])


@keras.saving.register_keras_serializable(package="kprune_tests")
class PointwiseMix(layers.Layer):
    """A filter-making layer of the user's own: `x @ kernel + bias` per pixel."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), name="kernel"
        )
        self.bias = self.add_weight(shape=(self.units,), name="bias")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) + self.bias

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class PointwiseMixHandler(LayerHandler):
    """New output channels; the kernel's rows follow the input channels."""

    zeroes_outputs = True
    #: output channel c is column c of the kernel and entry c of the bias, so
    #: zeroing and importance multipliers need nothing more: it is wrappable.
    output_axes = {"kernel": -1, "bias": 0}

    def trace(self, call, output_shapes, tracer):
        return [tracer.new(output_shapes[0][-1])]

    def new_config(self, layer, config, masks):
        return {**config, "units": int(masks.output.sum())}

    def new_weights(self, layer, weights, masks):
        kernel = keep(keep(weights["kernel"], masks.input, 0), masks.output, 1)
        return {"kernel": kernel, "bias": keep(weights["bias"], masks.output, 0)}

    def filters(self, layer, weights):
        return weights["kernel"].T


def test_registering_a_handler_makes_a_layer_prunable_and_wrappable():
    inp = keras.Input((6, 6, 3))
    x = PointwiseMix(8, name="mix")(inp)
    x = layers.ReLU()(x)
    out = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    model = models.randomize(keras.Model(inp, out))
    with pytest.raises(ValueError, match="no filters kprune can give"):
        kprune.wrap(model)
    kprune.register_handler(PointwiseMix, PointwiseMixHandler())
    try:
        models.assert_exact(model, kprune.plan(model, ratio=0.5))
        wrapped = kprune.wrap(model, init="uniform")
        assert type(wrapped.get_layer("mix")) is kprune.layers.ImportanceWrapper
        kprune.set_masks(wrapped, kprune.plan(wrapped, "importance", ratio=0.5))
        x = models.inputs_for(model)
        want = models.outputs(wrapped, x)[0]
        for folded in (kprune.unwrap(wrapped), kprune.shrink(wrapped)):
            np.testing.assert_allclose(
                models.outputs(folded, x)[0], want, rtol=1e-5, atol=1e-5
            )
        assert kprune.shrink(wrapped).get_layer("mix").layer.units == 4
    finally:
        unregister_handler(PointwiseMix)
