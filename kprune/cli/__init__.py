"""The `kprune` command line: the same calls as the Python API, on model files.

Models are read from `.keras` files, or `.h5` files (Keras 2 or 3), without their
optimizer: see `load_model`.

kprune info model.keras [--explain] [--top 10]
kprune prune model.keras -o small.keras --flops 0.5 [--criterion l1] [--round-to 8]
kprune prune model.keras -o small.keras --tolerance 0.01 --data train.npz \
    [--val val.npz] [--epochs 1] [--report run.json] [--html run.html] [--latency]
kprune sensitivity model.keras --data val.npz [-o result.json] [--plot s.png]
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

from kprune.cli.files import (
    MODEL_SUFFIXES,
    load_model,
    load_npz,
    load_trainable,
    measure_latency,
    show_table,
)
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
    "report",
    "html",
    "latency",
    "loss",
    "metrics",
)


def cmd_prune(args) -> int:
    import kprune

    if args.tolerance is not None:
        return _prune_to_tolerance(args)
    _refuse(
        args,
        TOLERANCE_ONLY,
        "only apply with --tolerance",
    )
    model = load_model(args.model)
    if args.plan:
        plan = kprune.PruningPlan.from_json(args.plan)
    else:
        if (args.ratio is None) == (args.flops is None):
            raise SystemExit(
                "kprune prune: give --ratio, --flops or --plan (or --tolerance "
                "with --data)"
            )
        plan = kprune.plan(
            model,
            criterion=args.criterion,
            ratio=args.ratio,
            flops=args.flops,
            scope=args.scope,
            min_channels=args.min_channels,
            round_to=args.round_to,
            exclude=args.exclude,
        )
    say(str(plan))
    small = kprune.shrink(model, plan)
    small.save(args.output)
    if args.plan_out:
        plan.to_json(args.plan_out)
    say("\n" + kprune.profile(model).compare(kprune.profile(small)))
    say(f"\nwrote {args.output}")
    return 0


def _prune_to_tolerance(args) -> int:
    import kprune

    _refuse(
        args, ("ratio", "flops", "plan", "plan_out"), "cannot be used with --tolerance"
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
        fine_tune_epochs=1 if args.epochs is None else args.epochs,
        scope=args.scope,
        min_channels=args.min_channels,
        round_to=args.round_to,
        exclude=args.exclude,
        verbose=args.verbose,
    )
    small.save(args.output)
    if args.latency:
        report.latency_ms = measure_latency(model, small)
    show_table(*report.table_data(), title=report.title)
    say("\n" + kprune.profile(model).compare(kprune.profile(small)))
    for path, write in ((args.report, report.to_json), (args.html, report.save_html)):
        if path:
            write(path)
            say(f"wrote {path}")
    say(f"wrote {args.output}")
    return 0


def cmd_sensitivity(args) -> int:
    import kprune

    model = load_trainable(args.model, args.loss, args.metrics, lr=None)
    result = kprune.sensitivity(
        model,
        load_npz(args.data),
        ratios=args.ratios,
        criterion=args.criterion,
        metric=args.metric,
        batches=args.batches,
        batch_size=args.batch_size,
        recalibrate=load_npz(args.recalibrate)[0] if args.recalibrate else None,
        verbose=args.verbose,
    )
    show_table(*result.table_data())
    if args.tolerance is not None:
        suggestion = result.suggest(args.tolerance)
        show_table(
            ["group", "ratio"],
            sorted(suggestion.items()),
            title=f"suggested ratios for a tolerance of {args.tolerance}",
        )
    for path, write in (
        (args.output, result.to_json),
        (args.plot, result.plot),
        (args.html, lambda p: result.save_html(p, tolerance=args.tolerance)),
    ):
        if path:
            write(path)
            say(f"wrote {path}")
    return 0


def cmd_report(args) -> int:
    import json

    import kprune

    if not os.path.exists(args.run_file):
        raise SystemExit(f"kprune: no such file: {args.run_file}")
    with open(args.run_file) as f:
        data = json.load(f)
    kinds = {
        "pruning": kprune.PruningReport,
        "sensitivity": kprune.Sensitivity,
        "sweep": kprune.Sweep,
    }
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in kinds:
        raise SystemExit(
            f"kprune report: {args.run_file} is not a kprune run: its JSON must have "
            f"'kind' set to one of {sorted(kinds)} (written by `kprune prune "
            "--report`, `kprune sensitivity -o`, or the to_json() of a report, "
            "a Sensitivity or a Sweep)"
        )
    result = kinds[kind].from_dict(data)
    say(f"wrote {result.save_html(args.output)}")
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
    from kprune.litert import benchmark_table, benchmark_tflite

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
    _tolerance_options(prune)
    prune.set_defaults(run=cmd_prune)
    _add_sensitivity(sub)

    report = sub.add_parser("report", help="an HTML report of a saved run")
    report.add_argument(
        "run_file", metavar="RUN", help="JSON of `prune --report` or `sensitivity -o`"
    )
    report.add_argument("-o", "--output", required=True, help="the .html file")
    report.set_defaults(run=cmd_report)

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
    tol.add_argument("--report", help="write the run as JSON here")
    tol.add_argument("--html", help="write an HTML report here")
    tol.add_argument("--latency", action="store_true", help="time both in LiteRT")
    _training_options(tol)


def _add_sensitivity(sub) -> None:
    sens = sub.add_parser("sensitivity", help="what pruning each group alone costs")
    sens.add_argument("model", help="a .keras or .h5 file")
    sens.add_argument("--data", required=True, help="validation data: .npz, x and y")
    sens.add_argument(
        "--ratios", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9]
    )
    sens.add_argument("--criterion", default="l1")
    sens.add_argument("--metric", help="a compiled metric name (default: the first)")
    sens.add_argument("--batches", type=int, help="evaluate on this many batches")
    sens.add_argument("--batch-size", type=int, default=32)
    sens.add_argument(
        "--recalibrate", help="training data (.npz): re-estimate BatchNorm first"
    )
    sens.add_argument("--tolerance", type=float, help="also suggest per-group ratios")
    sens.add_argument("-o", "--output", help="write the result as JSON here")
    sens.add_argument("--plot", help="write the curves here (.png or .svg)")
    sens.add_argument("--html", help="write an HTML report here")
    _training_options(sens)
    sens.set_defaults(run=cmd_sensitivity)


def _refuse(args, names, why: str) -> None:
    """Raise for options given that this form of the command would ignore."""
    given = [n for n in names if getattr(args, n) not in (None, False)]
    if given:
        flags = ", ".join(f"--{n.replace('_', '-')}" for n in given)
        raise SystemExit(f"kprune prune: {flags} {why}")


def _training_options(group) -> None:
    group.add_argument("--loss", help="a Keras loss name (default: the file's)")
    group.add_argument("--metrics", nargs="*", help="Keras metric names, with --loss")
    group.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])


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
