"""The callback and the wrapped layers under tf.distribute.MirroredStrategy.

The CPU is split into two logical devices, which TensorFlow only allows before it
starts, so the check runs in a fresh Python process.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np, kprune
    from tests import mnist

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    (x, y), val, _ = mnist.data()
    with strategy.scope():
        wrapped = kprune.wrap(mnist.cnn(compile=False), regularizer=1e-4)
        model = mnist.compile_model(wrapped)
    model.fit(x[:1024], y[:1024], validation_data=(val[0][:256], val[1][:256]),
              epochs=3, batch_size=64, verbose=0,
              callbacks=[kprune.PruningCallback(ratio=0.5, start_epoch=0, end_epoch=1)])
    masked = 0
    for wrapper in kprune.layers.wrapped_layers(model):
        replicas = [np.asarray(v) for v in wrapper.channel_mask.value.values]
        assert len(replicas) == 2, replicas
        for other in replicas[1:]:
            np.testing.assert_array_equal(replicas[0], other)
        state = [np.asarray(v) for v in wrapper.pruning_state.value.values]
        np.testing.assert_array_equal(state[0], state[1])
        masked += int((replicas[0] == 0).sum())
    assert masked > 0
    small = kprune.shrink(model)
    assert small.count_params() < model.count_params()
    print("MIRRORED_OK", masked)
    """
)


@pytest.mark.slow
def test_mirrored_strategy_keeps_masks_identical():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "MIRRORED_OK" in result.stdout, result.stderr[-3000:]
