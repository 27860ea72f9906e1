"""Timing `.tflite` files in the LiteRT interpreter.

`benchmark_tflite` times one file or several, their runs interleaved so slow
drift of the machine hits every variant alike; `TFLiteBenchmark` is what it
measures. `ai_edge_litert` is imported only when a file is run, never at
`import kprune`.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

from kprune.messages import Steps
from kprune.results import format_table


def _interpreter(path: str, threads: int = 1, input_shape=None):
    """A LiteRT interpreter for `path`, its tensors allocated.

    A file exported from a model with `None` spatial dimensions stores them as
    1; it is resized to `input_shape` (without the batch axis) first, and
    refused without one, since a 3x3 convolution cannot even be sized at 1x1.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    for detail in interpreter.get_input_details():
        signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
        if all(d > 0 for d in signature[1:]):
            continue
        if input_shape is None:
            raise ValueError(
                f"{path} takes inputs of any size ({signature[1:]}, -1 = any): pass "
                "input_shape=(H, W, C) to time it at one size"
            )
        shape = [max(int(detail["shape"][0]), 1)] + [int(d) for d in input_shape]
        interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    return interpreter


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
    path: str | list[str],
    threads: int = 1,
    runs: int = 50,
    warmup: int = 5,
    input_shape=None,
    verbose: int = 1,
) -> TFLiteBenchmark | list[TFLiteBenchmark]:
    """Time `.tflite` files in the LiteRT interpreter.

    With a list of paths the runs are interleaved (run 1 of every file, then run
    2, ...), so slow drift of the machine hits every variant alike. Each timed
    run follows an untimed run of the same file, so it is timed with its own
    weights in the cache, as a model runs back to back in an app: timed right
    after the other files, a small model pays for reloading them, and its
    share of a large model's time came out up to 27% higher (MobileNetV2 at
    20% of its FLOPs, 7 files interleaved).

    Args:
        path: a `.tflite` file, or a list of them.
        threads: interpreter threads.
        runs: timed runs (the median and 90th percentile are reported).
        warmup: untimed runs first.
        input_shape: `(H, W, C)` to time a file exported from a model built for
            any image size (`None` dimensions) at; required for such files.
        verbose: 0 silent, 1 a progress bar over the runs, 2 a line per 10.

    Returns:
        A `TFLiteBenchmark`, or a list of them for a list of paths.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0; got {runs}, {warmup}")
    paths = [path] if isinstance(path, str) else list(path)
    interpreters = [_interpreter(p, threads, input_shape) for p in paths]
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
    with Steps("LiteRT timing", runs, verbose) as steps:
        for run in range(runs):
            for interpreter, sink in zip(interpreters, times):
                if len(interpreters) > 1:
                    interpreter.invoke()  # its own weights back in the cache
                start = time.perf_counter()
                interpreter.invoke()
                sink.append((time.perf_counter() - start) * 1000)
            last = [f"{t[-1]:.2f}" for t in times]
            line = f"run {run + 1}: {' / '.join(last)} ms" if run % 10 == 9 else ""
            steps.advance(f"{' / '.join(last)} ms", line=line)
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
