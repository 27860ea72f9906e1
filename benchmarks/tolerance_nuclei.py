"""The paper's experiment in shape: importance weights and an error tolerance on
a U-Net and a TernausNet segmenting the nuclei image.

    python benchmarks/tolerance_nuclei.py                       # both nets, seed 0
    python benchmarks/tolerance_nuclei.py --archs unet --seeds 0 1 --tolerance 0.005

Per architecture and seed: the model (as in `quality_nuclei.py`) trains
`--train-epochs` epochs on random crops of the left 3/4 of the image. The held-out
right quarter is cut into 64x64 tiles, alternately given to validation (what
the tolerance loop watches) and test (seen only by the final table). The
wrapped model (L1 1e-4) learns its multipliers (`kprune.learn_importance`, 2
epochs); then `prune_to_tolerance(criterion="importance", by="flops")` removes
20% of the FLOPs per round (halving the step on a rejection), fine-tunes one
epoch per round (the multipliers keep training), and keeps the pixel accuracy
on validation within `--tolerance` of the unpruned model's (0.0032 is the
paper's 0.32%). Before and after: FLOPs, params, test pixel accuracy and Dice,
TFLite size and LiteRT latency (1 thread, median of 50 interleaved runs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from architectures import NUCLEI_ARCHS as ARCHS  # noqa: E402
from common import add_eager_flag, add_json_flag, dice, parse_args, write_json  # noqa: E402

import kprune  # noqa: E402
from kprune.results import format_table  # noqa: E402


def compiled(model):
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="pixel_accuracy")],
    )
    return model


def pixel_accuracy(model, x, y) -> float:
    return float(((model.predict(x, verbose=0)[..., 0] > 0) == (y > 0)).mean())


def measure(model, x, y, folder, label) -> dict:
    path = os.path.join(folder, f"{label}.tflite")
    kprune.export_tflite(model, path)
    return {
        "flops": kprune.profile(model).flops,
        "params": kprune.profile(model).params,
        "pixel_accuracy": pixel_accuracy(model, x, y),
        "dice": dice(model, x, y),
        "path": path,
    }


def run(arch, seed, args) -> dict:
    (x, y), (xh, yh) = kprune.datasets.nuclei_tiles(crops=args.crops, seed=seed)
    target = y[..., None].astype("float32")
    val = (xh[0::2], yh[0::2, ..., None].astype("float32"))
    xt, yt = xh[1::2], yh[1::2]
    keras.utils.set_random_seed(seed)
    model = compiled(ARCHS[arch]())
    model.fit(x, target, batch_size=16, epochs=args.train_epochs, verbose=0)
    start = time.perf_counter()
    wrapped = compiled(kprune.wrap(model, regularizer=1e-4))
    kprune.learn_importance(wrapped, (x, target), epochs=2, batch_size=16)
    small, report = kprune.prune_to_tolerance(
        wrapped,
        (x, target),
        val,
        tolerance=args.tolerance,
        metric="pixel_accuracy",
        criterion="importance",
        by="flops",
        step=0.2,
        max_rounds=args.max_rounds,
        verbose=1,
    )
    seconds = time.perf_counter() - start
    small = kprune.unwrap(small)
    with tempfile.TemporaryDirectory() as folder:
        before = measure(model, xt, yt, folder, "before")
        after = measure(small, xt, yt, folder, "after")
        timed = kprune.benchmark_tflite([before["path"], after["path"]], runs=50)
    for side, bench in zip((before, after), timed):
        side.pop("path")
        side.update(tflite_kib=bench.bytes / 1024, latency_ms=bench.median_ms)
    rounds = sum(r.accepted for r in report.rounds[1:])
    return {"arch": arch, "seed": seed, "before": before, "after": after,
            "accepted_rounds": rounds, "seconds": seconds}  # fmt: skip


def table(results, tolerance) -> str:
    rows = []
    for r in results:
        b, a = r["before"], r["after"]
        rows.append(
            (
                r["arch"],
                r["seed"],
                f"{b['flops'] / 1e6:.1f}M -> {a['flops'] / 1e6:.1f}M "
                f"(-{1 - a['flops'] / b['flops']:.1%})",
                f"{b['params']:,} -> {a['params']:,}",
                f"{b['pixel_accuracy']:.4f} -> {a['pixel_accuracy']:.4f}",
                f"{b['dice']:.3f} -> {a['dice']:.3f}",
                f"{b['tflite_kib']:.0f} -> {a['tflite_kib']:.0f}",
                f"{b['latency_ms']:.2f} -> {a['latency_ms']:.2f} "
                f"({b['latency_ms'] / a['latency_ms']:.1f}x)",
                f"{r['accepted_rounds']} ({r['seconds']:.0f} s)",
            )
        )
    header = ["arch", "seed", "FLOPs", "params", "pixel acc (test)", "Dice (test)",
              "TFLite KiB", "LiteRT ms", "rounds"]  # fmt: skip
    return format_table(
        header, rows, title=f"importance + tolerance {tolerance} (pixel accuracy)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--archs", nargs="+", choices=sorted(ARCHS), default=list(ARCHS)
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tolerance", type=float, default=0.0032)
    parser.add_argument("--train-epochs", type=int, default=12)
    parser.add_argument("--max-rounds", type=int, default=12)
    parser.add_argument("--crops", type=int, default=512)
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)
    results = [run(a, s, args) for s in args.seeds for a in args.archs]
    print(table(results, args.tolerance))
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
