"""The `kprune` command line: the same calls as the Python API, on model files.

Models are read from `.keras` files, or `.h5` files (Keras 2 or 3), without their
optimizer: see `load_model`.

kprune info model.keras [--explain] [--top 10]
kprune prune model.keras -o small.keras --flops 0.5 [--criterion l1] [--round-to 8]
kprune prune model.keras -o small.keras --tolerance 0.01 --data train.npz \
    [--val val.npz] [--epochs 1] [--report run.json] [--html run.html] [--bench]
kprune sensitivity model.keras --data val.npz [-o result.json] [--plot s.png]
kprune table model.keras -o table.json      # per-layer LiteRT latencies
kprune prune model.keras -o small.keras --latency 0.5 --table table.json
kprune report run.json -o report.html
kprune export small.keras -o small.tflite [--quantize int8 --representative x.npy]
kprune bench small.tflite model.tflite [--threads 1 --runs 50]

Data files are NumPy `.npz` archives with an `x` array (inputs) and a `y`
array (targets): `np.savez("train.npz", x=x, y=y)`. Commands that train or
measure need a loss: the model file's own (a `.keras` file saved after
`compile`), or `--loss` (and `--metrics`).
"""

from __future__ import annotations

import argparse
import os
import sys

from kprune.cli.analysis import add_analysis_commands, training_options
from kprune.cli.files import (
    MODEL_SUFFIXES,
    load_model,
    load_npz,
    load_trainable,
    measure_latency,
    refuse,
    show_table,
)
from kprune.loops.settings import LR_SCHEDULES
from kprune.messages import say

__all__ = ["MODEL_SUFFIXES", "load_model", "load_npz", "load_trainable", "main"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cmd_info(args) -> int:
    import kprune

    model = load_model(args.model)
    graph = kprune.graph(model)
    p = kprune.profile(model, graph=graph)
    say(p.table(top=args.top))
    say(f"\n{model.name}: {p.params:,} params, {p.macs:,} MACs per sample")
    say(graph.explain(frozen=True) if args.explain else _graph_summary(graph))
    return 0


def _graph_summary(graph) -> str:
    frozen = [g for g in graph.groups if g.frozen]
    lines = [
        f"{len(graph.groups)} channel groups, {len(graph.prunable)} prunable, "
        f"{len(frozen)} frozen (--explain lists them all)"
    ]
    for group in frozen:
        lines.append(f"  frozen {group.name}: {group.reasons[0]}")
    return "\n".join(lines)


#: `kprune prune` options that only the tolerance loop reads.
TOLERANCE_ONLY = (
    "data",
    "val",
    "epochs",
    "step",
    "max_rounds",
    "lr",
    "lr_schedule",
    "batch_size",
    "report",
    "html",
    "bench",
    "loss",
    "metrics",
)


def cmd_prune(args) -> int:
    import kprune

    if args.tolerance is not None:
        return _prune_to_tolerance(args)
    refuse(
        args,
        TOLERANCE_ONLY,
        "only apply with --tolerance",
    )
    if args.tries is not None and (args.latency is None or args.plan):
        raise SystemExit("kprune prune: --tries only applies with --latency")
    model = load_model(args.model)
    if args.plan:
        plan = kprune.PruningPlan.from_json(args.plan)
    else:
        targets = (args.ratio, args.flops, args.latency)
        if sum(t is not None for t in targets) != 1:
            raise SystemExit(
                "kprune prune: give one of --ratio, --flops, --latency (with "
                "--table) or --plan (or --tolerance with --data)"
            )
        if (args.latency is None) != (args.table is None):
            raise SystemExit(
                "kprune prune: --latency plans against a measured table: give "
                "--table table.json (from `kprune table model.keras -o table.json`)"
            )
        table = kprune.LatencyTable.from_json(args.table) if args.table else None
        options = {
            "criterion": args.criterion,
            "scope": args.scope,
            "min_channels": args.min_channels,
            "round_to": args.round_to,
            "exclude": args.exclude,
        }
        if args.tries is not None:
            plan = kprune.plan_measured(
                model, args.latency, table, tries=args.tries, **options
            )
        else:
            plan = kprune.plan(
                model,
                ratio=args.ratio,
                flops=args.flops,
                latency=args.latency,
                table=table,
                **options,
            )
    say(str(plan))
    small = kprune.shrink(model, plan)
    small.save(args.output)
    if args.plan_out:
        plan.to_json(args.plan_out)
    say("\n" + kprune.profile(model).compare(kprune.profile(small)))
    if args.latency is not None:
        _show_latency(model, small, plan, table, args.latency)
    say(f"\nwrote {args.output}")
    return 0


def _show_latency(model, small, plan, table, share) -> None:
    """The table's prediction next to a new LiteRT measurement of both models."""
    measured = measure_latency(model, small)
    rows = [
        ("measured ms", f"{measured['before']:.3f}", f"{measured['after']:.3f}"),
        ("predicted ms", f"{table.dense_ms:.3f}", f"{plan.target['predicted_ms']:.3f}"),
        ("budget ms", "", f"{share * table.dense_ms:.3f}"),
    ]
    show_table(["", "dense", "pruned"], rows, title="LiteRT latency, 1 thread")


def _prune_to_tolerance(args) -> int:
    import kprune

    refuse(
        args,
        ("ratio", "flops", "plan", "plan_out", "tries"),
        "cannot be used with --tolerance",
    )
    if args.data is None:
        raise SystemExit("kprune prune --tolerance: give --data train.npz (x and y)")
    model = load_trainable(args.model, args.loss, args.metrics, args.lr)
    train = load_npz(args.data)
    val = load_npz(args.val) if args.val else train
    small, report = kprune.prune_to_tolerance(
        model,
        train,
        val,
        tolerance=args.tolerance,
        criterion=args.criterion,
        step=0.1 if args.step is None else args.step,
        max_rounds=20 if args.max_rounds is None else args.max_rounds,
        tuning=kprune.FineTune(
            epochs=args.epochs,
            lr_schedule=args.lr_schedule or "constant",
            batch_size=args.batch_size,
        ),
        scope=args.scope,
        min_channels=args.min_channels,
        round_to=args.round_to,
        exclude=args.exclude,
        verbose=args.verbose,
    )
    small.save(args.output)
    if args.bench:
        report.latency_ms = measure_latency(model, small)
    show_table(*report.table_data())
    say("\n" + kprune.profile(model).compare(kprune.profile(small)))
    for path, write in ((args.report, report.to_json), (args.html, report.save_html)):
        if path:
            write(path)
            say(f"wrote {path}")
    say(f"wrote {args.output}")
    return 0


def cmd_export(args) -> int:
    import numpy as np

    import kprune

    model = load_model(args.model)
    data = np.load(args.representative) if args.representative else None
    if args.saved_model:
        kprune.export_saved_model(model, args.saved_model)
        say(f"wrote {args.saved_model}")
    result = kprune.export_tflite(
        model,
        args.output,
        quantize=args.quantize,
        representative_data=data,
        int8_io=args.int8_io,
        verify=not args.no_verify,
    )
    say(str(result))
    return 0


def cmd_bench(args) -> int:
    from kprune.exporters import benchmark_table, benchmark_tflite

    for path in args.files:
        if not os.path.exists(path):
            raise SystemExit(f"kprune: no such file: {path}")
    results = benchmark_tflite(
        list(args.files), threads=args.threads, runs=args.runs, warmup=args.warmup
    )
    say(benchmark_table(results))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kprune", description="Structured pruning for Keras 3 CNNs."
    )
    sub = top.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="params, MACs and channel groups of a model")
    info.add_argument("model", help="a .keras or .h5 file")
    info.add_argument("--top", type=int, default=15, help="layers with the most MACs")
    info.add_argument("--explain", action="store_true", help="list every group")
    info.set_defaults(run=cmd_info)

    prune = sub.add_parser("prune", help="remove filters and save the smaller model")
    prune.add_argument("model", help="a .keras or .h5 file")
    prune.add_argument("-o", "--output", required=True, help="the .keras file to write")
    prune.add_argument("--ratio", type=float, help="share of channels to remove")
    prune.add_argument("--flops", type=float, help="share of FLOPs to keep")
    prune.add_argument("--plan", help="a plan JSON file instead of --ratio/--flops")
    prune.add_argument("--plan-out", help="write the plan as JSON here")
    prune.add_argument("--criterion", default="l1")
    prune.add_argument("--scope", default="layer", choices=["layer", "global"])
    prune.add_argument("--min-channels", type=int, default=1)
    prune.add_argument("--round-to", type=int, default=1)
    prune.add_argument("--exclude", nargs="*", default=None, help="layer names")
    prune.add_argument(
        "--latency", type=float, help="share of measured latency to keep"
    )
    prune.add_argument("--table", help="latency table JSON (for --latency)")
    prune.add_argument(
        "--tries",
        type=int,
        help="with --latency: time each plan and plan again for a corrected "
        "budget, up to this many times (kprune.plan_measured)",
    )
    _tolerance_options(prune)
    prune.set_defaults(run=cmd_prune)

    add_analysis_commands(sub)

    export = sub.add_parser("export", help="convert to TFLite and check it")
    export.add_argument("model", help="a .keras or .h5 file")
    export.add_argument("-o", "--output", required=True, help="the .tflite file")
    export.add_argument(
        "--quantize", choices=["float16", "dynamic", "int8"], default=None
    )
    export.add_argument(
        "--representative", help=".npy file of inputs (needed for int8)"
    )
    export.add_argument("--int8-io", action="store_true")
    export.add_argument("--saved-model", help="also write a SavedModel here")
    export.add_argument("--no-verify", action="store_true")
    export.set_defaults(run=cmd_export)

    bench = sub.add_parser("bench", help="LiteRT latency of .tflite files")
    bench.add_argument("files", nargs="+")
    bench.add_argument("--threads", type=int, default=1)
    bench.add_argument("--runs", type=int, default=50)
    bench.add_argument("--warmup", type=int, default=5)
    bench.set_defaults(run=cmd_bench)
    return top


def _tolerance_options(prune) -> None:
    tol = prune.add_argument_group("the tolerance loop (prune, fine-tune, repeat)")
    tol.add_argument("--tolerance", type=float, help="largest allowed metric drop")
    tol.add_argument("--data", help="training data: .npz with x and y")
    tol.add_argument("--val", help="validation data (.npz); default: --data")
    tol.add_argument("--epochs", type=int, help="fine-tuning per round (default 1)")
    tol.add_argument("--step", type=float, help="share pruned per round (0.1)")
    tol.add_argument("--max-rounds", type=int, help="rounds tried at most (20)")
    tol.add_argument("--lr", type=float, help="fine-tuning learning rate")
    tol.add_argument(
        "--lr-schedule",
        choices=[s for s in LR_SCHEDULES if s != "cosine_run"],
        help="keep --lr through each round's fine-tuning (constant, the "
        "default) or decay it to 0 along a cosine",
    )
    tol.add_argument("--batch-size", type=int, help="fine-tuning batch (32)")
    tol.add_argument("--report", help="write the run as JSON here")
    tol.add_argument("--html", help="write an HTML report here")
    tol.add_argument("--bench", action="store_true", help="time both in LiteRT")
    training_options(tol)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError) as error:
        sys.stderr.write(f"kprune {args.command}: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
