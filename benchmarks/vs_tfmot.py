"""kprune (structured) against TF-MOT magnitude pruning (unstructured), on MNIST.

    pip install -e ".[tfmot]"
    python benchmarks/vs_tfmot.py
    python benchmarks/vs_tfmot.py --sparsities 0.5 0.8 --json out/vs_tfmot.json

One small CNN is trained in Keras 3. TF-MOT only accepts legacy `tf_keras`
models, so it prunes a `tf_keras` twin carrying the same weights to 50% and 80%
sparsity (`prune_low_magnitude`, `ConstantSparsity`, one fine-tuning epoch,
`strip_pruning`). kprune removes whole filters until the model keeps the same
number of parameters as TF-MOT's non-zero ones, then fine-tunes one epoch too.
All models are exported to float32 TFLite and timed in LiteRT (one thread,
interleaved runs). TF-MOT's zeros shrink the gzip size; only removed filters
shrink the raw size and the latency.
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import add_eager_flag, add_json_flag, parse_args, write_json  # noqa: E402

import kprune  # noqa: E402
from kprune.results import format_table  # noqa: E402

FILTERS = (32, 32, "pool", 64, 64, "pool", 128)


def build(api, inputs_fn, model_cls):
    """The same CNN in either Keras (`keras.layers`) or `tf_keras.layers`."""
    inputs = inputs_fn((28, 28, 1))
    x = inputs
    for filters in FILTERS:
        if filters == "pool":
            x = api.MaxPooling2D()(x)
            continue
        x = api.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = api.BatchNormalization(momentum=0.9)(x)
        x = api.ReLU()(x)
    x = api.GlobalAveragePooling2D()(x)
    return model_cls(inputs, api.Dense(10, activation="softmax")(x))


def compile_for(model, lr, losses, optimizers):
    model.compile(
        optimizers.Adam(lr),
        losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


def tfmot_variant(dense, sparsity, train, epochs, lr):
    import tensorflow_model_optimization as tfmot
    import tf_keras

    twin = build(tf_keras.layers, tf_keras.Input, tf_keras.Model)
    twin.set_weights(dense.get_weights())
    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, 0, frequency=10)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(twin, pruning_schedule=schedule)
    compile_for(pruned, lr, tf_keras.losses, tf_keras.optimizers)
    pruned.fit(
        *train,
        epochs=epochs,
        batch_size=64,
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    nonzero = sum(int(np.count_nonzero(w)) for w in stripped.get_weights())
    return stripped, nonzero


def tflite_bytes_of_tf_keras(model) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def kprune_variant(dense, params_target, train, epochs, lr):
    """Remove filters until at most `params_target` parameters are left."""
    lo, hi = 0.0, 0.95
    best = None
    for _ in range(12):
        mid = (lo + hi) / 2
        small = kprune.prune(dense, ratio=mid)
        if small.count_params() <= params_target:
            best, hi = small, mid
        else:
            lo = mid
    small = compile_for(best, lr, keras.losses, keras.optimizers)
    small.fit(*train, epochs=epochs, batch_size=64, verbose=0)
    return small


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.8])
    parser.add_argument("--epochs", type=int, default=4, help="training epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-4, help="fine-tuning rate")
    parser.add_argument("--runs", type=int, default=50)
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)
    try:
        import tensorflow_model_optimization  # noqa: F401
    except ImportError:
        raise SystemExit("needs the tfmot extra: pip install -e '.[tfmot]'") from None

    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = kprune.datasets.mnist()
    dense = compile_for(
        build(keras.layers, keras.Input, keras.Model),
        2e-3,
        keras.losses,
        keras.optimizers,
    )
    dense.fit(x, y, epochs=args.epochs, batch_size=64, verbose=0)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:

        def add(name, content, accuracy, nonzero):
            path = os.path.join(tmp, f"{len(rows)}.tflite")
            with open(path, "wb") as f:
                f.write(content)
            rows.append(
                {
                    "variant": name,
                    "path": path,
                    "bytes": len(content),
                    "gzip_bytes": len(gzip.compress(content, 9)),
                    "accuracy": float(accuracy),
                    "nonzero_params": nonzero,
                }
            )

        total = dense.count_params()
        result = kprune.export_tflite(
            dense, os.path.join(tmp, "d.tflite"), verify=False
        )
        with open(result.path, "rb") as f:
            add("dense", f.read(), dense.evaluate(xt, yt, verbose=0)[1], total)
        for sparsity in args.sparsities:
            stripped, nonzero = tfmot_variant(
                dense, sparsity, (x, y), args.fine_tune_epochs, args.lr
            )
            stripped.compile(
                metrics=["accuracy"], loss="sparse_categorical_crossentropy"
            )
            add(
                f"TF-MOT {sparsity:.0%} sparse",
                tflite_bytes_of_tf_keras(stripped),
                stripped.evaluate(xt, yt, verbose=0)[1],
                nonzero,
            )
            small = kprune_variant(
                dense, nonzero, (x, y), args.fine_tune_epochs, args.lr
            )
            path = os.path.join(tmp, f"k{sparsity}.tflite")
            kprune.export_tflite(small, path)
            with open(path, "rb") as f:
                add(
                    f"kprune, same params as TF-MOT {sparsity:.0%}",
                    f.read(),
                    small.evaluate(xt, yt, verbose=0)[1],
                    small.count_params(),
                )
            print(f"  measured sparsity {sparsity}", flush=True)
        timings = kprune.benchmark_tflite([r["path"] for r in rows], runs=args.runs)
        for row, timing in zip(rows, timings):
            row.pop("path")
            row["median_ms"] = timing.median_ms
            row["speedup"] = timings[0].median_ms / timing.median_ms

    table = [
        (
            r["variant"],
            f"{r['nonzero_params']:,}",
            f"{r['bytes'] / 1024:.1f}",
            f"{r['gzip_bytes'] / 1024:.1f}",
            f"{r['median_ms']:.3f}",
            f"{r['speedup']:.2f}x",
            f"{r['accuracy']:.4f}",
        )
        for r in rows
    ]
    print()
    print(
        format_table(
            [
                "variant",
                "non-zero params",
                "TFLite KiB",
                "gzip KiB",
                "median ms",
                "speed-up",
                "test acc",
            ],
            table,
            title=f"TF-MOT against kprune on MNIST (float32 TFLite, LiteRT 1 thread, "
            f"median of {args.runs} interleaved runs)",
        )
    )
    write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
