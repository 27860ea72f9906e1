"""The staged schedule: saliency rounds, then similarity rounds, with fine-tuning."""

import keras
import numpy as np
import pytest
from keras import layers

import kprune


def small_cnn():
    inp = keras.Input((28, 28, 1))
    x = inp
    for filters in (16, 16, 32):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, layers.Dense(10, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def mnist():
    (x, y), (xt, yt) = kprune.datasets.mnist()
    return (x[:1500], y[:1500]), (xt[:500], yt[:500])


def test_staged_runs_the_stages_in_order(mnist):
    train, val = mnist
    model = small_cnn()
    model.fit(*train, epochs=1, verbose=0)
    before = [np.array(w) for w in model.get_weights()]
    staged = kprune.Staged([("l1", 2), ("similarity", 2)], step=0.2)
    small, report = staged.run(
        model,
        train_data=train,
        val_data=val,
        tuning=kprune.FineTune(epochs=1),
        verbose=0,
    )
    for a, b in zip(before, model.get_weights()):  # fine-tuned a copy, not `model`
        np.testing.assert_array_equal(a, np.array(b))
    assert [r.criterion for r in report.rounds] == [
        "-",
        "l1",
        "l1",
        "similarity",
        "similarity",
    ]
    ratios = [r.flops_ratio for r in report.rounds]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] < 0.6
    assert report.metric_name == "accuracy"
    assert all(r.metric is not None for r in report.rounds)
    assert small.count_params() == report.final.params < model.count_params()
    assert "similarity" in str(report)
    assert report.to_dict()["rounds"][0]["round"] == 0


def test_staged_default_follows_the_paper():
    staged = kprune.Staged()
    assert [staged.criterion_at(i) for i in range(7)] == ["l1"] * 3 + ["similarity"] * 4
    assert staged.total_rounds == 6


def test_staged_with_a_fine_tune_callable_and_flops_steps(mnist):
    train, _ = mnist
    calls = []

    def tune(model):
        calls.append(model.count_params())
        model.fit(*train, epochs=1, verbose=0)

    staged = kprune.Staged(
        [("l1", 1), ("similarity", 1)],
        step=0.3,
        by="flops",
        metric=lambda m: 1.0,
        compensate=True,
        round_to=4,
    )
    small, report = staged.run(small_cnn(), tuning=kprune.FineTune(fn=tune), verbose=0)
    assert len(calls) == 2
    assert report.rounds[1].flops_ratio <= 0.7 + 1e-9
    assert report.metric_name == "<lambda>"
    assert [r.criterion for r in report.rounds[1:]] == ["l1", "similarity"]


def test_staged_compensation_changes_the_similarity_rounds():
    """compensate=True folds each removed filter into its most similar kept one,
    so the pruned model differs from the one pruned without it."""
    keras.utils.set_random_seed(0)
    model = small_cnn()
    results = []
    for compensate in (False, True):
        staged = kprune.Staged(
            [("similarity", 1)],
            step=0.5,
            metric=lambda m: 1.0,
            compensate=compensate,
        )
        results.append(staged.run(model, verbose=0)[0])
    x = np.random.default_rng(0).normal(size=(4,) + model.input_shape[1:])
    plain, compensated = (r.predict(x, verbose=0) for r in results)
    assert results[0].count_params() == results[1].count_params()
    assert not np.allclose(plain, compensated, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stages": []}, "at least one"),
        ({"stages": [("l1", 0)]}, "rounds >= 1"),
        ({"stages": [("magic", 2)]}, "unknown criterion"),
        ({"step": 1.5}, r"step must be in \(0, 1\)"),
        ({"by": "params"}, "by must be one of"),
        ({"ratio": 0.5, "step": 0.2}, "either step= .* or one overall target"),
        ({"ratio": 0.5, "flops": 0.5}, "either step= .* or one overall target"),
        ({"flops": 0.5, "by": "ratio"}, "flops= prunes by 'flops'"),
        ({"flops": 1.0}, "leaves nothing to prune"),
        ({"criterion": "l1"}, "set by the schedule"),
    ],
)
def test_staged_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kprune.Staged(**kwargs)


def test_staged_needs_a_compiled_model_to_fine_tune(mnist):
    train, _ = mnist
    model = small_cnn()
    plain = keras.Model(model.inputs, model.outputs)
    before = [w.copy() for w in plain.get_weights()]
    steps = []
    original = kprune.Staged.plan_step

    def counted(self, *args, **kwargs):
        steps.append(1)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kprune.Staged, "plan_step", counted)
        with pytest.raises(ValueError, match="compiled model"):
            kprune.Staged([("l1", 1)]).run(plain, train_data=train, verbose=0)
    assert not steps  # it says so before planning anything
    for a, b in zip(before, plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_staged_checks_options_and_gives_each_round_those_it_reads():
    with pytest.raises(TypeError, match=r"Staged\(\) got an unknown option 'compnes"):
        kprune.Staged([("l1", 1), ("similarity", 1)], compnesate=True)
    with pytest.raises(TypeError, match="Did you mean 'step'"):
        kprune.Staged([("l1", 1)], stpe=0.2)
    with pytest.raises(TypeError, match="criterion 'l1' does not read"):
        kprune.Staged([("l1", 2)], compensate=True)
    # compensate= reaches the similarity rounds only; plan() would reject it
    # for l1.
    staged = kprune.Staged(
        [("l1", 1), ("similarity", 1)], step=0.5, compensate=True, round_to=2
    )
    model = small_cnn()
    first, second = staged.plan_step(model, 0), staged.plan_step(model, 1)
    assert first.criterion == "l1" and not first.compensation
    assert second.criterion == "similarity" and second.compensation
    assert first.target["round_to"] == second.target["round_to"] == 2


def test_staged_spreads_an_overall_target_over_its_rounds():
    staged = kprune.Staged([("l1", 1), ("similarity", 1)], flops=0.25)
    assert staged.by == "flops" and staged.step == pytest.approx(0.5)
    rounds = []
    small, report = kprune.Staged(
        [("l1", 2)],
        flops=0.25,
        metric=lambda m: 1.0,
    ).run(
        small_cnn(),
        tuning=kprune.FineTune(fn=lambda model, index: rounds.append(index)),
        verbose=0,
    )
    assert rounds == [0, 1]  # a two-argument fine_tune gets the round index
    assert report.rounds[-1].flops_ratio == pytest.approx(0.25, abs=0.06)
    by_ratio = kprune.Staged([("l1", 3)], ratio=0.5)
    assert (1 - by_ratio.step) ** 3 == pytest.approx(0.5)
