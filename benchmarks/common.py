"""What the quality benchmarks share: the Dice score and writing results."""

from __future__ import annotations

import argparse
import json
import os
import time


def dice(model, x, y) -> float:
    """Dice of the foreground: a one-logit model's output above 0 against y > 0."""
    predicted = model.predict(x, verbose=0)[..., 0] > 0
    truth = y > 0
    return float(2 * (predicted & truth).sum() / max(predicted.sum() + truth.sum(), 1))


def write_json(path: str | None, rows: list) -> None:
    """Write `rows` to `path` as JSON (nothing when `path` is None)."""
    if not path:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)


def nuclei_parser(description: str, default_seeds=(0, 1)) -> argparse.ArgumentParser:
    """The arguments every nuclei benchmark takes: seeds, crops and --json."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(default_seeds))
    parser.add_argument("--crops", type=int, default=512, help="training crops")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    return add_eager_flag(parser)


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
