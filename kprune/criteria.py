"""Scoring rules: one score per unit of a group; low scores are pruned first.

Every criterion is a function `fn(group, context) -> np.ndarray` of shape
`(group.size,)`, registered by name. `context` (a `ScoringContext`) gives cached
access to weights, filters, data and a random generator, and reduces per-member
scores over the coupled layers of a group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from kprune.graph import ChannelGraph, Group
from kprune.handlers import get_handler
from kprune.handlers.base import weight_keys

REDUCTIONS = ("mean", "sum", "max")


@dataclass(frozen=True)
class Criterion:
    """A registered scoring rule.

    Attributes:
        name: the name `plan(criterion=...)` takes.
        fn: `fn(group, context) -> scores`.
        kind: `"saliency"` (how much a filter matters) or `"similarity"` (how
            redundant it is next to the others).
        needs_data: True if it runs the model on `data=`.
        description: one line for listings.
    """

    name: str
    fn: Callable
    kind: str = "saliency"
    needs_data: bool = False
    description: str = ""


_CRITERIA: dict[str, Criterion] = {}


def register_criterion(
    name: str,
    fn: Callable | None = None,
    *,
    kind: str = "saliency",
    needs_data: bool = False,
    description: str = "",
    override: bool = False,
):
    """Register a scoring rule under `name`; usable as a decorator.

    Args:
        name: the name to pass as `criterion=`.
        fn: `fn(group, context) -> np.ndarray` of shape `(group.size,)`.
        kind: `"saliency"` or `"similarity"`.
        needs_data: the criterion reads `context.data`.
        description: one line for `available_criteria()`.
        override: replace an existing criterion of the same name.

    Raises:
        ValueError: on a duplicate name without `override=True`, or a bad `kind`.
    """
    if kind not in ("saliency", "similarity"):
        raise ValueError(f"kind must be 'saliency' or 'similarity'; got {kind!r}")

    def register(f):
        if not callable(f):
            raise TypeError(f"criterion {name!r} must be callable; got {f!r}")
        if name in _CRITERIA and not override:
            raise ValueError(
                f"criterion {name!r} is registered already; pass override=True "
                "to replace it"
            )
        _CRITERIA[name] = Criterion(name, f, kind, needs_data, description)
        return f

    return register if fn is None else register(fn)


def get_criterion(criterion: str | Callable | Criterion) -> Criterion:
    """Look up a criterion by name (callables are wrapped as ad-hoc criteria).

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if isinstance(criterion, Criterion):
        return criterion
    if callable(criterion):
        return Criterion(getattr(criterion, "__name__", "custom"), criterion)
    if criterion not in _CRITERIA:
        raise ValueError(
            f"unknown criterion {criterion!r}. Known criteria: "
            f"{', '.join(sorted(_CRITERIA))}. Register your own with "
            "kprune.criteria.register_criterion."
        )
    return _CRITERIA[criterion]


def available_criteria() -> dict[str, str]:
    """Name -> description of every registered criterion."""
    return {name: c.description for name, c in sorted(_CRITERIA.items())}


class ScoringContext:
    """What a criterion may read while it scores groups.

    Attributes:
        model: the model being pruned (never modified).
        graph: its `ChannelGraph`.
        data: optional data for data-driven criteria.
        rng: a seeded `numpy.random.Generator`.
        reduction: how per-member scores of coupled layers combine:
            `"mean"`, `"sum"` or `"max"`.
        options: extra keyword arguments given to `plan()` for the criterion.
    """

    def __init__(
        self,
        model: keras.Model,
        graph: ChannelGraph,
        data=None,
        seed: int | None = 0,
        reduction: str = "mean",
        **options,
    ):
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"reduction must be one of {REDUCTIONS}; got {reduction!r}"
            )
        self.model = model
        self.graph = graph
        self.data = data
        self.rng = np.random.default_rng(seed)
        self.reduction = reduction
        self.options = options
        self._weights: dict[int, dict] = {}
        self._filters: dict[int, np.ndarray | None] = {}

    def weights(self, layer) -> dict[str, np.ndarray]:
        """The layer's weights as NumPy arrays, by key (see `weight_keys`; cached)."""
        key = id(layer)
        if key not in self._weights:
            variables = getattr(layer, "weights", [])
            self._weights[key] = {
                k: np.asarray(keras.ops.convert_to_numpy(v))
                for k, v in zip(weight_keys(layer), variables)
            }
        return self._weights[key]

    def filters(self, layer) -> np.ndarray | None:
        """`(out_channels, fan_in)` filter matrix of a layer, or None (cached)."""
        key = id(layer)
        if key not in self._filters:
            self._filters[key] = get_handler(layer).filters(layer, self.weights(layer))
        return self._filters[key]

    def reduce(self, per_member: list[np.ndarray], size: int) -> np.ndarray:
        """Combine the scores that each coupled member gives the group's units."""
        if not per_member:
            return np.ones(size)
        stacked = np.stack(per_member)
        if self.reduction == "sum":
            return stacked.sum(0)
        if self.reduction == "max":
            return stacked.max(0)
        return stacked.mean(0)

    def filter_scores(self, group: Group, fn: Callable) -> np.ndarray:
        """Apply `fn(filters) -> per-filter score` to every producer and reduce.

        A unit spanning several filters of one layer (grouped or depthwise
        convolutions) gets the sum of their scores.
        """
        parts = []
        for member in group.producers():
            f = self.filters(member.layer)
            if f is not None:
                parts.append(fn(f)[member.index].sum(axis=1))
        return self.reduce(parts, group.size)


@register_criterion("l1", description="sum of |w| of each filter (Li et al. 2017)")
def l1_norm(group: Group, context: ScoringContext) -> np.ndarray:
    return context.filter_scores(group, lambda f: np.abs(f).sum(axis=1))


@register_criterion("l2", description="Euclidean norm of each filter")
def l2_norm(group: Group, context: ScoringContext) -> np.ndarray:
    return context.filter_scores(group, lambda f: np.sqrt(np.square(f).sum(axis=1)))


@register_criterion("random", description="uniform random scores (a baseline)")
def random_scores(group: Group, context: ScoringContext) -> np.ndarray:
    return context.rng.random(group.size)
