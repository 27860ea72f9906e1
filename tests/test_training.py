"""Fine-tuning between rounds: `kprune.FineTune`, the learning rate and its
cosine schedule, within a round and across a run."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import kprune
from kprune.loops.training import CosineRate, fit_phase
from tests import models

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class Rates(keras.callbacks.Callback):
    """The optimizer's rate at the start of every training step."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_begin(self, batch, logs=None):
        rate = self.model.optimizer.learning_rate
        self.seen.append(float(keras.ops.convert_to_numpy(rate)))


@pytest.fixture
def rates(monkeypatch):
    """The rate of every training step of every `fit` in the test."""
    recorder = Rates()
    original = keras.Model.fit

    def fit(self, *args, callbacks=(), **kwargs):
        return original(self, *args, callbacks=[*callbacks, recorder], **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    return recorder


def _sequential(lr=1e-2):
    model = models.sequential()
    model.compile(keras.optimizers.Adam(lr), LOSS)
    return model


def _data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 16, 16, 3)).astype("float32"), rng.integers(0, 5, n)


def test_cosine_decays_every_step_to_zero_and_puts_the_rate_back():
    model, (x, y), rates = _sequential(), _data(32), Rates()
    # CosineRate first: the recorder sees the rate each step trains with.
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[CosineRate(), rates])
    total = 3 * 4
    expected = [0.5e-2 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    np.testing.assert_allclose(rates.seen, expected, rtol=1e-5)
    assert rates.seen[-1] < 0.02 * 1e-2  # near 0 by the last step
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == (
        pytest.approx(1e-2)
    )


def test_cosine_moves_once_per_epoch_when_the_steps_are_unknown():
    x, y = _data(16)
    data = tf.data.Dataset.from_generator(  # fit cannot tell its length
        lambda: iter(zip(x[:8], y[:8])),
        output_signature=(
            tf.TensorSpec((16, 16, 3), tf.float32),
            tf.TensorSpec((), tf.int64),
        ),
    ).batch(4)
    model, rates = _sequential(), Rates()
    model.fit(data, epochs=2, verbose=0, callbacks=[CosineRate(), rates])
    # Keras begins one more batch per epoch than the dataset holds, then stops.
    per_epoch = len(rates.seen) // 2
    assert rates.seen[:per_epoch] == pytest.approx([1e-2] * per_epoch)
    assert rates.seen[per_epoch:] == pytest.approx([0.5e-2] * per_epoch)


def test_fine_tune_with_a_cosine_starts_at_the_given_rate():
    model, (x, y), rates = _sequential(1e-3), _data(16), Rates()
    seen = []
    original = model.fit

    def fit(*args, callbacks=(), **kwargs):
        seen.extend(callbacks)
        return original(*args, callbacks=[*callbacks, rates], **kwargs)

    model.fit = fit
    tuning = kprune.FineTune(epochs=2, learning_rate=4e-2, lr_schedule="cosine")
    fit_phase(model, tuning.bind(model, (x, y)), (x, y))
    assert [type(c) for c in seen] == [CosineRate]
    assert rates.seen[0] == pytest.approx(4e-2)
    assert rates.seen == sorted(rates.seen, reverse=True)


def test_the_loop_fine_tunes_with_a_cosine_on_a_sequential_model():
    model, (x, y) = _sequential(), _data(32)
    small, report = kprune.Staged([("l1", 1)], flops=0.5, metric=lambda m: 1.0).run(
        model, (x, y), tuning=kprune.FineTune(lr_schedule="cosine"), verbose=0
    )
    assert report.final.params < model.count_params()
    assert float(keras.ops.convert_to_numpy(small.optimizer.learning_rate)) == (
        pytest.approx(1e-2)
    )


@pytest.mark.parametrize("batch_size, steps", [(None, 2), (10, 4)])
def test_the_loop_fine_tunes_at_the_batch_size_it_is_given(batch_size, steps):
    """40 samples: 4 steps an epoch at batch_size=10, Keras' 32 gives 2."""
    model, (x, y) = _sequential(), _data(40)
    small, _ = kprune.Staged([("l1", 1)], flops=0.5, metric=lambda m: 1.0).run(
        model, (x, y), tuning=kprune.FineTune(batch_size=batch_size), verbose=0
    )
    assert int(keras.ops.convert_to_numpy(small.optimizer.iterations)) == steps


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"lr_schedule": "cosin"}, "lr_schedule must be one of"),
        ({"learning_rate": 0}, "learning_rate must be a number > 0"),
        ({"learning_rate": "1e-3"}, "learning_rate must be a number > 0"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"batch_size": 16.0}, "batch_size must be an int >= 1"),
        ({"batch_size": True}, "batch_size must be an int >= 1"),
        ({"epochs": -1}, "epochs must be an int >= 0"),
        ({"final_epochs": 1.5}, "final_epochs must be an int >= 0"),
        ({"recalibrate": "yes"}, "recalibrate must be True or False"),
        ({"learning_rate": 1e-3, "fn": lambda m: None}, "would ignore"),
        ({"lr_schedule": "cosine", "fn": lambda m: None}, "would ignore"),
        ({"batch_size": 8, "fn": lambda m: None}, "would ignore"),
        ({"epochs": 3, "fn": lambda m: None}, "would ignore"),
    ],
)
def test_fine_tune_settings_are_checked_when_made(settings, message):
    with pytest.raises(ValueError, match=message):
        kprune.FineTune(**settings)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"distill": "teacher"}, "distill= takes the teacher model"),
        ({"fn": "train"}, "fn must be a function"),
    ],
)
def test_fine_tune_settings_of_the_wrong_type_raise(settings, message):
    with pytest.raises(TypeError, match=message):
        kprune.FineTune(**settings)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"lr_schedule": "cosine", "epochs": 0}, "there is none to do"),
        ({"learning_rate": 1e-3, "epochs": 0}, "there is none to do"),
        ({"batch_size": 8, "epochs": 0}, "there is none to do"),
        ({"batch_size": 8, "dataset": True}, "batched already"),
        ({"lr_schedule": "cosine_run"}, "cannot tell ahead how many"),
    ],
)
def test_fine_tuning_that_would_be_ignored_raises_before_anything_is_pruned(
    settings, message
):
    model, data = _sequential(), _data(8)
    if settings.pop("dataset", False):
        data = tf.data.Dataset.from_tensor_slices(data).batch(4)
    before = models.weights_of(model)
    with pytest.raises(ValueError, match=message):
        kprune.prune_to_tolerance(
            model, data, data, tuning=kprune.FineTune(**settings), verbose=0
        )
    for a, b in zip(before, models.weights_of(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"lr_schedule": "cosine", "epochs": 0}, "there is none to do"),
        ({"learning_rate": 1e-3, "epochs": 0}, "there is none to do"),
        ({"batch_size": 8, "epochs": 0}, "there is none to do"),
    ],
)
def test_sweep_checks_its_fine_tuning_settings(settings, message):
    model, data = _sequential(), _data(8)
    tuning = kprune.FineTune(**settings)
    with pytest.raises(ValueError, match=message):
        kprune.sweep(model, data, data, flops=[0.5], tuning=tuning, benchmark=False)


def test_the_keywords_of_kprune_0_1_still_work_and_warn():
    """`fine_tune_epochs=`, `lr_schedule=` and friends moved into FineTune;
    for one release they still work, with a DeprecationWarning naming it."""
    model, data = _sequential(), _data(16)
    with pytest.warns(DeprecationWarning, match=r"tuning=kprune.FineTune\(epochs="):
        kprune.prune_to_tolerance(
            model, data, data, tolerance=1.0, fine_tune_epochs=1, max_rounds=1,
            verbose=0,
        )  # fmt: skip
    with pytest.warns(DeprecationWarning, match="lr_schedule"):
        kprune.Staged([("l1", 1)], flops=0.5, metric=lambda m: 1.0).run(
            model, data, lr_schedule="cosine", verbose=0
        )
    with pytest.raises(ValueError, match="settings once"), pytest.warns(DeprecationWarning):
        kprune.Staged([("l1", 1)], flops=0.5, metric=lambda m: 1.0).run(
            model, data, tuning=kprune.FineTune(), epochs=2, verbose=0
        )


def test_a_model_compiled_with_a_schedule_gets_a_clear_error():
    model, data = _sequential(), _data(8)
    rate = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=10)
    model.compile(keras.optimizers.Adam(rate), LOSS)
    tuning = kprune.FineTune(learning_rate=1e-3)
    with pytest.raises(ValueError, match="compiled with a learning-rate schedule"):
        kprune.fine_tune(model, data, tuning)


def test_a_distilled_round_decays_the_distillers_rate(rates):
    model, (x, y) = _sequential(), _data(32)
    tuning = kprune.FineTune(epochs=4, lr_schedule="cosine", distill=True)
    kprune.Staged([("l1", 1)], flops=0.5, metric=lambda m: 1.0).run(
        model, (x, y), tuning=tuning, verbose=0
    )
    assert rates.seen[0] == pytest.approx(1e-2) and rates.seen[-1] < 2e-3
    assert rates.seen == sorted(rates.seen, reverse=True)


def test_one_cosine_spans_every_round_and_the_final_fine_tuning(rates):
    """lr_schedule="cosine_run": 3 rounds of 1 epoch and 1 final epoch follow
    one half cosine over 4 epochs, without jumping back up between fits."""
    model, (x, y) = _sequential(), _data(32)
    tuning = kprune.FineTune(
        epochs=1, final_epochs=1, batch_size=8, lr_schedule="cosine_run"
    )
    small, report = kprune.Staged([("l1", 3)], flops=0.5, metric=lambda m: 1.0).run(
        model, (x, y), tuning=tuning, verbose=0
    )
    total = 4 * 4  # 4 epochs of 4 steps
    expected = [0.5e-2 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    np.testing.assert_allclose(rates.seen, expected, rtol=1e-4)
    assert report.rounds[-1].note.startswith("final fine-tuning, 1 epoch")
    assert len(report.rounds) == 5  # the baseline, 3 rounds, the final one


def test_the_per_round_cosine_starts_again_each_round(rates):
    model, (x, y) = _sequential(), _data(16)
    tuning = kprune.FineTune(epochs=2, batch_size=8, lr_schedule="cosine")
    kprune.Staged([("l1", 2)], flops=0.5, metric=lambda m: 1.0).run(
        model, (x, y), tuning=tuning, verbose=0
    )
    assert rates.seen[0] == rates.seen[4] == pytest.approx(1e-2)


def test_fine_tune_recalibrates_then_trains_a_model_pruned_by_hand():
    model, (x, y) = _sequential(), _data(32)
    small = kprune.prune(model, flops=0.5)
    norms = [layer for layer in small.layers if "batch_normalization" in layer.name]
    before = [np.array(n.moving_mean) for n in norms]
    out = kprune.fine_tune(small, (x, y), kprune.FineTune(epochs=1, batch_size=8))
    assert out is small
    assert int(keras.ops.convert_to_numpy(small.optimizer.iterations)) == 4
    assert any(
        not np.allclose(b, np.array(n.moving_mean)) for b, n in zip(before, norms)
    )
    with pytest.raises(TypeError, match="tuning=kprune.FineTune"):
        kprune.fine_tune(small, (x, y), epochs=2)
