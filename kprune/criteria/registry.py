"""The criteria registry and the context criteria read from.

Every criterion is a function `fn(group, context) -> np.ndarray` of shape
`(group.size,)`, registered by name; low scores are pruned first. `context` (a
`ScoringContext`) gives cached access to weights, filters and data, a random
generator, and reduces per-member scores over the coupled layers of a group.

A registered criterion declares the options it reads from `context.options`, so
`plan()` can reject a misspelt or ignored option instead of dropping it. A bare
callable passed as `criterion=` accepts any option: kprune cannot see what it
reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import keras
import numpy as np

from kprune.data import batches as data_batches
from kprune.dependency import ChannelGraph, Group
from kprune.handlers import get_handler
from kprune.handlers.base import weight_keys

REDUCTIONS = ("mean", "sum", "max")
#: The option of the criteria that score a group by combining what each of
#: its coupled layers says (`ScoringContext.reduce`): `reduction=`.
COMBINING = ("reduction",)
#: Options `ScoringContext.batches` reads; every `needs_data` criterion takes them.
DATA_OPTIONS = ("batches", "batch_size")


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
        options: the `plan()` keywords it reads from `context.options`, or
            None if it accepts any (a bare callable).
    """

    name: str
    fn: Callable
    kind: str = "saliency"
    needs_data: bool = False
    description: str = ""
    options: frozenset[str] | None = frozenset()

    def accepts(self, option: str) -> bool:
        """True if the criterion reads `option` (always, for an open one)."""
        return self.options is None or option in self.options


_CRITERIA: dict[str, Criterion] = {}


def register_criterion(
    name: str,
    fn: Callable | None = None,
    *,
    kind: str = "saliency",
    needs_data: bool = False,
    options: Iterable[str] | None = (),
    description: str = "",
    override: bool = False,
):
    """Register a scoring rule under `name`; usable as a decorator.

    Args:
        name: the name to pass as `criterion=`.
        fn: `fn(group, context) -> np.ndarray` of shape `(group.size,)`.
        kind: `"saliency"` or `"similarity"`.
        needs_data: the criterion reads `context.data`. It then also accepts
            `batches=` and `batch_size=`, which `context.batches()` reads.
        options: names of the extra `plan()` keywords the criterion reads from
            `context.options`, e.g. `("alpha",)`. `plan()` raises `TypeError`
            on any other one, so a misspelt option is not dropped silently.
            None accepts any option unchecked.
        description: one line for `available_criteria()`.
        override: replace an existing criterion of the same name.

    Raises:
        ValueError: on a duplicate name without `override=True`, or a bad `kind`.
        TypeError: if `options` is not a collection of names.
    """
    if kind not in ("saliency", "similarity"):
        raise ValueError(f"kind must be 'saliency' or 'similarity'; got {kind!r}")
    declared = _declared_options(options, needs_data)

    def register(f):
        if not callable(f):
            raise TypeError(f"criterion {name!r} must be callable; got {f!r}")
        if name in _CRITERIA and not override:
            raise ValueError(
                f"criterion {name!r} is registered already; pass override=True "
                "to replace it"
            )
        _CRITERIA[name] = Criterion(
            name,
            f,
            kind=kind,
            needs_data=needs_data,
            description=description,
            options=declared,
        )
        return f

    return register if fn is None else register(fn)


def _declared_options(options, needs_data: bool) -> frozenset[str] | None:
    if options is None:
        return None
    names = None if isinstance(options, str) else _names(options)
    if names is None:
        raise TypeError(
            "options must be a tuple of option names, e.g. options=('alpha',), or "
            f"None to accept any. Received: options={options!r}"
        )
    return frozenset(names) | frozenset(DATA_OPTIONS if needs_data else ())


def _names(options) -> tuple[str, ...] | None:
    try:
        names = tuple(options)
    except TypeError:
        return None
    return names if all(isinstance(n, str) for n in names) else None


def unregister_criterion(name: str) -> None:
    """Remove a registered criterion (no error if it is not there)."""
    _CRITERIA.pop(name, None)


def get_criterion(criterion: str | Callable | Criterion) -> Criterion:
    """Look up a criterion by name (callables are wrapped as ad-hoc criteria).

    A bare callable becomes a criterion that accepts any option; register it
    with `options=` to have its options checked.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if isinstance(criterion, Criterion):
        return criterion
    if callable(criterion):
        name = getattr(criterion, "__name__", "custom")
        return Criterion(name, criterion, options=None)
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


def registered_options() -> dict[str, tuple[str, ...]]:
    """Option name -> names of the registered criteria that read it."""
    readers: dict[str, list[str]] = {}
    for name, crit in sorted(_CRITERIA.items()):
        for option in crit.options or ():
            readers.setdefault(option, []).append(name)
    return {option: tuple(names) for option, names in sorted(readers.items())}


class ScoringContext:
    """What a criterion may read while it scores groups.

    Attributes:
        model: the model being pruned (never modified).
        graph: its `ChannelGraph`.
        data: optional data for data-driven criteria.
        rng: a `numpy.random.Generator` seeded by the `seed=` option (0 by
            default; read by `"random"`).
        reduction: how per-member scores of coupled layers combine:
            `"mean"` (default), `"sum"` or `"max"`; the `reduction=` option of
            the criteria that combine them (`COMBINING`).
        options: extra keyword arguments given to `plan()` for the criterion;
            only those the criterion declares (see `register_criterion`).
    """

    def __init__(self, model: keras.Model, graph: ChannelGraph, data=None, **options):
        reduction = options.get("reduction", "mean")
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"reduction must be one of {REDUCTIONS}; got {reduction!r}"
            )
        self.model = model
        self.graph = graph
        self.data = data
        self.rng = np.random.default_rng(options.get("seed", 0))
        self.reduction = reduction
        self.options = options
        self.notes: list[str] = []
        #: group name -> [(removed unit, unit it folds into, factor), ...]
        self.compensation: dict[str, list[tuple[int, int, float]]] = {}
        self._weights: dict[int, dict] = {}
        self._filters: dict[int, np.ndarray | None] = {}
        self.cache: dict[str, object] = {}

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

    def note(self, group: Group, text: str) -> None:
        """Record something the plan should tell the user about a group."""
        self.notes.append(f"{group.name}: {text}")

    def batches(self, name: str = "data"):
        """The data as `(x, y)` NumPy batches, within the batch budget.

        Options (passed to `plan`): `batches` (default 8) and `batch_size`
        (default 32).
        """
        return data_batches(
            self.data,
            batch_size=int(self.options.get("batch_size", 32)),
            max_batches=int(self.options.get("batches", 8)),
            name=name,
        )

    def effective_filters(self, member) -> np.ndarray | None:
        """A producer's filters with its bias as one more column, as the channel
        is seen downstream: times its importance multiplier, and with the
        BatchNormalization that directly follows it folded in."""
        layer = member.layer
        filters = self.filters(layer)
        if filters is None:
            return None
        weights = self.weights(layer)
        bias = weights.get("bias", np.zeros(filters.shape[0]))
        if bias.shape != (filters.shape[0],):
            bias = np.zeros(filters.shape[0])
        scale = np.ones(filters.shape[0])
        shift = np.zeros(filters.shape[0])
        multipliers = get_handler(layer).multipliers(layer)
        if multipliers is not None:
            scale = scale * multipliers
        norm = self.graph.norm_after(self.graph.calls_of(layer)[0])
        if norm is not None:
            handler = get_handler(norm.layer)
            bn = handler.inner(norm.layer)
            inv, shift = get_handler(bn).affine(bn, self.weights(bn))
            scale = scale * inv
            extra = handler.multipliers(norm.layer)
            if extra is not None:
                scale, shift = scale * extra, shift * extra
        return np.concatenate(
            [filters * scale[:, None], (bias * scale + shift)[:, None]], axis=1
        )

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
