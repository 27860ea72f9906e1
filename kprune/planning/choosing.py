"""Choosing which units each group keeps, for a ratio or a FLOPs budget.

`plan()` scores the channels; `Chooser` turns the scores into kept units under
the constraints (scope, `min_channels`, `round_to`), and `search_flops` finds
the least pruning whose MACs fit a FLOPs budget.
"""

from __future__ import annotations

import math

import numpy as np


class Chooser:
    """Picks kept units per group for a removal ratio, honouring the constraints."""

    def __init__(
        self, groups, scores, scope, min_channels, round_to, normalize, min_share=0.0
    ):
        self.groups = groups
        self.scope = scope
        self.min_channels = min_channels
        self.min_share = min_share
        self.round_to = round_to
        # Highest score first; ties keep the lower channel index.
        self.order = {
            g.name: np.lexsort((np.arange(g.size), -scores[g.name])) for g in groups
        }
        # Scores scaled per group, so groups compare fairly in a global ranking.
        self.normed = {}
        for g in groups:
            s = scores[g.name]
            scale = {
                "mean": np.abs(s).mean(),
                "max": np.abs(s).max(),
                "sum": np.abs(s).sum(),
                None: 1.0,
            }[normalize]
            self.normed[g.name] = s / scale if scale > 0 else s
        if scope == "global":
            normed = [self.normed[g.name] for g in groups]
            self.flat = np.concatenate(normed) if normed else np.zeros(0)
            self.owner = np.repeat(np.arange(len(groups)), [g.size for g in groups])

    def _count(self, size: int, keep: int) -> int:
        floor = max(min(self.min_channels, size), math.ceil(self.min_share * size))
        keep = max(keep, floor)
        keep = math.ceil(keep / self.round_to) * self.round_to
        return int(min(max(keep, 1), size))

    def counts(self, ratio: float) -> dict[str, int]:
        """How many units each group keeps when `ratio` of them are removed."""
        if self.scope == "global":
            n_remove = int(ratio * len(self.flat))
            removed = np.zeros(len(self.groups), dtype=np.int64)
            if n_remove:
                lowest = np.argsort(self.flat, kind="stable")[:n_remove]
                removed = np.bincount(self.owner[lowest], minlength=len(self.groups))
            wanted = [g.size - int(r) for g, r in zip(self.groups, removed)]
        else:
            wanted = [g.size - int(ratio * g.size) for g in self.groups]
        return {g.name: self._count(g.size, n) for g, n in zip(self.groups, wanted)}

    def counts_each(self, ratios: dict[str, float]) -> dict[str, int]:
        """How many units each group keeps when `ratios[group]` of them go."""
        return {
            g.name: self._count(g.size, g.size - int(ratios[g.name] * g.size))
            for g in self.groups
        }

    def keep(self, counts: dict[str, int]) -> dict[str, np.ndarray]:
        """The best-scored `counts[group]` units of each group, in channel order."""
        return {
            g.name: np.sort(self.order[g.name][: counts[g.name]]) for g in self.groups
        }

    def choose(self, ratio: float) -> dict[str, np.ndarray]:
        return self.keep(self.counts(ratio))

    def units_mask(self, num_units: int, counts: dict[str, int]) -> np.ndarray:
        """Keep-mask over all units of the graph for the given counts."""
        mask = np.ones(num_units, dtype=bool)
        for g in self.groups:
            m = np.zeros(g.size, dtype=bool)
            m[self.order[g.name][: counts[g.name]]] = True
            mask[g.units] = m
        return mask

    def grown(self, group, count: int) -> int:
        """The next count up for `group`: one more multiple of `round_to`."""
        return min(group.size, (count // self.round_to + 1) * self.round_to)

    def give_back_order(self, counts: dict[str, int]) -> list:
        """Groups that can take channels back, the most deserving first.

        Per layer, the group pruned hardest (lowest kept share) comes first, so
        the shares stay even; globally, the group whose best removed channel
        scores highest.
        """
        open_groups = [g for g in self.groups if counts[g.name] < g.size]
        if self.scope == "global":

            def best_removed(g):
                return -self.normed[g.name][self.order[g.name][counts[g.name]]]

            return sorted(open_groups, key=best_removed)
        return sorted(open_groups, key=lambda g: counts[g.name] / g.size)


class BudgetUnreachable(ValueError):
    """A FLOPs budget below the least the model can keep (its floor)."""


def search_flops(g, chooser, counter, flops) -> dict[str, np.ndarray]:
    """The least pruning whose MACs are at most `flops` of the original.

    A bisection over one removal ratio shared by every group finds a plan under
    the budget. Rounding (`round_to`) and small groups make the MACs move in
    coarse steps as that ratio grows, so the plan can land well under the
    budget; channels are then given back, `round_to` at a time, while the MACs
    stay within it.
    """
    budget = flops * counter.base

    def macs(counts):
        return counter(chooser.units_mask(g.num_units, counts))

    lowest = macs(chooser.counts(0.999))
    if lowest > budget:
        raise BudgetUnreachable(
            f"flops={flops} cannot be reached: with the frozen groups and "
            f"min_channels={chooser.min_channels}, min_share={chooser.min_share}, "
            f"round_to={chooser.round_to}, the least this model can keep is "
            f"{lowest / counter.base:.3f} of its FLOPs. "
            "Raise flops= or lower min_channels/min_share/round_to."
        )
    if macs(chooser.counts(0.0)) <= budget:
        return chooser.choose(0.0)
    lo, hi = 0.0, 0.999
    best = chooser.counts(hi)
    while hi - lo >= 1e-4:
        mid = (lo + hi) / 2
        counts = chooser.counts(mid)
        if macs(counts) <= budget:
            hi, best = mid, counts
        else:
            lo = mid
    return chooser.keep(give_back(chooser, best, macs, budget))


def give_back(chooser, counts: dict, macs, budget: float) -> dict:
    """Grow the kept counts, most deserving group first, within the MAC budget.

    MACs only grow as channels come back, so a group whose next step does not
    fit is never tried again.
    """
    counts = dict(counts)
    closed: set[str] = set()
    while True:
        for group in chooser.give_back_order(counts):
            if group.name in closed:
                continue
            trial = {**counts, group.name: chooser.grown(group, counts[group.name])}
            if macs(trial) <= budget:
                counts = trial
                break
            closed.add(group.name)
        else:
            return counts


def allocate(costs: dict, gains: dict, budget: float) -> dict[str, int]:
    """How far along its steps each item goes, greedily, within a summed cost.

    `costs[k][i]` and `gains[k][i]` are what taking item `k` to step `i`
    costs and gains in all (step -1, not moving, costs and gains 0). Costs are
    made non-decreasing and non-negative. The move with the most gain per
    cost (free moves first, then the largest gain) is taken while the summed
    cost stays within `budget`. Returns the step index per item (-1: none).
    """
    cost = {
        k: np.maximum.accumulate(np.maximum(np.asarray(v, float), 0))
        for k, v in costs.items()
    }
    gain = {k: np.asarray(v, float) for k, v in gains.items()}
    at = {k: -1 for k in costs}
    spent = 0.0
    while True:
        best, best_key = None, None
        for k in costs:
            here_cost = cost[k][at[k]] if at[k] >= 0 else 0.0
            here_gain = gain[k][at[k]] if at[k] >= 0 else 0.0
            for j in range(at[k] + 1, len(cost[k])):
                extra, more = cost[k][j] - here_cost, gain[k][j] - here_gain
                if more <= 0 or spent + extra > budget + 1e-12:
                    continue
                key = (extra <= 1e-12, more / max(extra, 1e-12), more)
                if best_key is None or key > best_key:
                    best, best_key = (k, j, extra), key
        if best is None:
            return at
        k, j, extra = best
        at[k], spent = j, spent + extra


def search_latency(g, chooser, counter, budget: float) -> dict[str, np.ndarray]:
    """The channels to keep so that `counter` (predicted milliseconds for a
    keep-mask; a `LatencyCounter`) is within `budget`, losing the least
    score: a greedy knapsack.

    Each group moves in its own step: `round_to` and the channel step of the
    kernels it feeds or comes out of (`counter.step`, measured by the table),
    their least common multiple. Step by step, the group whose next channels
    (its lowest-scored kept ones; one step of them, or about a 32nd of the
    group if more) cost the least score per millisecond they save gives them
    up, until the prediction fits; then steps are given back, the most
    deserving group first, while it fits.
    """
    counts = {grp.name: grp.size for grp in chooser.groups}
    steps = {
        grp.name: math.lcm(chooser.round_to, counter.step(grp.units))
        for grp in chooser.groups
    }
    # A channel below a whole step costs as much as the step: keep the step.
    floors = {
        grp.name: min(grp.size, _step_up(chooser._count(grp.size, 0), steps[grp.name]))
        for grp in chooser.groups
    }
    lowest = counter(chooser.units_mask(g.num_units, floors))
    if lowest > budget:
        raise BudgetUnreachable(
            f"the latency budget ({budget:.3f} ms predicted) cannot be reached: "
            f"with the frozen groups and min_channels={chooser.min_channels}, "
            f"min_share={chooser.min_share}, round_to={chooser.round_to} and the "
            f"kernels' channel steps ({counter.table.steps or 'none'}), the least "
            f"this model can take is {lowest:.3f} ms. Raise the budget or lower "
            "min_channels/min_share/round_to."
        )
    keep = chooser.units_mask(g.num_units, counts)
    terms = counter.terms(keep)
    touching = {grp.name: counter.touching(grp.units) for grp in chooser.groups}
    now = counter.overhead + terms.sum()
    while now > budget:
        best = None
        for grp in chooser.groups:
            name = grp.name
            step = steps[name] * max(1, grp.size // 32 // steps[name])
            fewer = max(floors[name], _step_down(counts[name], step))
            if fewer >= counts[name]:
                continue
            removed = chooser.order[name][fewer : counts[name]]
            trial = keep.copy()
            trial[np.asarray(grp.units)[removed]] = False
            saved = sum(terms[i] - counter.term(i, trial) for i in touching[name])
            lost = float(np.abs(chooser.normed[name][removed]).sum())
            price = lost / max(saved, 1e-9)
            if best is None or price < best[0]:
                best = (price, name, fewer, trial)
        _, name, counts[name], keep = best
        for i in touching[name]:
            terms[i] = counter.term(i, keep)
        now = counter.overhead + terms.sum()

    def cost(changed):
        return counter(chooser.units_mask(g.num_units, {**counts, **changed}))

    return chooser.keep(_give_back(chooser, counts, cost, budget, steps))


def _step_up(count: int, step: int) -> int:
    return math.ceil(count / step) * step


def _step_down(count: int, round_to: int) -> int:
    """The next count below `count` that is a multiple of `round_to`."""
    return ((count - 1) // round_to) * round_to


def _give_back(chooser, counts, cost, budget, steps) -> dict[str, int]:
    """Return channels, a group's step at a time, the best-scored first, while
    the cost stays within."""
    changed = True
    while changed:
        changed = False
        for grp in chooser.give_back_order(counts):
            step = steps[grp.name]
            more = min(grp.size, (counts[grp.name] // step + 1) * step)
            if cost({grp.name: more}) <= budget:
                counts[grp.name] = more
                changed = True
                break
    return counts
