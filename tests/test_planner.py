"""Planning: targets, constraints, criteria, and errors that name the fix."""

import json

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune.planning.plans import PruningPlan
from tests import models


def two_conv(filters=8):
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(filters, 3, padding="same", name="c1")(inp)
    x = layers.ReLU()(x)
    x = layers.Conv2D(filters * 2, 3, padding="same", name="c2")(x)
    out = layers.Conv2D(2, 1, name="head")(layers.ReLU()(x))
    return keras.Model(inp, out)


def test_layer_scope_removes_the_ratio_of_each_group():
    model = models.resnet()
    plan = kprune.plan(model, ratio=0.25)
    for decision in plan.groups.values():
        assert len(decision.keep) == decision.size - int(0.25 * decision.size)


def test_l1_removes_the_smallest_filters_first():
    model = two_conv()
    kernel, bias = model.get_layer("c1").get_weights()
    kernel[..., 3] = 0.0
    kernel[..., 5] *= 0.01
    model.get_layer("c1").set_weights([kernel, bias])
    for criterion in ("l1", "l2"):
        plan = kprune.plan(model, criterion=criterion, ratio=0.25)
        assert set(plan.groups["c1"].keep) == set(range(8)) - {3, 5}


def test_min_channels_and_round_to():
    model = two_conv(filters=12)
    plan = kprune.plan(model, ratio=0.9, min_channels=4)
    assert len(plan.groups["c1"].keep) == 4
    plan = kprune.plan(model, ratio=0.5, round_to=8)
    assert len(plan.groups["c1"].keep) == 8  # 6 rounded up
    assert len(plan.groups["c2"].keep) == 16  # 12 rounded up
    small = kprune.shrink(model, plan)
    assert small.get_layer("c1").filters == 8


def test_min_share_keeps_every_group_above_a_share_of_its_channels():
    """Global scope cuts a group of tiny filters to a sliver; min_share
    keeps a floor under it (the collapse of issue 11)."""
    model = two_conv(filters=12)
    kernel, bias = model.get_layer("c2").get_weights()
    model.get_layer("c2").set_weights([kernel * 1e-3, bias])
    loose = kprune.plan(model, ratio=0.6, scope="global", normalize=None)
    assert len(loose.groups["c2"].keep) == 3  # 21 of 24 go
    floored = kprune.plan(
        model, ratio=0.6, scope="global", normalize=None, min_share=0.25
    )
    assert len(floored.groups["c2"].keep) == 6  # ceil(0.25 * 24)
    assert floored.target["min_share"] == 0.25
    with pytest.raises(ValueError, match="min_share"):
        kprune.plan(model, flops=0.05, min_share=0.5)


def test_global_scope_prunes_unevenly():
    model = two_conv()
    kernel, bias = model.get_layer("c2").get_weights()
    model.get_layer("c2").set_weights([kernel * 0.01, bias])
    plan = kprune.plan(model, ratio=0.5, scope="global")
    removed = plan.channels_before - plan.channels_after
    assert removed == 12
    # The tiny c2 filters are not the same scale as c1's; normalising per group
    # keeps the comparison fair, so both groups still lose channels.
    assert plan.groups["c1"].removed > 0 and plan.groups["c2"].removed > 0


def test_flops_target_is_met():
    model = models.resnet()
    base = kprune.profile(model).macs
    for target in (0.7, 0.4):
        plan = kprune.plan(model, flops=target)
        small = kprune.shrink(model, plan)
        kept = kprune.profile(small).macs / base
        assert kept <= target + 1e-9
        # Groups of 8-16 channels move MACs in coarse steps; stay near the target.
        assert kept > target - 0.05
        assert plan.macs_after == kprune.profile(small).macs


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("target", [0.875, 0.5, 0.25])
def test_flops_target_is_met_closely_with_rounding(scope, target):
    """With round_to, one shared ratio moves the MACs in big jumps; the planner
    gives channels back until the budget is used (0.5 used to give 0.25)."""
    model = models.unet((64, 64, 1), base=16, depth=3)
    plan = kprune.plan(model, flops=target, round_to=8, scope=scope)
    assert target - 0.03 < plan.flops_ratio <= target + 1e-9
    for decision in plan.groups.values():
        assert len(decision.keep) % 8 == 0 or len(decision.keep) == decision.size


def test_unreachable_flops_target_says_what_is_possible():
    model = two_conv()
    with pytest.raises(ValueError, match="least this model can keep"):
        kprune.plan(model, flops=0.001, min_channels=4)


def test_exclude_keeps_groups_whole():
    model = models.resnet()
    plan = kprune.plan(model, ratio=0.5, exclude=["s0_a"])
    assert "s0_a" not in plan.groups
    small = kprune.shrink(model, plan)
    assert small.get_layer("s0_a").filters == 8
    with pytest.raises(ValueError, match="not in model"):
        kprune.plan(model, ratio=0.5, exclude=["no_such_layer"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ratio": 1.5}, r"ratio must be in \[0, 1\); got 1.5. Use flops="),
        ({"ratio": -0.1}, r"ratio must be in \[0, 1\)"),
        ({}, "give exactly one target"),
        ({"ratio": 0.5, "flops": 0.5}, "give exactly one target"),
        ({"flops": 0.0}, r"flops .* must be in \(0, 1\]"),
        ({"ratio": 0.5, "scope": "model"}, "scope must be one of"),
        ({"ratio": 0.5, "min_channels": 0}, "min_channels must be an integer"),
        ({"ratio": 0.5, "min_share": 1.0}, "min_share must be a number in"),
        ({"ratio": 0.5, "round_to": 2.5}, "round_to must be an integer"),
        (
            {"ratio": 0.5, "criterion": "magic"},
            "unknown criterion 'magic'. Known criteria: .*l1",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kprune.plan(two_conv(), **kwargs)


def test_plan_is_plain_data():
    model = models.vgg()
    plan = kprune.plan(model, ratio=0.5)
    text = str(plan)
    assert "Pruning plan for 'vgg'" in text and "kept" in text
    data = json.loads(plan.to_json())
    again = PruningPlan.from_dict(data)
    assert again == plan
    small_a = kprune.shrink(model, plan)
    small_b = kprune.shrink(model, again)
    assert small_a.count_params() == small_b.count_params()


def test_plan_json_file_round_trip(tmp_path):
    model = models.vgg()
    plan = kprune.plan(model, ratio=0.5)
    path = str(tmp_path / "plan.json")
    plan.to_json(path)
    assert PruningPlan.from_json(path) == plan


def test_custom_criterion_callable_and_registered():
    model = two_conv()

    def prefer_high_index(group, context):
        return np.arange(group.size, dtype=float)

    plan = kprune.plan(model, criterion=prefer_high_index, ratio=0.5)
    assert plan.groups["c1"].keep == (4, 5, 6, 7)

    kprune.register_criterion("test_high_index", prefer_high_index)
    try:
        plan = kprune.plan(model, criterion="test_high_index", ratio=0.5)
        assert plan.groups["c1"].keep == (4, 5, 6, 7)
        with pytest.raises(ValueError, match="registered already"):
            kprune.register_criterion("test_high_index", prefer_high_index)
    finally:
        kprune.criteria.unregister_criterion("test_high_index")


def test_criterion_returning_wrong_shape_is_caught():
    with pytest.raises(ValueError, match="returned 3 scores"):
        kprune.plan(two_conv(), criterion=lambda g, c: np.ones(3), ratio=0.5)


def test_random_criterion_is_seeded():
    model = models.resnet()
    a = kprune.plan(model, criterion="random", ratio=0.5, seed=3)
    b = kprune.plan(model, criterion="random", ratio=0.5, seed=3)
    c = kprune.plan(model, criterion="random", ratio=0.5, seed=4)
    assert a.groups == b.groups and a.groups != c.groups


def test_misspelt_plan_keyword_names_the_fix():
    with pytest.raises(TypeError, match=r"option 'scpoe'\. Did you mean 'scope'\?"):
        kprune.plan(two_conv(), criterion="l1", flops=0.5, scpoe="global")


def test_misspelt_criterion_option_names_the_fix():
    with pytest.raises(
        TypeError,
        match=r"option 'compnesate'\. Did you mean 'compensate' \(an option of "
        r"criterion 'similarity'\)\? Options of criterion 'l1': reduction; "
        r"of plan\(\):",
    ):
        kprune.plan(two_conv(), criterion="l1", ratio=0.5, compnesate=True)
    with pytest.raises(TypeError, match="Options of criterion 'similarity': "):
        kprune.plan(two_conv(), criterion="similarity", ratio=0.5, compnesate=True)


def test_an_option_the_criterion_would_ignore_raises():
    with pytest.raises(TypeError, match="'compensate', which criterion 'l1' does not"):
        kprune.plan(two_conv(), criterion="l1", ratio=0.5, compensate=True)
    with pytest.raises(TypeError, match="criteria that read it: apoz, taylor"):
        kprune.plan(two_conv(), criterion="l2", ratio=0.5, batches=2)


def test_prune_checks_the_options_it_passes_to_plan():
    with pytest.raises(TypeError, match="Did you mean 'scope'"):
        kprune.prune(two_conv(), ratio=0.5, scpoe="global")


def test_declared_options_still_reach_the_criterion():
    get = kprune.criteria.get_criterion
    assert get("similarity").options == {"distance", "compensate"}
    assert get("taylor").options == {"loss", "batches", "batch_size", "reduction"}
    assert get("random").options == {"seed"}
    assert get("apoz").options == {"batches", "batch_size", "reduction"}
    assert get("l1").options == {"reduction"}
    model = two_conv()
    plan = kprune.plan(
        model, criterion="similarity", ratio=0.5, distance="l2", compensate=True
    )
    assert plan.compensation
    x = models.inputs_for(model, batch=4)
    plan = kprune.plan(
        model, criterion="apoz", ratio=0.5, data=x, batches=1, batch_size=2
    )
    assert plan.channels_after < plan.channels_before
    small = kprune.prune(model, ratio=0.5, criterion="similarity", distance="cosine")
    assert small.count_params() < model.count_params()


def test_registered_criterion_declares_its_options():
    model = two_conv()
    seen = {}

    def weighted(group, context):
        seen.update(context.options)
        return np.arange(group.size) * context.options.get("alpha", 1.0)

    kprune.register_criterion("test_weighted", weighted, options=("alpha",))
    try:
        plan = kprune.plan(model, criterion="test_weighted", ratio=0.5, alpha=2.0)
        assert plan.groups["c1"].keep == (4, 5, 6, 7) and seen == {"alpha": 2.0}
        with pytest.raises(TypeError, match="'alpah'. Did you mean 'alpha'"):
            kprune.plan(model, criterion="test_weighted", ratio=0.5, alpah=2.0)
        # Unregistered, the same function reads whatever it is given.
        seen.clear()
        kprune.plan(model, criterion=weighted, ratio=0.5, alpah=2.0)
        assert seen == {"alpah": 2.0}
    finally:
        kprune.criteria.unregister_criterion("test_weighted")
    with pytest.raises(TypeError, match=r"options must be a tuple of option names"):
        kprune.register_criterion("test_weighted", weighted, options="alpha")
    assert "test_weighted" not in kprune.criteria.available_criteria()


def test_plan_keywords_are_those_of_plans_signature():
    import inspect

    from kprune.planning import PLAN_KEYWORDS

    named = [p for p in inspect.signature(kprune.plan).parameters if p != "model"]
    assert tuple(named[:-1]) == PLAN_KEYWORDS  # the last is **criterion_options


def test_seed_and_reduction_go_to_the_criteria_that_read_them():
    model = models.randomize(models.resnet())
    one = kprune.plan(model, "random", ratio=0.5, seed=3)
    assert one.groups == kprune.plan(model, "random", ratio=0.5, seed=3).groups
    assert one.groups != kprune.plan(model, "random", ratio=0.5, seed=4).groups
    summed = kprune.plan(model, "l1", ratio=0.5, reduction="max")
    assert summed.groups != kprune.plan(model, "l1", ratio=0.5).groups
    with pytest.raises(TypeError, match="criterion 'l1' does not read"):
        kprune.plan(model, "l1", ratio=0.5, seed=0)  # used to be ignored
    with pytest.raises(TypeError, match="criterion 'random' does not read"):
        kprune.plan(model, "random", ratio=0.5, reduction="sum")
    with pytest.raises(ValueError, match="reduction must be one of"):
        kprune.plan(model, "l1", ratio=0.5, reduction="median")


def test_a_channel_graph_plans_like_its_model():
    model = models.randomize(models.resnet())
    g = kprune.graph(model)
    assert kprune.plan(g, ratio=0.5).groups == kprune.plan(model, ratio=0.5).groups
    with pytest.raises(ValueError, match="not both"):
        kprune.plan(g, ratio=0.5, input_shape=(16, 16, 3))
    with pytest.warns(DeprecationWarning, match="pass the ChannelGraph as the model"):
        old = kprune.plan(model, ratio=0.5, graph=g)
    assert old.groups == kprune.plan(g, ratio=0.5).groups
