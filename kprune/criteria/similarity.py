"""Similarity criteria: how redundant each filter is next to the others.

* `fpgm`: filters near the geometric median of their layer are the most
  replaceable (He et al. 2019, "Filter Pruning via Geometric Median").
* `similarity`: the second stage of "Compression of CNN using structured pruning"
  (I2CT 2022). Normalise every filter by its norm, find the closest pair, drop the
  one with the smaller original norm, repeat. With `compensate=True` the dropped
  filter's outgoing weights are folded into its twin's, so the next layer's output
  changes as little as possible.

Both score in "removal order": the lower the score, the earlier the unit goes.
"""

from __future__ import annotations

import numpy as np

from kprune.criteria.registry import COMBINING, ScoringContext, register_criterion
from kprune.dependency import Group

DISTANCES = ("l1", "l2", "cosine")
_BLOCK_BYTES = 64 * 2**20


def pairwise(features: np.ndarray, distance: str) -> np.ndarray:
    """`(n, n)` matrix of distances between the rows of `features`."""
    x = np.asarray(features, dtype=np.float32)
    if distance == "l2":
        sq = np.square(x).sum(1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
        return np.sqrt(np.maximum(d2, 0.0))
    if distance == "cosine":
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return 1.0 - unit @ unit.T
    if distance == "l1":
        n = len(x)
        out = np.empty((n, n), dtype=np.float32)
        rows = max(1, _BLOCK_BYTES // max(x.nbytes, 1))
        for start in range(0, n, rows):
            block = x[start : start + rows]
            out[start : start + rows] = np.abs(block[:, None, :] - x[None]).sum(-1)
        return out
    raise ValueError(f"distance must be one of {DISTANCES}; got {distance!r}")


def _unit_features(group: Group, context: ScoringContext, effective: bool):
    """Per-unit feature rows (producers side by side) and their norms."""
    blocks, norms = [], []
    for member in group.producers():
        f = (
            context.effective_filters(member)
            if effective
            else context.filters(member.layer)
        )
        if f is None:
            continue
        rows = f[member.index].reshape(group.size, -1)
        norm = np.linalg.norm(rows, axis=1)
        blocks.append(rows / np.maximum(norm, 1e-12)[:, None])
        norms.append(norm)
    if not blocks:
        return None, None
    return np.concatenate(blocks, axis=1), np.sum(norms, axis=0)


@register_criterion(
    "fpgm",
    kind="similarity",
    options=COMBINING,
    description="distance to the other filters; near the geometric median goes "
    "first (He et al. 2019)",
)
def fpgm(group: Group, context: ScoringContext) -> np.ndarray:
    parts = []
    for member in group.producers():
        f = context.filters(member.layer)
        if f is not None:
            rows = f[member.index].reshape(group.size, -1)
            parts.append(pairwise(rows, "l2").sum(axis=1))
    return context.reduce(parts, group.size)


@register_criterion(
    "similarity",
    kind="similarity",
    options=("distance", "compensate"),
    description="drop the smaller of the closest pair of normalised filters, "
    "repeatedly (I2CT 2022); options distance=, compensate=",
)
def similarity(group: Group, context: ScoringContext) -> np.ndarray:
    distance = context.options.get("distance", "l1")
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}; got {distance!r}")
    features, norms = _unit_features(group, context, effective=True)
    if features is None:
        return np.ones(group.size)
    order, twins, factors = redundancy_order(features, norms, distance)
    scores = np.empty(group.size)
    scores[order] = np.arange(group.size)
    if context.options.get("compensate"):
        context.compensation[group.name] = [
            (int(u), int(twins[u]), float(factors[u])) for u in order[:-1]
        ]
    return scores


def redundancy_order(features: np.ndarray, norms: np.ndarray, distance: str):
    """Greedy removal order of the rows of `features` (normalised filters).

    Repeatedly take the closest remaining pair and remove the one with the smaller
    norm. Returns `(order, twin, factor)`: the units in removal order (the last one
    is never removed), the unit each was closest to when removed, and the ratio of
    their norms, by which the removed unit's outgoing weights fold into its twin's.
    """
    n = len(features)
    twins = np.full(n, -1)
    factors = np.zeros(n)
    if n == 1:
        return np.array([0]), twins, factors
    d = pairwise(features, distance).astype(np.float64)
    np.fill_diagonal(d, np.inf)
    alive = np.ones(n, dtype=bool)
    nearest = d.argmin(axis=1)
    near_d = d[np.arange(n), nearest]
    order = []
    for _ in range(n - 1):
        i = int(np.argmin(np.where(alive, near_d, np.inf)))
        j = int(nearest[i])
        drop, keep = (i, j) if norms[i] <= norms[j] else (j, i)
        order.append(drop)
        twins[drop] = keep
        factors[drop] = norms[drop] / max(norms[keep], 1e-12)
        alive[drop] = False
        d[:, drop] = np.inf
        near_d[drop] = np.inf
        stale = np.flatnonzero(alive & (nearest == drop))
        if len(stale):
            nearest[stale] = d[stale].argmin(axis=1)
            near_d[stale] = d[stale, nearest[stale]]
    order.append(int(np.flatnonzero(alive)[0]))
    return np.asarray(order), twins, factors
