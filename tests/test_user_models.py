"""Every entry point on the models users bring most often.

* a top-level `keras.Sequential`;
* a model loaded from a file: `.keras`, or a Keras 2-style `.h5` saved with its
  optimizer and loaded with `compile=False`;
* a model built for any image size, `keras.Input((None, None, 3))`.
"""

import json
import os

import h5py
import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune import cli
from tests import models

CLASSES = 5
ANY_SIZE = (None, None, 3)


def dynamic_functional(input_shape=ANY_SIZE):
    """A small functional CNN that takes images of any size."""
    inp = keras.Input(input_shape)
    x = models.conv_bn_relu(inp, 8)
    x = layers.MaxPooling2D()(x)
    x = models.conv_bn_relu(x, 16)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(CLASSES)(x), name="dynamic_functional")


def dynamic_sequential(input_shape=ANY_SIZE):
    """The Sequential CNN of a user who wants any image size."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(8, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.Conv2D(16, 3),
            layers.ReLU(),
            layers.GlobalAveragePooling2D(),
            layers.Dense(CLASSES),
        ],
        name="dynamic_sequential",
    )


def save_h5(model, path):
    """Save as a Keras 2 user did: compiled, optimizer included, `.h5`.

    Keras 3 writes its own optimizer config; Keras 2 wrote `lr=` and `decay=`,
    which Keras 3 cannot rebuild, so the file gets Keras 2's config back.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.save(path)
    with h5py.File(path, "r+") as f:
        training = json.loads(f.attrs["training_config"])
        optimizer = training["optimizer_config"]["config"]
        optimizer["lr"] = optimizer.pop("learning_rate")
        optimizer["decay"] = 0.0
        f.attrs["training_config"] = json.dumps(training)
        f.attrs["keras_version"] = "2.15.0"
    return str(path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The files users bring, written once per module: `{kind: path}`."""
    folder = tmp_path_factory.mktemp("user_models")
    keras_file = str(folder / "sequential.keras")
    models.randomize(models.sequential()).save(keras_file)
    h5_file = save_h5(models.randomize(models.resnet()), folder / "m.h5")
    return {"sequential.keras": keras_file, "resnet.h5": h5_file}


FIXED_SIZE = {
    "sequential": lambda saved: models.randomize(models.sequential()),
    "sequential.keras": lambda saved: keras.saving.load_model(
        saved["sequential.keras"]
    ),
    "resnet.h5": lambda saved: keras.saving.load_model(
        saved["resnet.h5"], compile=False
    ),
}
ANY_SIZE_MODELS = {
    "dynamic_functional": dynamic_functional,
    "dynamic_sequential": dynamic_sequential,
}


@pytest.fixture(params=sorted(FIXED_SIZE))
def user_model(request, saved):
    return FIXED_SIZE[request.param](saved)


@pytest.fixture(params=sorted(ANY_SIZE_MODELS))
def any_size_model(request):
    return models.randomize(ANY_SIZE_MODELS[request.param]())


@pytest.fixture(params=sorted(FIXED_SIZE) + sorted(ANY_SIZE_MODELS))
def every_model(request, saved):
    if request.param in FIXED_SIZE:
        return FIXED_SIZE[request.param](saved)
    return models.randomize(ANY_SIZE_MODELS[request.param]())


def images(n=4, size=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype("f4")


def labelled(n=64, seed=0):
    return images(n, seed=seed), np.arange(n) % CLASSES


def assert_same_outputs(model, other, x, atol=1e-4):
    for want, got in zip(models.outputs(model, x), models.outputs(other, x)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)


def compiled(model):
    """Compiled for the tiny data here: eagerly, since tracing the train step of
    every pruned model would take longer than the training."""
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        run_eagerly=True,
    )
    return model


# -- reading a model: graph and profile ---------------------------------------


def test_graph_finds_prunable_groups_and_explains_the_frozen_ones(every_model):
    g = kprune.graph(every_model)
    assert g.prunable
    text = g.explain()
    assert "prune out-channels of" in text
    assert "keeps its shape" in text  # the class outputs are never pruned


def test_profile_counts_params_and_macs(user_model):
    p = kprune.profile(user_model)
    assert p.params == user_model.count_params()
    assert p.macs > 0 and p.flops == 2 * p.macs
    assert "FLOPs" in str(p)


# -- plan, shrink, prune -------------------------------------------------------


def test_ratio_plan_then_shrink_matches_the_zeroed_model(user_model):
    plan = kprune.plan(user_model, criterion="l1", ratio=0.5)
    assert plan.channels_after < plan.channels_before
    small = models.assert_exact(user_model, plan)
    assert small.count_params() < user_model.count_params()
    assert small.outputs[0].shape == user_model.outputs[0].shape


def test_flops_plan_then_shrink_keeps_the_budget(user_model):
    base = kprune.profile(user_model).macs
    plan = kprune.plan(user_model, flops=0.5)
    small = models.assert_exact(user_model, plan)
    macs = kprune.profile(small).macs
    assert macs <= 0.5 * base and macs == plan.macs_after


def test_prune_in_one_call(user_model):
    small = kprune.prune(user_model, ratio=0.5, criterion="l2")
    assert small.count_params() < user_model.count_params()
    assert small.outputs[0].shape == user_model.outputs[0].shape


# -- importance wrappers and masks ---------------------------------------------


def test_wrap_then_unwrap_keeps_the_outputs(every_model):
    x = images()
    assert_same_outputs(every_model, kprune.wrap(every_model), x, atol=1e-5)
    wrapped = kprune.wrap(every_model, init="uniform", seed=1)
    assert_same_outputs(wrapped, kprune.unwrap(wrapped), x, atol=1e-5)


def test_masks_then_shrink_keep_the_masked_outputs(every_model):
    wrapped = kprune.wrap(every_model, init="uniform", seed=1)
    plan = kprune.plan(wrapped, criterion="importance", ratio=0.5)
    kprune.set_masks(wrapped, plan)
    read_back = kprune.masks_plan(wrapped)
    assert {k: v.keep for k, v in read_back.groups.items() if v.removed} == {
        k: v.keep for k, v in plan.groups.items() if v.removed
    }
    x = images()
    for small in (kprune.shrink(wrapped, plan), kprune.shrink(wrapped)):
        assert kprune.layers.is_wrapped(small)  # multipliers kept for training
        plain = kprune.unwrap(small)
        assert plain.count_params() < every_model.count_params()
        assert_same_outputs(wrapped, small, x)
        assert_same_outputs(wrapped, plain, x)


# -- pruning while training ----------------------------------------------------


@pytest.mark.slow
def test_pruning_callback_masks_filters_during_fit(user_model):
    wrapped = compiled(kprune.wrap(user_model))
    history = wrapped.fit(
        *labelled(),
        epochs=2,
        batch_size=32,
        verbose=0,
        callbacks=[kprune.PruningCallback(ratio=0.5, end_epoch=1)],
    )
    assert history.history["pruning_kept_channels"][-1] == pytest.approx(0.5, abs=0.1)
    small = kprune.shrink(wrapped)
    assert small.count_params() < user_model.count_params()
    assert_same_outputs(wrapped, small, images())


@pytest.mark.slow
def test_prune_to_tolerance_on_a_tiny_budget(user_model):
    params = user_model.count_params()
    small, report = kprune.prune_to_tolerance(
        compiled(user_model),
        labelled(),
        labelled(32, seed=1),
        tolerance=1.0,
        step=0.3,
        max_rounds=2,
        verbose=0,
    )
    # Accuracy cannot fall by more than 1; a round is rejected only when the
    # model collapsed to one class (the guard of the loop).
    assert report.rounds[1].accepted
    assert all(r.accepted or "collapsed" in r.note for r in report.rounds[1:])
    assert small.count_params() == report.final.params < params
    assert user_model.count_params() == params


@pytest.mark.slow
def test_importance_learned_then_rounds_with_distillation(user_model):
    """Issue 11's path on what users bring: learn the multipliers, prune by
    them through the tolerance loop (the model stays wrapped), distil from the
    unpruned model."""
    wrapped = compiled(kprune.wrap(user_model, regularizer=1e-4))
    kprune.learn_importance(wrapped, labelled(), epochs=1, batch_size=32)
    small, report = kprune.prune_to_tolerance(
        wrapped,
        labelled(),
        labelled(32, seed=1),
        tolerance=1.0,
        criterion="importance",
        step=0.3,
        max_rounds=2,
        tuning=kprune.FineTune(distill=user_model),
        verbose=0,
    )
    assert [r.criterion for r in report.rounds[1:]] == ["importance"] * 2
    assert kprune.layers.is_wrapped(small)
    plain = kprune.unwrap(small)
    assert plain.count_params() == report.final.params < user_model.count_params()
    assert_same_outputs(small, plain, images())


@pytest.mark.slow
def test_learn_importance_and_distiller_on_any_image_size(any_size_model):
    wrapped = compiled(kprune.wrap(any_size_model, regularizer=1e-4))
    before = [w.scale().copy() for w in kprune.layers.wrapped_layers(wrapped)]
    kprune.learn_importance(wrapped, labelled(), epochs=1, batch_size=32)
    after = [w.scale() for w in kprune.layers.wrapped_layers(wrapped)]
    assert any(not np.allclose(a, b) for a, b in zip(after, before))
    small = kprune.shrink(wrapped, kprune.plan(wrapped, "importance", ratio=0.5))
    distiller = compiled(kprune.distiller(small, teacher=any_size_model))
    distiller.fit(*labelled(), epochs=1, batch_size=32, verbose=0)
    assert kprune.unwrap(small).count_params() < any_size_model.count_params()


@pytest.mark.slow
def test_staged_saliency_then_similarity(user_model):
    staged = kprune.Staged([("l1", 1), ("similarity", 1)], step=0.3)
    small, report = staged.run(
        compiled(user_model), labelled(), labelled(32, seed=1), verbose=0
    )
    assert [r.criterion for r in report.rounds] == ["-", "l1", "similarity"]
    assert small.count_params() == report.final.params < user_model.count_params()


# -- export, save and load -----------------------------------------------------


@pytest.mark.slow
def test_export_saved_model_and_tflite_of_the_pruned_model(user_model, tmp_path):
    small = kprune.prune(user_model, ratio=0.5)
    kprune.export_saved_model(small, str(tmp_path / "saved_model"))
    result = kprune.export_tflite(small, str(tmp_path / "small.tflite"), samples=4)
    assert result.max_rel_error < 1e-4 and result.samples == 4


def test_pruned_and_wrapped_models_save_and_load(user_model, tmp_path):
    wrapped = kprune.wrap(user_model, init="uniform")
    kprune.set_masks(wrapped, kprune.plan(wrapped, criterion="importance", ratio=0.5))
    pruned = kprune.prune(user_model, ratio=0.5)
    for name, model in (("pruned", pruned), ("wrapped", wrapped)):
        path = tmp_path / f"{name}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)  # no custom_objects
        assert_same_outputs(model, loaded, images(), atol=1e-6)
        assert kprune.layers.is_wrapped(loaded) == (name == "wrapped")


# -- the command line ----------------------------------------------------------


@pytest.mark.slow
def test_cli_info_prune_and_export_a_saved_sequential(saved, tmp_path, capsys):
    model_file = saved["sequential.keras"]
    small_file = str(tmp_path / "small.keras")
    tflite_file = str(tmp_path / "small.tflite")

    assert cli.main(["info", model_file]) == 0
    assert "MACs" in capsys.readouterr().out
    assert cli.main(["prune", model_file, "-o", small_file, "--flops", "0.5"]) == 0
    assert "Pruning plan" in capsys.readouterr().out
    assert (
        keras.saving.load_model(small_file).count_params()
        < keras.saving.load_model(model_file).count_params()
    )
    assert cli.main(["export", small_file, "-o", tflite_file]) == 0
    assert "max abs error" in capsys.readouterr().out
    assert os.path.exists(tflite_file)


def test_cli_info_on_a_keras2_h5_file(saved, capsys):
    assert cli.main(["info", saved["resnet.h5"]]) == 0
    out = capsys.readouterr().out
    assert "MACs" in out and "prunable" in out


# -- invariant 1: the caller's model is untouched ------------------------------


def test_the_callers_sequential_is_untouched():
    model = models.randomize(models.sequential())
    x = images()
    weights, want = models.weights_of(model), models.outputs(model, x)
    layer_types = [type(layer) for layer in model.layers]

    kprune.graph(model).explain()
    kprune.profile(model)
    plan = kprune.plan(model, flops=0.5)
    kprune.shrink(model, plan)
    kprune.zero_pruned(model, plan)
    kprune.prune(model, ratio=0.5)
    wrapped = kprune.wrap(model, init="uniform")
    kprune.set_masks(wrapped, plan)
    kprune.shrink(wrapped)
    kprune.unwrap(wrapped)

    assert [type(layer) for layer in model.layers] == layer_types
    for before, after in zip(weights, models.weights_of(model)):
        np.testing.assert_array_equal(after, before)
    for before, after in zip(want, models.outputs(model, x)):
        np.testing.assert_array_equal(after, before)


# -- models built for any image size -------------------------------------------


def test_ratio_plan_and_shrink_on_any_image_size(any_size_model):
    plan = kprune.plan(any_size_model, ratio=0.5)
    assert plan.channels_after < plan.channels_before
    small = kprune.shrink(any_size_model, plan)
    zeroed = kprune.zero_pruned(any_size_model, plan)
    assert tuple(small.inputs[0].shape) == (None,) + ANY_SIZE
    for size in (16, 24):
        assert_same_outputs(zeroed, small, images(size=size))


def test_profile_without_an_image_size_says_how_to_give_one(any_size_model):
    with pytest.raises(ValueError, match="input_shape"):
        kprune.profile(any_size_model)


@pytest.mark.parametrize("build", sorted(ANY_SIZE_MODELS))
def test_profile_with_an_image_size(build):
    model = ANY_SIZE_MODELS[build]()
    p = kprune.profile(model, input_shape=(32, 32, 3))
    fixed = kprune.profile(ANY_SIZE_MODELS[build](input_shape=(32, 32, 3)))
    assert p.params == model.count_params()
    assert p.macs == fixed.macs > 0


def test_flops_plan_with_an_image_size(any_size_model):
    base = kprune.profile(any_size_model, input_shape=(32, 32, 3)).macs
    plan = kprune.plan(any_size_model, flops=0.5, input_shape=(32, 32, 3))
    small = kprune.shrink(any_size_model, plan)
    assert kprune.profile(small, input_shape=(32, 32, 3)).macs <= 0.5 * base
    zeroed = kprune.zero_pruned(any_size_model, plan)
    assert_same_outputs(zeroed, small, images(size=32))
