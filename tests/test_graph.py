"""The channel dependency graph: groups, couplings, index mapping, freezing."""

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from tests import models


def group_with(g, layer_name, role="out"):
    found = [
        grp
        for grp in g.groups
        if any(m.name == layer_name and m.role == role for m in grp.members)
    ]
    assert len(found) == 1, [str(x) for x in found]
    return found[0]


def member(grp, layer_name, role):
    (m,) = [m for m in grp.members if m.name == layer_name and m.role == role]
    return m


def test_chain_conv_bn_conv_is_one_group():
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, name="c1")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU()(x)
    out = layers.Conv2D(4, 3, name="c2")(x)
    g = kprune.graph(keras.Model(inp, out))
    grp = group_with(g, "c1")
    assert grp.size == 6 and not grp.frozen
    roles = {(m.name, m.role) for m in grp.members}
    assert {("c1", "out"), ("bn", "through"), ("c2", "in")} <= roles
    assert "prune out-channels of c1 => bn => prune in-channels of c2" in str(grp)


def test_residual_stream_couples_every_writer():
    m = models.resnet()
    g = kprune.graph(m)
    # After the projection shortcut, the projection conv and the last conv of
    # both later blocks write to the stream: the Add couples them into one group.
    grp = group_with(g, "s1_proj")
    assert {p.name for p in grp.producers()} == {"s1_proj", "s1_b", "s2_b"}
    assert grp.size == 16
    assert {p.name for p in group_with(g, "stem").producers()} == {"stem", "s0_b"}


def test_concat_maps_offsets():
    inp = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 1, name="a")(inp)
    b = layers.Conv2D(6, 1, name="b")(inp)
    x = layers.Concatenate(name="cat")([a, b])
    out = layers.Conv2D(5, 1, name="c")(x)
    g = kprune.graph(keras.Model(inp, out))
    ga, gb = group_with(g, "a"), group_with(g, "b")
    assert ga is not gb
    np.testing.assert_array_equal(member(ga, "c", "in").index[:, 0], np.arange(4))
    np.testing.assert_array_equal(member(gb, "c", "in").index[:, 0], 4 + np.arange(6))


def test_flatten_expands_indices():
    inp = keras.Input((2, 3, 4))
    x = layers.Conv2D(5, 1, name="conv")(inp)
    x = layers.Flatten()(x)
    out = layers.Dense(2, name="fc")(x)
    g = kprune.graph(keras.Model(inp, out))
    grp = group_with(g, "conv")
    index = member(grp, "fc", "in").index
    assert index.shape == (5, 6)
    # Channel c sits at p * C + c of the flat vector for each of the 6 positions.
    np.testing.assert_array_equal(index[2], np.arange(6) * 5 + 2)


def test_squeeze_excite_reshape_and_multiply_couple():
    g = kprune.graph(models.mobile_se())
    grp = group_with(g, "expand0")
    names = {m.name for m in grp.members}
    assert {"dw0", "se_reshape0", "se_expand0", "se_mul0"} <= names
    assert member(grp, "se_reduce0", "in").index.shape == (16, 1)
    assert not grp.frozen


def test_shared_layer_calls_are_coupled():
    g = kprune.graph(models.shared())
    assert sum(c.layer.name == "shared_conv" for c in g.calls) == 2
    grp = group_with(g, "shared_conv")
    assert grp.size == 12
    # The shared conv consumes both branches, so their convs prune alike.
    assert group_with(g, "branch_a") is group_with(g, "branch_b")


def test_nested_models_are_flattened():
    g = kprune.graph(models.nested())
    names = g.layer_names()
    assert "backbone/conv2d" in names and "head/conv2d_2" in names
    grp = group_with(g, "backbone/conv2d_1")
    assert any(m.name == "head/conv2d_2" and m.role == "in" for m in grp.members)


def test_inputs_and_outputs_are_frozen():
    g = kprune.graph(models.two_in_two_out())
    frozen = [grp for grp in g.groups if grp.frozen]
    reasons = " ".join(r for grp in frozen for r in grp.reasons)
    assert "model input 'image'" in reasons and "model input 'aux'" in reasons
    assert "model output 'logits'" in reasons and "model output 'mask'" in reasons


def test_grouped_conv_couplings():
    g = kprune.graph(models.grouped())
    # groups=4, 4 in / 4 out per group: channel j of every group goes together,
    # on its input side (the stem's filters) and on its output side.
    stem = group_with(g, "stem")
    assert stem.size == 4
    np.testing.assert_array_equal(
        member(stem, "grouped4", "in").index[1], [1, 5, 9, 13]
    )
    same_index = group_with(g, "grouped4")
    assert same_index.size == 4
    assert member(same_index, "grouped4", "out").index.shape == (4, 4)
    # groups=16 on 16 channels (a depthwise Conv2D): channel c in is channel c out.
    assert member(same_index, "dw16", "in") and member(same_index, "dw16", "out")
    # groups=2 with 1 output per... no: 8 in / 4 out per group -> same index.
    assert group_with(g, "pw_groups2").size == 4


def center(t):
    """Subtracts the mean over channels: every output channel reads them all."""
    return t - keras.ops.mean(t, axis=-1, keepdims=True)


def graph_around(layer):
    """conv 'before' -> `layer` -> conv: the graph and the group of 'before'."""
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, name="before")(inp)
    out = layers.Conv2D(4, 3)(layer(x))
    g = kprune.graph(keras.Model(inp, out))
    return g, group_with(g, "before")


def test_a_lambda_that_mixes_channels_freezes_with_reason():
    g, grp = graph_around(layers.Lambda(center, name="center"))
    assert grp.frozen
    assert any("Lambda 'center'" in r and "not channel-wise" in r for r in grp.reasons)
    assert "frozen because Lambda 'center'" in g.explain()


@pytest.mark.parametrize(
    "function",
    [
        lambda t: t * 2.0,
        lambda t: keras.ops.sigmoid(t) * t,
        lambda t: keras.ops.where(t > 0, t, 0.1 * t),
        lambda t: t[:, ::2, 1:, :],
    ],
    ids=["scale", "swish", "leaky", "strided_slice"],
)
def test_a_channel_wise_lambda_is_proven_by_probing(function):
    g, grp = graph_around(layers.Lambda(function, name="fn"))
    assert not grp.frozen
    assert any("Lambda 'fn' was proven channel-wise by probing" in n for n in grp.notes)
    assert "note: Lambda 'fn' was proven channel-wise" in g.explain()


@pytest.mark.parametrize(
    "function, why",
    [
        (lambda t: t[..., ::-1], "not channel-wise"),
        (lambda t: t * np.arange(6, dtype="float32"), "raised"),
        (lambda t: t[..., :3], "changes the channel count"),
        (lambda t: t + keras.random.normal(keras.ops.shape(t)), "not channel-wise"),
    ],
    ids=["reverse", "per_channel_constant", "channel_slice", "random"],
)
def test_a_lambda_the_probe_cannot_prove_stays_frozen(function, why):
    g, grp = graph_around(layers.Lambda(function, name="fn"))
    assert grp.frozen and any("'fn'" in r and why in r for r in grp.reasons)


class Mystery(layers.Layer):
    """A custom layer with no handler that mixes channels."""

    def call(self, x):
        return center(x)


class Doubler(layers.Layer):
    """A custom layer with no handler and no weights that is channel-wise."""

    def call(self, x):
        return x * 2.0


class Gain(layers.Layer):
    """A custom layer with no handler that holds a weight."""

    def build(self, input_shape):
        self.gain = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gain


def test_unknown_custom_layer_freezes_with_reason():
    g, grp = graph_around(Mystery(name="mystery"))
    reasons = grp.reasons
    assert any("Mystery 'mystery' is not channel-wise" in r for r in reasons)


def test_unknown_custom_layer_with_weights_stays_opaque():
    g, grp = graph_around(Gain(name="gain"))
    reasons = grp.reasons
    assert any("Gain 'gain' is opaque" in r and "holds weights" in r for r in reasons)


def test_unknown_weightless_channel_wise_layer_is_probed():
    g, grp = graph_around(Doubler(name="doubler"))
    assert not grp.frozen
    assert any("Doubler 'doubler' was proven channel-wise" in n for n in grp.notes)


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda: layers.Activation("softmax"), "softmax across channels"),
        (lambda: layers.Softmax(), "softmax across channels"),
        (lambda: layers.Reshape((4, 24)), "mixes channels"),
        (lambda: layers.Permute((3, 1, 2)), "moves the channel axis"),
        (lambda: layers.LayerNormalization(axis=(1, 2, 3)), "mixes channels"),
        (lambda: layers.MaxPooling2D(data_format="channels_first"), "channels_first"),
    ],
)
def test_layers_that_mix_channels_freeze(make, why):
    inp = keras.Input((4, 4, 6))
    x = layers.Conv2D(6, 1, name="before")(inp)
    x = make()(x)
    out = layers.Dense(3)(layers.Flatten()(x))
    g = kprune.graph(keras.Model(inp, out))
    grp = group_with(g, "before")
    assert grp.frozen and any(why in r for r in grp.reasons), grp.reasons


def test_keras_ops_in_graph():
    inp = keras.Input((8, 8, 3))
    a = layers.Conv2D(8, 1, name="a")(inp)
    b = layers.Conv2D(8, 1, name="b")(inp)
    x = keras.ops.concatenate([a + b, a], axis=-1)
    left, right = keras.ops.split(x, 2, axis=-1)
    out = layers.Conv2D(3, 1, name="c")(keras.ops.multiply(left, right))
    g = kprune.graph(keras.Model(inp, out))
    assert group_with(g, "a") is group_with(g, "b")
    assert not group_with(g, "a").frozen


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed model.*functional"):
        kprune.graph(net)


def test_unbuilt_sequential_is_refused():
    seq = keras.Sequential([layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="keras.Input"):
        kprune.graph(seq)


def test_not_a_model_is_refused():
    with pytest.raises(TypeError, match="keras.Model"):
        kprune.graph(layers.Conv2D(4, 3))


def test_group_lookup_and_fingerprint():
    g = kprune.graph(models.vgg())
    name = g.prunable[0].name
    assert g.group(name) is g.prunable[0]
    with pytest.raises(KeyError, match="explain"):
        g.group("nope")
    keras.backend.clear_session()
    assert g.fingerprint() == kprune.graph(models.vgg()).fingerprint()
    assert g.fingerprint() != kprune.graph(models.resnet()).fingerprint()


def test_inception_resnet_scale_layer_couples_like_an_add():
    """InceptionResNetV2's CustomScaleLayer computes x + scale * y."""
    from kprune import keras_graph

    scale_layer = keras_graph.inception_resnet_scale()
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 1, name="stem")(inp)
    y = layers.Conv2D(6, 3, padding="same", name="branch")(x)
    x = scale_layer(0.2, name="scaled_add")([x, y])
    out = layers.Conv2D(2, 1)(layers.ReLU()(x))
    model = models.randomize(keras.Model(inp, out))
    g = kprune.graph(model)
    grp = group_with(g, "stem")
    assert grp is group_with(g, "branch") and not grp.frozen
    models.assert_exact(model, kprune.plan(model, ratio=0.5))
