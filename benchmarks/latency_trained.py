"""A latency plan against a FLOPs plan on a trained MobileNetV2, same latency.

    apt-get install dataset-fashion-mnist          # 70,000 images, once
    python benchmarks/latency_trained.py                      # seeds 0 1
    python benchmarks/latency_trained.py --seeds 0 --train-size 2000 --epochs 1

MobileNetV2 (`alpha=0.35`, `weights=None`, 10 classes) trains `--epochs` on
`--train-size` Fashion-MNIST images from Debian's files (resized to 64x64,
grey repeated to 3 channels; Adam 1e-3, batch 128); the BatchNorm statistics
are re-estimated after every training (`kprune.recalibrate`, 16 batches), as
Keras' momentum of 0.999 leaves them at chance level after a few hundred
steps. Its latency table is
measured in LiteRT (1 thread, widths 25/50/100%). Then it is pruned to
`--budget` of its measured latency twice: by `plan(latency=...)`, and by the
FLOPs plan whose *measured* latency is closest to the same budget (bisection
on `flops=`, every probe timed with the dense model). Both are fine-tuned
alike (`--fine-tune` epochs, Adam 3e-4) and scored on the 10,000 test
images; at the end the dense model and both pruned ones are timed together
(`--runs` interleaved runs, medians).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import (  # noqa: E402
    add_eager_flag,
    add_json_flag,
    flops_plan_at_measured,
    parse_args,
    timed_shares,
    write_json,
)

import kprune  # noqa: E402
from kprune.results import format_table  # noqa: E402


def images(x, size: int = 64) -> np.ndarray:
    """28x28x1 images as `size`x`size`x3, in batches (memory stays small)."""
    parts = [
        tf.image.resize(x[i : i + 2048], (size, size)).numpy()
        for i in range(0, len(x), 2048)
    ]
    return np.repeat(np.concatenate(parts), 3, axis=-1)


def data(train_size: int, test_size: int, seed: int, size: int):
    (x, y), (x_test, y_test) = kprune.datasets.fashion_mnist()
    pick = np.random.default_rng(seed).permutation(len(x))[:train_size]
    test = images(x_test[:test_size], size), y_test[:test_size]
    return (images(x[pick], size), y[pick]), test


def compiled(model, lr: float):
    model.compile(
        keras.optimizers.Adam(lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def accuracy(model, x, y) -> float:
    return float(model.evaluate(x, y, batch_size=256, verbose=0)[1])


def mobilenetv2(size: int) -> keras.Model:
    return keras.applications.MobileNetV2(
        input_shape=(size, size, 3),
        alpha=0.35,
        weights=None,
        classes=10,
        classifier_activation=None,
    )


def tiny(size: int) -> keras.Model:
    """Three convolutions: only for the smoke test."""
    inputs = keras.Input((size, size, 3))
    x = inputs
    for width in (32, 64, 64):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="tiny")


def run_seed(seed: int, args) -> list[dict]:
    keras.utils.set_random_seed(seed)
    (x, y), (x_test, y_test) = data(args.train_size, args.test_size, seed, args.size)
    model = {"mobilenetv2": mobilenetv2, "tiny": tiny}[args.model](args.size)
    compiled(model, 1e-3).fit(x, y, batch_size=128, epochs=args.epochs, verbose=0)
    # BatchNorm's momentum of 0.999 leaves the moving statistics far from the
    # data after a few hundred steps (test accuracy at chance); re-estimate
    # them after every training, for every model alike.
    kprune.recalibrate(model, (x, y), batches=16, batch_size=128)
    dense_accuracy = accuracy(model, x_test, y_test)
    table = kprune.LatencyTable.measure(
        model, widths=tuple(args.widths), runs=args.runs, verbose=0
    )
    plans = {"latency plan": kprune.plan(model, latency=args.budget, table=table)}
    # The FLOPs plan is searched to the latency plan's *measured* share, so the
    # two are compared at the same real latency, not at the same budget.
    small = kprune.shrink(model, plans["latency plan"])
    dense_ms, ms = timed_shares([model, small], args.runs)
    plans["FLOPs plan"], _ = flops_plan_at_measured(
        model, ms / dense_ms, args.runs, probes=args.probes
    )
    rows, smalls = [], []
    for key, plan in plans.items():
        small = kprune.recalibrate(kprune.shrink(model, plan), (x, y), 16, 128)
        pruned_accuracy = accuracy(compiled(small, 3e-4), x_test, y_test)
        small.fit(x, y, batch_size=128, epochs=args.fine_tune, verbose=0)
        kprune.recalibrate(small, (x, y), batches=16, batch_size=128)
        smalls.append(small)
        rows.append(
            {
                "seed": seed,
                "plan": key,
                "dense_accuracy": dense_accuracy,
                "pruned_accuracy": pruned_accuracy,
                "accuracy": accuracy(small, x_test, y_test),
                "channels_kept": plan.channels_after / plan.channels_before,
                "flops_kept": plan.flops_ratio,
                "params": small.count_params(),
                "table_seconds": table.seconds,
            }
        )
    timed = timed_shares([model, *smalls], args.runs)
    for row, ms in zip(rows, timed[1:]):
        row.update(dense_ms=timed[0], measured_ms=ms, latency_kept=ms / timed[0])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--model", default="mobilenetv2", choices=["mobilenetv2", "tiny"]
    )
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fine-tune", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)
    start = time.perf_counter()
    rows = [row for seed in args.seeds for row in run_seed(seed, args)]
    table = [
        (
            r["seed"],
            r["plan"],
            f"{r['dense_accuracy']:.4f}",
            f"{r['pruned_accuracy']:.4f}",
            f"{r['accuracy']:.4f}",
            f"{r['latency_kept']:.3f}",
            f"{r['channels_kept']:.3f}",
            f"{r['flops_kept']:.3f}",
        )
        for r in rows
    ]
    headers = ["seed", "plan", "dense acc", "acc pruned", "acc tuned"]
    headers += ["latency kept", "channels kept", "FLOPs kept"]
    title = (
        f"{args.model} {args.size}x{args.size} on Fashion-MNIST, budget "
        f"{args.budget:.0%} of "
        f"measured latency ({time.perf_counter() - start:.0f} s)"
    )
    print(format_table(headers, table, title))
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
