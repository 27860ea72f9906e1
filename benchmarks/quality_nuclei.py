"""Pruning methods against each other at extreme compression, on the nuclei image.

    python benchmarks/quality_nuclei.py                       # everything, seeds 0 1 2
    python benchmarks/quality_nuclei.py --archs unet --targets 0.05 0.02 \\
        --methods l1_global importance --distill both --seeds 0 --json out/q.json

Per architecture and seed: the model (a U-Net, depth 3, base 16, or a
TernausNet with a VGG11 encoder, base 16; one logit) trains `TRAIN` epochs on
random crops (flips, rotations) of the left 3/4 of the image; the right quarter,
never trained on, is the held-out set. A wrapped copy (`kprune.wrap`, init
`--inits`, L1 1e-4) learns its multipliers alone for `WRAP` epochs
(`kprune.learn_importance`, Adam 1e-2) for the methods that read them. Every
method then prunes to each `--targets` share of the MACs and
gets the same `TUNE` epochs of fine-tuning (Adam, `--tune-lr`, default 1e-3,
constant or `--tune-schedule cosine`) in all:

- `l1_global`, `l1_layer`: one plan, `scope="global"` / `"layer"`, shrink,
  BatchNorm recalibration, fine-tune; `l1_repeat`: `l1_global` again under
  another random seed (the same plan, another fine-tuning: the noise of one
  cell); `l1_floor`: `l1_global` with
  `min_channels=3`, so that no layer is cut below 3 channels;
- `staged`, `staged_comp`: `Staged([("l1", 1), ("similarity", 2)], flops=T)`,
  `TUNE/3` epochs after each round, without / with similarity compensation;
- `importance`: one plan by |multiplier| on the wrapped model (kprune's
  default `scope="layer"`, as `l1_layer`; `importance_global` plans with
  `scope="global"`, as `l1_global`), shrink (it stays
  wrapped, the multipliers keep training), recalibrate, fine-tune, unwrap;
  `importance_fold`: the same plan, but the shrunk model is unwrapped (the
  multipliers folded into the weights) before it is recalibrated and
  fine-tuned like the L1 ones; `importance_l1`: as `importance_fold`, but
  planned globally by |multiplier| x filter L1 (`criterion="importance_l1"`);
- `importance_rounds`: `Staged([("importance", 3)], flops=T)` on the wrapped
  model, the multipliers training between rounds;
- `callback_importance`, `callback_l1`: `PruningCallback(flops=T)` masks the
  wrapped model over the first 40% of the epochs, then shrink and fine-tune.

With `--distill on` (or `both`) every fine-tuning also learns from the
unpruned model (`kprune.Distiller`, weight 1, temperature 2). The score is the
Dice of the foreground on the held-out quarter (a collapsed model scores 0).
"""

from __future__ import annotations

import itertools
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from architectures import NUCLEI_ARCHS  # noqa: E402
from common import (  # noqa: E402
    add_tuning_flags,
    dice,
    nuclei_parser,
    parse_args,
    write_json,
)
from methods import METHODS, WRAPPED, Harness, method_seed, name, print_tables  # noqa: E402

import kprune  # noqa: E402

ARCHS = NUCLEI_ARCHS


def soft_dice_loss(y_true, logits):
    """1 - the soft Dice of the foreground over the batch (sigmoid of the logits)."""
    p = keras.ops.sigmoid(keras.ops.cast(logits, "float32"))
    t = keras.ops.cast(y_true, "float32")
    overlap = keras.ops.sum(p * t)
    return 1.0 - (2.0 * overlap + 1.0) / (keras.ops.sum(p) + keras.ops.sum(t) + 1.0)


def bce_dice_loss(y_true, logits):
    """Binary cross-entropy plus soft Dice: the common segmentation loss. The
    Dice term cannot be won by predicting background everywhere."""
    bce = keras.losses.binary_crossentropy(y_true, logits, from_logits=True)
    return keras.ops.mean(bce) + soft_dice_loss(y_true, logits)


LOSSES = {
    "bce": lambda: keras.losses.BinaryCrossentropy(from_logits=True),
    "bce_dice": lambda: bce_dice_loss,
}


#: Batch size of every fit (training, the multipliers' phase, fine-tuning).
BATCH = 16


def compiler(loss="bce"):
    """`compiled(model, rate=None)`: `model` compiled with Adam(`rate`, default
    1e-3: a number or a schedule) and one of `LOSSES`."""

    def compiled(model, rate=None):
        rate = 1e-3 if rate is None else rate
        model.compile(keras.optimizers.Adam(rate), LOSSES[loss]())
        return model

    return compiled


def run_seed(seed, args) -> list[dict]:
    train_epochs, wrap_epochs, tune = args.epochs
    (x, y), (xv, yv) = kprune.datasets.nuclei_tiles(crops=args.crops, seed=seed)
    # The Distiller cannot tell from a custom loss that the outputs are logits.
    harness = Harness(
        (x, y[..., None].astype("float32")),
        compiler(args.loss),
        BATCH,
        "logits",
        tune_lr=args.tune_lr,
        schedule=args.tune_schedule,
    )
    teachers = {"off": [False], "on": [True], "both": [False, True]}[args.distill]
    distilled_methods = args.distill_methods or args.methods
    rows = []
    for arch in args.archs:
        keras.utils.set_random_seed(seed)
        model = harness.fit(ARCHS[arch](), train_epochs)
        # 12 short epochs leave BatchNorm's moving statistics behind the
        # weights (seed 0 U-Net: Dice 0.848 as trained, 0.938 recalibrated).
        kprune.recalibrate(model, x)
        base = {"dice": dice(model, xv, yv), "macs": kprune.profile(model).macs}
        for init in args.inits:
            keras.utils.set_random_seed(seed)
            wrapped = harness.compile_model(
                kprune.wrap(model, init=init, regularizer=1e-4)
            )
            phase = None  # Adam 1e-2, learn_importance's default
            if args.phase_sgd:
                phase = keras.optimizers.SGD(args.phase_sgd, momentum=0.9)
            kprune.learn_importance(
                wrapped,
                harness.data,
                wrap_epochs,
                batch_size=harness.batch,
                optimizer=phase,
            )
            # Methods that do not read multipliers run once, with the first init.
            methods = [m for m in args.methods if m in WRAPPED or init == args.inits[0]]
            for target, method, distilled in itertools.product(
                args.targets, methods, teachers
            ):
                if distilled and method not in distilled_methods:
                    continue
                keras.utils.set_random_seed(method_seed(method, seed))
                teacher = model if distilled else None
                small = harness.prune(method, model, wrapped, target, tune, teacher)
                rows.append(
                    {
                        "arch": arch,
                        "seed": seed,
                        "target": target,
                        "method": method,
                        "init": init if method in WRAPPED else None,
                        "distill": distilled,
                        "macs_kept": kprune.profile(small).macs / base["macs"],
                        "score": dice(small, xv, yv),
                        "unpruned": base["dice"],
                        "tune_lr": args.tune_lr,
                        "tune_schedule": args.tune_schedule,
                        "phase_sgd": args.phase_sgd,
                    }
                )
                print(_line(rows[-1]), flush=True)
    return rows


def _line(r) -> str:
    return (
        f"{r['arch']} seed {r['seed']} {r['target']:.0%} {name(r)}"
        f"{' +distill' if r['distill'] else ''}: Dice {r['score']:.3f} "
        f"(unpruned {r['unpruned']:.3f}, MACs kept {r['macs_kept']:.3f})"
    )


def main(argv=None):
    parser = nuclei_parser(__doc__.splitlines()[0], default_seeds=(0, 1, 2))
    parser.add_argument(
        "--archs", nargs="+", choices=sorted(ARCHS), default=list(ARCHS)
    )
    parser.add_argument("--targets", type=float, nargs="+", default=[0.1, 0.05, 0.02])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--distill", choices=("off", "on", "both"), default="both")
    parser.add_argument(
        "--distill-methods",
        nargs="+",
        choices=METHODS,
        help="distil only these methods (default: every method)",
    )
    parser.add_argument(
        "--inits",
        nargs="+",
        default=["ones"],
        choices=kprune.importance.wrapping.INITS,
        help="kprune.wrap inits to compare (the importance methods run per init)",
    )
    parser.add_argument(
        "--phase-sgd",
        type=float,
        metavar="LR",
        help="train the multipliers with SGD(LR, momentum 0.9) instead of "
        "learn_importance's Adam 1e-2",
    )
    parser.add_argument(
        "--loss",
        choices=sorted(LOSSES),
        default="bce",
        help="training loss: binary cross-entropy, or it plus a soft Dice term",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        nargs=3,
        default=[12, 2, 6],
        metavar=("TRAIN", "WRAP", "TUNE"),
        help="epochs of training, of the wrapped model, of fine-tuning",
    )
    args = parse_args(add_tuning_flags(parser), argv)
    start = time.perf_counter()
    rows = [row for seed in args.seeds for row in run_seed(seed, args)]
    seconds = time.perf_counter() - start
    title = f"nuclei, {args.epochs[2]} epochs of fine-tuning ({seconds:.0f} s)"
    print_tables(rows, title)
    write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
