"""Writing pruning progress to TensorBoard event files.

`PruningCallback(tensorboard=...)` writes, once per epoch, the share of FLOPs
and channels kept and each group's kept channels as scalars, and the
importance multipliers of every wrapped layer as histograms, under
`<log_dir>/pruning` (beside the `train`/`validation` runs that Keras'
`TensorBoard` callback writes).
"""

from __future__ import annotations

import importlib.util
import os

import keras
import numpy as np


def log_dir_of(tensorboard) -> str | None:
    """The directory of `tensorboard`: a path, or a `keras.callbacks.TensorBoard`."""
    if tensorboard is None:
        return None
    if isinstance(tensorboard, keras.callbacks.TensorBoard):
        return str(tensorboard.log_dir)
    if isinstance(tensorboard, (str, os.PathLike)):
        return os.fspath(tensorboard)
    raise TypeError(
        "tensorboard must be a log directory or a keras.callbacks.TensorBoard; "
        f"got {type(tensorboard).__name__}"
    )


class PruningLog:
    """A summary writer under `<log_dir>/pruning`, opened on first use."""

    def __init__(self, log_dir: str):
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(
                "PruningCallback(tensorboard=...) writes summaries with the "
                "tensorboard package: pip install 'kprune[tensorboard]'"
            )
        self.path = os.path.join(log_dir, "pruning")
        self._writer = None

    def write(self, step: int, scalars: dict, histograms: dict) -> None:
        """Scalars (name -> number) and histograms (name -> array) at `step`."""
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.path)
        with self._writer.as_default(step=int(step)):
            for name, value in scalars.items():
                tf.summary.scalar(name, float(value))
            for name, values in histograms.items():
                tf.summary.histogram(name, np.asarray(values, dtype=np.float32))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
