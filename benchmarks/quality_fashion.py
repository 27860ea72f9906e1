"""Pruning methods against each other on the full Fashion-MNIST (Debian's files).

    apt-get install dataset-fashion-mnist          # 70,000 images, once
    python benchmarks/quality_fashion.py                     # seeds 0 1, 25% and 10%
    python benchmarks/quality_fashion.py --seeds 0 --targets 0.1 \\
        --methods l1_global staged --distill off --json out/fashion.json

A VGG-style CNN (six 3x3 conv-BN-ReLU layers of 32-32-64-64-128-128 filters,
a max-pool after each pair, global average pooling, Dense 10; about 288k
parameters and 29M MACs) trains `TRAIN` epochs (Adam 1e-3, batch 128) on the
60,000 training images. A wrapped copy (init "ones", L1 1e-4) learns its
multipliers alone for `WRAP` epochs (`kprune.learn_importance`, Adam 1e-2) for
the methods that read them. Each method of
`benchmarks/methods.py` then prunes to every `--targets` share of the MACs and
fine-tunes `TUNE` epochs in all (Adam 1e-3), with and without distillation
from the unpruned model. The score is the accuracy on the 10,000 test images.
`--tune-lr` and `--tune-schedule cosine` change the fine-tuning's rate (as in
quality_nuclei.py). `--cache DIR` saves the trained model and the wrapped one
after its multipliers' phase, keyed by seed, epochs and sizes, and loads them
in a later run: another fine-tuning setting then skips the ~35 minutes of
training per seed on 2 cores.
`--train-size` trains on the first N images only, `--test-size` scores on the
first N test images (for a quick look).
"""

from __future__ import annotations

import itertools
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import architectures  # noqa: E402
import keras  # noqa: E402
from common import (  # noqa: E402
    add_eager_flag,
    add_json_flag,
    add_tuning_flags,
    parse_args,
    write_json,
)
from methods import METHODS, WRAPPED, Harness, method_seed, name, print_tables  # noqa: E402

import kprune  # noqa: E402

#: Batch size of every fit (training, the multipliers' phase, fine-tuning).
BATCH = 128


def vgg_style(classes: int = 10) -> keras.Model:
    """Six conv-BN-ReLU layers (32-32-64-64-128-128), three max-pools, GAP."""
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for stage, width in enumerate((32, 64, 128)):
        for k in "ab":
            x = architectures.conv_bn_relu(x, width, name=f"conv{stage + 1}{k}")
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="vgg_style")


def compiled(model, rate=None):
    """Adam(`rate`, default 1e-3: a number or a schedule), cross-entropy and
    accuracy."""
    model.compile(
        keras.optimizers.Adam(1e-3 if rate is None else rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def cached(path, make):
    """The model saved at `path`, or `make()` saved there (no cache: `make()`)."""
    if path and os.path.exists(path):
        print(f"loading {path}", flush=True)
        return compiled(keras.models.load_model(path))
    model = make()
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        model.save(path)
    return model


def accuracy(model, x, y) -> float:
    return float((model.predict(x, batch_size=512, verbose=0).argmax(-1) == y).mean())


def run_seed(seed, args) -> list[dict]:
    train_epochs, wrap_epochs, tune = args.epochs
    (x, y), (xt, yt) = kprune.datasets.fashion_mnist()
    if args.train_size:
        x, y = x[: args.train_size], y[: args.train_size]
    if args.test_size:
        xt, yt = xt[: args.test_size], yt[: args.test_size]
    harness = Harness(
        (x, y), compiled, BATCH, tune_lr=args.tune_lr, schedule=args.tune_schedule
    )
    teachers = {"off": [False], "on": [True], "both": [False, True]}[args.distill]
    key = f"seed{seed}_train{train_epochs}_n{len(x)}"
    stem = args.cache and os.path.join(args.cache, f"vgg_style_{key}")

    def trained():
        keras.utils.set_random_seed(seed)
        model = harness.fit(vgg_style(), train_epochs)
        # A short run leaves BatchNorm's moving statistics short of the data's
        # (momentum 0.99): the unpruned reference would score far below what it
        # learned. The pruned models are recalibrated too.
        kprune.recalibrate(model, x)
        return model

    model = cached(stem and f"{stem}.keras", trained)
    base = {"accuracy": accuracy(model, xt, yt), "macs": kprune.profile(model).macs}

    def wrapped_after_phase():
        keras.utils.set_random_seed(seed)
        wrapped = compiled(kprune.wrap(model, regularizer=1e-4))
        kprune.learn_importance(wrapped, (x, y), wrap_epochs, batch_size=BATCH)
        return wrapped

    wrapped = None  # built (or loaded) when the first method reads it
    rows = []
    for target, method, distilled in itertools.product(
        args.targets, args.methods, teachers
    ):
        if method in WRAPPED and wrapped is None:
            wrapped = cached(
                stem and f"{stem}_wrap{wrap_epochs}.keras", wrapped_after_phase
            )
        keras.utils.set_random_seed(method_seed(method, seed))
        teacher = model if distilled else None
        small = harness.prune(method, model, wrapped, target, tune, teacher)
        rows.append(
            {
                "seed": seed,
                "target": target,
                "method": method,
                "init": "ones" if method in WRAPPED else None,
                "distill": distilled,
                "tune_lr": args.tune_lr,
                "tune_schedule": args.tune_schedule,
                "macs_kept": kprune.profile(small).macs / base["macs"],
                "score": accuracy(small, xt, yt),
                "unpruned": base["accuracy"],
            }
        )
        r = rows[-1]
        print(
            f"seed {seed} {target:.0%} {name(r)}{' +distill' if distilled else ''}: "
            f"test accuracy {r['score']:.4f} (unpruned {r['unpruned']:.4f}, "
            f"MACs kept {r['macs_kept']:.3f})",
            flush=True,
        )
    return rows


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.25, 0.1])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--distill", choices=("off", "on", "both"), default="both")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument(
        "--epochs",
        type=int,
        nargs=3,
        default=[6, 1, 5],
        metavar=("TRAIN", "WRAP", "TUNE"),
        help="epochs of training, of the wrapped model, of fine-tuning",
    )
    add_json_flag(parser)
    parser.add_argument(
        "--cache",
        help="save the trained (and wrapped) models in this folder, or load "
        "them from it when a run with the same seed, epochs and sizes saved them",
    )
    args = parse_args(add_tuning_flags(add_eager_flag(parser)), argv)
    start = time.perf_counter()
    rows = [row for seed in args.seeds for row in run_seed(seed, args)]
    seconds = time.perf_counter() - start
    title = (
        f"Fashion-MNIST test accuracy, {args.epochs[2]} epochs of fine-tuning "
        f"({seconds:.0f} s)"
    )
    print_tables(rows, title, score="accuracy", group=())
    write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
