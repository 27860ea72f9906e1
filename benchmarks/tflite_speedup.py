"""Measured LiteRT speed-up of pruned models, next to the MACs they removed.

    python benchmarks/tflite_speedup.py
    python benchmarks/tflite_speedup.py --models unet --runs 50 --round-to 1 8
    python benchmarks/tflite_speedup.py --json out/speedup.json

For each model the dense float32 model and the models pruned to 50% of their
channels and to 25% of their FLOPs (L1 criterion) are exported to TFLite (and
verified against Keras), then timed in the LiteRT interpreter with one thread.
The variants of a model are timed interleaved (run 1 of each, run 2 of each, ...),
and the median of `--runs` runs is reported.

"efficiency" is the measured speed-up divided by the MAC ratio: 1.0 means the
runtime turns every removed multiply-accumulate into time saved. `--round-to`
repeats the pruned variants with channel counts rounded to multiples of N, which
keeps XNNPACK's vectorised kernels on their fast paths.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from architectures import SPEEDUP_MODELS as MODELS  # noqa: E402
from common import add_eager_flag, add_json_flag, parse_args, write_json  # noqa: E402

import kprune  # noqa: E402
from kprune.results import format_table, human  # noqa: E402

TARGETS = {"50% channels": {"ratio": 0.5}, "25% FLOPs": {"flops": 0.25}}


def variants(model, round_tos):
    yield "dense", model, 1
    for round_to in round_tos:
        for label, target in TARGETS.items():
            try:
                plan = kprune.plan(model, criterion="l1", round_to=round_to, **target)
            except ValueError as error:  # a FLOPs budget that rounding cannot meet
                print(f"  skipped {label}, round_to={round_to}: {error}", flush=True)
                continue
            yield label, kprune.shrink(model, plan), round_to


def measure(name, runs, warmup, threads, round_tos, workdir):
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    rows = []
    for label, variant, round_to in variants(model, round_tos):
        path = os.path.join(
            workdir,
            f"{name}_{label.replace(' ', '_').replace('%', '')}_r{round_to}.tflite",
        )
        result = kprune.export_tflite(variant, path, samples=4)
        rows.append(
            {
                "model": name,
                "variant": label,
                "round_to": round_to,
                "macs": kprune.profile(variant).macs,
                "params": variant.count_params(),
                "bytes": result.bytes,
                "max_rel_error": result.max_rel_error,
                "path": path,
            }
        )
    timings = kprune.benchmark_tflite(
        [r["path"] for r in rows], threads=threads, runs=runs, warmup=warmup
    )
    dense = rows[0]
    for row, timing in zip(rows, timings):
        row["median_ms"] = timing.median_ms
        row["p90_ms"] = timing.p90_ms
        row["mac_ratio"] = dense["macs"] / row["macs"]
        row["speedup"] = timings[0].median_ms / timing.median_ms
        row["efficiency"] = row["speedup"] / row["mac_ratio"]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=list(MODELS), choices=list(MODELS)
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--round-to", nargs="+", type=int, default=[1, 8, 16, 32])
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)

    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            results.extend(
                measure(
                    name, args.runs, args.warmup, args.threads, args.round_to, workdir
                )
            )
            print(f"  measured {name}", flush=True)
    for r in results:
        r.pop("path")
    table = [
        (
            r["model"],
            r["variant"],
            r["round_to"],
            human(r["macs"]),
            f"{r['bytes'] / 2**20:.2f}",
            f"{r['median_ms']:.2f}",
            f"{r['p90_ms']:.2f}",
            f"{r['mac_ratio']:.2f}x",
            f"{r['speedup']:.2f}x",
            f"{r['efficiency']:.2f}",
        )
        for r in results
    ]
    print()
    print(
        format_table(
            [
                "model",
                "variant",
                "round_to",
                "MACs",
                "MiB",
                "median ms",
                "p90 ms",
                "MAC ratio",
                "speed-up",
                "efficiency",
            ],
            table,
            title=f"LiteRT float32, {args.threads} thread(s), median of {args.runs} "
            f"interleaved runs ({platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores)",
        )
    )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
