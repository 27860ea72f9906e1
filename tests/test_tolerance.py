"""prune_to_tolerance: the error-tolerance loop."""

import keras
import numpy as np
import pytest

import kprune
from tests import mnist, models


@pytest.fixture(scope="module")
def trained():
    return mnist.trained()


@pytest.mark.slow
def test_stays_within_tolerance_and_report_matches(trained):
    train, val, _ = mnist.data()
    keras.utils.set_random_seed(1)
    small, report = kprune.prune_to_tolerance(
        trained,
        train,
        val,
        tolerance=0.02,
        metric="accuracy",
        criterion="l1",
        step=0.2,
        by="flops",
        tuning=kprune.FineTune(epochs=1),
        max_rounds=4,
        verbose=0,
    )
    _, given = trained.evaluate(*val, verbose=0)
    _, acc = small.evaluate(*val, verbose=0)
    # The reference is measured as the rounds are, BatchNorm recalibrated.
    base = report.baseline.metric
    assert abs(base - given) < 0.01
    assert ("recalibrated" in report.baseline.note) == (abs(base - given) > 1e-4)
    assert base - acc <= 0.02 + 1e-6
    macs = kprune.profile(small).macs
    assert macs <= 0.8 * kprune.profile(trained).macs  # a non-trivial share removed
    final = report.final
    assert final.macs == macs and final.params == small.count_params()
    assert final.metric == pytest.approx(acc, abs=1e-6)
    for r in report.rounds[1:]:
        assert r.accepted == (report.baseline.metric - r.metric <= 0.02 + 1e-9)
    # A rejected round halves the step for the next one.
    for before, after in zip(report.rounds[1:], report.rounds[2:]):
        assert after.step == (before.step if before.accepted else before.step / 2)
    assert "accepted" in str(report)


def test_works_with_a_staged_schedule(trained):
    train, val, _ = mnist.data()
    small_train = (train[0][:512], train[1][:512])
    staged = kprune.Staged([("l1", 1), ("similarity", 2)], step=0.2)
    small, report = kprune.prune_to_tolerance(
        trained,
        small_train,
        val,
        tolerance=1.0,
        criterion=staged,
        max_rounds=3,
        tuning=kprune.FineTune(epochs=0),
        verbose=0,
    )
    assert [r.criterion for r in report.rounds] == [
        "-",
        "l1",
        "similarity",
        "similarity",
    ]
    assert small.count_params() < trained.count_params()
    assert trained.count_params() == mnist.cnn().count_params()  # untouched


def test_zero_tolerance_with_a_relative_loss(trained):
    train, val, _ = mnist.data()
    small, report = kprune.prune_to_tolerance(
        trained,
        (train[0][:256], train[1][:256]),
        val,
        tolerance=kprune.Tolerance(0.0, relative=True),
        metric="loss",
        max_rounds=2,
        tuning=kprune.FineTune(epochs=0),
        verbose=0,
    )
    assert report.metric_name == "loss"
    rejected = [r for r in report.rounds[1:] if not r.accepted]
    # Any cut raises the loss when nothing is fine-tuned: every round is undone.
    assert rejected and all("step halved" in r.note for r in rejected)
    assert small.count_params() == trained.count_params() == report.final.params


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tolerance": -1}, "tolerance must be >= 0"),
        ({"step": 0}, r"step must be in \(0, 1\)"),
        ({"by": "params"}, "by must be one of"),
        ({"max_rounds": 0}, "max_rounds must be >= 1"),
        ({"val_data": None}, "val_data"),
        ({"metric": "f1"}, "not among the compiled metrics"),
    ],
)
def test_bad_arguments(trained, kwargs, message):
    train, val, _ = mnist.data()
    args = {"train_data": train, "val_data": val, **kwargs}
    with pytest.raises(ValueError, match=message):
        kprune.prune_to_tolerance(trained, verbose=0, **args)


def test_progress_is_printed_and_the_model_is_untouched(trained, capsys):
    train, val, _ = mnist.data()
    before = models.weights_of(trained)
    outputs = models.outputs(trained, val[0][:8])
    kprune.prune_to_tolerance(
        trained, (train[0][:128], train[1][:128]), val, max_rounds=1,
        tuning=kprune.FineTune(epochs=1),
    )  # fmt: skip
    out = capsys.readouterr().out  # verbose=1: a bar with the round's news
    assert "baseline accuracy" in out and "pruning rounds" in out and "1/1" in out
    for a, b in zip(before, models.weights_of(trained)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(models.outputs(trained, val[0][:8])[0], outputs[0])


def test_a_cut_already_rejected_is_not_fine_tuned_again():
    """Halving the step can round to the very cut just rejected; skip it."""
    inp = keras.Input((8, 8, 3))
    x = keras.layers.ReLU()(keras.layers.Conv2D(2, 3, name="c")(inp))
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    tuned = []
    scores = iter([1.0] + [0.0] * 10)  # the baseline, then every round fails
    small, report = kprune.prune_to_tolerance(
        model,
        None,
        None,
        tolerance=kprune.Tolerance(0.1, mode="max"),
        metric=lambda m: next(scores),
        step=0.4,
        by="flops",
        tuning=kprune.FineTune(fn=tuned.append),
        verbose=0,
    )
    # Keeping 1 of the 2 filters is the only cut for steps 0.4, 0.2, 0.1 and 0.05.
    assert len(tuned) == 1 and len(report.rounds) == 2
    assert not report.rounds[1].accepted
    assert small.count_params() == model.count_params()


def tiny_model():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.ReLU()(keras.layers.Conv2D(8, 3, name="c")(inp))
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def run_tiny(criterion, **kwargs):
    """One round on a tiny model, without data: a constant metric, no training."""
    args = {"metric": lambda m: 1.0, "tuning": kprune.FineTune(fn=lambda m: None)}
    return kprune.prune_to_tolerance(
        tiny_model(),
        None,
        None,
        max_rounds=1,
        verbose=0,
        criterion=criterion,
        **{**args, **kwargs},
    )


def test_misspelt_plan_options_raise():
    with pytest.raises(TypeError, match="Did you mean 'compensate'"):
        run_tiny("similarity", compnesate=True)
    with pytest.raises(TypeError, match="criterion 'l1' does not read"):
        run_tiny("l1", compensate=True)
    staged = kprune.Staged([("l1", 1)])
    with pytest.raises(TypeError, match="Did you mean 'scope'"):
        run_tiny(staged, scpoe="global")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scope": "global"}, r"would be ignored.*kprune\.Staged\(stages, \.\.\., "),
        ({"by": "flops"}, "differs from the Staged schedule's by='ratio'"),
        ({"metric": lambda m: 0.5}, "metric= is given both here and"),
    ],
)
def test_what_a_staged_schedule_would_ignore_raises(kwargs, message):
    staged = kprune.Staged([("l1", 1)], metric=lambda m: 1.0)
    args = {"tuning": kprune.FineTune(fn=lambda m: None), **kwargs}
    with pytest.raises(ValueError, match=message):
        kprune.prune_to_tolerance(
            tiny_model(), None, None, max_rounds=1, verbose=0, criterion=staged, **args
        )


def test_a_staged_schedule_brings_its_step_by_and_metric():
    tuned = []
    staged = kprune.Staged([("l1", 1)], step=0.4, by="flops", metric=lambda m: 1.0)
    rule = kprune.Tolerance(0.01, mode="max")
    small, report = kprune.prune_to_tolerance(
        tiny_model(), None, None, criterion=staged, max_rounds=1, verbose=0,
        tolerance=rule, tuning=kprune.FineTune(fn=tuned.append),
    )  # fmt: skip
    assert len(tuned) == 1 and report.metric_name == "<lambda>"
    assert report.rounds[1].step == 0.4 and report.rounds[1].flops_ratio <= 0.6
    # A step given here is the starting step, and the same by= is fine.
    _, report = kprune.prune_to_tolerance(
        tiny_model(),
        None,
        None,
        criterion=staged,
        step=0.2,
        by="flops",
        max_rounds=1,
        verbose=0,
        tolerance=rule,
        tuning=kprune.FineTune(fn=tuned.append),
    )
    assert report.rounds[1].step == 0.2


def test_a_callable_metric_needs_a_mode():
    with pytest.raises(ValueError, match="mode='max'.*mode='min'"):
        kprune.prune_to_tolerance(
            tiny_model(), None, None, metric=lambda m: 1.0, verbose=0
        )


@pytest.mark.parametrize("mode, accepted", [("max", False), ("min", True)])
def test_mode_says_which_way_is_worse(mode, accepted):
    """The metric falls from 1.0 to 0.5: a large drop for 'max', a gain for 'min'."""
    scores = iter([1.0] + [0.5] * 10)
    _, report = kprune.prune_to_tolerance(
        tiny_model(),
        None,
        None,
        tolerance=kprune.Tolerance(0.1, mode=mode),
        metric=lambda m: next(scores),
        step=0.4,
        by="flops",
        tuning=kprune.FineTune(fn=lambda m: None),
        max_rounds=1,
        verbose=0,
    )
    assert report.rounds[1].accepted is accepted


def _collapse(model):
    """A fine-tuning that kills every filter: the model predicts one thing."""
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])


def _one_collapsing_round(model, val_data):
    """One round whose metric holds but whose fine-tuning collapses the model."""
    return kprune.prune_to_tolerance(
        model,
        None,
        val_data,
        tolerance=kprune.Tolerance(0.1, mode="max"),
        metric=lambda m: 1.0,
        step=0.4,
        by="flops",
        tuning=kprune.FineTune(fn=_collapse),
        max_rounds=1,
        verbose=0,
    )[1]


def test_the_tolerance_loop_rejects_a_collapsed_model():
    """The metric says the round is fine; the constant prediction says not."""
    from kprune.loops.rounds import degenerate

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)) + rng.normal(0, 3, (32, 1, 1, 3))
    x, y = x.astype("float32"), np.zeros(32, "int64")
    keras.utils.set_random_seed(1)
    model = tiny_model()
    assert not degenerate(model, x)  # so the guard is on
    report = _one_collapsing_round(model, (x, y))
    assert report.rounds[1].accepted is False
    assert "constant prediction" in report.rounds[1].note


@pytest.mark.parametrize(
    "outputs, expected",
    [
        (np.array([[0.1, 0.9], [0.2, 0.8]]), True),  # argmax 1 everywhere
        (np.array([[0.1, 0.9], [0.8, 0.2]]), False),
        (np.array([[[-2.0], [-0.5]], [[-1.0], [-3.0]]]), True),  # logits all < 0
        (np.array([[[-2.0], [0.5]], [[-1.0], [-3.0]]]), False),
        (np.array([[[0.2], [0.4]], [[0.1], [0.3]]]), True),  # probabilities < 0.5
        (np.full((4, 3), 0.7), True),  # a constant output
    ],
)
def test_degenerate_predictions(outputs, expected):
    from kprune.loops.rounds import degenerate

    inp = keras.Input(outputs.shape[1:])
    model = keras.Model(inp, keras.layers.Identity()(inp))
    assert degenerate(model, outputs.astype("float32")) is expected
    assert degenerate(model, None) is False


def test_the_collapse_guard_is_off_when_the_unpruned_model_is_constant():
    model = tiny_model()
    _collapse(model)  # it predicts one thing already: nothing to compare with
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    report = _one_collapsing_round(model, (x, np.zeros(8, "int64")))
    assert report.rounds[1].accepted is True


def test_a_step_below_the_models_floor_ends_the_loop_instead_of_raising():
    """round_to=8 on an 8-filter conv: no FLOPs step can be reached."""
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    small, report = kprune.prune_to_tolerance(
        tiny_model(),
        None,
        (x, np.zeros(8, "int64")),
        metric=lambda m: 1.0,
        tolerance=kprune.Tolerance(0.01, mode="max"),
        step=0.3,
        by="flops",
        tuning=kprune.FineTune(fn=lambda m: None),
        round_to=8,
        verbose=0,
    )
    assert (
        len(report.rounds) == 1 and small.count_params() == tiny_model().count_params()
    )


def test_importance_multipliers_keep_training_through_the_rounds(trained):
    """Issue 11: each round used to shrink the wrapped model into a plain one,
    so only the first round read multipliers (the others fell back to L2)."""
    train, val, _ = mnist.data()
    small_train = (train[0][:512], train[1][:512])
    wrapped = kprune.wrap(trained, regularizer=1e-4)
    mnist.compile_model(wrapped)
    seen = []

    def fine_tune(model, round_index):
        layer = kprune.layers.wrapped_layers(model)[0]
        before = np.array(layer.importance)
        model.fit(*small_train, epochs=1, batch_size=64, verbose=0)
        seen.append((kprune.layers.is_wrapped(model), before, layer))
        return model

    small, report = kprune.prune_to_tolerance(
        wrapped,
        small_train,
        val,
        tolerance=1.0,
        criterion="importance",
        step=0.2,
        max_rounds=2,
        tuning=kprune.FineTune(fn=fine_tune),
        verbose=0,
    )
    assert [r.criterion for r in report.rounds[1:]] == ["importance"] * 2
    assert all(r.accepted for r in report.rounds[1:])
    assert len(seen) == 2 and all(wrapped_now for wrapped_now, _, _ in seen)
    for _, before, layer in seen:  # the multipliers moved in every round
        assert np.abs(np.array(layer.importance) - before).max() > 1e-4
    assert kprune.layers.is_wrapped(small)
    assert report.final.params == kprune.unwrap(small).count_params()


def stale(model):
    """`model` with BatchNorm statistics a short training can leave behind:
    its accuracy as given is far below what recalibration recovers."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(layer.moving_mean * 3.0 + 0.5)
    return model


def test_the_reference_is_measured_as_the_rounds_are(trained, tmp_path):
    """Every round recalibrates, so the reference does too: judged against the
    stale 'as given' accuracy, every round would pass (issue: the loop then ran
    to max_rounds). The report's round 0 says recalibration moved it."""
    train, val, _ = mnist.data()
    train = (train[0][:512], train[1][:512])
    model = stale(mnist.cnn())
    model.set_weights(stale(trained).get_weights())
    given = model.evaluate(*val, verbose=0)[1]
    small, report = kprune.prune_to_tolerance(
        model, train, val, tolerance=0.02, step=0.5, by="flops", max_rounds=2,
        tuning=kprune.FineTune(epochs=0), verbose=0,
    )  # fmt: skip
    reference = report.baseline.metric
    assert reference > given + 0.2  # recalibration alone moved it
    assert "as given" in report.baseline.note and f"{given:.4f}" in report.baseline.note
    for r in report.rounds[1:]:
        assert r.accepted == (reference - r.metric <= 0.02 + 1e-9)
    # Without recalibration the reference is the model as given.
    _, plain = kprune.prune_to_tolerance(
        model, train, val, tolerance=0.02, step=0.5, by="flops", max_rounds=1,
        tuning=kprune.FineTune(epochs=0, recalibrate=False), verbose=0,
    )  # fmt: skip
    assert plain.baseline.metric == pytest.approx(given) and not plain.baseline.note


def test_tolerance_settings_object_and_the_old_keywords(trained):
    train, val, _ = mnist.data()
    train = (train[0][:256], train[1][:256])
    settings = dict(step=0.3, max_rounds=1, verbose=0)
    tuning = kprune.FineTune(epochs=0)
    rule = kprune.Tolerance(0.5, relative=True, mode="max")
    _, report = kprune.prune_to_tolerance(
        trained, train, val, tolerance=rule, tuning=tuning, **settings
    )
    assert "tolerance 0.5 of the baseline" in report.title
    with pytest.warns(DeprecationWarning, match=r"kprune.Tolerance\(drop, relative"):
        _, again = kprune.prune_to_tolerance(
            trained, train, val, tolerance=0.5, relative=True, tuning=tuning,
            **settings,
        )  # fmt: skip
    assert again.title == report.title
    with pytest.raises(ValueError, match="once, in"), pytest.warns(DeprecationWarning):
        kprune.prune_to_tolerance(
            trained, train, val, tolerance=rule, mode="max", tuning=tuning, **settings
        )
    with pytest.raises(TypeError, match="largest allowed drop"):
        kprune.prune_to_tolerance(trained, train, val, tolerance="1%", **settings)
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        kprune.Tolerance(-0.1)
