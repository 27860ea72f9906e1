"""Planning to a measured latency budget against planning to a FLOPs budget.

    python benchmarks/latency_budget.py                        # all models, 50% and 25%
    python benchmarks/latency_budget.py --models unet --budgets 0.5 --json out/l.json

Per model (MobileNetV2 128x128, ResNet50 96x96, the U-Net 128x128; random
weights, L1 criterion): `kprune.LatencyTable.measure` times every layer alone
at 25/50/100% of its channels in LiteRT (1 thread) and the dense model. For
each budget (a share of the dense model's measured latency), the latency plan
(`plan(latency=...)`) is shrunk; so is a FLOPs plan whose *predicted* latency
equals the latency plan's (bisection on `flops=`). All three models are
exported and timed together, `--runs` interleaved runs, medians. Reported:
the measured latency against the budget (a share of the dense model measured
in the same runs), the predicted share of the table's dense latency against
the measured share, and the channels and FLOPs each plan keeps.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from common import add_eager_flag, parse_args, write_json  # noqa: E402
from tflite_speedup import MODELS as SPEEDUP_MODELS  # noqa: E402

import kprune  # noqa: E402
from kprune.report import format_table  # noqa: E402


def small_cnn():
    """Five 3x3 convs on 28x28 images: for the smoke test."""
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for width in (16, 16, 32, 32, 64):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="small_cnn")


#: The three models of benchmarks/tflite_speedup.py, and a small one.
MODELS = {**SPEEDUP_MODELS, "small_cnn": small_cnn}


def flops_plan_matching(model, table, target_ms):
    """The FLOPs plan whose predicted latency is closest to `target_ms`."""
    graph = kprune.graph(model)
    predict = table.counter(graph)
    low, high, best = 0.01, 1.0, None
    for _ in range(14):
        mid = (low + high) / 2
        plan = kprune.plan(model, flops=mid, graph=graph)
        predicted = predict(plan.keep_units(graph))
        if predicted > target_ms:
            high = mid
        else:
            low, best = mid, plan
    return best or kprune.plan(model, flops=low)


def measure(name, budgets, runs, widths):
    model = MODELS[name]()
    start = time.perf_counter()
    table = kprune.LatencyTable.measure(model, widths=widths, runs=runs, verbose=0)
    rows = []
    for budget in budgets:
        by_latency = kprune.plan(model, latency=budget, table=table)
        target = by_latency.target["predicted_ms"]
        by_flops = flops_plan_matching(model, table, target)
        smalls = {
            "latency plan": kprune.shrink(model, by_latency),
            "FLOPs plan": kprune.shrink(model, by_flops),
        }
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for key, m in [("dense", model), *smalls.items()]:
                paths.append(os.path.join(tmp, f"{key.replace(' ', '_')}.tflite"))
                kprune.export_tflite(m, paths[-1], verify=False)
            timed = kprune.benchmark_tflite(paths, runs=runs, verbose=0)
        dense_ms = timed[0].median_ms
        for (key, m), t, plan in zip(smalls.items(), timed[1:], (by_latency, by_flops)):
            rows.append(
                {
                    "model": name,
                    "budget": budget,
                    "plan": key,
                    "dense_ms": dense_ms,
                    "budget_ms": budget * dense_ms,
                    "predicted_ms": table.predict(m),
                    "measured_ms": t.median_ms,
                    "channels_kept": plan.channels_after / plan.channels_before,
                    "flops_kept": plan.flops_ratio,
                    "table_dense_ms": table.dense_ms,
                    "table_seconds": table.seconds,
                    "table_signatures": len(table.costs),
                }
            )
    print(
        f"{name}: table of {len(table.costs)} layer signatures measured in "
        f"{table.seconds:.0f} s; all in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=list(SPEEDUP_MODELS), choices=list(MODELS)
    )
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.25])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parse_args(add_eager_flag(parser), argv)
    rows = [
        r
        for name in args.models
        for r in measure(name, args.budgets, args.runs, args.widths)
    ]
    table = [
        (
            r["model"],
            f"{r['budget']:.0%}",
            r["plan"],
            f"{r['budget_ms']:.2f}",
            f"{r['measured_ms']:.2f}",
            f"{r['measured_ms'] / r['budget_ms'] - 1:+.1%}",
            f"{r['predicted_ms'] / r['table_dense_ms']:.3f}",
            f"{r['measured_ms'] / r['dense_ms']:.3f}",
            f"{r['channels_kept']:.3f}",
            f"{r['flops_kept']:.3f}",
        )
        for r in rows
    ]
    headers = ["model", "budget", "plan", "budget ms", "measured ms", "vs budget"]
    headers += ["predicted share", "measured share", "channels kept", "FLOPs kept"]
    print(format_table(headers, table, "LiteRT, 1 thread, medians of interleaved runs"))
    write_json(args.json, rows)


if __name__ == "__main__":
    main()
