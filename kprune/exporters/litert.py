"""LiteRT (TFLite): writing `.tflite` files and checking them in the interpreter.

The `"litert"` exporter converts through Keras' own
`model.export(format="litert")`, with the converter settings each
quantization needs (float16 weights, dynamic-range int8, full int8 calibrated
on representative data, optionally with int8 inputs and outputs), and built-in
LiteRT ops only, so every file runs in the plain interpreter. `TFLiteRunner`
runs a file sample by sample, fed like the Keras model. TensorFlow and
`ai_edge_litert` are imported only when a file is written or run.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from kprune.checks import take_deprecated
from kprune.data import first_inputs
from kprune.exporters.registry import Exporter, export, register_exporter
from kprune.exporters.verification import (
    ExportResult,
    compare,
    plain_model,
    verification_inputs,
)

QUANTIZE = (None, "float16", "dynamic", "int8")
#: Largest error, relative to the largest output, that passes verification.
#: None: report the error but do not fail on it.
DEFAULT_MAX_ERROR = {None: 1e-4, "float16": 1e-2, "dynamic": None, "int8": None}
#: Calibration samples for full-integer quantization.
CALIBRATION_SAMPLES = 200


class LiteRTExporter(Exporter):
    """`.tflite` files through `model.export(format="litert")`."""

    format = "litert"
    options = {"quantize": None, "representative_data": None, "int8_io": False}

    def check(self, options: dict) -> dict:
        checked = super().check(options)
        quantize = checked["quantize"]
        if quantize not in QUANTIZE:
            raise ValueError(f"quantize must be one of {QUANTIZE}; got {quantize!r}")
        if quantize == "int8" and checked["representative_data"] is None:
            raise ValueError(
                "quantize='int8' needs representative_data= to calibrate "
                "activation ranges: pass a few hundred real inputs (an array, "
                "(x, y) or a tf.data.Dataset)"
            )
        if checked["int8_io"] and quantize != "int8":
            raise ValueError("int8_io=True needs quantize='int8'")
        return checked

    def write(
        self, model, path, quantize=None, representative_data=None, int8_io=False
    ):
        if not str(path).endswith(".tflite"):
            raise ValueError(f"a LiteRT file ends with .tflite; got {path!r}")
        settings = _converter_settings(quantize, representative_data, int8_io)
        model.export(str(path), format="litert", verbose=False, **settings)

    def runner(self, model, path):
        return TFLiteRunner(model, path)

    def max_error(self, quantize=None, **options):
        return DEFAULT_MAX_ERROR[quantize]

    def quantize(self, quantize=None, **options):
        return quantize


register_exporter(LiteRTExporter())


def _converter_settings(quantize, representative_data, int8_io) -> dict:
    """The `tf.lite.TFLiteConverter` settings `model.export` passes on."""
    import tensorflow as tf

    spec = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    settings = {"target_spec": spec}
    if quantize is not None:
        settings["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        spec["supported_types"] = [tf.float16]
    if quantize == "int8":
        calibration = first_inputs(
            representative_data, CALIBRATION_SAMPLES, "representative_data"
        )

        def representative():
            for sample in calibration:
                yield [s.astype(np.float32) for s in sample]

        settings["representative_dataset"] = representative
        spec["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            settings["inference_input_type"] = tf.int8
            settings["inference_output_type"] = tf.int8
    return settings


class TFLiteRunner:
    """Runs a `.tflite` file sample by sample, fed like the Keras model.

    The model gives the input names of the file's signature. int8 inputs and
    outputs are quantized and dequantized with the file's scales, so results
    compare with the Keras model's float outputs.
    """

    def __init__(self, model: keras.Model, path: str, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        # The signature runner sizes its tensors for each call's inputs (models
        # built for any image size included), so nothing is allocated up front.
        interpreter = Interpreter(model_path=path, num_threads=threads)
        self.runner = interpreter.get_signature_runner()
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()
        names = [kt.name for kt in model.inputs]
        available = list(self.inputs)
        if sorted(names) != sorted(available):
            if len(available) != 1 or len(names) != 1:
                raise ValueError(
                    f"the TFLite signature inputs {available} do not match the "
                    f"model inputs {names}"
                )
            names = available
        self.names = names
        self.keys = sorted(
            self.outputs, key=lambda k: int(k.rsplit("_", 1)[-1]) if "_" in k else 0
        )

    def __call__(self, inputs: list) -> list[np.ndarray]:
        """Outputs for one sample: a list of arrays, one per model input."""
        feed = {n: _quantize(x, self.inputs[n]) for n, x in zip(self.names, inputs)}
        out = self.runner(**feed)
        return [_dequantize(out[k], self.outputs[k]) for k in self.keys]


def verify_tflite(model: keras.Model, path: str, data=None, samples: int = 16):
    """Compare a `.tflite` file with the Keras model it came from.

    Args:
        model: the Keras model (wrapped models are unwrapped).
        path: the `.tflite` file.
        data: inputs to compare on (an array, `(x, y)`, or a dataset); random
            inputs when None.
        samples: how many samples to compare.

    Returns:
        An `ExportResult` with the errors and the argmax agreement.
    """
    model = plain_model(model)
    result = ExportResult(path=path, bytes=os.path.getsize(path), quantize=None)
    inputs = verification_inputs(model, data, samples)
    return compare(model, TFLiteRunner(model, path), inputs, result)


def export_tflite(
    model: keras.Model,
    path: str,
    quantize: str | None = None,
    representative_data=None,
    verify: bool = True,
    int8_io: bool = False,
    max_error: float | None = None,
    samples: int = 16,
    **deprecated,
) -> ExportResult:
    """Convert `model` to a `.tflite` file and check it against Keras:
    `kprune.export(model, path, format="litert", ...)`.

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
        max_error: largest error relative to the largest output that passes
            verification; defaults to 1e-4 for float32 and 1e-2 for float16
            (the integer quantizations report theirs without failing).
        samples: how many samples to verify on.

    Returns:
        An `ExportResult` (path, size, errors, argmax agreement).

    Raises:
        ValueError: for an unknown `quantize`, int8 without data, `int8_io`
            without int8, or a float export whose error exceeds `max_error`.
    """
    moved = take_deprecated(
        deprecated, {"tolerance": "max_error="}, "kprune.export_tflite"
    )
    if deprecated:
        raise TypeError(
            f"export_tflite() got an unexpected keyword {next(iter(deprecated))!r}"
        )
    if moved.get("tolerance") is not None:
        max_error = moved["tolerance"]
    return export(
        model,
        path,
        "litert",
        verify=verify,
        data=representative_data,
        samples=samples,
        max_error=max_error,
        quantize=quantize,
        representative_data=representative_data,
        int8_io=int8_io,
    )


def _quantize(x, detail):
    x = np.asarray(x, dtype=np.float32)
    if detail["dtype"] in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        q = np.round(x / scale + zero)
        return np.clip(q, info.min, info.max).astype(detail["dtype"])
    return x.astype(detail["dtype"])


def _dequantize(y, detail):
    if detail["dtype"] in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        return (y.astype(np.float32) - zero) * scale
    return np.asarray(y, dtype=np.float32)
