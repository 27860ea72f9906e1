"""kprune.recalibrate: BatchNorm moving statistics re-estimated after pruning."""

import keras
import numpy as np
import pytest

import kprune
from kprune.loops.recalibration import batch_norms
from tests import models


def _inputs(n=64):
    return np.random.default_rng(0).normal(2.0, 3.0, (n, 16, 16, 3)).astype("float32")


def test_moving_statistics_become_the_average_over_the_batches():
    model = models.randomize(models.vgg())
    x = _inputs()
    kprune.recalibrate(model, x, batches=2, batch_size=32)
    bn = batch_norms(model)[0]
    probe = keras.Model(model.input, bn.input)
    per_batch = [probe(part).numpy() for part in (x[:32], x[32:])]
    want = np.mean([f.reshape(-1, f.shape[-1]).mean(0) for f in per_batch], axis=0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bn.moving_mean), want, rtol=1e-4, atol=1e-4
    )
    assert bn.momentum == 0.99  # put back


def test_only_batchnorm_statistics_change():
    model = models.randomize(models.vgg())
    before = {v.path: np.array(v) for v in model.weights}
    kprune.recalibrate(model, _inputs(32), batches=1)
    changed = {
        p
        for p, v in before.items()
        if not np.array_equal(v, dict((w.path, np.array(w)) for w in model.weights)[p])
    }
    assert changed and all("moving_" in p for p in changed)


def test_batchnorms_inside_wrappers_are_found():
    wrapped = kprune.wrap(models.randomize(models.vgg()))
    assert len(batch_norms(wrapped)) == len(batch_norms(models.vgg())) == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="batches must be"):
        kprune.recalibrate(models.vgg(), _inputs(8), batches=0)
    with pytest.raises(ValueError, match="empty"):
        kprune.recalibrate(models.vgg(), _inputs(0))


def test_the_tolerance_loop_recalibrates_by_default():
    """Right after shrink, before fine-tuning, the statistics are re-estimated."""
    model = models.randomize(models.vgg())
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _inputs(32), np.zeros(32, "int64")
    seen = {}
    for flag in (False, True):
        kprune.prune_to_tolerance(
            model,
            (x, y),
            None,
            metric=lambda m: 1.0,
            tolerance=kprune.Tolerance(0.01, mode="max"),
            max_rounds=1,
            step=0.5,
            verbose=0,
            tuning=kprune.FineTune(
                recalibrate=flag,
                fn=lambda m, flag=flag: seen.__setitem__(
                    flag, keras.ops.convert_to_numpy(batch_norms(m)[0].moving_mean)
                ),
            ),
        )
    assert not np.allclose(seen[False], seen[True])
