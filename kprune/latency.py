"""A latency model of the target runtime: what each layer costs at each width.

`LatencyTable.measure(model)` times, in the LiteRT interpreter, every layer of
the model whose cost changes with its channels, alone, at a grid of channel
counts (in x out for convolutions and Dense layers, one count for channelwise
layers: depthwise convs, activations, adds, pooling, padding), with warm-up
and the variants' runs interleaved. What the timed layers do not explain of
the whole model's measured latency (reshapes, the rest of the graph, the
interpreter's own cost) is kept as a constant overhead, so the table predicts
the dense model's latency exactly and a pruned model's by interpolation.
`LatencyCounter` evaluates it for any keep-mask, as `MacCounter` counts MACs;
`kprune.plan(model, latency=..., table=...)` plans with it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field

import keras
import numpy as np

from kprune.export import export_tflite
from kprune.graph import ChannelGraph
from kprune.graph import graph as build_graph
from kprune.litert import benchmark_tflite
from kprune.messages import Steps, check_verbose
from kprune.report import JsonResult

#: Layers timed on an in x out grid, and layers timed on their channel count.
GRID_LAYERS = ("Conv2D", "Conv2DTranspose", "Dense", "SeparableConv2D")
#: Activations are left out: LiteRT fuses them into the convolution before
#: them, so timed alone they would count an op the model does not run (the
#: few it does run fall into the overhead). BatchNormalization folds away.
CHANNELWISE_LAYERS = (
    "DepthwiseConv2D",
    "Add",
    "Multiply",
    "MaxPooling2D",
    "AveragePooling2D",
    "ZeroPadding2D",
    "UpSampling2D",
    "GlobalAveragePooling2D",
)
DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)


@dataclass
class Cost:
    """Milliseconds of one layer signature at a grid of channel counts.

    `ms[i][j]` is the time at `in_widths[i]` input and `out_widths[j]` output
    channels (for a channelwise layer `out_widths` is empty and `ms[i]` is a
    one-element list). Between grid points the time is interpolated linearly;
    outside, the nearest grid value is used.
    """

    in_widths: list[int]
    out_widths: list[int]
    ms: list[list[float]]

    def __post_init__(self):
        self._table = np.asarray(self.ms, dtype=float)  # not a field: not saved

    def at(self, c_in: int, c_out: int | None = None) -> float:
        """Milliseconds at `c_in` input (and `c_out` output) channels."""
        table = self._table
        if not self.out_widths:
            return float(np.interp(c_in, self.in_widths, table[:, 0]))
        rows = [np.interp(c_out, self.out_widths, row) for row in table]
        return float(np.interp(c_in, self.in_widths, rows))


@dataclass
class LatencyTable(JsonResult):
    """Per-layer latencies of one model in one runtime; see the module doc.

    Attributes:
        model, fingerprint: the model it was measured for (checked on use).
        runtime, threads, quantize: where and how it was timed (`quantize`
            as for `kprune.export_tflite`: None for float32, or "int8").
        dense_ms: the whole model's measured median latency.
        overhead_ms: `dense_ms` minus the timed layers' costs at full width.
        calls: layer call (`"name:index"`) -> the signature of its cost.
        costs: signature -> `Cost`.
        seconds: how long measuring took.
    """

    model: str
    fingerprint: str
    runtime: str = "litert"
    threads: int = 1
    quantize: str | None = None
    dense_ms: float = 0.0
    overhead_ms: float = 0.0
    calls: dict[str, str] = field(default_factory=dict)
    costs: dict[str, Cost] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def measure(
        cls,
        model: keras.Model,
        runtime: str = "litert",
        threads: int = 1,
        widths=DEFAULT_WIDTHS,
        runs: int = 30,
        warmup: int = 5,
        quantize: str | None = None,
        representative_data=None,
        verbose: int = 1,
    ) -> "LatencyTable":
        """Time every channel-dependent layer of `model` alone at `widths`
        (shares of its channel counts), and the whole model.

        Each distinct layer signature (type, settings, input shape) becomes
        one single-layer `.tflite` file per grid point; all files are timed
        together, their runs interleaved, medians of `runs`. Cost grows with
        the number of distinct signatures times `len(widths)**2`.

        Args:
            model: a model built for a fixed input size.
            runtime: `"litert"`, the interpreter kprune runs.
            threads: interpreter threads.
            widths: shares of each layer's channels to time at; must hold 1.0.
            runs: timed runs of every file (interleaved; the median is kept).
            warmup: untimed runs first.
            quantize: None (float32) or `"int8"`: the layers and the model are
                exported as `kprune.export_tflite(quantize=...)` would, the
                single layers calibrated on random data.
            representative_data: calibration inputs for the whole model with
                `quantize="int8"` (random normal data when None).
            verbose: 0 silent, 1 progress bars, 2 lines.
        """
        if runtime != "litert":
            raise ValueError(
                f"runtime must be 'litert' (the interpreter kprune runs); got "
                f"{runtime!r}"
            )
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8'; got {quantize!r}")
        _check_widths(widths)
        verbose = check_verbose(verbose)
        start = time.perf_counter()
        g = build_graph(model)
        signatures, calls = _signatures(g)
        with tempfile.TemporaryDirectory() as tmp:
            files = _write_variants(tmp, signatures, widths, verbose, quantize)
            dense = os.path.join(tmp, "dense.tflite")
            _export(model, dense, quantize, representative_data)
            timed = benchmark_tflite(
                [path for _, _, path in files] + [dense],
                threads=threads,
                runs=runs,
                warmup=warmup,
                verbose=verbose,
            )
        costs = _costs(signatures, files, [t.median_ms for t in timed[:-1]])
        table = cls(
            model.name,
            g.fingerprint(),
            runtime=runtime,
            threads=threads,
            quantize=quantize,
            dense_ms=timed[-1].median_ms,
        )
        table.calls, table.costs = calls, costs
        full = LatencyCounter(g, table, calibrate=False)
        table.overhead_ms = table.dense_ms - full(np.ones(g.num_units, dtype=bool))
        table.seconds = time.perf_counter() - start
        return table

    def to_dict(self) -> dict:
        """The table as plain data."""
        return {"kind": "latency_table", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "LatencyTable":
        """Rebuild from `to_dict`'s output."""
        data = {k: v for k, v in data.items() if k != "kind"}
        costs = {k: Cost(**v) for k, v in data.pop("costs", {}).items()}
        return cls(costs=costs, **data)

    def counter(self, graph: ChannelGraph) -> "LatencyCounter":
        """The predictor of this table for `graph`'s model (checked)."""
        return LatencyCounter(graph, self)

    def predict(self, model: keras.Model) -> float:
        """Predicted milliseconds of `model` (this model, or one pruned from it)."""
        g = build_graph(model)
        return self.counter(g)(np.ones(g.num_units, dtype=bool))

    def check(self, graph: ChannelGraph) -> None:
        """Raise unless the table fits this graph's model: the model it was
        measured for, or one pruned from it (same layers, fewer channels)."""
        keys = {key: call for key, call in _call_keys(graph)}
        missing = [key for key in self.calls if key not in keys]
        if missing or not self.calls:
            raise ValueError(
                f"this latency table was measured for model '{self.model}', and "
                f"'{graph.model.name}' lacks its layers {missing[:3]}: measure one "
                "for this model with kprune.LatencyTable.measure(model)"
            )


class LatencyCounter:
    """Predicted milliseconds of a model for any keep-mask over its units.

    Besides the total (`counter(keep)`), it gives the term of every timed
    call (`terms`) and the calls that some units feed or come out of
    (`touching`), so a planner can price a change of one group by the few
    terms it changes.
    """

    def __init__(self, graph: ChannelGraph, table: LatencyTable, calibrate=True):
        if calibrate:
            table.check(graph)
        self.table = table
        self.overhead = table.overhead_ms if calibrate else 0.0
        self._calls = []
        for key, call in _call_keys(graph):
            signature = table.calls.get(key)
            if signature is None:
                continue
            in_units = graph.units_of(call.inputs[0])
            out_units = graph.units_of(call.outputs[0])
            self._calls.append((table.costs[signature], call, in_units, out_units))
        self._by_unit: dict[int, list[int]] = {}
        for index, (_, _, in_units, out_units) in enumerate(self._calls):
            for units in (in_units, out_units):
                for unit in () if units is None else np.ravel(units):
                    self._by_unit.setdefault(int(unit), []).append(index)
        self.base = self(np.ones(graph.num_units, dtype=bool))
        self.known = True

    def __call__(self, keep_units: np.ndarray) -> float:
        return self.overhead + float(self.terms(keep_units).sum())

    def terms(self, keep_units: np.ndarray) -> np.ndarray:
        """The predicted milliseconds of every timed call."""
        return np.array([self.term(i, keep_units) for i in range(len(self._calls))])

    def term(self, index: int, keep_units: np.ndarray) -> float:
        cost, call, in_units, out_units = self._calls[index]
        c_in = _kept(call.inputs[0], in_units, keep_units)
        c_out = _kept(call.outputs[0], out_units, keep_units)
        return cost.at(c_in, c_out if cost.out_widths else None)

    def touching(self, units) -> list[int]:
        """The timed calls whose input or output channels include `units`."""
        found = set()
        for unit in np.ravel(units):
            found.update(self._by_unit.get(int(unit), ()))
        return sorted(found)


def _kept(tensor, units, keep_units) -> int:
    if units is None:
        return int(tensor.shape[-1])
    return int(keep_units[units].sum())


def _check_widths(widths) -> None:
    values = list(widths) if isinstance(widths, (list, tuple)) else []
    if not values or not all(0 < w <= 1 for w in values) or 1.0 not in values:
        raise ValueError(
            "widths must be shares of the channels in (0, 1] that include 1.0, "
            f"e.g. (0.25, 0.5, 0.75, 1.0); got {widths!r}"
        )


def _call_keys(graph: ChannelGraph):
    """`("layer:index", call)` for every call, the index counting the calls of
    the same layer (a shared layer has several)."""
    seen: dict[str, int] = {}
    for call in graph.calls:
        name = call.layer.name
        seen[name] = seen.get(name, -1) + 1
        yield f"{name}:{seen[name]}", call


def _signatures(graph: ChannelGraph):
    """Distinct timed layer signatures, and each timed call's signature.

    A signature holds the layer, its input shapes, its output channels, and
    whether its input and output channels can change (only channels of
    prunable groups do; the others are timed at their one width)."""
    prunable = set()
    for group in graph.prunable:
        prunable.update(int(u) for u in np.asarray(group.units).ravel())

    def varies(tensor) -> bool:
        units = graph.units_of(tensor)
        return units is not None and any(int(u) in prunable for u in np.ravel(units))

    signatures, calls = {}, {}
    for key, call in _call_keys(graph):
        kind = type(call.layer).__name__
        if kind not in GRID_LAYERS + CHANNELWISE_LAYERS or len(call.outputs) != 1:
            continue
        config = {k: v for k, v in call.layer.get_config().items() if k != "name"}
        shapes = [tuple(t.shape[1:]) for t in call.inputs]
        if any(d is None for s in shapes for d in s):
            raise ValueError(
                f"layer '{call.layer.name}' has an unknown spatial size: build the "
                "model for a fixed input size to measure its latency table"
            )
        out_channels = int(call.outputs[0].shape[-1])
        flags = (varies(call.inputs[0]), varies(call.outputs[0]))
        signature = repr(
            (kind, sorted(config.items(), key=str), shapes, out_channels, flags)
        )
        signatures.setdefault(signature, (call.layer, shapes, out_channels, flags))
        calls[key] = signature
    return signatures, calls


def _grid(channels: int, widths) -> list[int]:
    return sorted({max(1, round(w * channels)) for w in widths})


def _write_variants(directory, signatures, widths, verbose, quantize=None):
    """One `.tflite` per signature and grid point, as `(signature, (c_in,
    c_out), path)`."""
    files, jobs = [], []
    for signature, (layer, shapes, out_channels, flags) in signatures.items():
        grid = type(layer).__name__ in GRID_LAYERS
        ins = _grid(shapes[0][-1], widths if flags[0] else (1.0,))
        outs = _grid(out_channels, widths if flags[1] else (1.0,)) if grid else [None]
        jobs.extend(
            (signature, layer, shapes, c_in, c_out) for c_in in ins for c_out in outs
        )
    with Steps("latency table: single-layer models", len(jobs), verbose) as steps:
        for index, (signature, layer, shapes, c_in, c_out) in enumerate(jobs):
            path = os.path.join(directory, f"v{index}.tflite")
            _export(_single_layer(layer, shapes, c_in, c_out), path, quantize)
            files.append((signature, (c_in, c_out), path))
            steps.advance(f"{layer.name} {c_in}x{c_out or c_in}")
    return files


def _single_layer(layer, shapes, c_in: int, c_out: int | None) -> keras.Model:
    """`layer`'s type and settings alone, at `c_in` input (and `c_out`
    output) channels, with random weights."""
    config = layer.get_config()
    if c_out is not None:
        config["filters" if "filters" in config else "units"] = c_out
    inputs = [keras.Input(tuple(s[:-1]) + (c_in,)) for s in shapes]
    clone = type(layer).from_config(config)
    outputs = clone(inputs if len(inputs) > 1 else inputs[0])
    return keras.Model(inputs, outputs)


def _export(model, path: str, quantize=None, representative_data=None) -> str:
    """`model` as a `.tflite` at `path`; int8 calibrated on `representative_data`
    (random normal inputs when None)."""
    if quantize == "int8" and representative_data is None:
        rng = np.random.default_rng(0)
        shapes = [(16,) + tuple(i.shape[1:]) for i in model.inputs]
        samples = [rng.normal(size=s).astype("float32") for s in shapes]
        representative_data = samples if len(samples) > 1 else samples[0]
    export_tflite(
        model,
        path,
        quantize=quantize,
        representative_data=representative_data,
        verify=False,
    )
    return path


def _costs(signatures, files, medians) -> dict[str, Cost]:
    found: dict[str, dict] = {s: {} for s in signatures}
    for (signature, point, _), ms in zip(files, medians):
        found[signature][point] = ms
    costs = {}
    for signature, points in found.items():
        ins = sorted({c_in for c_in, _ in points})
        outs = sorted({c_out for _, c_out in points if c_out is not None})
        if outs:
            ms = [[points[(i, o)] for o in outs] for i in ins]
        else:
            ms = [[points[(i, None)]] for i in ins]
        costs[signature] = Cost(ins, outs, ms)
    return costs
