"""Every criterion on filters whose answer is known."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import kprune
from tests import models


def conv_relu_conv(filters=8, bn=False, relu=True):
    inp = keras.Input((6, 6, 4))
    x = layers.Conv2D(filters, 1, name="c1")(inp)
    if bn:
        x = layers.BatchNormalization(name="bn")(x)
    if relu:
        x = layers.ReLU(name="relu")(x)
    x = layers.Conv2D(5, 1, name="c2")(x)
    out = layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(x))
    return models.randomize(keras.Model(inp, out))


def first_removed(model, criterion, **kwargs):
    plan = kprune.plan(model, criterion=criterion, ratio=1 / 8, **kwargs)
    (removed,) = set(range(8)) - set(plan.groups["c1"].keep)
    return removed, plan


def set_c1(model, kernel, bias=None):
    layer = model.get_layer("c1")
    old_kernel, old_bias = layer.get_weights()
    layer.set_weights([kernel, old_bias if bias is None else bias])


def data(model, n=64, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n,) + tuple(model.input.shape[1:])).astype("float32")
    return x, rng.integers(0, classes, n)


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_norms_remove_the_zero_filter(criterion):
    model = conv_relu_conv()
    kernel = model.get_layer("c1").get_weights()[0]
    kernel[..., 6] = 0
    set_c1(model, kernel)
    assert first_removed(model, criterion)[0] == 6


def test_bn_scale_removes_zero_gamma():
    model = conv_relu_conv(bn=True)
    bn = model.get_layer("bn")
    gamma, beta, mean, var = bn.get_weights()
    gamma[3] = 0.0
    bn.set_weights([gamma, beta, mean, var])
    assert first_removed(model, "bn_scale")[0] == 3


def test_bn_scale_without_batchnorm_falls_back_and_says_so():
    removed, plan = first_removed(conv_relu_conv(), "bn_scale")
    assert any("no BatchNormalization" in n for n in plan.notes)
    assert "Notes:" in str(plan)


@pytest.mark.parametrize("bn", [False, True])
def test_importance_l1_ranks_by_multiplier_times_filter_l1(bn):
    # Channel 1 has the smallest filter, channel 2 the smallest multiplier,
    # channel 5 the smallest product; on the BatchNorm when there is one.
    model = conv_relu_conv(bn=bn)
    norms, multipliers = np.ones(8), np.ones(8, "float32")
    norms[[1, 2, 5]], multipliers[[1, 2, 5]] = (0.5, 1.6, 0.7), (1.5, 0.4, 0.8)
    signs = np.sign(np.random.default_rng(0).normal(size=(1, 1, 4, 8)))
    set_c1(model, (signs * norms).astype("float32"))
    wrapped = kprune.wrap(model)
    wrapped.get_layer("bn" if bn else "c1").importance.assign(multipliers)
    assert first_removed(wrapped, "l1")[0] == 1
    assert first_removed(wrapped, "importance")[0] == 2
    assert first_removed(wrapped, "importance_l1")[0] == 5


def test_importance_l1_without_batchnorm_plans_as_l1_of_the_folded_filters():
    """Without BatchNorm every multiplier folds into its filter, so the
    criterion ranks as `l1` on `unwrap(wrapped)`: the benchmark's earlier
    importance_l1 rows (docs/results.md) measured this ranking."""
    wrapped = kprune.wrap(conv_relu_conv(filters=16))
    rng = np.random.default_rng(1)
    for name in ("c1", "c2"):
        layer = wrapped.get_layer(name)
        layer.importance.assign(rng.uniform(0.05, 2.0, layer.importance.shape))
    ours = kprune.plan(wrapped, "importance_l1", ratio=0.4, scope="global")
    folded = kprune.plan(kprune.unwrap(wrapped), "l1", ratio=0.4, scope="global")
    assert ours.to_dict()["groups"] == folded.to_dict()["groups"]
    assert (
        ours.to_dict()["groups"]
        != kprune.plan(wrapped, "l1", ratio=0.4, scope="global").to_dict()["groups"]
    )


@pytest.mark.parametrize(
    ("criterion", "fallback"), [("importance", "l2"), ("importance_l1", "l1")]
)
def test_importance_criteria_score_unwrapped_groups_by_a_norm_and_say_so(
    criterion, fallback
):
    model = conv_relu_conv()
    wrapped = kprune.wrap(model, layers=["c2"])  # c1's filters get no multipliers
    plan = kprune.plan(wrapped, criterion=criterion, ratio=1 / 8)
    assert (
        plan.groups["c1"].keep
        == kprune.plan(model, fallback, ratio=1 / 8).groups["c1"].keep
    )
    assert any(n.startswith("c1: no importance multipliers") for n in plan.notes)


def test_importance_l1_needs_a_wrapped_model():
    with pytest.raises(ValueError, match="'importance_l1' reads the multipliers"):
        kprune.plan(conv_relu_conv(), criterion="importance_l1", ratio=0.5)


def test_apoz_removes_the_dead_relu_channel():
    model = conv_relu_conv()
    kernel, bias = model.get_layer("c1").get_weights()
    bias[5] = -100.0  # channel 5 is always negative, so always 0 after the ReLU
    set_c1(model, kernel, bias)
    x, _ = data(model)
    assert first_removed(model, "apoz", data=x)[0] == 5


def test_apoz_reads_datasets_too():
    model = conv_relu_conv()
    kernel, bias = model.get_layer("c1").get_weights()
    bias[2] = -100.0
    set_c1(model, kernel, bias)
    x, y = data(model)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    assert first_removed(model, "apoz", data=ds, batches=2)[0] == 2


def test_taylor_ranks_a_filter_that_does_not_touch_the_loss_lowest():
    model = conv_relu_conv()
    c2 = model.get_layer("c2")
    kernel, bias = c2.get_weights()
    kernel[:, :, 4, :] = 0.0  # nothing downstream reads channel 4
    c2.set_weights([kernel, bias])
    model.compile(loss="sparse_categorical_crossentropy")
    x, y = data(model)
    removed, _ = first_removed(model, "taylor", data=(x, y))
    assert removed == 4


def test_taylor_needs_labels_and_a_loss():
    model = conv_relu_conv()
    x, y = data(model)
    with pytest.raises(ValueError, match="needs a loss"):
        kprune.plan(model, criterion="taylor", ratio=0.5, data=(x, y))
    model.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="needs labels"):
        kprune.plan(model, criterion="taylor", ratio=0.5, data=x)
    plan = kprune.plan(
        conv_relu_conv(),
        criterion="taylor",
        ratio=0.5,
        data=(x, y),
        loss="sparse_categorical_crossentropy",
    )
    assert plan.channels_after < plan.channels_before


@pytest.mark.parametrize("criterion", ["taylor", "apoz"])
def test_data_driven_criteria_need_data(criterion):
    with pytest.raises(ValueError, match="pass data="):
        kprune.plan(conv_relu_conv(), criterion=criterion, ratio=0.5)


def test_similarity_drops_one_of_two_duplicates():
    model = conv_relu_conv()
    kernel, bias = model.get_layer("c1").get_weights()
    kernel[..., 5] = kernel[..., 1]
    bias[5] = bias[1]
    set_c1(model, kernel, bias)
    for distance in ("l1", "l2", "cosine"):
        plan = kprune.plan(
            model, criterion="similarity", ratio=1 / 8, distance=distance
        )
        kept = set(plan.groups["c1"].keep)
        assert len({1, 5} & kept) == 1, distance


def test_similarity_drops_the_smaller_twin():
    model = conv_relu_conv()
    kernel, bias = model.get_layer("c1").get_weights()
    kernel[..., 5] = 3.0 * kernel[..., 1]
    bias[5] = 3.0 * bias[1]
    set_c1(model, kernel, bias)
    assert first_removed(model, "similarity")[0] == 1


def test_similarity_folds_batchnorm_into_the_filters():
    """Two filters that differ only by a scale the BatchNorm undoes are twins."""
    model = conv_relu_conv(bn=True)
    kernel, bias = model.get_layer("c1").get_weights()
    kernel[..., 6] = 4.0 * kernel[..., 0]
    bias[6] = 4.0 * bias[0]
    set_c1(model, kernel, bias)
    bn = model.get_layer("bn")
    gamma, beta, mean, var = bn.get_weights()
    mean[6], var[6] = 4.0 * mean[0], 16.0 * var[0]
    gamma[6], beta[6] = gamma[0], beta[0]
    bn.set_weights([gamma, beta, mean, var])
    removed, _ = first_removed(model, "similarity")
    assert removed in (0, 6)


def test_compensation_reduces_the_output_error():
    model = conv_relu_conv()
    kernel, bias = model.get_layer("c1").get_weights()
    kernel[..., 5] = 2.0 * kernel[..., 1]
    bias[5] = 2.0 * bias[1]
    set_c1(model, kernel, bias)
    x, _ = data(model)
    want = model(x)

    def error(compensate):
        plan = kprune.plan(
            model, criterion="similarity", ratio=1 / 8, compensate=compensate
        )
        return float(np.abs(kprune.shrink(model, plan)(x) - want).max()), plan

    plain, _ = error(False)
    compensated, plan = error(True)
    assert plan.compensation["c1"] == [(1, 5, pytest.approx(0.5))]
    assert compensated < 1e-4 < plain
    # The reference that shrink must match includes the compensation.
    models.assert_exact(model, plan)


def test_compensation_survives_json():
    model = conv_relu_conv()
    plan = kprune.plan(model, criterion="similarity", ratio=0.5, compensate=True)
    again = kprune.PruningPlan.from_json(plan.to_json())
    assert again.compensation == plan.compensation


def test_fpgm_removes_the_filter_at_the_geometric_median():
    model = conv_relu_conv()
    center = np.array([10.0, 0.0, 0.0, 0.0])
    rows = [center]
    for axis in (1, 2, 3):
        for sign in (1, -1):
            rows.append(center + sign * 3.0 * np.eye(4)[axis])
    rows.append(center - 0.5 * np.eye(4)[0])  # the smallest norm, but off-centre
    kernel = np.stack(rows, axis=1)[None, None].astype("float32")
    set_c1(model, kernel)
    assert first_removed(model, "fpgm")[0] == 0
    assert first_removed(model, "l2")[0] == 7


def test_reductions_combine_coupled_layers():
    model = models.randomize(models.resnet())
    scores = {}
    for reduction in kprune.criteria.REDUCTIONS:
        plan = kprune.plan(model, ratio=0.5, reduction=reduction)
        scores[reduction] = plan.groups["s1_proj"].keep
    assert len(set(scores.values())) > 1


def test_global_normalisation_options():
    model = models.randomize(models.resnet())
    plans = {
        n: kprune.plan(model, ratio=0.5, scope="global", normalize=n)
        for n in ("mean", "max", None)
    }
    assert all(p.channels_after < p.channels_before for p in plans.values())
    with pytest.raises(ValueError, match="normalize must be one of"):
        kprune.plan(model, ratio=0.5, scope="global", normalize="median")


def test_similarity_rejects_unknown_distance():
    with pytest.raises(ValueError, match="distance must be one of"):
        kprune.plan(conv_relu_conv(), criterion="similarity", ratio=0.5, distance="l3")


def test_redundancy_order_is_a_permutation():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 5))
    norms = np.linalg.norm(features, axis=1)
    order, twins, factors = kprune.criteria.redundancy_order(features, norms, "l1")
    assert sorted(order) == list(range(30))
    assert twins[order[-1]] == -1 and all(twins[order[:-1]] >= 0)


def test_available_criteria_lists_every_method():
    names = set(kprune.criteria.available_criteria())
    assert {
        "l1",
        "l2",
        "bn_scale",
        "taylor",
        "apoz",
        "importance",
        "importance_l1",
        "fpgm",
        "similarity",
        "random",
    } <= names
