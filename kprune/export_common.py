"""What exporting a model and running the exported file share.

`kprune.export` writes files and `kprune.litert` runs them; both compare with
the Keras model through these helpers, so neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np


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


def plain_model(model):
    """The model to export: kprune's importance wrappers folded away (they are
    for training only)."""
    from kprune.layers import is_wrapped
    from kprune.wrapping import unwrap

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
