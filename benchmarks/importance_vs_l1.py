"""Importance multipliers against plain L1 at extreme compression, with and
without BatchNorm recalibration, on the nuclei U-Net.

    python benchmarks/importance_vs_l1.py                         # seeds 0 1, 5% FLOPs
    python benchmarks/importance_vs_l1.py --seeds 0 1 2 --flops 0.1 --json out/ivl.json

Per seed: a U-Net (depth 3, base 16, one logit) trains 12 epochs on 512 crops
of the left 3/4 of the nuclei image. Its wrapped copy (`kprune.wrap`, init
"ones", L1 penalty 1e-4) trains 2 more epochs (64 updates). Each method plans
to `--flops` of the MACs, shrinks, optionally recalibrates BatchNorm on the
training crops, and fine-tunes 7 epochs (Adam 1e-3); the score is the Dice of
the foreground on the held-out right quarter. Methods: `l1` and `bn_scale` on
the trained model, `importance` (|multiplier|) on the wrapped one.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import architectures  # noqa: E402
import keras  # noqa: E402
from common import dice, nuclei_parser, over_seeds, parse_args, write_json  # noqa: E402

import kprune  # noqa: E402
from kprune.results import format_table  # noqa: E402

METHODS = ("l1", "importance", "bn_scale")


def compiled(model):
    model.compile(
        keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True)
    )
    return model


def run_seed(seed: int, flops: float, epochs=(12, 2, 7), crops=512) -> list[dict]:
    train_epochs, wrapped_epochs, tune_epochs = epochs
    keras.utils.set_random_seed(seed)
    (x, y), (xv, yv) = kprune.datasets.nuclei_tiles(crops=crops, seed=seed)
    target = y[..., None].astype("float32")
    model = compiled(architectures.unet((64, 64, 1), base=16, depth=3, classes=1))
    model.fit(x, target, batch_size=16, epochs=train_epochs, verbose=0)
    wrapped = compiled(kprune.wrap(model, regularizer=1e-4))
    wrapped.fit(x, target, batch_size=16, epochs=wrapped_epochs, verbose=0)
    rows = []
    for recalibrate in (False, True):
        for method in METHODS:
            source = wrapped if method == "importance" else model
            small = kprune.shrink(source, kprune.plan(source, method, flops=flops))
            if recalibrate:
                kprune.recalibrate(small, x)
            compiled(small).fit(x, target, batch_size=16, epochs=tune_epochs, verbose=0)
            rows.append(
                {
                    "seed": seed,
                    "method": method,
                    "recalibrated": recalibrate,
                    "dice": dice(small, xv, yv),
                    "unpruned": dice(model, xv, yv),
                }
            )
    return rows


def main(argv=None):
    parser = nuclei_parser(__doc__.splitlines()[0])
    parser.add_argument("--flops", type=float, default=0.05)
    parser.add_argument(
        "--epochs",
        type=int,
        nargs=3,
        default=[12, 2, 7],
        metavar=("TRAIN", "WRAPPED", "TUNE"),
        help="epochs of training, of the wrapped model, of fine-tuning",
    )
    args = parse_args(parser, argv)
    rows, seconds = over_seeds(run_seed, args)
    print(
        format_table(
            ["seed", "method", "recalibrated", "Dice after fine-tuning", "unpruned"],
            [
                (
                    r["seed"],
                    r["method"],
                    "yes" if r["recalibrated"] else "no",
                    f"{r['dice']:.3f}",
                    f"{r['unpruned']:.3f}",
                )
                for r in rows
            ],
            title=f"nuclei U-Net pruned to {args.flops:.0%} of its MACs, "
            f"{args.epochs[2]} epochs of fine-tuning "
            f"({seconds:.0f} s)",
        )
    )
    write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
