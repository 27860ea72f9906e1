"""The `kprune` command line: the same calls as the Python API, on model files.

Models are read from `.keras` files, or `.h5` files (Keras 2 or 3), without their
optimizer: see `load_model`.

kprune info model.keras [--explain] [--top 10]
kprune prune model.keras -o small.keras --flops 0.5 [--criterion l1] [--round-to 8]
kprune export small.keras -o small.tflite [--quantize int8 --representative x.npy]
kprune bench small.tflite model.tflite [--threads 1 --runs 50]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: The model files the command line reads.
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_model(path: str):
    """Load a model file for inspection, pruning or export, without its optimizer.

    Every subcommand that reads a Keras model goes through here. The model loads
    with `compile=False`: nothing here trains, and a Keras 2 `.h5` file stores
    an optimizer config (`lr=`, `decay=`) that Keras 3 cannot rebuild.

    Args:
        path: a `.keras` file, or a `.h5`/`.hdf5` file saved by Keras 2 or 3.

    Returns:
        The uncompiled `keras.Model`.

    Raises:
        SystemExit: with a message naming the fix, for a missing, unsupported
            or unreadable file.
    """
    import keras

    import kprune  # noqa: F401  (registers kprune's classes for loading)

    if not os.path.exists(path):
        raise SystemExit(f"kprune: no such file: {path}")
    if os.path.isdir(path) or not path.lower().endswith(MODEL_SUFFIXES):
        raise SystemExit(
            f"kprune: cannot read {path}: give a .keras or .h5 model file. A "
            "SavedModel or TFLite file does not load back as a Keras model: save "
            "the original with model.save('model.keras')."
        )
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as error:
        raise SystemExit(f"kprune: cannot load {path}: {error}") from error


def cmd_info(args) -> int:
    import kprune

    model = load_model(args.model)
    graph = kprune.graph(model)
    p = kprune.profile(model, graph=graph)
    print(p.table(top=args.top))
    print(f"\n{model.name}: {p.params:,} params, {p.macs:,} MACs per sample")
    print(graph.explain(frozen=True) if args.explain else _graph_summary(graph))
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


def cmd_prune(args) -> int:
    import kprune

    model = load_model(args.model)
    if args.plan:
        plan = kprune.PruningPlan.from_json(args.plan)
    else:
        if (args.ratio is None) == (args.flops is None):
            raise SystemExit("kprune prune: give --ratio or --flops (or --plan)")
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
    print(plan)
    small = kprune.shrink(model, plan)
    small.save(args.output)
    if args.plan_out:
        plan.to_json(args.plan_out)
    print()
    print(kprune.profile(model).compare(kprune.profile(small)))
    print(f"\nwrote {args.output}")
    return 0


def cmd_export(args) -> int:
    import numpy as np

    import kprune

    model = load_model(args.model)
    data = np.load(args.representative) if args.representative else None
    if args.saved_model:
        kprune.export_saved_model(model, args.saved_model)
        print(f"wrote {args.saved_model}")
    result = kprune.export_tflite(
        model,
        args.output,
        quantize=args.quantize,
        representative_data=data,
        int8_io=args.int8_io,
        verify=not args.no_verify,
    )
    print(result)
    return 0


def cmd_bench(args) -> int:
    from kprune.litert import benchmark_table, benchmark_tflite

    for path in args.files:
        if not os.path.exists(path):
            raise SystemExit(f"kprune: no such file: {path}")
    results = benchmark_tflite(
        list(args.files), threads=args.threads, runs=args.runs, warmup=args.warmup
    )
    print(benchmark_table(results))
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
    prune.set_defaults(run=cmd_prune)

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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError) as error:
        print(f"kprune {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
