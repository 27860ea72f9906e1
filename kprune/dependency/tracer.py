"""Tracing a model into channel ids: the raw material of the dependency graph.

Every channel of every tensor gets an integer id. A layer that makes new channels
(a convolution's filters) asks for fresh ids; a layer that passes channels through
(BatchNormalization, ReLU, pooling) hands its input ids on unchanged; a layer that
ties channels together (an `Add`) records that its inputs' ids are coupled. After
the walk, coupled ids are merged into connected components: one component is one
*unit*, a set of channels across layers that can only be removed together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kprune import keras_graph
from kprune.keras_graph import channel_count


@dataclass(eq=False)
class TensorInfo:
    """A tensor of the traced graph: its static shape and one id per channel.

    `ids` is None for tensors that have no channel axis kprune can follow (rank < 2,
    or an unknown channel count).
    """

    shape: tuple
    ids: np.ndarray | None
    #: Per channel, True where a channel removed upstream arrives here as a
    #: non-zero constant (after `sigmoid`, `x + c`, ...); None when none can.
    shifted: np.ndarray | None = None
    #: True when such a constant may differ at the border (it was padded).
    border: bool = False

    @property
    def channels(self) -> int | None:
        return None if self.ids is None else len(self.ids)


@dataclass(eq=False)
class Call:
    """One call of one layer (a Keras `Node`): what it consumed and produced."""

    index: int
    layer: Any
    name: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo] = field(default_factory=list)
    handler: Any = None
    #: The graph's view of this call (`keras_graph.CallSite`): its constant
    #: array arguments (`c` in `x * c`), and a way to run it on probe inputs.
    site: Any = None

    @property
    def constants(self) -> list:
        return self.site.constants if self.site is not None else []

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    @property
    def output(self) -> TensorInfo:
        return self.outputs[0]


class Tracer:
    """Hands out channel ids and records couplings and freezes during a walk.

    Handlers receive the tracer in `trace()` and use five verbs: `new`, `couple`,
    `freeze`, `opaque` and `note`.
    """

    def __init__(self):
        self.count = 0
        self.call_index = -1
        self._edges: list[tuple[np.ndarray, np.ndarray]] = []
        self.frozen: list[tuple[np.ndarray, str]] = []
        self.notes: list[tuple[np.ndarray, str]] = []
        self._creator_starts: list[int] = []
        self._creator_calls: list[int] = []

    def new(self, n: int) -> np.ndarray:
        """Fresh ids for `n` new channels, made by the current call."""
        ids = np.arange(self.count, self.count + int(n), dtype=np.int64)
        self._creator_starts.append(self.count)
        self._creator_calls.append(self.call_index)
        self.count += int(n)
        return ids

    def couple(self, a: np.ndarray, b: np.ndarray) -> None:
        """Channels `a[i]` and `b[i]` can only be removed together."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if a.shape != b.shape:
            raise ValueError(
                f"cannot couple {a.shape[0]} channels with {b.shape[0]} channels"
            )
        self._edges.append((a, b))

    def freeze(self, ids: np.ndarray | None, reason: str) -> None:
        """These channels must stay; `reason` is shown by `graph.explain()`."""
        if ids is not None and len(ids):
            self.frozen.append((np.asarray(ids, dtype=np.int64), reason))

    def note(self, ids: np.ndarray | None, text: str) -> None:
        """Something `graph.explain()` should say about the groups of `ids`."""
        if ids is not None and len(ids):
            self.notes.append((np.asarray(ids, dtype=np.int64), text))

    def opaque(self, inputs: list[TensorInfo], output_shapes: list, reason: str):
        """Freeze everything a call touches and give its outputs frozen new ids."""
        for info in inputs:
            self.freeze(info.ids, reason)
        outputs = []
        for shape in output_shapes:
            n = channel_count(shape)
            ids = None if n is None else self.new(n)
            self.freeze(ids, reason)
            outputs.append(ids)
        return outputs

    def components(self) -> np.ndarray:
        """Label of each id: the smallest id of its connected component."""
        labels = np.arange(self.count, dtype=np.int64)
        if not self._edges:
            return labels
        a = np.concatenate([e[0] for e in self._edges])
        b = np.concatenate([e[1] for e in self._edges])
        # Parallel union-find: hook the larger root under the smaller one, then
        # compress paths by pointer jumping, until every edge joins equal roots.
        while True:
            la, lb = labels[a], labels[b]
            differ = la != lb
            if not differ.any():
                return labels
            la, lb = la[differ], lb[differ]
            low = np.minimum(la, lb)
            np.minimum.at(labels, la, low)
            np.minimum.at(labels, lb, low)
            while True:
                jumped = labels[labels]
                if np.array_equal(jumped, labels):
                    break
                labels = jumped

    def creators(self) -> np.ndarray:
        """Index of the call that created each id."""
        starts = np.asarray(self._creator_starts + [self.count], dtype=np.int64)
        calls = np.asarray(self._creator_calls, dtype=np.int64)
        return np.repeat(calls, np.diff(starts))


def qualified_name(scope: tuple, layer) -> str:
    """`outer/inner/layer` for layers inside nested models, else the layer name."""
    return "/".join(scope + (layer.name,))


def trace(
    model, lookup, input_shapes: list | None = None, should_open=None
) -> tuple[list[Call], Tracer, dict, list, list, list]:
    """Walk `model` and run every call's handler.

    Args:
        model: functional or Sequential model (nested models are flattened).
        lookup: `f(layer) -> handler`, the handler registry's lookup.
        input_shapes: shapes to trace with instead of the inputs' own (batch
            axis included), e.g. to fill in `None` spatial dimensions.
        should_open: `f(layer) -> bool`, whether to trace inside a layer that
            holds other layers (see `keras_graph.open_composite`).

    Returns:
        `(calls, tracer, nested_inputs, input_infos, output_infos, input_names)`,
        where `nested_inputs` maps `id(nested_model)` to the infos of its inputs.
        Ids of model input `k` are created by call index `-1 - k`.
    """
    tracer = Tracer()
    calls: list[Call] = []
    first_call: dict[int, Call] = {}
    nested_inputs: dict[int, list[TensorInfo]] = {}
    input_infos: list[TensorInfo] = []
    input_names: list[str] = []

    def on_input(kt, shape):
        n = channel_count(shape)
        name = keras_graph.tensor_name(kt)
        tracer.call_index = -1 - len(input_names)
        input_names.append(name)
        ids = None if n is None else tracer.new(n)
        tracer.freeze(ids, f"model input '{name}' keeps its channels")
        info = TensorInfo(shape, ids)
        input_infos.append(info)
        return info

    def on_model(nested, values, scope):
        nested_inputs.setdefault(id(nested), values)

    def on_call(layer, values, out_shapes, scope, site):
        call = Call(len(calls), layer, qualified_name(scope, layer), values, site=site)
        call.handler = lookup(layer)
        tracer.call_index = call.index
        _trace_call(call, out_shapes, tracer)
        _couple_shared_calls(call, first_call, tracer)
        _mark_shifted(call, tracer.count)
        calls.append(call)
        return call.outputs

    output_infos = keras_graph.walk(
        model,
        on_input,
        on_call,
        on_model,
        input_shapes=input_shapes,
        should_open=should_open,
    )
    for kt, info in zip(model.outputs, output_infos):
        name = keras_graph.tensor_name(kt)
        tracer.freeze(info.ids, f"model output '{name}' keeps its shape")
    return calls, tracer, nested_inputs, input_infos, output_infos, input_names


def _trace_call(call: Call, out_shapes: list, tracer: Tracer) -> None:
    """Run the call's handler (or freeze a call with constants it cannot slice)
    and record the ids of each output in `call.outputs`."""
    if call.constants and not call.handler.takes_constants:
        shapes = ", ".join(str(c.shape) for c in call.constants)
        reason = (
            f"'{call.name}' computes with a constant array of shape {shapes} "
            "that kprune does not know how to slice"
        )
        ids_list = tracer.opaque(call.inputs, out_shapes, reason)
    else:
        ids_list = call.handler.trace(call, out_shapes, tracer)
    for shape, ids in zip(out_shapes, ids_list):
        n = channel_count(shape)
        if ids is not None and len(ids) != n:
            raise RuntimeError(
                f"handler {type(call.handler).__name__} gave {len(ids)} channel "
                f"ids for output of '{call.name}' with shape {shape}"
            )
        call.outputs.append(TensorInfo(shape, ids if n is not None else None))


def _mark_shifted(call: Call, count: int) -> None:
    """Follow removed channels that stop being zero (see `TensorInfo.shifted`).

    A channel id keeps its flag through layers that pass it on; a call that
    zeroes removed channels itself (a convolution, a BatchNorm) clears it, and
    one that maps zero elsewhere (`handler.shifts_zero`) sets it.
    """
    shifted_in = [i for i in call.inputs if i.shifted is not None]
    shifts = bool(call.handler.shifts_zero(call))
    if not (shifts or shifted_in):
        return
    flags = np.zeros(count, dtype=bool)
    for info in shifted_in:
        flags[info.ids] |= info.shifted
    zeroes = call.handler.zeroes_outputs
    border = any(i.border for i in shifted_in)
    for info in call.outputs:
        if info.ids is None:
            continue
        out = np.zeros(len(info.ids), dtype=bool) if zeroes else flags[info.ids]
        out = out | shifts
        info.shifted = out if out.any() else None
        # Padding (anything that grows H or W) puts other values at the border.
        info.border = info.shifted is not None and (
            border or _grows(call.inputs[0].shape if call.inputs else (), info.shape)
        )


def _grows(in_shape, out_shape) -> bool:
    """True if a spatial axis is longer in `out_shape` than in `in_shape`."""
    if len(in_shape) != len(out_shape):
        return False
    return any(
        a is not None and b is not None and b > a
        for a, b in zip(in_shape[1:-1], out_shape[1:-1])
    )


def _couple_shared_calls(call: Call, first_call: dict, tracer: Tracer) -> None:
    """A layer called twice shares its weights, so both calls prune alike."""
    first = first_call.setdefault(id(call.layer), call)
    if first is call or call.handler.stateless:
        return
    for old, new in zip(first.inputs + first.outputs, call.inputs + call.outputs):
        if old.ids is not None and new.ids is not None:
            if len(old.ids) == len(new.ids):
                tracer.couple(old.ids, new.ids)
                continue
        reason = f"shared layer '{call.name}' sees different channel counts"
        tracer.freeze(old.ids, reason)
        tracer.freeze(new.ids, reason)


def constant_sinks(calls: list[Call], tracer) -> list[tuple[Call, int, str | None]]:
    """Calls that mix channels which may arrive as non-zero constants when removed.

    Returns `(call, input_index, fold)` triples, `fold` being how exactly the
    call's handler folds such a constant into its bias (None: it cannot). Each
    is noted on the channels concerned, for `explain()`.
    """
    sinks = []
    for call in calls:
        if not getattr(call.layer, "weights", None):
            continue
        for k, info in enumerate(call.inputs):
            if info.shifted is None:
                continue
            passes = all(
                o.ids is not None and np.isin(o.ids, info.ids).all()
                for o in call.outputs
            )
            if passes and call.handler.zeroes_outputs:
                continue  # a depthwise conv or a BatchNorm zeroes them again
            fold = call.handler.constant_fold(call.layer)
            if fold == "exact" and info.border:
                fold = "exact away from the border (the channel is padded on its way)"
            where = f"'{call.name}' ({type(call.layer).__name__})"
            if fold is None:
                text = (
                    f"a removed channel reaches {where} as a non-zero constant "
                    "that kprune cannot fold into it: shrink differs from the "
                    "zeroed model there"
                )
            else:
                text = (
                    f"a removed channel reaches {where} as a non-zero constant "
                    f"(an activation or offset of 0 is not 0); shrink folds it "
                    f"into that layer's bias: {fold}"
                )
            tracer.note(info.ids[info.shifted], text)
            sinks.append((call, k, fold))
    return sinks


def input_shapes_for(model, input_shape) -> list[tuple] | None:
    """Batch shapes to trace `model` with, from a user's `input_shape=`.

    `input_shape` is one shape without the batch axis, `(H, W, C)`, or a list of
    them, one per model input. It fills in the `None` dimensions of models built
    for any image size, so MACs can be counted; dimensions the model fixes must
    match. Returns None when `input_shape` is None.
    """
    if input_shape is None:
        return None
    own = [tuple(kt.shape) for kt in model.inputs]
    single = isinstance(input_shape, (tuple, list)) and all(
        isinstance(d, (int, np.integer)) for d in input_shape
    )
    given = [input_shape] if single else input_shape
    if not isinstance(given, (tuple, list)) or len(given) != len(own):
        raise ValueError(
            f"input_shape must be one shape without the batch axis, e.g. (224, 224, "
            f"3), or a list of {len(own)} such shapes (one per model input). "
            f"Received: input_shape={input_shape!r}"
        )
    shapes = []
    for shape, model_shape in zip(given, own):
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else ()
        ok = len(shape) == len(model_shape) - 1 and all(
            isinstance(d, (int, np.integer)) and d > 0 for d in shape
        )
        if ok:
            ok = all(m is None or m == d for d, m in zip(shape, model_shape[1:]))
        if not ok:
            raise ValueError(
                f"input_shape {tuple(shape) or input_shape!r} does not fit model "
                f"input {model_shape[1:]}: give positive integers for every axis "
                "but the batch axis, equal to the model's where it fixes them. "
                f"Received: input_shape={input_shape!r}"
            )
        shapes.append((None,) + tuple(int(d) for d in shape))
    return shapes
