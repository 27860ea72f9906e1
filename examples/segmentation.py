"""Segment nuclei with a U-Net, prune it within an accuracy tolerance, ship TFLite.

    pip install --no-deps stardist     # the 512x512 nuclei image ships in its wheel
    python examples/segmentation.py    # about 2.5 minutes on 2 CPU cores
    python examples/segmentation.py --tolerance 0.005 --out out/segmentation

The left three quarters of the image train a U-Net (foreground vs background,
random 64x64 crops with flips and rotations); the right quarter, never trained
on, is split into validation tiles (watched by the tolerance loop) and test tiles
(seen only by the final table). kprune.prune_to_tolerance then removes FLOPs in
steps while pixel accuracy stays within the tolerance, and both models go to
TFLite, verified and timed in LiteRT.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kprune  # noqa: E402

TILE = 64


def foreground_iou(model, x, y) -> float:
    pred = model.predict(x, verbose=0).argmax(-1)
    inter = np.logical_and(pred == 1, y == 1).sum()
    union = np.logical_or(pred == 1, y == 1).sum()
    return float(inter / max(union, 1))


def unet(base: int, depth: int = 3, classes: int = 2) -> keras.Model:
    """A U-Net for TILE x TILE grey tiles: `depth` levels of two
    conv-BatchNorm-ReLU blocks that halve the size and double the filters,
    then Conv2DTranspose up-sampling with the skips concatenated back."""
    layers = keras.layers

    def block(x, filters, label):
        for part in "ab":
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"{label}_{part}"
            )(x)
            x = layers.ReLU()(layers.BatchNormalization()(x))
        return x

    image = keras.Input((TILE, TILE, 1), name="image")
    x, skips = image, []
    for level in range(depth):
        skips.append(block(x, base << level, f"down{level}"))
        x = layers.MaxPooling2D()(skips[-1])
    x = block(x, base << depth, "bottleneck")
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(base << level, 2, strides=2, padding="same")(x)
        x = block(layers.Concatenate()([x, skips[level]]), base << level, f"up{level}")
    mask = layers.Conv2D(classes, 1, activation="softmax", name="mask")(x)
    return keras.Model(image, mask, name="unet")


def compile_model(model, lr):
    model.compile(
        keras.optimizers.Adam(lr),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/segmentation")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--crops", type=int, default=512, help="training crops")
    parser.add_argument("--base", type=int, default=16, help="U-Net base filters")
    parser.add_argument("--max-rounds", type=int, default=10)
    parser.add_argument("--step", type=float, default=0.3, help="share of FLOPs")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)

    (x_train, y_train), (x_held, y_held) = kprune.datasets.nuclei_tiles(
        crops=args.crops, tile=TILE, seed=0
    )
    x_val, y_val, x_test, y_test = x_held[::2], y_held[::2], x_held[1::2], y_held[1::2]
    print(
        f"nuclei: {len(x_train)} training crops, {len(x_val)} validation and "
        f"{len(x_test)} test tiles of {TILE}x{TILE}"
    )

    model = compile_model(unet(args.base), 2e-3)
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=16, verbose=2)

    small, report = kprune.prune_to_tolerance(
        model,
        (x_train, y_train),
        (x_val, y_val),
        tolerance=args.tolerance,
        metric="accuracy",
        criterion="l1",
        step=args.step,
        by="flops",
        tuning=kprune.FineTune(epochs=2, learning_rate=2e-4),
        max_rounds=args.max_rounds,
        round_to=8,
    )
    print(report)

    paths = [os.path.join(args.out, f"{n}.tflite") for n in ("dense", "pruned")]
    for m, path in zip((model, small), paths):
        print(kprune.export_tflite(m, path, representative_data=x_val))
    timings = kprune.benchmark_tflite(paths, runs=30)

    before, after = kprune.profile(model), kprune.profile(small)
    acc = [m.evaluate(x_test, y_test, verbose=0)[1] for m in (model, small)]
    iou = [foreground_iou(m, x_test, y_test) for m in (model, small)]
    print()
    print(
        before.compare(
            after,
            names=("U-Net", "pruned"),
            metrics={"test pixel accuracy": acc, "test foreground IoU": iou},
            timings=timings,
            title=f"nuclei segmentation, tolerance {args.tolerance}",
        )
    )


if __name__ == "__main__":
    main()
