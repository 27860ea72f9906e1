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
from kprune.handlers import ChannelwiseHandler, PassThroughHandler, unregister_handler
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
