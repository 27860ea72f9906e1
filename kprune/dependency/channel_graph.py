"""The channel dependency graph: which channels must be removed together.

A **unit** is a set of channels, across layers, that can only go together: filter
7 of a conv, channel 7 of the BatchNorm after it, and input channel 7 of the next
conv. A **group** is a set of units that touch exactly the same tensors, so they
are interchangeable: usually "the filters of one conv and everything they reach".
Pruning picks, per group, which of its units to keep.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import keras
import numpy as np

from kprune import keras_graph
from kprune.dependency.tracer import (
    Call,
    TensorInfo,
    constant_sinks,
    input_shapes_for,
    trace,
)
from kprune.handlers import get_handler
from kprune.handlers.registry import has_handler


@dataclass(eq=False)
class Member:
    """One layer's part in a group.

    Attributes:
        layer: the Keras layer (or op).
        name: its name, `outer/inner` inside nested models.
        role: `"out"` (its output channels), `"in"` (its input channels) or
            `"through"` (channels that pass through it, e.g. BatchNorm).
        index: `(units, k)` array: the layer's channel indices for each unit.
    """

    layer: object
    name: str
    role: str
    index: np.ndarray

    def describe(self) -> str:
        if self.role == "out":
            return f"out-channels of {self.name}"
        if self.role == "in":
            return f"in-channels of {self.name}"
        return self.name

    def __repr__(self) -> str:
        return f"Member({self.describe()}, {len(self.index)} units)"


@dataclass(eq=False)
class Group:
    """Units that touch the same layers and can be pruned independently.

    Attributes:
        name: stable id, the name of the layer that makes the group's channels.
        units: global unit ids, in channel order.
        members: the layers involved, in the order they run.
        reasons: why the group is frozen (empty when it can be pruned).
        notes: what else `explain()` says about it (a layer proven channel-wise
            by probing, a constant folded into a bias).
    """

    name: str
    units: np.ndarray
    members: list[Member] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Number of units (independent channel sets) in the group."""
        return len(self.units)

    @property
    def frozen(self) -> bool:
        return bool(self.reasons)

    def producers(self) -> list[Member]:
        """Members that make the group's channels with their own weights.

        Layers that only rearrange channels (Flatten, Concatenate) are left out.
        """
        return [
            m
            for m in self.members
            if m.role == "out" and getattr(m.layer, "weights", None)
        ]

    def __str__(self) -> str:
        shown = [m for m in self.members if _holds_channels(m.layer)] or self.members
        chain = " => ".join(
            ("prune " if m.role in ("out", "in") else "") + m.describe() for m in shown
        )
        hidden = len(self.members) - len(shown)
        more = f" (+{hidden} layers with nothing per channel)" if hidden else ""
        state = "FROZEN" if self.frozen else "prunable"
        text = f"[{self.name}] {self.size} channels, {state}: {chain}{more}"
        for reason in self.reasons:
            text += f"\n    frozen because {reason}"
        for note in self.notes:
            text += f"\n    note: {note}"
        return text

    def __repr__(self) -> str:
        return f"Group({self.name!r}, size={self.size}, frozen={self.frozen})"


def _holds_channels(layer) -> bool:
    """Has weights or a per-channel config (what explain() lists by name)."""
    return bool(getattr(layer, "weights", None)) or not get_handler(layer).stateless


class ChannelGraph:
    """The channel dependency graph of a Keras model (see `kprune.graph`)."""

    def __init__(self, model: keras.Model, input_shape=None):
        keras_graph.check_graph_model(model)
        self.model = model
        self.input_shapes = input_shapes_for(model, input_shape)
        (
            self.calls,
            tracer,
            self._nested_inputs,
            self.input_infos,
            self.output_infos,
            self.input_names,
        ) = trace(
            model,
            get_handler,
            self.input_shapes,
            should_open=lambda layer: not has_handler(layer),
        )
        self._consumers: dict[int, list[Call]] = {}
        for call in self.calls:
            for info in call.inputs:
                self._consumers.setdefault(id(info), []).append(call)
        self.constant_sinks = constant_sinks(self.calls, tracer)
        labels = tracer.components()
        roots, self._unit_of = np.unique(labels, return_inverse=True)
        self.num_units = len(roots)
        self._build_groups(tracer, roots)

    # ----------------------------------------------------------------- public
    @property
    def groups(self) -> list[Group]:
        """All groups, frozen ones included, in the order the model runs."""
        return list(self._groups)

    @property
    def prunable(self) -> list[Group]:
        """The groups that can lose channels."""
        return [g for g in self._groups if not g.frozen]

    def group(self, name: str) -> Group:
        """The group called `name` (see `explain()` for the names)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"no group named {name!r}; names are listed by graph.explain()"
            ) from None

    def groups_of(self, layer_name: str) -> list[Group]:
        """The groups that a layer (by name, `outer/inner` if nested) belongs to."""
        return [g for g in self._groups if any(m.name == layer_name for m in g.members)]

    def consumers(self, info: TensorInfo) -> list[Call]:
        """The calls that take the traced tensor `info` as an input."""
        return list(self._consumers.get(id(info), []))

    def norm_after(self, call: Call) -> Call | None:
        """The BatchNorm-like call (see `LayerHandler.normalizes`) that alone
        consumes `call`'s output.

        That is where an importance multiplier for `call`'s filters must sit, and
        the normalisation folded into them when comparing filters.
        """
        consumers = self.consumers(call.output) if call.outputs else []
        if len(consumers) != 1:
            return None
        follower = consumers[0]
        layer = follower.layer
        inner = get_handler(layer).inner(layer)
        if not get_handler(inner).normalizes:
            return None
        passes = follower.outputs and follower.output.ids is call.output.ids
        shared = len(self.calls_of(layer)) > 1
        return follower if passes and not shared else None

    def calls_of(self, layer) -> list[Call]:
        """Every call of `layer` (one per use of a shared layer)."""
        return [call for call in self.calls if call.layer is layer]

    def layers(self) -> list:
        """Every distinct layer (or op) the graph calls, in call order."""
        return list({id(c.layer): c.layer for c in self.calls}.values())

    def layer_names(self) -> set[str]:
        return {call.name for call in self.calls}

    def explain(self, frozen: bool = True) -> str:
        """A readable account of every group, and why frozen groups are frozen.

        Args:
            frozen: include frozen groups (default True).
        """
        total = sum(g.size for g in self._groups)
        free = sum(g.size for g in self.prunable)
        lines = [
            f"Channel graph of '{self.model.name}': {len(self.calls)} layer calls, "
            f"{len(self._groups)} groups ({len(self.prunable)} prunable), "
            f"{free} of {total} channel units prunable."
        ]
        for g in self._groups:
            if frozen or not g.frozen:
                lines.append(str(g))
        return "\n".join(lines)

    def fingerprint(self) -> str:
        """Hash of the group structure; plans record it to catch model mix-ups."""
        text = ";".join(f"{g.name}:{g.size}:{int(g.frozen)}" for g in self._groups)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def units_of(self, info: TensorInfo) -> np.ndarray | None:
        """Unit id of each channel of a traced tensor."""
        return None if info.ids is None else self._unit_of[info.ids]

    def nested_inputs(self) -> dict[int, list[TensorInfo]]:
        """The traced inputs of each nested model, keyed by `id(model)`."""
        return dict(self._nested_inputs)

    def __repr__(self) -> str:
        return (
            f"ChannelGraph({self.model.name!r}, groups={len(self._groups)}, "
            f"prunable={len(self.prunable)})"
        )

    # ---------------------------------------------------------------- private
    def _spaces(self):
        """Distinct channel-id arrays (a pass-through layer reuses its input's)."""
        spaces, index = [], {}
        touches = []  # (space, call, role)
        self._first_index = {}
        for call in self.calls:
            self._first_index.setdefault(id(call.layer), call.index)
            ins = {id(i.ids) for i in call.inputs if i.ids is not None}
            outs = {id(o.ids) for o in call.outputs if o.ids is not None}
            for info in call.inputs + call.outputs:
                if info.ids is None:
                    continue
                key = id(info.ids)
                if key not in index:
                    index[key] = len(spaces)
                    spaces.append(info.ids)
                role = (
                    "through"
                    if key in ins and key in outs
                    else ("in" if key in ins else "out")
                )
                touches.append((index[key], call, role))
        return spaces, touches

    def _build_groups(self, tracer, roots):
        spaces, touches = self._spaces()
        n_spaces = max(len(spaces), 1)
        unit_parts = [self._unit_of[s] for s in spaces]
        all_units = np.concatenate(unit_parts) if unit_parts else np.zeros(0, int)
        all_spaces = np.repeat(np.arange(len(spaces)), [len(s) for s in spaces])
        keys, counts = np.unique(all_units * n_spaces + all_spaces, return_counts=True)
        key_units, key_spaces = keys // n_spaces, keys % n_spaces
        cuts = np.flatnonzero(np.diff(key_units)) + 1
        starts = np.concatenate([[0], cuts])
        stops = np.concatenate([cuts, [len(keys)]])

        by_signature: dict[bytes, list[int]] = {}
        signature_spaces: dict[bytes, tuple] = {}
        for start, stop in zip(starts, stops):
            sig = key_spaces[start:stop].tobytes() + counts[start:stop].tobytes()
            by_signature.setdefault(sig, []).append(int(key_units[start]))
            signature_spaces.setdefault(
                sig, (key_spaces[start:stop], counts[start:stop])
            )

        touches_by_space: dict[int, list] = {}
        for space, call, role in touches:
            touches_by_space.setdefault(space, []).append((call, role))

        creators = tracer.creators()
        group_of_unit = np.full(self.num_units, -1, dtype=np.int64)
        self._groups, self._by_name = [], {}
        for sig, units in by_signature.items():
            units = np.asarray(units, dtype=np.int64)
            group_of_unit[units] = len(self._groups)
            members = self._members(
                units, signature_spaces[sig], spaces, touches_by_space
            )
            creator = creators[roots[units[0]]]
            name = self._unique_name(
                self.calls[creator].name
                if creator >= 0
                else self.input_names[-1 - creator]
            )
            group = Group(name, units, members)
            self._groups.append(group)
            self._by_name[name] = group

        for attribute, entries in (("reasons", tracer.frozen), ("notes", tracer.notes)):
            for ids, text in entries:
                for g in np.unique(group_of_unit[self._unit_of[ids]]):
                    texts = getattr(self._groups[g], attribute)
                    if text not in texts:
                        texts.append(text)

    def _members(self, units, signature, spaces, touches_by_space):
        members, seen = [], set()
        space_ids, counts = signature
        for space, count in zip(space_ids, counts):
            unit_of_channel = self._unit_of[spaces[space]]
            order = np.argsort(unit_of_channel, kind="stable")
            left = np.searchsorted(unit_of_channel[order], units)
            index = order[left[:, None] + np.arange(count)]
            for call, role in touches_by_space.get(int(space), []):
                key = (id(call.layer), role)
                if key in seen:
                    continue
                seen.add(key)
                members.append(Member(call.layer, call.name, role, index))
        members.sort(key=lambda m: self._first_index[id(m.layer)])
        return members

    def _unique_name(self, name: str) -> str:
        if name not in self._by_name:
            return name
        k = 2
        while f"{name}#{k}" in self._by_name:
            k += 1
        return f"{name}#{k}"


def graph(model: keras.Model, input_shape=None) -> ChannelGraph:
    """Read a Keras model into its channel dependency graph.

    Nested functional and Sequential models are flattened; a layer called twice
    is two calls whose channels are pruned alike. Layers kprune cannot see through
    (`Lambda`, unknown custom layers, channels-first layers) freeze the groups they
    touch, and `explain()` says why.

    Args:
        model: a functional `keras.Model` or a built `keras.Sequential`.
        input_shape: optional `(H, W, C)` (or a list, one per input) to trace a
            model built with `None` dimensions at a fixed size, so that MACs
            can be counted.

    Returns:
        A `ChannelGraph` with `.groups`, `.prunable` and `.explain()`.

    Raises:
        TypeError: for subclassed models and non-models.
        ValueError: for an unbuilt Sequential model, or an `input_shape` that
            does not fit the model's inputs.
    """
    return ChannelGraph(model, input_shape)
