"""Test setup: quiet TensorFlow, seeded Keras, shared fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per worker: the workers already fill the cores, and more
    # threads than cores only add switching.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras():
    """Layer names restart at conv2d, dense, ... and weights are seeded."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(1234)
