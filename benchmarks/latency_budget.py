"""Planning to a measured latency budget against planning to a FLOPs budget.

    python benchmarks/latency_budget.py                        # all models, 50% and 25%
    python benchmarks/latency_budget.py --models unet --budgets 0.5 --json out/l.json

Per model (MobileNetV2 128x128, ResNet50 96x96, the U-Net 128x128; random
weights, L1 criterion) and per type (float32, int8): `kprune.LatencyTable.
measure` probes the channel steps of each layer type, times every layer alone
at 25/50/100% of its channels (on multiples of the steps) in LiteRT (1
thread), and the whole model at each width to calibrate the layers' sum. For
each budget (a share of the dense model's measured latency) these models are
shrunk: the latency plan (`plan(latency=...)`), the same plan timed and
corrected (`plan_measured`, up to `--tries` tries, within 5%), the latency
plans of the same table without its channel steps and without its calibration,
the FLOPs plan whose *measured* latency is closest to the latency plan's
(searched on `flops=`, each probe timed with the dense model), and the FLOPs
plan that keeps as many channels as the latency plan (its speed-up against the
latency plan's is the HALP effect). Then all of them are exported and timed
together with the dense model, `--runs` interleaved runs, medians. Reported:
the measured latency against the budget (a share of the dense model measured
in the same runs), the predicted share of the table's dense latency, and the
channels and FLOPs each plan keeps.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from architectures import SPEEDUP_MODELS  # noqa: E402
from common import (  # noqa: E402
    add_eager_flag,
    add_json_flag,
    flops_plan_at_measured,
    parse_args,
    timed_shares,
    write_json,
)

import kprune  # noqa: E402
from kprune.latency.table import fit_scale  # noqa: E402
from kprune.planning.choosing import BudgetUnreachable  # noqa: E402
from kprune.results import format_table  # noqa: E402


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
#: The order they run in by default: the one FLOPs mislead most first.
DEFAULT_MODELS = ["mobilenetv2", "unet", "resnet50"]


def flops_plan_with_channels(model, channels: int, probes: int = 14):
    """The FLOPs plan that keeps closest to `channels` channels (bisection)."""
    graph = kprune.graph(model)
    low, high, best = 0.01, 1.0, None
    for _ in range(probes):
        mid = (low + high) / 2
        plan = kprune.plan(graph, flops=mid)
        if best is None or abs(plan.channels_after - channels) < abs(
            best.channels_after - channels
        ):
            best = plan
        low, high = (low, mid) if plan.channels_after > channels else (mid, high)
    return best


def unreachable(name, quantize, budget, key, error) -> dict:
    """The row of a budget the table says no pruning reaches."""
    print(f"{name} {budget:.0%} {key}: {error}", flush=True)
    return {
        "model": name,
        "quantize": quantize or "float32",
        "budget": budget,
        "plan": key,
        "unreachable": str(error),
    }


def uncalibrated(table):
    """The same table without the whole-model calibration (scale 1)."""
    layers_ms = table.calibration[0]["layers_ms"]
    return dataclasses.replace(
        table, scale=1.0, overhead_ms=table.dense_ms - layers_ms, calibration=[]
    )


def stepless(table):
    """The same table with its channel steps ignored (linear between its
    grid points), the calibration fitted again."""
    costs = {k: dataclasses.replace(c, step=1) for k, c in table.costs.items()}
    flat = dataclasses.replace(table, costs=costs, steps={})
    points = [
        {**p, "layers_ms": flat.layers_ms(p["channels"])} for p in table.calibration
    ]
    flat.scale = fit_scale(points)
    flat.overhead_ms = flat.dense_ms - flat.scale * points[0]["layers_ms"]
    flat.calibration = points
    return flat


def measure(name, budgets, runs, widths, quantize=None, probes=5, tries=3):
    model = MODELS[name]()
    start = time.perf_counter()
    table = kprune.LatencyTable.measure(
        model, widths=widths, runs=runs, quantize=quantize, verbose=0
    )
    rows = []
    for budget in budgets:
        plans, missed = {}, []
        variants = {
            "latency plan": table,
            "table without steps": stepless(table),
            "uncalibrated table": uncalibrated(table),
        }
        for key, t in variants.items():
            try:
                plans[key] = kprune.plan(model, latency=budget, table=t)
            except BudgetUnreachable as error:  # the table says pruning cannot
                missed.append(unreachable(name, quantize, budget, key, error))
        rows += missed
        if "latency plan" not in plans:
            continue
        plans["latency plan, measured"] = kprune.plan_measured(
            model, budget, table, tries=tries, runs=runs, verbose=0
        )
        smalls = {key: kprune.shrink(model, p) for key, p in plans.items()}
        dense_ms, ms = timed_shares([model, smalls["latency plan"]], runs, quantize)
        plans["FLOPs plan"], _ = flops_plan_at_measured(
            model, ms / dense_ms, runs, quantize, probes
        )
        plans["FLOPs plan, same channels"] = flops_plan_with_channels(
            model, plans["latency plan"].channels_after
        )
        for key in ("FLOPs plan", "FLOPs plan, same channels"):
            smalls[key] = kprune.shrink(model, plans[key])
        timed = timed_shares([model, *smalls.values()], runs, quantize)
        for (key, m), ms in zip(smalls.items(), timed[1:]):
            plan = plans[key]
            rows.append(
                {
                    "model": name,
                    "quantize": quantize or "float32",
                    "budget": budget,
                    "plan": key,
                    "dense_ms": timed[0],
                    "budget_ms": budget * timed[0],
                    "predicted_ms": table.predict(m),
                    "measured_ms": ms,
                    "channels_kept": plan.channels_after / plan.channels_before,
                    "flops_kept": plan.flops_ratio,
                    "table_dense_ms": table.dense_ms,
                    "table_scale": table.scale,
                    "table_seconds": table.seconds,
                    "table_signatures": len(table.costs),
                    "table_steps": table.steps,
                    "tries": len(plan.target.get("tries", [])),
                }
            )
    print(
        f"{name} ({quantize or 'float32'}): table of {len(table.costs)} layer "
        f"signatures measured in {table.seconds:.0f} s, scale {table.scale:.3f}, "
        f"steps {table.steps}; "
        f"all in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS)
    )
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.25])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument(
        "--quantize",
        nargs="+",
        default=["float32", "int8"],
        choices=["float32", "int8"],
    )
    parser.add_argument(
        "--probes", type=int, default=5, help="bisection steps of the FLOPs plan"
    )
    parser.add_argument(
        "--tries", type=int, default=3, help="most tries of kprune.plan_measured"
    )
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)
    rows = []
    for quantize in args.quantize:
        for name in args.models:
            rows += measure(
                name,
                args.budgets,
                args.runs,
                args.widths,
                None if quantize == "float32" else quantize,
                args.probes,
                args.tries,
            )
            write_json(args.json, rows)  # after every model: a long run keeps some
    rows = [r for r in rows if "unreachable" not in r]
    table = [
        (
            r["model"],
            r["quantize"],
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
    headers = [
        "model",
        "type",
        "budget",
        "plan",
        "budget ms",
        "measured ms",
        "vs budget",
    ]
    headers += ["predicted share", "measured share", "channels kept", "FLOPs kept"]
    print(format_table(headers, table, "LiteRT, 1 thread, medians of interleaved runs"))


if __name__ == "__main__":
    main()
