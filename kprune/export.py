"""Exporting to SavedModel and TFLite, with verification against Keras.

Conversion goes Keras -> SavedModel (`model.export`) -> `tf.lite.TFLiteConverter`.
Running and timing `.tflite` files is `kprune.litert`'s job.
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np

from kprune.data import first_inputs
from kprune.export_common import (
    ExportResult,
    keras_outputs,
    plain_model,
    random_inputs,
)
from kprune.litert import verify_tflite

QUANTIZE = (None, "float16", "dynamic", "int8")
#: Largest error, relative to the largest output, that passes verification.
#: None: report the error but do not fail on it.
DEFAULT_TOLERANCE = {None: 1e-4, "float16": 1e-2, "dynamic": None, "int8": None}


def export_saved_model(model: keras.Model, path: str, verify: bool = True) -> str:
    """Write `model` as a TensorFlow SavedModel with a `serve` endpoint.

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
    model = plain_model(model)
    model.export(path, format="tf_saved_model", verbose=False)
    if verify:
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        sample = random_inputs(model, batch=2)
        want = keras_outputs(model, sample)
        got = loaded.serve(sample if len(sample) > 1 else sample[0])
        got = [np.asarray(g) for g in keras.tree.flatten(got)]
        err = max(_rel_error(w, g) for w, g in zip(want, got))
        if err > 1e-4:
            raise ValueError(
                f"the SavedModel at {path} differs from Keras by {err:.3g} "
                "(relative); please report this with the model"
            )
    return path


def export_tflite(
    model: keras.Model,
    path: str,
    quantize: str | None = None,
    representative_data=None,
    verify: bool = True,
    int8_io: bool = False,
    tolerance: float | None = None,
    samples: int = 16,
) -> ExportResult:
    """Convert `model` to a `.tflite` file and check it against Keras.

    Args:
        model: the Keras model (wrapped models are unwrapped first).
        path: the `.tflite` file to write.
        quantize: None (float32), `"float16"` (half-size weights), `"dynamic"`
            (int8 weights, float activations) or `"int8"` (full integer; needs
            `representative_data`).
        representative_data: inputs for int8 calibration and for verification:
            an array, a list of arrays, `(x, y)`, or a `tf.data.Dataset`.
        verify: run the file in the LiteRT interpreter and compare with Keras.
        int8_io: with `"int8"`, make the model's inputs and outputs int8 too
            (for microcontrollers); verification quantizes and dequantizes.
        tolerance: largest error relative to the largest output that passes
            verification; defaults to 1e-4 for float32 and 1e-2 for float16.
        samples: how many samples to verify on.

    Returns:
        An `ExportResult` (path, size, errors, argmax agreement).

    Raises:
        ValueError: for an unknown `quantize`, int8 without data, `int8_io`
            without int8, or a float export whose error exceeds the tolerance.
    """
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}; got {quantize!r}")
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            "quantize='int8' needs representative_data= to calibrate activation "
            "ranges: pass a few hundred real inputs (an array, (x, y) or a "
            "tf.data.Dataset)"
        )
    if int8_io and quantize != "int8":
        raise ValueError("int8_io=True needs quantize='int8'")
    model = plain_model(model)
    content = _convert(model, quantize, representative_data, int8_io)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    result = ExportResult(path=path, bytes=len(content), quantize=quantize)
    if not verify:
        return result
    checked = verify_tflite(model, path, representative_data, samples)
    result.samples, result.agreement = checked.samples, checked.agreement
    result.max_abs_error, result.max_rel_error = (
        checked.max_abs_error,
        checked.max_rel_error,
    )
    limit = DEFAULT_TOLERANCE[quantize] if tolerance is None else tolerance
    if limit is not None and result.max_rel_error > limit:
        raise ValueError(
            f"the TFLite model differs from Keras by {result.max_rel_error:.3g} "
            f"relative to the largest output (limit {limit:g}) with "
            f"quantize={quantize!r}. Check for unsupported ops, or pass a larger "
            "tolerance= if this is expected."
        )
    return result


def _convert(model, quantize, representative_data, int8_io) -> bytes:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            calibration = first_inputs(representative_data, 200, "representative_data")

            def representative():
                for sample in calibration:
                    yield [s.astype(np.float32) for s in sample]

            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        return converter.convert()


def _rel_error(want, got) -> float:
    return float(np.abs(want - got).max() / max(np.abs(want).max(), 1e-12))
