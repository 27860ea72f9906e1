"""Exporting to SavedModel and TFLite, checking the export, and timing it.

Conversion goes Keras -> SavedModel (`model.export`) -> `tf.lite.TFLiteConverter`.
Verification and timing run the `.tflite` file in the LiteRT interpreter
(`ai_edge_litert`), which is imported only when needed.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass

import keras
import numpy as np

from kprune.data import first_inputs
from kprune.report import format_table

QUANTIZE = (None, "float16", "dynamic", "int8")
#: Largest error, relative to the largest output, that passes verification.
#: None: report the error but do not fail on it.
DEFAULT_TOLERANCE = {None: 1e-4, "float16": 1e-2, "dynamic": None, "int8": None}


@dataclass
class ExportResult:
    """What `export_tflite` wrote and how closely it matches Keras.

    Attributes:
        path: the `.tflite` file.
        bytes: its size.
        quantize: the quantization used.
        max_abs_error: largest |tflite - keras| over the verification samples.
        max_rel_error: `max_abs_error` over the largest |keras| output.
        agreement: share of samples whose argmax (last axis) agrees with Keras,
            for classifiers and segmenters; None when not verified.
        samples: how many samples were compared.
    """

    path: str
    bytes: int
    quantize: str | None
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    agreement: float | None = None
    samples: int = 0

    def __str__(self) -> str:
        parts = [
            f"{self.path}: {self.bytes / 1024:.1f} KiB ({self.quantize or 'float32'})"
        ]
        if self.samples:
            parts.append(
                f"max abs error {self.max_abs_error:.3g} "
                f"(relative {self.max_rel_error:.3g}) on {self.samples} samples"
            )
        if self.agreement is not None:
            parts.append(f"argmax agreement {self.agreement:.1%}")
        return ", ".join(parts)


def _plain_model(model):
    """Fold kprune's importance wrappers away: they are for training only."""
    from kprune.layers import is_wrapped
    from kprune.wrapping import unwrap

    return unwrap(model) if is_wrapped(model) else model


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
    model = _plain_model(model)
    model.export(path, format="tf_saved_model", verbose=False)
    if verify:
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        sample = _random_inputs(model, batch=2)
        want = _keras_outputs(model, sample)
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
    model = _plain_model(model)
    content = _convert(model, quantize, representative_data, int8_io)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    result = ExportResult(path=path, bytes=len(content), quantize=quantize)
    if not verify:
        return result
    inputs = (
        first_inputs(representative_data, samples, "representative_data")
        if representative_data is not None
        else [_random_inputs(model, batch=1, seed=i) for i in range(samples)]
    )
    _verify(model, path, inputs, result)
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


def _interpreter(path: str, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def _signature_names(model, runner) -> list[str]:
    names = [kt.name for kt in model.inputs]
    available = list(runner.get_input_details())
    if sorted(names) != sorted(available):
        if len(available) == 1 and len(names) == 1:
            return available
        raise ValueError(
            f"the TFLite signature inputs {available} do not match the model inputs "
            f"{names}"
        )
    return names


def run_tflite(model: keras.Model, path: str, inputs: list) -> list[np.ndarray]:
    """Run a `.tflite` file on one sample (a list of arrays, one per model input).

    int8 inputs and outputs are quantized and dequantized with the file's scales,
    so the result is comparable with the Keras model's float outputs.
    """
    runner = _interpreter(path).get_signature_runner()
    names = _signature_names(model, runner)
    details = runner.get_input_details()
    feed = {name: _quantize(x, details[name]) for name, x in zip(names, inputs)}
    out = runner(**feed)
    out_details = runner.get_output_details()
    keys = sorted(out, key=lambda k: int(k.rsplit("_", 1)[-1]) if "_" in k else 0)
    return [_dequantize(out[k], out_details[k]) for k in keys]


def _verify(model, path, inputs, result: ExportResult) -> None:
    abs_err, scale, agree, total = 0.0, 0.0, 0, 0
    for sample in inputs:
        want = _keras_outputs(model, sample)
        got = run_tflite(model, path, sample)
        for w, g in zip(want, got):
            g = g.reshape(w.shape)
            abs_err = max(abs_err, float(np.abs(w - g).max()))
            scale = max(scale, float(np.abs(w).max()))
            if w.ndim >= 2 and w.shape[-1] > 1:
                agree += int((w.argmax(-1) == g.argmax(-1)).sum())
                total += int(np.prod(w.shape[:-1]))
    result.samples = len(inputs)
    result.max_abs_error = abs_err
    result.max_rel_error = abs_err / max(scale, 1e-12)
    result.agreement = agree / total if total else None


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


def _keras_outputs(model, inputs: list) -> list[np.ndarray]:
    y = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.tree.flatten(y)]


def _random_inputs(model, batch: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for kt in model.inputs:
        shape = [batch] + [d if d is not None else 32 for d in kt.shape[1:]]
        out.append(rng.normal(size=shape).astype(kt.dtype))
    return out


def _rel_error(want, got) -> float:
    return float(np.abs(want - got).max() / max(np.abs(want).max(), 1e-12))


@dataclass
class TFLiteBenchmark:
    """LiteRT latency of one `.tflite` file (milliseconds) and its size."""

    path: str
    bytes: int
    threads: int
    runs: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{os.path.basename(self.path)}: median {self.median_ms:.3f} ms, "
            f"p90 {self.p90_ms:.3f} ms ({self.runs} runs, {self.threads} thread(s)), "
            f"{self.bytes / 1024:.1f} KiB"
        )


def benchmark_tflite(
    path: str | list[str], threads: int = 1, runs: int = 50, warmup: int = 5
) -> TFLiteBenchmark | list[TFLiteBenchmark]:
    """Time `.tflite` files in the LiteRT interpreter.

    With a list of paths the runs are interleaved (run 1 of every file, then run
    2, ...), so slow drift of the machine hits every variant alike.

    Args:
        path: a `.tflite` file, or a list of them.
        threads: interpreter threads.
        runs: timed runs (the median and 90th percentile are reported).
        warmup: untimed runs first.

    Returns:
        A `TFLiteBenchmark`, or a list of them for a list of paths.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0; got {runs}, {warmup}")
    paths = [path] if isinstance(path, str) else list(path)
    interpreters = [_interpreter(p, threads) for p in paths]
    for interpreter in interpreters:
        rng = np.random.default_rng(0)
        for detail in interpreter.get_input_details():
            shape, dtype = detail["shape"], detail["dtype"]
            value = rng.normal(size=shape)
            if np.issubdtype(dtype, np.integer):
                info = np.iinfo(dtype)
                value = rng.integers(info.min, info.max, size=shape)
            interpreter.set_tensor(detail["index"], value.astype(dtype))
        for _ in range(warmup):
            interpreter.invoke()
    times = [[] for _ in paths]
    for _ in range(runs):
        for interpreter, sink in zip(interpreters, times):
            start = time.perf_counter()
            interpreter.invoke()
            sink.append((time.perf_counter() - start) * 1000)
    results = [
        TFLiteBenchmark(
            path=p,
            bytes=os.path.getsize(p),
            threads=threads,
            runs=runs,
            median_ms=statistics.median(t),
            p90_ms=float(np.percentile(t, 90)),
            mean_ms=statistics.fmean(t),
            min_ms=min(t),
        )
        for p, t in zip(paths, times)
    ]
    return results[0] if isinstance(path, str) else results


def benchmark_table(results: list[TFLiteBenchmark]) -> str:
    """A table of several `benchmark_tflite` results."""
    rows = [
        (
            os.path.basename(r.path),
            f"{r.bytes / 1024:.1f}",
            f"{r.median_ms:.3f}",
            f"{r.p90_ms:.3f}",
            r.runs,
        )
        for r in results
    ]
    return format_table(["file", "KiB", "median ms", "p90 ms", "runs"], rows)
