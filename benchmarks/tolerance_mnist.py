"""FLOPs against accuracy for the error-tolerance loop, on real MNIST.

    python benchmarks/tolerance_mnist.py
    python benchmarks/tolerance_mnist.py --tolerances 0.005 0.01 --json out/tol.json
    python benchmarks/tolerance_mnist.py --dataset fashion

`--dataset fashion` reads Debian's dataset-fashion-mnist package.

A small CNN is trained once; `kprune.prune_to_tolerance` then prunes a copy for
each tolerance (steps of FLOPs, one fine-tuning epoch per round at a tenth of the
training learning rate). The metric the
loop watches is validation accuracy; the test split is seen by nothing but the
final measurement.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from common import add_eager_flag, add_json_flag, parse_args, write_json  # noqa: E402
from keras import layers  # noqa: E402

import kprune  # noqa: E402
from kprune.results import format_table, human  # noqa: E402


def load(name: str, limit: int | None):
    if name == "fashion":
        (x, y), (xt, yt) = kprune.datasets.fashion_mnist()
    else:
        (x, y), (xt, yt) = kprune.datasets.mnist()
    if limit:
        x, y = x[:limit], y[:limit]
    half = len(xt) // 2
    return (x, y), (xt[:half], yt[:half]), (xt[half:], yt[half:])


def build() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for filters in (32, 32, "pool", 64, 64, "pool", 128):
        if filters == "pool":
            x = layers.MaxPooling2D()(x)
            continue
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
    model.compile(
        keras.optimizers.Adam(2e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tolerances", nargs="+", type=float, default=[0.005, 0.01, 0.02]
    )
    parser.add_argument("--dataset", choices=["mnist", "fashion"], default="mnist")
    parser.add_argument("--limit", type=int, default=None, help="training images used")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--step", type=float, default=0.2)
    parser.add_argument("--max-rounds", type=int, default=16)
    parser.add_argument("--criterion", default="l1")
    parser.add_argument("--lr", type=float, default=2e-4, help="fine-tuning rate")
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)

    keras.utils.set_random_seed(0)
    train, val, test = load(args.dataset, args.limit)
    model = build()
    model.fit(*train, epochs=args.epochs, batch_size=64, verbose=0)
    base = kprune.profile(model)
    _, val_acc = model.evaluate(*val, verbose=0)
    _, test_acc = model.evaluate(*test, verbose=0)
    results = [
        {
            "tolerance": None,
            "macs": base.macs,
            "flops_kept": 1.0,
            "params": base.params,
            "val_accuracy": val_acc,
            "test_accuracy": test_acc,
            "rounds": 0,
            "seconds": 0.0,
        }
    ]
    for tolerance in args.tolerances:
        keras.utils.set_random_seed(1)
        start = time.perf_counter()
        small, report = kprune.prune_to_tolerance(
            model,
            train,
            val,
            tolerance=tolerance,
            metric="accuracy",
            criterion=args.criterion,
            step=args.step,
            by="flops",
            tuning=kprune.FineTune(epochs=1, learning_rate=args.lr),
            max_rounds=args.max_rounds,
            verbose=0,
        )
        seconds = time.perf_counter() - start
        prof = kprune.profile(small)
        results.append(
            {
                "tolerance": tolerance,
                "macs": prof.macs,
                "flops_kept": prof.macs / base.macs,
                "params": prof.params,
                "val_accuracy": small.evaluate(*val, verbose=0)[1],
                "test_accuracy": small.evaluate(*test, verbose=0)[1],
                "rounds": len(report.rounds) - 1,
                "seconds": seconds,
            }
        )
        print(f"  tolerance {tolerance}: done in {seconds:.0f} s", flush=True)

    rows = [
        (
            "unpruned" if r["tolerance"] is None else r["tolerance"],
            human(r["macs"]),
            f"{r['flops_kept']:.3f}",
            f"{r['params']:,}",
            f"{r['val_accuracy']:.4f}",
            f"{r['test_accuracy']:.4f}",
            f"{r['test_accuracy'] - results[0]['test_accuracy']:+.4f}",
            r["rounds"],
        )
        for r in results
    ]
    print()
    print(
        format_table(
            [
                "tolerance",
                "MACs",
                "FLOPs kept",
                "params",
                "val acc",
                "test acc",
                "test change",
                "rounds",
            ],
            rows,
            title=f"prune_to_tolerance on {args.dataset} ({len(train[0])} training "
            f"images, {args.criterion}, FLOPs steps of {args.step}, fine-tuning "
            f"1 epoch at lr {args.lr})",
        )
    )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
