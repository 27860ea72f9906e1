"""What every exporter shares: the result, and comparing a file with Keras.

Each exporter writes a file and runs it in its own runtime; all of them report
an `ExportResult` and measure their errors against the Keras model the same
way (`compare`), on the same inputs (`verification_inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from kprune.data import first_inputs
from kprune.surgery import is_wrapped, unwrap


@dataclass
class ExportResult:
    """What an exporter wrote and how closely it matches Keras.

    Attributes:
        path: the file (or SavedModel directory).
        bytes: its size (a directory's files summed).
        quantize: the quantization used (LiteRT), None for float32.
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
    format: str = "litert"

    def __str__(self) -> str:
        parts = [
            f"{self.path}: {self.bytes / 1024:.1f} KiB ({self.format}, "
            f"{self.quantize or 'float32'})"
        ]
        if self.samples:
            parts.append(
                f"max abs error {self.max_abs_error:.3g} "
                f"(relative {self.max_rel_error:.3g}) on {self.samples} samples"
            )
        if self.agreement is not None:
            parts.append(f"argmax agreement {self.agreement:.1%}")
        return ", ".join(parts)


def plain_model(model):
    """The model to export: kprune's importance wrappers folded away (they are
    for training only)."""
    return unwrap(model) if is_wrapped(model) else model


def keras_outputs(model, inputs: list) -> list[np.ndarray]:
    y = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.tree.flatten(y)]


def random_inputs(model, batch: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for kt in model.inputs:
        shape = [batch] + [d if d is not None else 32 for d in kt.shape[1:]]
        out.append(rng.normal(size=shape).astype(kt.dtype))
    return out


def verification_inputs(model, data=None, samples: int = 16) -> list[list]:
    """Samples to compare an export on: the first `samples` of `data`, or
    random normal inputs when `data` is None. Each sample is a list of arrays,
    one per model input, with a batch axis of 1."""
    if data is not None:
        return first_inputs(data, samples, "data")
    return [random_inputs(model, batch=1, seed=i) for i in range(samples)]


def compare(model, run, inputs: list[list], result: ExportResult) -> ExportResult:
    """Run `run(sample) -> outputs` (the exported file) and the Keras model on
    every sample; fill `result`'s errors and argmax agreement."""
    abs_err, scale, agree, total = 0.0, 0.0, 0, 0
    for sample in inputs:
        want = keras_outputs(model, sample)
        got = run(sample)
        for w, g in zip(want, got):
            g = np.asarray(g).reshape(w.shape)
            abs_err = max(abs_err, float(np.abs(w - g).max()))
            scale = max(scale, float(np.abs(w).max()))
            if w.ndim >= 2 and w.shape[-1] > 1:
                agree += int((w.argmax(-1) == g.argmax(-1)).sum())
                total += int(np.prod(w.shape[:-1]))
    result.samples = len(inputs)
    result.max_abs_error = abs_err
    result.max_rel_error = abs_err / max(scale, 1e-12)
    result.agreement = agree / total if total else None
    return result
