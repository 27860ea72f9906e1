"""The subcommands that analyse and report: `sensitivity`, `report`, `table`."""

from __future__ import annotations

import os

from kprune.cli.files import load_model, load_npz, load_trainable, refuse, show_table
from kprune.messages import say


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
        train_data=load_npz(args.train)[0] if args.train else None,
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
    from kprune.results import kinds, load

    if not os.path.exists(args.run_file):
        raise SystemExit(f"kprune: no such file: {args.run_file}")
    try:
        result = load(args.run_file)
    except ValueError as error:
        raise SystemExit(
            f"kprune report: {args.run_file} is not a kprune result: its JSON "
            f"must have 'kind' set to one of {sorted(kinds())} (written by the "
            "to_json() of any kprune result, `kprune prune --report`, `kprune "
            f"sensitivity -o` or `kprune table -o`). {error}"
        ) from error
    say(f"wrote {result.save_html(args.output)}")
    return 0


def cmd_table(args) -> int:
    import kprune

    if (args.model is None) == (args.timings is None):
        raise SystemExit(
            "kprune table: give a model to measure (or to --write its files), or "
            "--timings DIR to build the table from files timed elsewhere"
        )
    if args.timings is not None:
        measuring = ("widths", "runs", "quantize", "write", "steps", "no_steps")
        refuse(args, measuring, "would be ignored with --timings", command="table")
        table = kprune.LatencyTable.from_timings(
            args.timings, runtime=args.runtime or "device"
        )
    else:
        refuse(args, ("runtime",), "only applies with --timings", command="table")
        options = {"widths": tuple(args.widths or (0.25, 0.5, 1.0))}
        options.update(quantize=args.quantize, verbose=args.verbose)
        options["runs"] = 30 if args.runs is None else args.runs
        steps = kprune.LatencyTable.from_json(args.steps).steps if args.steps else None
        model = load_model(args.model)
        if args.write:
            refuse(args, ("output",), "has no table to write yet", command="table")
            why = "would be ignored: --write writes the probes (--steps TABLE lays "
            refuse(args, ("no_steps",), why + "the grid on steps)", command="table")
            kprune.LatencyTable.write_layers(model, args.write, steps=steps, **options)
            say(
                f"wrote the files to {args.write}: time them on the device (sh "
                f"{args.write}/run_benchmark.sh does it over adb), then `kprune "
                f"table --timings {args.write} -o table.json`"
            )
            return 0
        if args.steps and args.no_steps:
            raise SystemExit("kprune table: give --steps TABLE or --no-steps, not both")
        steps = False if args.no_steps else steps if args.steps else True
        table = kprune.LatencyTable.measure(model, steps=steps, **options)
    if not args.output:
        raise SystemExit("kprune table: give -o table.json, where the table goes")
    table.to_json(args.output)
    say(
        f"{len(table.costs)} layer signatures, dense {table.dense_ms:.3f} ms, layers' "
        f"sum scaled by {table.scale:.3f} to fit the whole model "
        f"(overhead {table.overhead_ms:.3f} ms), channel steps "
        f"{table.steps or 'none'}; measuring took {table.seconds:.0f} s"
    )
    say(f"wrote {args.output}")
    return 0


def add_analysis_commands(sub) -> None:
    """The `sensitivity`, `report` and `table` subcommands."""
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
        "--train",
        "--recalibrate",
        dest="train",
        help="training data (.npz): re-estimate BatchNorm first (--recalibrate is "
        "its name before kprune 0.2)",
    )
    sens.add_argument("--tolerance", type=float, help="also suggest per-group ratios")
    sens.add_argument("-o", "--output", help="write the result as JSON here")
    sens.add_argument("--plot", help="write the curves here (.png or .svg)")
    sens.add_argument("--html", help="write an HTML report here")
    training_options(sens)
    sens.set_defaults(run=cmd_sensitivity)

    report = sub.add_parser("report", help="an HTML report of a saved run")
    report.add_argument(
        "run_file", metavar="RUN", help="JSON of `prune --report` or `sensitivity -o`"
    )
    report.add_argument("-o", "--output", required=True, help="the .html file")
    report.set_defaults(run=cmd_report)

    table = sub.add_parser("table", help="measure a model's per-layer LiteRT latencies")
    table.add_argument("model", nargs="?", help="a .keras or .h5 file")
    table.add_argument("-o", "--output", help="the table's .json file")
    table.add_argument(
        "--widths", type=float, nargs="+", help="shares of channels (0.25 0.5 1.0)"
    )
    table.add_argument("--runs", type=int, help="timed runs per file (30)")
    table.add_argument("--quantize", choices=["int8"], help="time int8 exports")
    table.add_argument(
        "--write", metavar="DIR", help="write the files to time elsewhere"
    )
    table.add_argument(
        "--timings", metavar="DIR", help="build the table from DIR's timed files"
    )
    table.add_argument("--runtime", help="with --timings: where they were timed")
    table.add_argument(
        "--steps",
        metavar="TABLE",
        help="lay the grid on the channel steps of this table (one timed on "
        "the same device); without it they are probed",
    )
    table.add_argument(
        "--no-steps", action="store_true", help="do not probe the channel steps"
    )
    table.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    table.set_defaults(run=cmd_table)


def training_options(group) -> None:
    """`--loss`, `--metrics`, `--verbose`: for commands that train or measure."""
    group.add_argument("--loss", help="a Keras loss name (default: the file's)")
    group.add_argument("--metrics", nargs="*", help="Keras metric names, with --loss")
    group.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
