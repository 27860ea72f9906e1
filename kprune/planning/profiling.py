"""Counting parameters, MACs and FLOPs, per layer and in total.

MACs are the multiply-accumulates of convolutions and Dense layers per sample (one
image). FLOPs are `2 * MACs`. BatchNormalization, activations, pooling and merges
are not counted: they fold into the convolutions or cost little next to them, and
leaving them out is what the pruning literature reports. Transposed convolutions
are counted once per input position.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import keras
import numpy as np

from kprune.dependency import ChannelGraph
from kprune.dependency import graph as build_graph
from kprune.handlers import get_handler
from kprune.results import format_table, human


@dataclass
class LayerProfile:
    """One layer call: its output shape, parameters (first call only) and MACs."""

    name: str
    type: str
    output_shape: tuple
    params: int
    macs: int


@dataclass
class Profile:
    """Parameters, MACs and FLOPs of a model. `print()` it for a per-layer table.

    Attributes:
        params: all parameters, trainable or not; a wrapped layer counts as
            the layer it wraps (the multipliers fold away on export).
        macs: multiply-accumulates per sample (convolutions and Dense).
        layers: one `LayerProfile` per layer call.
    """

    model: str
    params: int
    macs: int
    layers: list[LayerProfile] = field(default_factory=list)

    @property
    def flops(self) -> int:
        """`2 * macs`."""
        return 2 * self.macs

    def table(self, top: int | None = None) -> str:
        """Per-layer table; `top=N` shows only the N layers with the most MACs."""
        rows = [r for r in self.layers if r.params or r.macs]
        if top is not None:
            rows = sorted(rows, key=lambda r: r.macs, reverse=True)[:top]
        body = [
            (r.name, r.type, _shape(r.output_shape), f"{r.params:,}", human(r.macs))
            for r in rows
        ]
        return format_table(["layer", "type", "output", "params", "MACs"], body)

    def __str__(self) -> str:
        return (
            f"{self.table()}\n\n{self.model}: {self.params:,} params, "
            f"{human(self.macs)} MACs, {human(self.flops)} FLOPs per sample"
        )

    def compare(
        self,
        other: "Profile",
        names=("before", "after"),
        *,
        metrics: dict | None = None,
        timings=None,
        title: str = "",
    ) -> str:
        """A before/after table against `other` (the pruned model's profile).

        Args:
            other: the profile to compare with.
            names: the two column titles.
            metrics: `{"test accuracy": (before, after), ...}`: rows of metric
                values, with their difference.
            timings: two `kprune.TFLiteBenchmark`s (before, after) from
                `kprune.benchmark_tflite`: rows of file size and latency.
            title: a line above the table.

        Returns:
            The table as text: one row per figure, then the change (a ratio for
            sizes and counts, a difference for metrics, a speed-up for latency).
        """
        rows = [
            (label, fmt(a), fmt(b), _ratio(a, b))
            for label, fmt, a, b in (
                ("params", "{:,}".format, self.params, other.params),
                ("MACs", human, self.macs, other.macs),
                ("FLOPs", human, self.flops, other.flops),
            )
        ]
        for label, (a, b) in (metrics or {}).items():
            rows.append((label, f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}"))
        if timings is not None:
            a, b = timings
            rows.append(
                (
                    "TFLite KiB",
                    f"{a.bytes / 1024:.1f}",
                    f"{b.bytes / 1024:.1f}",
                    _ratio(a.bytes, b.bytes),
                )
            )
            rows.append(
                (
                    f"LiteRT ms (median, {a.threads} thread"
                    f"{'s' if a.threads > 1 else ''})",
                    f"{a.median_ms:.3f}",
                    f"{b.median_ms:.3f}",
                    f"{a.median_ms / b.median_ms:.2f}x faster",
                )
            )
        return format_table(["", names[0], names[1], "change"], rows, title=title)

    def to_dict(self) -> dict:
        return {**asdict(self), "flops": self.flops}


def _ratio(before, after) -> str:
    return f"{after / before:.2f}x" if before else "-"


def _shape(shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape[1:])


def profile(
    model: keras.Model,
    graph: ChannelGraph | None = None,
    *,
    input_shape=None,
) -> Profile:
    """Count the parameters, MACs and FLOPs of a model.

    Args:
        model: a functional or Sequential Keras model (nested models are entered).
        graph: its channel graph, if you have built it already.
        input_shape: `(H, W, C)` (or one per input) to count a model built with
            `None` spatial dimensions at that size.

    Returns:
        A `Profile`; `print(profile)` shows a per-layer table and the totals.

    Raises:
        ValueError: if a layer with MACs has spatial dimensions that are unknown
            (`None`) and no `input_shape` is given.
    """
    if graph is not None and input_shape is not None:
        raise ValueError(
            "give input_shape= or graph=, not both: build the graph with "
            "kprune.graph(model, input_shape=...) instead"
        )
    g = graph if graph is not None else build_graph(model, input_shape)
    rows, seen = [], set()
    for call in g.calls:
        layer = call.layer
        params = 0
        if id(layer) not in seen and isinstance(layer, keras.layers.Layer):
            seen.add(id(layer))
            # A wrapper counts as the layer it wraps, which is what ships
            # (its multipliers fold away).
            shipped = get_handler(layer).inner(layer)
            params = int(shipped.count_params()) if shipped.built else 0
        macs = _call_macs(
            call, [i.shape for i in call.inputs], [o.shape for o in call.outputs]
        )
        out_shape = call.outputs[0].shape if call.outputs else ()
        rows.append(
            LayerProfile(call.name, type(layer).__name__, out_shape, params, macs)
        )
    return Profile(
        model.name,
        params=sum(r.params for r in rows),
        macs=sum(r.macs for r in rows),
        layers=rows,
    )


def _call_macs(call, input_shapes, output_shapes) -> int:
    known_in = [_ones_for_unknown(s) for s in input_shapes]
    known_out = [_ones_for_unknown(s) for s in output_shapes]
    macs = int(call.handler.macs(call.layer, known_in, known_out))
    if macs == 0:
        return 0
    for shape in list(input_shapes) + list(output_shapes):
        if any(d is None for d in shape[1:]):
            raise ValueError(
                f"cannot count MACs of '{call.name}': shape {shape} has unknown "
                "dimensions. Pass the image size to count with, e.g. "
                "input_shape=(224, 224, 3)."
            )
    return macs


def _ones_for_unknown(shape) -> tuple:
    return (shape[0],) + tuple(1 if d is None else d for d in shape[1:])


class MacCounter:
    """MACs of a model for any keep-mask over its units, without surgery.

    The planner calls this many times while it searches for a FLOPs budget. On a
    graph with unknown spatial sizes `known` is False and counting raises the
    `ValueError` that says to pass `input_shape=`.
    """

    def __init__(self, graph: ChannelGraph):
        self._calls = []
        self._unknown: ValueError | None = None
        for call in graph.calls:
            shapes_in = [i.shape for i in call.inputs]
            shapes_out = [o.shape for o in call.outputs]
            try:
                if _call_macs(call, shapes_in, shapes_out) == 0:
                    continue
            except ValueError as error:
                self._unknown = self._unknown or error
                continue
            self._calls.append(
                (
                    call,
                    [graph.units_of(i) for i in call.inputs],
                    [graph.units_of(o) for o in call.outputs],
                )
            )
        self.base = self(np.ones(graph.num_units, dtype=bool)) if self.known else 0

    @property
    def known(self) -> bool:
        """False when some MACs depend on spatial sizes the graph does not know."""
        return self._unknown is None

    def __call__(self, keep_units: np.ndarray) -> int:
        if self._unknown is not None:
            raise self._unknown
        total = 0
        for call, in_units, out_units in self._calls:
            shapes_in = [
                _with_channels(i.shape, u, keep_units)
                for i, u in zip(call.inputs, in_units)
            ]
            shapes_out = [
                _with_channels(o.shape, u, keep_units)
                for o, u in zip(call.outputs, out_units)
            ]
            total += int(call.handler.macs(call.layer, shapes_in, shapes_out))
        return total


def _with_channels(shape, units, keep_units):
    if units is None:
        return shape
    return tuple(shape[:-1]) + (int(keep_units[units].sum()),)
