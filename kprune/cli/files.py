"""Reading what the command line is given: model files and `.npz` data; and
what it shows: tables and LiteRT timings."""

from __future__ import annotations

import os
import sys

from kprune.messages import say

#: The model files the command line reads.
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_model(path: str):
    """Load a model file for inspection, pruning or export, without its optimizer.

    Every subcommand that reads a Keras model goes through here. The model loads
    with `compile=False`: nothing here trains, and a Keras 2 `.h5` file stores
    an optimizer config (`lr=`, `decay=`) that Keras 3 cannot rebuild.

    Args:
        path: a `.keras` file, or a `.h5`/`.hdf5` file saved by Keras 2 or 3.

    Returns:
        The uncompiled `keras.Model`.

    Raises:
        SystemExit: with a message naming the fix, for a missing, unsupported
            or unreadable file.
    """
    import keras

    import kprune  # noqa: F401  (registers kprune's classes for loading)

    if not os.path.exists(path):
        raise SystemExit(f"kprune: no such file: {path}")
    if os.path.isdir(path) or not path.lower().endswith(MODEL_SUFFIXES):
        raise SystemExit(
            f"kprune: cannot read {path}: give a .keras or .h5 model file. A "
            "SavedModel or TFLite file does not load back as a Keras model: save "
            "the original with model.save('model.keras')."
        )
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as error:
        raise SystemExit(f"kprune: cannot load {path}: {error}") from error


def load_npz(path: str) -> tuple:
    """`(x, y)` from a `.npz` file holding arrays named `x` and `y`."""
    import numpy as np

    if not os.path.exists(path):
        raise SystemExit(f"kprune: no such file: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise SystemExit(
            f"kprune: cannot read {path} as .npz ({error}); write it with "
            "np.savez(path, x=inputs, y=targets)"
        ) from error
    if not hasattr(archive, "files") or not {"x", "y"} <= set(archive.files):
        found = sorted(getattr(archive, "files", [])) or "a bare array"
        raise SystemExit(
            f"kprune: {path} must hold arrays named 'x' (inputs) and 'y' "
            f"(targets); it holds {found}. Write it with "
            "np.savez(path, x=inputs, y=targets)"
        )
    x, y = archive["x"], archive["y"]
    if len(x) != len(y) or len(x) == 0:
        raise SystemExit(
            f"kprune: {path}: x and y must hold the same number (> 0) of samples; "
            f"got {len(x)} and {len(y)}"
        )
    return x, y


def load_trainable(path: str, loss=None, metrics=None, lr=None):
    """A model file, compiled for training and measuring: with `loss` (and
    `metrics`) when given, otherwise with the file's own compile settings."""
    import keras

    if loss is None:
        load_model(path)  # the checks and messages of every command
        try:
            compiled = keras.models.load_model(path)
        except (ValueError, TypeError, KeyError, AttributeError):  # Keras 2 optimizer
            compiled = None
        if compiled is None or not getattr(compiled, "compiled", False):
            raise SystemExit(
                f"kprune: {path} holds no usable training settings: give --loss "
                "(e.g. sparse_categorical_crossentropy) and --metrics accuracy"
            )
        model = compiled
        if lr is not None:
            model.optimizer.learning_rate.assign(lr)
        return model
    model = load_model(path)
    model.compile(
        keras.optimizers.Adam(1e-3 if lr is None else lr), loss, metrics=metrics or []
    )
    return model


def show_table(headers, rows, title: str = "") -> None:
    """A table: drawn by rich in a terminal, plain text when piped."""
    from kprune.results import format_table

    if not sys.stdout.isatty():
        say(format_table(headers, rows, title))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, title_justify="left")
    for header in headers:
        table.add_column(str(header))
    for row in rows:
        table.add_row(*(f"{c:.4g}" if isinstance(c, float) else str(c) for c in row))
    Console().print(table)


def measure_latency(before, after, runs: int = 30) -> dict[str, float]:
    """LiteRT latency (ms, median, 1 thread) of two models, interleaved."""
    import tempfile

    import kprune

    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f"{name}.tflite") for name in ("before", "after")]
        for model, path in zip((before, after), paths):
            kprune.export_tflite(model, path, verify=False)
        results = kprune.benchmark_tflite(paths, runs=runs, verbose=0)
    return {
        "before": results[0].median_ms,
        "after": results[1].median_ms,
    }


def refuse(args, names, why: str, command: str = "prune") -> None:
    """Raise for options given that this form of the command would ignore."""
    given = [n for n in names if getattr(args, n) not in (None, False)]
    if given:
        flags = ", ".join(f"--{n.replace('_', '-')}" for n in given)
        raise SystemExit(f"kprune {command}: {flags} {why}")
