"""A Pareto sweep: prune and fine-tune at several FLOPs budgets, then compare.

`sweep(model, train, val, flops=(0.75, 0.5, 0.25, 0.1))` prunes a copy of the
model to each budget (each from the original, not one after the other),
fine-tunes it the same way, measures the metric and, optionally, the LiteRT
latency of every exported model (interleaved runs), and returns a `Sweep`:
a table, JSON, the metric against FLOPs and against latency as a plot, and an
HTML report.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import keras

from kprune.checks import check_shares, take_deprecated
from kprune.exporters import benchmark_tflite, export_tflite
from kprune.loops.rounds import step
from kprune.loops.settings import FineTune, tuning_from
from kprune.loops.training import evaluate, fit_phase, require_compiled
from kprune.messages import Steps, check_verbose
from kprune.planning import check_options, profile
from kprune.planning import plan as make_plan
from kprune.results import Result, htmlpage, human
from kprune.results.plots import figure_png, new_figure

DEFAULT_BUDGETS = (0.75, 0.5, 0.25, 0.1)


@dataclass
class Sweep(Result):
    """The metric, size and speed of a model pruned to several FLOPs budgets.

    Attributes:
        model: the model's name.
        criterion: how channels were chosen.
        metric_name: what `metric` measures.
        points: one dict per model, the unpruned one first: `budget` (None for
            the unpruned model), `flops_kept`, `params`, `macs`, `metric`, and
            `latency_ms` (None when not measured).
        epochs: fine-tuning epochs per budget.
        seconds: how long the sweep took.
    """

    kind: ClassVar[str] = "sweep"

    model: str
    criterion: str
    metric_name: str
    points: list[dict] = field(default_factory=list)
    epochs: int = 0
    seconds: float = 0.0

    def table_data(self) -> tuple[list, list, str]:
        """One row per model: budget, FLOPs kept, params, MACs, metric,
        latency; `(headers, rows, title)`."""
        headers = ["budget", "FLOPs kept", "params", "MACs", self.metric_name]
        headers.append("LiteRT ms")
        rows = [
            [
                "unpruned" if p["budget"] is None else f"{p['budget']:.0%}",
                f"{p['flops_kept']:.3f}",
                f"{p['params']:,}",
                human(p["macs"]),
                f"{p['metric']:.4f}",
                "-" if p["latency_ms"] is None else f"{p['latency_ms']:.3g}",
            ]
            for p in self.points
        ]
        title = (
            f"Sweep of '{self.model}' ({self.criterion}, {self.epochs} epochs of "
            "fine-tuning per budget)"
        )
        return headers, rows, title

    def figure(self):
        """The metric against FLOPs kept and, when measured, against latency."""
        timed = all(p["latency_ms"] is not None for p in self.points)
        fig, axes = new_figure(2 if timed else 1, width=5.2)
        axes_x = [(axes[0], "flops_kept", "share of FLOPs kept")]
        if timed:
            axes_x.append((axes[1], "latency_ms", "LiteRT latency (ms, median)"))
        for ax, key, label in axes_x:
            xs = [p[key] for p in self.points]
            ys = [p["metric"] for p in self.points]
            ax.plot(xs, ys, marker="o")
            for p, x, y in zip(self.points, xs, ys):
                text = "unpruned" if p["budget"] is None else f"{p['budget']:.0%}"
                ax.annotate(text, (x, y), xytext=(4, 4), textcoords="offset points")
            ax.set_xlabel(label)
            ax.set_ylabel(self.metric_name)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{self.model}: {self.metric_name} after pruning, fine-tuning")
        return fig

    def html_title(self) -> str:
        return f"Sweep of {self.model}"

    def html_parts(self) -> list[str]:
        """The plot and the table."""
        headers, rows, title = self.table_data()
        return [
            htmlpage.paragraph(f"{title}; {self.seconds:.0f} s in all", meta=True),
            htmlpage.image(figure_png(self.figure()), "metric against FLOPs"),
            htmlpage.heading("Models"),
            htmlpage.table(headers, rows),
        ]


def sweep(
    model: keras.Model,
    train_data,
    val_data,
    flops: Sequence[float] = DEFAULT_BUDGETS,
    criterion="l1",
    *,
    tuning: FineTune | None = None,
    metric=None,
    benchmark: bool = True,
    runs: int = 30,
    threads: int = 1,
    verbose: int = 1,
    **plan_options,
) -> Sweep:
    """Prune to each FLOPs budget, fine-tune, and measure metric and latency.

    Each budget is one round of kprune's loop from the original model: plan,
    shrink, recalibrate, fine-tune, evaluate.

    Args:
        model: the trained, compiled model (not modified).
        train_data: `(x, y)` or a `tf.data.Dataset` for fine-tuning.
        val_data: the same forms, to measure the metric on.
        flops: the budgets, shares of the model's FLOPs to keep.
        criterion: as for `kprune.plan`.
        tuning: a `kprune.FineTune`, the same at every budget (default one
            epoch at the compiled rate, BatchNorm recalibrated first;
            `FineTune(epochs=0)` measures the pruned models untrained).
        metric: a compiled metric name, a callable `f(model) -> float`, or
            None for the first compiled metric.
        benchmark: export every model to TFLite and time it in LiteRT
            (`runs` interleaved runs, `threads` threads, median).
        runs: timed LiteRT runs per model, interleaved (see `benchmark`).
        threads: LiteRT threads.
        verbose: 0 silent, 1 a progress bar, 2 one line per budget.
        **plan_options: passed to `kprune.plan` (`scope`, `round_to`, ...).

    Returns:
        A `Sweep`.
    """
    start = time.perf_counter()
    moved = take_deprecated(
        plan_options, {"latency": "benchmark= (True: time in LiteRT)"}, "kprune.sweep"
    )
    benchmark = moved.get("latency", benchmark)
    tuning = tuning_from(tuning, plan_options, "kprune.sweep", strict=False)
    check_options(sweep, plan_options, [criterion], sets=("flops", "criterion"))
    budgets = check_shares("flops", flops)[::-1]  # the largest budget first
    verbose = check_verbose(verbose)
    tuning = tuning.bind(model, train_data)
    require_compiled(model, "sweep")
    name, value = evaluate(model, metric, val_data)
    models = [(None, model, value)]
    with Steps("sweep", len(budgets), verbose) as steps:
        for budget in budgets:
            plan = make_plan(model, criterion, flops=budget, **plan_options)
            small = step(model, plan, tuning, train_data)
            small = fit_phase(small, tuning, train_data, final=True)
            score = evaluate(small, metric, val_data)[1]
            models.append((budget, small, score))
            steps.advance(f"{budget:.0%} of FLOPs: {name} {score:.4f}")
    timings = (
        _latencies([m for _, m, _ in models], runs, threads) if benchmark else None
    )
    return Sweep(
        model=model.name,
        criterion=getattr(criterion, "__name__", str(criterion)),
        metric_name=name,
        points=_points(models, timings),
        epochs=tuning.span(1) if tuning.fn is None else 0,
        seconds=time.perf_counter() - start,
    )


def _points(models: list, timings: list | None) -> list[dict]:
    """The `Sweep.points` of `(budget, model, metric)` triples, the unpruned
    model first, with their LiteRT milliseconds when timed."""
    base = profile(models[0][1])
    points = []
    for index, (budget, m, score) in enumerate(models):
        prof = profile(m)
        points.append(
            {
                "budget": budget,
                "flops_kept": prof.macs / base.macs if base.macs else 1.0,
                "params": prof.params,
                "macs": prof.macs,
                "metric": score,
                "latency_ms": None if timings is None else timings[index],
            }
        )
    return points


def _latencies(models, runs: int, threads: int) -> list[float]:
    """Median LiteRT milliseconds of each model, the runs interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for index, m in enumerate(models):
            path = os.path.join(tmp, f"model{index}.tflite")
            export_tflite(m, path, verify=False)
            paths.append(path)
        results = benchmark_tflite(paths, threads=threads, runs=runs, verbose=0)
    return [r.median_ms for r in results]
