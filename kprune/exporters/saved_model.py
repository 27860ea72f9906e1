"""TensorFlow SavedModel: a directory with a `serve` endpoint, reloaded and
compared with Keras.

The `"tf_saved_model"` exporter writes through Keras' own
`model.export(format="tf_saved_model")` and checks the reloaded endpoint in
TensorFlow, which is imported only when a model is exported.
"""

from __future__ import annotations

import keras
import numpy as np

from kprune.exporters.registry import Exporter, export, register_exporter


class SavedModelExporter(Exporter):
    """A SavedModel directory through `model.export(format="tf_saved_model")`."""

    format = "tf_saved_model"
    options = {}

    def write(self, model, path):
        model.export(str(path), format="tf_saved_model", verbose=False)

    def runner(self, model, path):
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # held: serve needs its variables

        def run(sample):
            got = loaded.serve(sample if len(sample) > 1 else sample[0])
            return [np.asarray(g) for g in keras.tree.flatten(got)]

        return run


register_exporter(SavedModelExporter())


def export_saved_model(model: keras.Model, path: str, verify: bool = True) -> str:
    """Write `model` as a TensorFlow SavedModel with a `serve` endpoint:
    `kprune.export(model, path, format="tf_saved_model")`.

    Models with several inputs or outputs are supported. Wrapped models are
    unwrapped first.

    Args:
        model: the Keras model.
        path: output directory.
        verify: reload the SavedModel and check it reproduces Keras (1e-4).

    Returns:
        `path`.

    Raises:
        ValueError: if the reloaded model's outputs differ from Keras.
    """
    export(model, path, "tf_saved_model", verify=verify, samples=4)
    return path
