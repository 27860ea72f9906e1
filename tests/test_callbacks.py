"""PruningCallback: masks during fit, logs, schedules, tolerance, resuming."""

import csv
import warnings

import keras
import numpy as np
import pytest

import kprune
from tests import mnist


def wrapped_cnn(**kwargs):
    model = kprune.wrap(mnist.cnn(compile=False), **kwargs)
    return mnist.compile_model(model)


def small_data(n=512):
    (x, y), (xv, yv), _ = mnist.data()
    return (x[:n], y[:n]), (xv[:256], yv[:256])


@pytest.mark.slow
def test_mnist_prune_to_half_keeps_accuracy(tmp_path):
    (x, y), (xv, yv), (xt, yt) = mnist.data()
    dense = mnist.trained()
    _, dense_acc = dense.evaluate(xt, yt, verbose=0)

    keras.utils.set_random_seed(0)
    model = wrapped_cnn(regularizer=1e-4)
    callback = kprune.PruningCallback(ratio=0.5, start_epoch=1, end_epoch=3)
    model.fit(
        x,
        y,
        validation_data=(xv, yv),
        epochs=5,
        batch_size=64,
        verbose=0,
        callbacks=[callback],
    )
    small = mnist.compile_model(kprune.shrink(model))
    _, acc = small.evaluate(xt, yt, verbose=0)
    assert small.count_params() <= 0.6 * dense.count_params()
    assert acc >= dense_acc - 0.03, (acc, dense_acc)
    # shrink removed exactly what was masked: same predictions.
    np.testing.assert_allclose(
        small.predict(xt, verbose=0), model.predict(xt, verbose=0), rtol=1e-4, atol=1e-5
    )


def test_figures_reach_history_and_csv_logger(tmp_path):
    train, val = small_data()
    model = wrapped_cnn()
    path = tmp_path / "log.csv"
    history = model.fit(
        *train,
        validation_data=val,
        epochs=3,
        batch_size=64,
        verbose=0,
        callbacks=[
            kprune.PruningCallback(
                ratio=0.5, start_epoch=0, end_epoch=2, schedule="polynomial"
            ),
            keras.callbacks.CSVLogger(str(path)),
        ],
    )
    kept = history.history["pruning_kept_channels"]
    targets = history.history["pruning_target"]
    assert kept[0] == 1.0 and kept[-1] == pytest.approx(0.5, abs=0.02)
    assert targets == sorted(targets) and targets[-1] == pytest.approx(0.5)
    assert history.history["pruning_flops_kept"][-1] < 0.5
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["pruning_kept_channels"]) == pytest.approx(kept[-1])


def test_masked_channels_stay_zero_through_training():
    train, _ = small_data()
    model = wrapped_cnn(regularizer=1e-3)
    with pytest.warns(UserWarning, match="have not trained yet"):  # epoch 0
        model.fit(
            *train,
            epochs=2,
            batch_size=64,
            verbose=0,
            callbacks=[
                kprune.PruningCallback(
                    ratio=0.5, schedule="constant", criterion="importance"
                )
            ],
        )
    bn = [w for w in kprune.layers.wrapped_layers(model)][0]
    mask = np.asarray(bn.channel_mask)
    assert 0 < mask.sum() < len(mask)
    probe = keras.Model(model.input, bn.output)
    out = np.asarray(probe(train[0][:32], training=True))
    assert np.all(out[..., mask == 0] == 0)
    assert np.any(out[..., mask == 1] != 0)


def test_constant_and_batch_schedules():
    train, _ = small_data()
    model = wrapped_cnn()
    history = model.fit(
        *train,
        epochs=1,
        batch_size=64,
        verbose=0,
        callbacks=[kprune.PruningCallback(ratio=0.4, update_every=2)],
    )
    assert history.history["pruning_target"][-1] == pytest.approx(0.4)
    # 8 batches, a step every 2: the polynomial ramp is applied 4 times.
    state = np.asarray(kprune.layers.wrapped_layers(model)[0].pruning_state)
    assert state[3] == 4


def test_flops_target():
    train, _ = small_data()
    model = wrapped_cnn()
    history = model.fit(
        *train,
        epochs=2,
        batch_size=64,
        verbose=0,
        callbacks=[kprune.PruningCallback(flops=0.4, start_epoch=1)],
    )
    assert history.history["pruning_flops_kept"] == [1.0, pytest.approx(0.4, abs=0.1)]
    assert history.history["pruning_flops_kept"][-1] <= 0.4


class FakeLog(keras.callbacks.Callback):
    """Logs `key`: `before` until epoch `change`, then `after`."""

    def __init__(self, change, key="val_fake", before=0.9, after=0.7):
        super().__init__()
        self.change, self.key, self.before, self.after = change, key, before, after

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.before if epoch < self.change else self.after


def FakeMetric(fall):  # noqa: N802 - reads as the callback it makes
    """val_fake: 0.9 until epoch `fall`, then 0.7."""
    return FakeLog(fall)


def test_tolerance_undoes_the_last_step_and_stops():
    train, _ = small_data()
    model = wrapped_cnn()
    history = model.fit(
        *train,
        epochs=6,
        batch_size=64,
        verbose=0,
        callbacks=[
            FakeMetric(fall=3),
            kprune.PruningCallback(
                tolerance=kprune.Tolerance(0.05, mode="max"),
                step=0.1,
                monitor="val_fake",
            ),
        ],
    )
    targets = history.history["pruning_target"]
    # Steps after epochs 0, 1, 2; the drop seen at epoch 3 undoes the third step.
    assert targets[:3] == pytest.approx([0.1, 0.2, 0.3])
    assert targets[3:] == pytest.approx([0.2, 0.2, 0.2])
    assert history.history["pruning_kept_channels"][-1] == pytest.approx(0.8, abs=0.02)
    state = np.asarray(kprune.layers.wrapped_layers(model)[0].pruning_state)
    assert state[2] == 1.0  # stopped


@pytest.mark.parametrize("mode", [None, "min"])
def test_tolerance_on_a_loss_treats_a_rise_as_worse(mode):
    train, _ = small_data()
    history = wrapped_cnn().fit(
        *train,
        epochs=4,
        batch_size=64,
        verbose=0,
        callbacks=[
            FakeLog(2, key="val_loss", before=0.3, after=0.9),  # a loss rises
            kprune.PruningCallback(
                tolerance=kprune.Tolerance(0.1, mode=mode or "auto"),
                monitor="val_loss",
            ),
        ],
    )
    targets = history.history["pruning_target"]
    assert targets[:2] == pytest.approx([0.05, 0.1])
    assert targets[2:] == pytest.approx([0.05, 0.05])  # undone at epoch 2


def test_tolerance_needs_validation_data():
    train, _ = small_data()
    model = wrapped_cnn()
    with pytest.raises(ValueError, match="pass validation_data to fit"):
        model.fit(
            *train,
            epochs=1,
            verbose=0,
            callbacks=[kprune.PruningCallback(tolerance=0.01)],
        )


def test_needs_a_wrapped_model():
    train, _ = small_data()
    model = mnist.cnn()
    with pytest.raises(ValueError, match="kprune.wrap"):
        model.fit(
            *train, epochs=1, verbose=0, callbacks=[kprune.PruningCallback(ratio=0.5)]
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one target"),
        ({"ratio": 0.5, "flops": 0.5}, "exactly one target"),
        ({"ratio": 0.5, "tolerance": 0.01}, "exactly one target"),
        ({"ratio": 1.2}, r"ratio must be in \[0, 1\)"),
        ({"ratio": 0.5, "start_epoch": 3, "end_epoch": 1}, "start_epoch <= end_epoch"),
        ({"ratio": 0.5, "schedule": "cosine"}, "schedule must be one of"),
        ({"ratio": 0.5, "criterion": "taylor"}, "needs data="),
        ({"ratio": 0.5, "criterion": "nope"}, "unknown criterion"),
        ({"ratio": 0.5, "step": 0.1}, r"step= only apply with tolerance="),
        ({"flops": 0.5, "monitor": "val_loss"}, "would be ignored with flops="),
        (
            {"tolerance": 0.1, "schedule": "constant", "power": 2},
            r"schedule=, power= only apply with ratio=, flops= or latency=",
        ),
        ({"tolerance": kprune.Tolerance(0.1), "mode": "max"}, "once, in"),
        ({"ratio": 0.5, "mode": "max"}, "only apply with tolerance="),
        ({"tolerance": 0.1, "step": 1.5}, r"step must be in \(0, 1\)"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*deprecated since kprune 0.2")
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kprune.PruningCallback(**kwargs)


def test_the_callback_masks_the_target_it_is_given_without_clamping():
    """A ratio of 0.995 used to be clamped to 0.99 without a word."""
    train, _ = small_data()
    history = wrapped_cnn().fit(
        *train, epochs=1, batch_size=64, verbose=0,
        callbacks=[kprune.PruningCallback(ratio=0.995)],
    )  # fmt: skip
    assert history.history["pruning_target"] == pytest.approx([0.995])


def test_the_tolerance_mode_stops_before_masking_everything(capsys):
    """With a metric that never drops, the steps would pass 100%; the callback
    stops at the last step below it and says so."""
    train, _ = small_data()
    history = wrapped_cnn().fit(
        *train, epochs=4, batch_size=64, verbose=0,
        callbacks=[
            FakeMetric(fall=99),
            kprune.PruningCallback(
                tolerance=kprune.Tolerance(0.05, mode="max"), step=0.4,
                monitor="val_fake", verbose=1,
            ),
        ],
    )  # fmt: skip
    assert history.history["pruning_target"] == pytest.approx([0.4, 0.8, 0.8, 0.8])
    assert "a step more would mask every channel" in capsys.readouterr().out


def test_tolerance_keywords_of_kprune_0_1_warn_and_still_work():
    with pytest.warns(DeprecationWarning, match=r"Tolerance\(drop, mode"):
        callback = kprune.PruningCallback(tolerance=0.05, mode="max")
    assert callback.tolerance.mode == "max"
    with pytest.warns(DeprecationWarning, match=r"Tolerance\(drop, relative"):
        callback = kprune.PruningCallback(tolerance=0.05, relative=True)
    assert callback.tolerance.relative


def test_config_round_trip():
    callback = kprune.PruningCallback(
        ratio=0.3, start_epoch=2, end_epoch=5, frequency=2, round_to=4, criterion="l1"
    )
    config = callback.get_config()
    again = kprune.PruningCallback.from_config(config)
    assert again.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(callback)
    )
    assert restored.get_config() == config


def test_a_tolerance_callback_round_trips_its_config():
    rule = kprune.Tolerance(0.02, relative=True, mode="min")
    callback = kprune.PruningCallback(tolerance=rule, monitor="val_loss", step=0.1)
    config = callback.get_config()
    assert config["tolerance"] == {"drop": 0.02, "relative": True, "mode": "min"}
    again = kprune.PruningCallback.from_config(config)
    assert again.get_config() == config and again.tolerance.relative


def test_config_refuses_what_it_would_drop():
    """It used to turn a callable criterion into "importance" and drop data=."""

    def largest(group, context):
        return np.arange(group.size, dtype=float)

    with pytest.raises(ValueError, match="register_criterion"):
        kprune.PruningCallback(ratio=0.3, criterion=largest).get_config()
    data = np.zeros((4, 28, 28, 1), "float32")
    with pytest.raises(ValueError, match="data="):
        kprune.PruningCallback(ratio=0.3, criterion="apoz", data=data).get_config()


class Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def test_resumes_from_backup_and_restore(tmp_path):
    train, _ = small_data(256)

    def run(callbacks):
        keras.utils.set_random_seed(0)
        keras.backend.clear_session()
        model = wrapped_cnn()
        pruning = kprune.PruningCallback(ratio=0.6, start_epoch=1, end_epoch=4)
        history = model.fit(
            *train, epochs=6, batch_size=64, verbose=0, callbacks=[pruning] + callbacks
        )
        return model, history

    _, full = run([])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="interrupted"):
        run([backup, Interrupt(3)])
    # A fresh process would rebuild the model and callbacks the same way.
    model, resumed = run([keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    assert resumed.epoch == [3, 4, 5]
    # The schedule continues where it stopped instead of restarting at zero.
    assert resumed.history["pruning_target"] == pytest.approx(
        full.history["pruning_target"][3:]
    )
    assert resumed.history["pruning_kept_channels"][-1] == pytest.approx(0.4, abs=0.02)
    assert np.all(np.isfinite(resumed.history["loss"]))  # and trains on


def test_verbose_prints_one_line_per_step(capsys):
    train, _ = small_data(256)
    model = wrapped_cnn()
    model.fit(
        *train,
        epochs=3,
        batch_size=64,
        verbose=0,
        callbacks=[kprune.PruningCallback(ratio=0.5, end_epoch=2, verbose=1)],
    )
    lines = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("PruningCallback")
    ]
    assert [line.split(":")[0] for line in lines] == [
        "PruningCallback epoch 1",
        "PruningCallback epoch 2",
    ]
    assert "target 0.500" in lines[-1] and "FLOPs" in lines[-1]


def test_misspelt_or_ignored_plan_options_raise():
    with pytest.raises(TypeError, match=r"PruningCallback\(\) got an unknown option"):
        kprune.PruningCallback(ratio=0.5, scpoe="global")
    with pytest.raises(TypeError, match="Did you mean 'scope'"):
        kprune.PruningCallback(ratio=0.5, scpoe="global")
    with pytest.raises(TypeError, match="criterion 'l1' does not read"):
        kprune.PruningCallback(ratio=0.5, compensate=True)
    with pytest.raises(TypeError, match="'ratios', which it sets itself"):
        kprune.PruningCallback(ratio=0.5, ratios={"conv": 0.5})
    callback = kprune.PruningCallback(
        ratio=0.5, criterion="similarity", distance="l2", scope="global"
    )
    assert callback.get_config()["distance"] == "l2"


def test_a_rollback_after_a_resume_undoes_the_last_step(tmp_path):
    """The step to undo was taken before the interruption; the snapshot must last."""
    train, _ = small_data()

    def run(callbacks):
        keras.utils.set_random_seed(0)
        keras.backend.clear_session()
        model = wrapped_cnn()
        pruning = kprune.PruningCallback(
            tolerance=kprune.Tolerance(0.05, mode="max"), step=0.1, monitor="val_fake"
        )
        history = model.fit(
            *train,
            epochs=6,
            batch_size=64,
            verbose=0,
            callbacks=[FakeMetric(fall=3), pruning] + callbacks,
        )
        return model, history

    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        run([keras.callbacks.BackupAndRestore(backup), Interrupt(3)])
    model, resumed = run([keras.callbacks.BackupAndRestore(backup)])
    assert resumed.epoch == [3, 4, 5]
    # The drop seen at epoch 3 undoes the step taken at epoch 2, before the resume.
    assert resumed.history["pruning_target"] == pytest.approx([0.2, 0.2, 0.2])
    assert resumed.history["pruning_kept_channels"][-1] == pytest.approx(0.8, abs=0.02)


def test_masking_by_untrained_multipliers_warns():
    train, _ = small_data()
    model = wrapped_cnn()
    with pytest.warns(UserWarning, match="have not trained yet"):
        model.fit(
            *train,
            epochs=1,
            batch_size=64,
            verbose=0,
            callbacks=[
                kprune.PruningCallback(
                    ratio=0.3, schedule="constant", criterion="importance"
                )
            ],
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped_cnn().fit(
            *train,
            epochs=1,
            batch_size=64,
            verbose=0,
            callbacks=[kprune.PruningCallback(ratio=0.3, schedule="constant")],
        )
    # The default criterion is "l1" (issue 11: masking by multipliers that
    # have barely trained chose worse than at random); it does not warn.
    assert kprune.PruningCallback(ratio=0.3).criterion == "l1"
    assert not any("have not trained yet" in str(w.message) for w in caught)


def _events(directory) -> dict:
    """Tag -> [(step, value or histogram bucket count)] from event files."""
    import tensorflow as tf

    found: dict = {}
    for path in sorted(directory.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                found.setdefault(value.tag, []).append((event.step, tensor))
    return found


@pytest.mark.parametrize("given", ["path", "callback"])
def test_tensorboard_gets_scalars_and_histograms(tmp_path, given):
    train, val = small_data(128)
    model = wrapped_cnn()
    board = keras.callbacks.TensorBoard(str(tmp_path / "logs"))
    callback = kprune.PruningCallback(
        ratio=0.5,
        end_epoch=1,
        tensorboard=board if given == "callback" else str(tmp_path / "logs"),
    )
    assert callback.get_config()["tensorboard"] == str(tmp_path / "logs")
    model.fit(*train, epochs=2, batch_size=64, verbose=0, callbacks=[callback, board])
    events = _events(tmp_path / "logs" / "pruning")
    flops = [float(v) for _, v in events["pruning/flops_kept"]]
    assert [s for s, _ in events["pruning/flops_kept"]] == [0, 1]
    assert 0 < flops[1] < flops[0] <= 1
    groups = [g.name for g in kprune.graph(model).prunable]
    for name in groups:
        (_, first), (_, last) = events[f"kept_channels/{name}"]
        assert last <= first
    histograms = [tag for tag in events if tag.startswith("importance/")]
    assert len(histograms) == len(kprune.layers.wrapped_layers(model))
    # Keras' own callback, placed after ours, wrote the epoch figures too.
    assert "epoch_pruning_flops_kept" in _events(tmp_path / "logs" / "train")


def test_tensorboard_argument_is_checked():
    with pytest.raises(TypeError, match="log directory"):
        kprune.PruningCallback(ratio=0.5, tensorboard=3)
