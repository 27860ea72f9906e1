"""What every benchmark shares: arguments, seeds, writing JSON, timing, the
Dice score, and the LiteRT timings the latency benchmarks compare.

The pruning methods the quality benchmarks compare are `methods.py`'s, the
models `architectures.py`'s and `zoo.py`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import kprune
from kprune.latency.layerfiles import write_tflite


def dice(model, x, y) -> float:
    """Dice of the foreground: a one-logit model's output above 0 against y > 0."""
    predicted = model.predict(x, verbose=0)[..., 0] > 0
    truth = y > 0
    return float(2 * (predicted & truth).sum() / max(predicted.sum() + truth.sum(), 1))


def write_json(path: str | None, rows) -> None:
    """Write `rows` (any JSON-ready data; other values as text) to `path`
    (nothing when `path` is None)."""
    if not path:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(rows, f, indent=1, default=str)


def add_json_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--json PATH`: also write the results there."""
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser


def timed(fn):
    """`(seconds, fn())`."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def nuclei_parser(description: str, default_seeds=(0, 1)) -> argparse.ArgumentParser:
    """The arguments every nuclei benchmark takes: seeds, crops and --json."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(default_seeds))
    parser.add_argument("--crops", type=int, default=512, help="training crops")
    return add_eager_flag(add_json_flag(parser))


def add_eager_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--eager`: run Keras steps eagerly instead of tracing them. Only
    for the smoke tests, whose few steps cost less than one trace."""
    parser.add_argument(
        "--eager",
        action="store_true",
        help="run without graph tracing (faster for a few steps; for smoke tests)",
    )
    return parser


def add_tuning_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--tune-lr` and `--tune-schedule`: Adam's rate after pruning, and
    whether it stays or decays along a cosine (`methods.Harness`)."""
    parser.add_argument(
        "--tune-lr",
        type=float,
        default=1e-3,
        help="Adam's learning rate after pruning (training uses 1e-3)",
    )
    parser.add_argument(
        "--tune-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="after pruning, keep --tune-lr, or decay it to 0 along a cosine "
        "over each method's TUNE epochs, one cosine across all its fits",
    )
    return parser


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """`parser.parse_args(argv)`, switching TensorFlow to eager when `--eager`."""
    args = parser.parse_args(argv)
    if getattr(args, "eager", False):
        import tensorflow as tf

        tf.config.run_functions_eagerly(True)
    return args


def over_seeds(run_seed, args) -> tuple[list, float]:
    """`run_seed(seed, args.flops, args.epochs, args.crops)` for every seed:
    all the rows, and the seconds it took."""
    start = time.perf_counter()
    rows = [
        row
        for seed in args.seeds
        for row in run_seed(seed, args.flops, args.epochs, args.crops)
    ]
    return rows, time.perf_counter() - start


def timed_shares(models: list, runs: int, quantize=None, exported=()) -> list[float]:
    """Median LiteRT milliseconds of every model, exported as `quantize` and
    timed together (runs interleaved), after the `.tflite` files `exported`."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = list(exported)
        for index, m in enumerate(models):
            path = os.path.join(tmp, f"m{index}.tflite")
            paths.append(write_tflite(m, path, quantize))
        timed = kprune.benchmark_tflite(paths, runs=runs, verbose=0)
        return [t.median_ms for t in timed]


def flops_plan_at_measured(model, share, runs, quantize=None, probes=5):
    """The FLOPs plan whose *measured* latency is closest to `share` of the
    dense model's, and the measured share it got. Each probe is timed with
    the dense model; the next `flops=` is interpolated between the nearest
    probes on either side of `share` (no pruning keeps all the latency, and
    the bracket starts as if none were kept at no FLOPs)."""
    graph = kprune.graph(model)
    below, above, best = (0.0, 0.0), (1.0, 1.0), None  # (flops, measured share)
    with tempfile.TemporaryDirectory() as tmp:
        dense = write_tflite(model, os.path.join(tmp, "dense.tflite"), quantize)
        for _ in range(probes):
            (f0, s0), (f1, s1) = below, above
            flops = f0 + (share - s0) * (f1 - f0) / max(s1 - s0, 1e-9)
            # Stay inside the bracket, away from its ends, so it always shrinks.
            flops = min(max(flops, f0 + 0.1 * (f1 - f0)), f1 - 0.1 * (f1 - f0))
            plan = kprune.plan(graph, flops=max(flops, 0.01))
            small = kprune.shrink(model, plan)
            dense_ms, ms = timed_shares([small], runs, quantize, exported=[dense])
            got = ms / dense_ms
            if best is None or abs(got - share) < abs(best[1] - share):
                best = (plan, got)
            if got > share:
                above = (flops, got)
            else:
                below = (flops, got)
    return best
