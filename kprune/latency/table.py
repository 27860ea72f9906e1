"""A latency model of the target runtime: what each layer costs at each width.

`LatencyTable.measure(model)` first finds the channel step each layer type's
kernels run in (kprune/latency/costs.py), then times, in the LiteRT
interpreter, every layer of the model whose cost changes with its channels,
alone, at a grid of channel counts on multiples of those steps (in x out for
convolutions and Dense layers, one count for channelwise layers: depthwise
convs, adds, pooling, padding), with warm-up and the variants' runs
interleaved. It also times the whole model, and the model narrowed uniformly
to each grid width: the runtime does not turn the single layers' savings one
for one into savings of the whole graph, so the layers' sum is scaled to fit
those whole-model timings (`scale`), and what it leaves unexplained is a
constant overhead. The table thus predicts the dense model's latency exactly
and a pruned model's by interpolation. The same files can be written out and
timed on a device (`write_layers`, `from_timings`; kprune/latency/layerfiles.py).
`LatencyCounter` evaluates a table for any keep-mask, as `MacCounter` counts
MACs; `kprune.plan(model, latency=..., table=...)` plans with it.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import ClassVar

import keras
import numpy as np

from kprune.dependency import ChannelGraph
from kprune.dependency import graph as build_graph
from kprune.exporters import benchmark_tflite
from kprune.latency.costs import Cost, check_steps, costs, detected_steps
from kprune.latency.counter import LatencyCounter
from kprune.latency.layerfiles import (
    _signatures,
    call_keys,
    check_quantize,
    read_manifest,
    read_timings,
    write_layer_files,
    write_probes,
)
from kprune.messages import check_verbose
from kprune.results import Result

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)
#: The bounds of the calibrated scale of the layers' sum.
SCALE_BOUNDS = (0.05, 5.0)


@dataclass
class LatencyTable(Result):
    """Per-layer latencies of one model in one runtime; see the module doc.

    Attributes:
        model, fingerprint: the model it was measured for (checked on use).
        runtime, threads, quantize: where and how it was timed (`quantize`
            as for `kprune.export_tflite`: None for float32, or "int8").
        dense_ms: the whole model's measured median latency.
        scale: what the single layers' summed time is multiplied by to fit the
            whole model's timings at every width (1.0 when not calibrated).
        overhead_ms: `dense_ms` minus the scaled layers' costs at full width.
        calibration: the whole-model timings the scale was fitted to: per
            width, `measured_ms`, the single layers' sum `layers_ms` and the
            `channels` (call -> [in, out]) it was summed at.
        calls: layer call (`"name:index"`) -> the signature of its cost.
        costs: signature -> `Cost`.
        steps: layer type -> the channel step its kernels run in (1 when
            the probes found none; kprune/latency/costs.py).
        seconds: how long measuring took.
    """

    kind: ClassVar[str] = "latency_table"

    model: str
    fingerprint: str
    runtime: str = "litert"
    threads: int = 1
    quantize: str | None = None
    dense_ms: float = 0.0
    scale: float = 1.0
    overhead_ms: float = 0.0
    calibration: list = field(default_factory=list)
    calls: dict[str, str] = field(default_factory=dict)
    costs: dict[str, Cost] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def measure(
        cls,
        model: keras.Model,
        threads: int = 1,
        widths=DEFAULT_WIDTHS,
        runs: int = 30,
        warmup: int = 5,
        quantize: str | None = None,
        representative_data=None,
        calibrate: bool = True,
        steps=True,
        verbose: int = 1,
    ) -> "LatencyTable":
        """Time every channel-dependent layer of `model` alone at `widths`
        (shares of its channel counts), and the whole model.

        First, with `steps`, a few probes per layer type find the channel
        step its kernels run in (a convolution with 40 output channels may
        take as long as one with 64); the grid is then laid on multiples of
        it (kprune/latency/costs.py).

        Each distinct layer signature (type, settings, input shape) becomes
        one single-layer `.tflite` file per grid point; all of them are timed
        together, their runs interleaved, medians of `runs`. Then the whole
        model and (with `calibrate`) its uniformly narrowed copies are timed
        together. Cost grows with the number of distinct signatures times
        `len(widths)**2`.

        Args:
            model: a model built for a fixed input size.
            threads: interpreter threads.
            widths: shares of each layer's channels to time at; must hold 1.0.
            runs: timed runs of every file (interleaved; the median is kept).
            warmup: untimed runs first.
            quantize: None (float32) or `"int8"`: the layers and the model are
                exported as `kprune.export_tflite(quantize=...)` would, the
                single layers calibrated on random data.
            representative_data: calibration inputs for the whole model with
                `quantize="int8"` (random normal data when None).
            calibrate: also time the model cut uniformly (by L1) to every
                width below 1 and fit `scale` to it (one TFLite conversion per
                width; without it the scale is 1).
            steps: True to probe the channel steps first (up to 7
                single-layer files per layer type); False for a grid on
                `widths` alone; or the steps by layer type (`table.steps` of
                another table for the same runtime).
            verbose: 0 silent, 1 progress bars, 2 lines.
        """
        verbose = check_verbose(verbose)
        check_quantize(widths, quantize)
        steps = check_steps(steps)
        start = time.perf_counter()

        def timed(entries, folder):
            paths = [os.path.join(folder, e["file"]) for e in entries]
            found = benchmark_tflite(
                paths, threads=threads, runs=runs, warmup=warmup, verbose=verbose
            )
            return {e["file"]: t.median_ms for e, t in zip(entries, found)}

        with tempfile.TemporaryDirectory() as tmp:
            probes = []
            if steps is True:
                signatures, _ = _signatures(build_graph(model))
                probes = write_probes(tmp, signatures, quantize, verbose)
            timings = timed(probes, tmp)
            found = detected_steps(probes, timings) if steps is True else steps
            manifest = write_layer_files(
                model,
                tmp,
                widths,
                quantize,
                representative_data,
                calibrate,
                verbose,
                steps=found or None,
                probes=probes,
            )
            # The whole models are timed among themselves, apart from the many
            # small ones, which would leave them running with cold caches.
            for entries in (manifest["layers"], manifest["models"]):
                timings.update(timed(entries, tmp))
        table = cls._assemble(manifest, timings, "litert", threads)
        table.seconds = time.perf_counter() - start
        return table

    @staticmethod
    def write_layers(
        model: keras.Model,
        directory: str,
        widths=DEFAULT_WIDTHS,
        quantize: str | None = None,
        representative_data=None,
        calibrate: bool = True,
        threads: int = 1,
        runs: int = 30,
        warmup: int = 5,
        steps: dict | None = None,
        verbose: int = 1,
    ) -> str:
        """Write the files `measure` would time into `directory`, to time them
        elsewhere (a phone, another runtime); load the timings with
        `from_timings`.

        The folder gets one `layer_NNNN.tflite` per layer signature and grid
        point, `model.tflite`, `width_NN.tflite` (the model cut uniformly to
        each width, with `calibrate`), `kprune_layers.json` (what each file
        is) and `run_benchmark.sh`, which times every file on an Android
        device with LiteRT's `benchmark_model` (over adb, `threads`, `runs`
        and `warmup` as given here) and writes a `<file>.log` for each, and
        `probe_NN.tflite`, the step probes, from which `from_timings` finds
        the device's channel steps. The grid is laid on `steps` (layer type ->
        step; e.g. `table.steps` of a first table timed on the same device),
        or on `widths` alone when None. The other arguments are those of
        `measure`. Returns `directory`.
        """
        write_layer_files(
            model,
            directory,
            widths,
            quantize,
            representative_data,
            calibrate,
            check_verbose(verbose),
            runs=runs,
            warmup=warmup,
            threads=threads,
            steps=check_steps(steps, allow_probe=False),
        )
        return directory

    @classmethod
    def from_timings(
        cls, directory: str, timings=None, runtime: str = "device", threads: int = 1
    ) -> "LatencyTable":
        """The table from the timings of the files `write_layers` wrote.

        Args:
            directory: the folder `write_layers` wrote.
            timings: None to read LiteRT `benchmark_model`'s output next to
                every file (`layer_0000.log` for `layer_0000.tflite`, as
                `run_benchmark.sh` writes them); or a dict of milliseconds by
                file name, or a JSON file holding one.
            runtime: recorded in the table: where the files were timed.
            threads: recorded in the table: the threads they ran on.

        Raises:
            ValueError: the folder has no manifest, a file has no timing, or
                a log is not `benchmark_model` output.
        """
        manifest = read_manifest(directory)
        timings = read_timings(directory, manifest, timings)
        return cls._assemble(manifest, timings, runtime, threads)

    @classmethod
    def _assemble(cls, manifest, timings, runtime, threads) -> "LatencyTable":
        """The table from a manifest and milliseconds by file name."""
        steps = {
            **manifest.get("steps", {}),
            **detected_steps(manifest.get("probes", []), timings),
        }
        table = cls(
            manifest["model"],
            manifest["fingerprint"],
            runtime=runtime,
            threads=threads,
            quantize=manifest["quantize"],
            calls=manifest["calls"],
            costs=costs(manifest["layers"], timings, steps),
            steps=steps,
        )
        points = [
            {
                "width": entry["width"],
                "measured_ms": timings[entry["file"]],
                "layers_ms": table.layers_ms(entry["channels"]),
                "channels": entry["channels"],
            }
            for entry in manifest["models"]
        ]
        dense = points[0]
        table.scale = fit_scale(points)
        table.dense_ms = dense["measured_ms"]
        table.overhead_ms = table.dense_ms - table.scale * dense["layers_ms"]
        table.calibration = points
        return table

    def layers_ms(self, channels: dict) -> float:
        """The single layers' summed milliseconds (unscaled) with every timed
        call at `call -> [in, out]` channels."""
        total = 0.0
        for key, (c_in, c_out) in channels.items():
            cost = self.costs[self.calls[key]]
            total += cost.at(c_in, c_out if cost.out_widths else None)
        return total

    @classmethod
    def from_dict(cls, data: dict) -> "LatencyTable":
        """Rebuild from `to_dict`'s output."""
        costs = {k: Cost(**v) for k, v in data.get("costs", {}).items()}
        return super().from_dict({**data, "costs": costs})

    def table_data(self) -> tuple[list, list, str]:
        """One row per timed layer call: its type, channels and milliseconds
        at full width; then the whole model's measured milliseconds."""
        rows = []
        for key, signature in self.calls.items():
            cost = self.costs[signature]
            c_out = cost.out_widths[-1] if cost.out_widths else None
            channels = f"{cost.in_widths[-1]}" + (f"x{c_out}" if c_out else "")
            ms = cost.at(cost.in_widths[-1], c_out)
            kind = signature.split("'")[1] if "'" in signature else ""
            rows.append((key, kind, channels, cost.step, f"{self.scale * ms:.4f}"))
        title = (
            f"Latency table of '{self.model}' ({self.runtime}, {self.threads} "
            f"thread(s), {self.quantize or 'float32'}): {self.dense_ms:.3f} ms "
            f"measured, {self.overhead_ms:.3f} ms overhead, layers scaled by "
            f"{self.scale:.2f}"
        )
        headers = ["call", "type", "channels", "step", "ms (scaled)"]
        return headers, rows, title

    def counter(self, graph: ChannelGraph) -> LatencyCounter:
        """The predictor of this table for `graph`'s model (checked)."""
        return LatencyCounter(graph, self)

    def predict(self, model: keras.Model) -> float:
        """Predicted milliseconds of `model` (this model, or one pruned from it)."""
        g = build_graph(model)
        return self.counter(g)(np.ones(g.num_units, dtype=bool))

    def check(self, graph: ChannelGraph) -> None:
        """Raise unless the table fits this graph's model: the model it was
        measured for, or one pruned from it (same layers, fewer channels)."""
        keys = {key: call for key, call in call_keys(graph)}
        missing = [key for key in self.calls if key not in keys]
        if missing or not self.calls:
            raise ValueError(
                f"this latency table was measured for model '{self.model}', and "
                f"'{graph.model.name}' lacks its layers {missing[:3]}: measure one "
                "for this model with kprune.LatencyTable.measure(model)"
            )


def as_table(table) -> LatencyTable:
    """A `LatencyTable` from itself, the path of its JSON file, or its dict."""
    if isinstance(table, LatencyTable):
        return table
    if isinstance(table, dict):
        return LatencyTable.from_dict(table)
    if isinstance(table, (str, os.PathLike)):
        return LatencyTable.from_json(str(table))
    raise TypeError(
        f"table must be a kprune.LatencyTable or the path of its JSON file; got "
        f"{type(table).__name__}"
    )


def fit_scale(points: list[dict]) -> float:
    """The factor on the layers' sum that best fits the whole-model timings,
    the line held through the dense model (least squares; 1 without others)."""
    dense, others = points[0], points[1:]
    d_layers = np.array([p["layers_ms"] - dense["layers_ms"] for p in others])
    d_measured = np.array([p["measured_ms"] - dense["measured_ms"] for p in others])
    spread = float((d_layers**2).sum())
    if not others or spread <= 0.0:
        return 1.0
    return float(np.clip((d_layers * d_measured).sum() / spread, *SCALE_BOUNDS))
