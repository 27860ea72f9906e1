"""The exporter registry, and `export`, the one entry point over it.

Every format is an `Exporter` registered under the name Keras gives it in
`model.export(format=...)`: the exporter writes the file (through
`model.export`), runs it in its own runtime to compare with Keras, and says
how far it may differ. `export(model, path, format=...)` folds importance
wrappers away, checks the format's options, writes, verifies and returns an
`ExportResult`. A new format is one `register_exporter` call.
"""

from __future__ import annotations

import os
from typing import ClassVar

import keras

from kprune.exporters.verification import (
    ExportResult,
    compare,
    plain_model,
    verification_inputs,
)

_EXPORTERS: dict[str, "Exporter"] = {}


class Exporter:
    """One export format. Subclasses set `format` and `options` and write
    `write` and `runner`.

    Attributes:
        format: the name of `model.export(format=...)`.
        options: the format's own keyword arguments and their defaults.
    """

    format: ClassVar[str] = ""
    options: ClassVar[dict] = {}

    def check(self, options: dict) -> dict:
        """The format's options, defaults filled in; raises on any other."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise TypeError(
                f"format {self.format!r} takes no option {unknown[0]!r}; its "
                f"options are: {known}"
            )
        return {**self.options, **options}

    def write(self, model: keras.Model, path: str, **options) -> None:
        """Write `model` (a plain Keras model) to `path`."""
        raise NotImplementedError

    def runner(self, model: keras.Model, path: str):
        """A callable `run(sample) -> outputs` running the written file in its
        runtime, fed like the Keras model (a list of arrays, one per input)."""
        raise NotImplementedError

    def max_error(self, **options) -> float | None:
        """The largest error relative to the largest output that passes
        verification (None: report it, but do not fail on it)."""
        return 1e-4

    def quantize(self, **options) -> str | None:
        """The quantization the options ask for (for the result)."""
        return None


def register_exporter(exporter: Exporter, *, override: bool = False) -> None:
    """Make `kprune.export(..., format=exporter.format)` use `exporter`.

    Raises:
        TypeError: if `exporter` is not an `Exporter` instance with a format.
        ValueError: if the format is taken and `override` is False.
    """
    if not isinstance(exporter, Exporter) or not exporter.format:
        raise TypeError(
            "register_exporter takes an instance of a kprune.exporters.Exporter "
            f"subclass that sets format; got {exporter!r}"
        )
    if exporter.format in _EXPORTERS and not override:
        raise ValueError(
            f"format {exporter.format!r} has an exporter already; pass "
            "override=True to replace it"
        )
    _EXPORTERS[exporter.format] = exporter


def get_exporter(format: str) -> Exporter:
    """The exporter registered for `format`.

    Raises:
        ValueError: for a format without one, listing those there are.
    """
    if format not in _EXPORTERS:
        raise ValueError(
            f"no exporter for format {format!r}; kprune exports to "
            f"{', '.join(sorted(_EXPORTERS))}"
        )
    return _EXPORTERS[format]


def formats() -> list[str]:
    """The formats `kprune.export` writes."""
    return sorted(_EXPORTERS)


def export(
    model: keras.Model,
    path: str,
    format: str = "litert",
    *,
    verify: bool = True,
    data=None,
    samples: int = 16,
    max_error: float | None = None,
    **options,
) -> ExportResult:
    """Export `model` through `model.export(format=...)` and check the file
    against Keras in its own runtime.

    Args:
        model: the Keras model; importance wrappers are folded away first
            (`kprune.unwrap`), the model itself is not changed.
        path: the file to write (a directory for `"tf_saved_model"`).
        format: `"litert"` (a `.tflite` file) or `"tf_saved_model"`;
            `kprune.exporters.formats()` lists them.
        verify: run the file in its runtime and compare it with Keras.
        data: inputs to compare on (an array, `(x, y)` or a dataset); random
            normal inputs when None.
        samples: how many samples to compare.
        max_error: the largest error, relative to the largest output, that
            passes verification; by default the format's (1e-4 for float32,
            1e-2 for float16, none for the integer LiteRT quantizations).
        **options: the format's own options (LiteRT: `quantize`,
            `representative_data`, `int8_io`).

    Returns:
        An `ExportResult`: the path, its size, and the errors measured.

    Raises:
        ValueError: for an unknown format, a bad option, or a verified file
            that differs from Keras by more than `max_error`.
        TypeError: for an option the format does not take.
    """
    exporter = get_exporter(format)
    checked = exporter.check(options)
    if max_error is not None and not (
        isinstance(max_error, (int, float)) and max_error >= 0
    ):
        raise ValueError(f"max_error must be a number >= 0; got {max_error!r}")
    model = plain_model(model)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    exporter.write(model, path, **checked)
    result = ExportResult(
        path=path,
        bytes=_size(path),
        quantize=exporter.quantize(**checked),
        format=format,
    )
    if not verify:
        return result
    inputs = verification_inputs(model, data, samples)
    compare(model, exporter.runner(model, path), inputs, result)
    limit = exporter.max_error(**checked) if max_error is None else max_error
    if limit is not None and result.max_rel_error > limit:
        raise ValueError(
            f"the {format} export differs from Keras by {result.max_rel_error:.3g} "
            f"relative to the largest output (limit {limit:g}) with "
            f"quantize={result.quantize!r}. Check for unsupported ops, or pass "
            "a larger max_error= if this is expected."
        )
    return result


def _size(path: str) -> int:
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )
