"""Pruning methods against each other at extreme compression, on the nuclei image.

    python benchmarks/quality_nuclei.py                       # everything, seeds 0 1 2
    python benchmarks/quality_nuclei.py --archs unet --targets 0.05 0.02 \\
        --methods l1_global importance --distill both --seeds 0 --json out/q.json

Per architecture and seed: the model (a U-Net, depth 3, base 16, or a
TernausNet with a VGG11 encoder, base 16; one logit) trains `TRAIN` epochs on
random crops (flips, rotations) of the left 3/4 of the image; the right quarter,
never trained on, is the held-out set. A wrapped copy (`kprune.wrap`, init
`--inits`, L1 1e-4) trains `WRAP` more epochs for the methods that read
multipliers. Every method then prunes to each `--targets` share of the MACs and
gets the same `TUNE` epochs of fine-tuning (Adam 1e-3) in all:

- `l1_global`, `l1_layer`: one plan, `scope="global"` / `"layer"`, shrink,
  BatchNorm recalibration, fine-tune;
- `staged`, `staged_comp`: `Staged([("l1", 1), ("similarity", 2)], flops=T)`,
  `TUNE/3` epochs after each round, without / with similarity compensation;
- `importance`: one plan by |multiplier| on the wrapped model, shrink (it stays
  wrapped, the multipliers keep training), recalibrate, fine-tune, unwrap;
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
from common import dice, nuclei_parser, write_json  # noqa: E402

import kprune  # noqa: E402
from kprune.report import format_table  # noqa: E402

ARCHS = {
    "unet": lambda: kprune.zoo.unet((64, 64, 1), base=16, depth=3, classes=1),
    "ternausnet": lambda: kprune.zoo.ternausnet((64, 64, 1), base=16),
}
METHODS = (
    "l1_global",
    "l1_layer",
    "staged",
    "staged_comp",
    "importance",
    "importance_rounds",
    "callback_importance",
    "callback_l1",
)
#: The methods that read the wrapped model's multipliers.
WRAPPED = ("importance", "importance_rounds")
BATCH = 16


def compiled(model, lr=1e-3):
    model.compile(
        keras.optimizers.Adam(lr), keras.losses.BinaryCrossentropy(from_logits=True)
    )
    return model


def fit(model, data, epochs, teacher=None, callbacks=None):
    """Fine-tune `model` in place (through a Distiller when `teacher` is set)."""
    if epochs <= 0:
        return model
    trainer = compiled(model if teacher is None else kprune.Distiller(model, teacher))
    trainer.fit(*data, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=callbacks)
    return model


def one_shot(source, criterion, target, data, tune, teacher, **options):
    small = kprune.shrink(
        source, kprune.plan(source, criterion, flops=target, **options)
    )
    kprune.recalibrate(small, data[0])
    return fit(small, data, tune, teacher)


def staged(source, stages, target, data, tune, teacher, **options):
    schedule = kprune.Staged(stages, flops=target, **options)
    rounds = schedule.total_rounds
    compiled(source)
    small, _ = schedule.run(
        source, data, None, epochs=tune // rounds, verbose=0, distill=teacher
    )
    return fit(small, data, tune - rounds * (tune // rounds), teacher)


def with_callback(model, criterion, target, data, tune, teacher):
    wrapped = kprune.wrap(model)
    masking = max(1, round(0.4 * tune))
    callback = kprune.PruningCallback(
        flops=target, criterion=criterion, end_epoch=masking - 1
    )
    fit(wrapped, data, masking, teacher, callbacks=[callback])
    small = kprune.shrink(wrapped)
    kprune.recalibrate(small, data[0])
    return fit(small, data, tune - masking, teacher)


def prune(method, model, wrapped, target, data, tune, teacher):
    """The pruned, fine-tuned (and unwrapped) model of one method."""
    if method in ("l1_global", "l1_layer"):
        scope = method.split("_")[1]
        small = one_shot(model, "l1", target, data, tune, teacher, scope=scope)
    elif method in ("staged", "staged_comp"):
        stages = [("l1", 1), ("similarity", 2)]
        comp = method == "staged_comp"
        small = staged(model, stages, target, data, tune, teacher, compensate=comp)
    elif method == "importance":
        small = one_shot(wrapped, "importance", target, data, tune, teacher)
    elif method == "importance_rounds":
        small = staged(wrapped, [("importance", 3)], target, data, tune, teacher)
    else:
        criterion = method.split("_")[1]
        small = with_callback(model, criterion, target, data, tune, teacher)
    return kprune.unwrap(small) if kprune.layers.is_wrapped(small) else small


def run_seed(seed, args) -> list[dict]:
    train_epochs, wrap_epochs, tune = args.epochs
    (x, y), (xv, yv) = kprune.datasets.nuclei_tiles(crops=args.crops, seed=seed)
    data = (x, y[..., None].astype("float32"))
    teachers = {"off": [False], "on": [True], "both": [False, True]}[args.distill]
    rows = []
    for arch in args.archs:
        keras.utils.set_random_seed(seed)
        model = fit(ARCHS[arch](), data, train_epochs)
        base = {"dice": dice(model, xv, yv), "macs": kprune.profile(model).macs}
        for init in args.inits:
            keras.utils.set_random_seed(seed)
            wrapped = kprune.wrap(model, init=init, regularizer=1e-4)
            fit(wrapped, data, wrap_epochs)
            # Methods that do not read multipliers run once, with the first init.
            methods = [m for m in args.methods if m in WRAPPED or init == args.inits[0]]
            for target, method, distilled in itertools.product(
                args.targets, methods, teachers
            ):
                keras.utils.set_random_seed(seed)
                teacher = model if distilled else None
                small = prune(method, model, wrapped, target, data, tune, teacher)
                rows.append(
                    {
                        "arch": arch,
                        "seed": seed,
                        "target": target,
                        "method": method,
                        "init": init if method in WRAPPED else None,
                        "distill": distilled,
                        "macs_kept": kprune.profile(small).macs / base["macs"],
                        "dice": dice(small, xv, yv),
                        "unpruned": base["dice"],
                    }
                )
                print(_line(rows[-1]), flush=True)
    return rows


def _line(r) -> str:
    return (
        f"{r['arch']} seed {r['seed']} {r['target']:.0%} {_name(r)}"
        f"{' +distill' if r['distill'] else ''}: Dice {r['dice']:.3f} "
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
        "--inits",
        nargs="+",
        default=["ones"],
        choices=kprune.wrapping.INITS,
        help="kprune.wrap inits to compare (the importance methods run per init)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        nargs=3,
        default=[12, 2, 6],
        metavar=("TRAIN", "WRAP", "TUNE"),
        help="epochs of training, of the wrapped model, of fine-tuning",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = [row for seed in args.seeds for row in run_seed(seed, args)]
    seconds = time.perf_counter() - start
    print(
        table(rows, f"nuclei, {args.epochs[2]} epochs of fine-tuning ({seconds:.0f} s)")
    )
    write_json(args.json, rows)
    return rows


def _name(r) -> str:
    return r["method"] + (f" ({r['init']})" if r.get("init") else "")


def table(rows, title) -> str:
    """Dice per (arch, target, method, distill), the seeds side by side."""
    cells: dict = {}
    for r in rows:
        key = (r["arch"], r["target"], _name(r), r["distill"])
        cells.setdefault(key, []).append(r["dice"])
    body = [
        (a, f"{t:.0%}", m, "yes" if d else "no", " / ".join(f"{v:.3f}" for v in vals),
         f"{min(vals):.3f}")
        for (a, t, m, d), vals in cells.items()
    ]  # fmt: skip
    header = ["arch", "MACs kept", "method", "distill", "Dice per seed", "worst"]
    return format_table(header, body, title=title)


if __name__ == "__main__":
    main()
