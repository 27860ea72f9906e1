"""`LatencyCounter`: a latency table's prediction for any plan.

A table holds what each timed layer call costs at each width; the counter
evaluates it for a keep-mask over a graph's units, as `MacCounter` counts
MACs, and prices a change of one group by the few terms it touches, which is
what the latency planner (`kprune.planning.choosing.search_latency`) asks.
"""

from __future__ import annotations

import numpy as np

from kprune.dependency import ChannelGraph
from kprune.latency.layerfiles import call_keys


class LatencyCounter:
    """Predicted milliseconds of a model for any keep-mask over its units.

    Besides the total (`counter(keep)`), it gives the term of every timed
    call (`terms`) and the calls that some units feed or come out of
    (`touching`), so a planner can price a change of one group by the few
    terms it changes.
    """

    def __init__(self, graph: ChannelGraph, table):
        table.check(graph)
        self.table = table
        self.overhead = table.overhead_ms
        self._calls = []
        for key, call in call_keys(graph):
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
        ms = cost.at(c_in, c_out if cost.out_widths else None)
        return self.table.scale * ms

    def step(self, units) -> int:
        """The channel step of `units`: the largest step of a timed call
        that has them on its stepped side (1 if none)."""
        units = {int(u) for u in np.ravel(units)}
        found = 1
        for cost, _, in_units, out_units in self._calls:
            side = out_units if cost.out_widths else in_units
            if cost.step > found and side is not None:
                if units.intersection(np.ravel(side).tolist()):
                    found = cost.step
        return found

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
