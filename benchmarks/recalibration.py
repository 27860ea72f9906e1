"""What BatchNorm recalibration does right after pruning, before any fine-tuning.

    python benchmarks/recalibration.py                       # seeds 0 and 1
    python benchmarks/recalibration.py --seeds 0 1 2 --json out/recalibration.json

A U-Net (depth 3, base 16, one logit) is trained on the nuclei image (left 3/4,
random crops) and pruned with L1 to several FLOPs budgets. Each pruned model is
scored on the held-out right quarter (Dice of the foreground) as shrunk, and
after `kprune.recalibrate` on 8 batches of training crops. No gradient step is
taken in either.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import architectures  # noqa: E402
import keras  # noqa: E402
from common import dice, nuclei_parser, over_seeds, parse_args, write_json  # noqa: E402

import kprune  # noqa: E402
from kprune.results import format_table  # noqa: E402


def run_seed(seed: int, budgets, epochs: int, crops: int = 512) -> list[dict]:
    keras.utils.set_random_seed(seed)
    (x, y), (xv, yv) = kprune.datasets.nuclei_tiles(crops=crops, seed=seed)
    model = architectures.unet((64, 64, 1), base=16, depth=3, classes=1)
    model.compile(
        keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True)
    )
    model.fit(
        x, y[..., None].astype("float32"), batch_size=16, epochs=epochs, verbose=0
    )
    rows = [{"seed": seed, "flops": 1.0, "shrunk": dice(model, xv, yv)}]
    rows[0]["recalibrated"] = rows[0]["shrunk"]
    for budget in budgets:
        small = kprune.shrink(model, kprune.plan(model, "l1", flops=budget))
        row = {"seed": seed, "flops": budget, "shrunk": dice(small, xv, yv)}
        kprune.recalibrate(small, x, batches=8)
        row["recalibrated"] = dice(small, xv, yv)
        rows.append(row)
    return rows


def main(argv=None):
    parser = nuclei_parser(__doc__.splitlines()[0])
    parser.add_argument("--flops", type=float, nargs="+", default=[0.5, 0.25, 0.1])
    parser.add_argument("--epochs", type=int, default=12)
    args = parse_args(parser, argv)
    rows, seconds = over_seeds(run_seed, args)
    print(
        format_table(
            ["seed", "FLOPs kept", "Dice as shrunk", "Dice recalibrated"],
            [
                (
                    r["seed"],
                    r["flops"],
                    f"{r['shrunk']:.3f}",
                    f"{r['recalibrated']:.3f}",
                )
                for r in rows
            ],
            title=f"nuclei U-Net, L1, no fine-tuning ({seconds:.0f} s)",
        )
    )
    write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
