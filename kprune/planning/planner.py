"""Turning scores into a `PruningPlan`: which units each group keeps."""

from __future__ import annotations

from typing import Mapping

import keras
import numpy as np

from kprune.checks import (
    check_one_target,
    check_settings,
    check_table,
    take_deprecated,
)
from kprune.criteria import ScoringContext, get_criterion
from kprune.dependency import ChannelGraph, Group
from kprune.dependency import graph as build_graph
from kprune.handlers import get_handler
from kprune.planning.choosing import Chooser, search_flops, search_latency
from kprune.planning.options import check_options
from kprune.planning.plans import GroupPlan, PruningPlan
from kprune.planning.profiling import MacCounter

SCOPES = ("layer", "global")
NORMALIZE = ("mean", "max", "sum", None)


def plan(
    model: keras.Model | ChannelGraph,
    criterion="l1",
    ratio: float | None = None,
    *,
    flops: float | None = None,
    ratios: Mapping[str, float] | None = None,
    latency: float | None = None,
    table=None,
    scope: str = "layer",
    min_channels: int = 1,
    min_share: float = 0.0,
    round_to: int = 1,
    exclude: list[str] | tuple[str, ...] | None = None,
    data=None,
    normalize: str | None = "mean",
    input_shape=None,
    **criterion_options,
) -> PruningPlan:
    """Decide which filters to remove.

    Args:
        model: the Keras model (not modified), or its `ChannelGraph`
            (`kprune.graph(model)`), to reuse a graph already built.
        criterion: a registered criterion name (`"l1"`, `"l2"`, `"random"`, ...)
            or a callable `fn(group, context) -> scores`.
        ratio: share of the prunable channels to remove, in [0, 1).
        flops: share of the FLOPs to keep, in (0, 1]; instead of `ratio`.
        ratios: a share of channels to remove per group, `{group name: share}`
            (groups left out keep every channel); instead of `ratio` and
            `flops`. `kprune.sensitivity(...).suggest(tolerance)` returns one.
            Group names are those of `kprune.graph(model).explain()`.
        latency: the share of the dense model's measured latency to keep, in
            (0, 1), predicted by `table`; instead of the other targets. The
            dense model is the one the table was measured for, so a model
            pruned from it plans against the same milliseconds
            (`latency * table.dense_ms`). The channels are chosen by a greedy
            knapsack: the fewest score lost per millisecond saved
            (docs/latency.md).
        table: the `kprune.LatencyTable` measured for this model (or for the
            model it was pruned from), for `latency=`.
        scope: `"layer"` removes the same share from every group; `"global"`
            ranks all channels together (scores normalised per group).
        min_channels: every group keeps at least this many channels.
        min_share: every group keeps at least this share of its channels
            (rounded up), so that no layer is cut to a sliver: a floor against
            layer collapse at extreme compression, mostly with
            `scope="global"`. It is a share of the model being planned; in a
            multi-round loop (`Staged`, `prune_to_tolerance`) it applies per
            round, so use `min_channels` for an absolute floor there.
        round_to: kept channel counts are rounded up to a multiple of this
            (8 or 16 suit the fast paths of mobile kernels). A latency plan
            also moves each group by the channel step its kernels run in, as
            the table measured it (`table.steps`; `target["steps"]`).
        exclude: names of layers whose groups must not be pruned.
        data: data for data-driven criteria (`taylor`, `apoz`).
        normalize: with `scope="global"`, divide each group's scores by their
            `"mean"` (default), `"max"` or `"sum"` so groups compare fairly;
            None ranks raw scores.
        input_shape: `(H, W, C)` to count FLOPs at, for a model built with
            `None` spatial dimensions (needed with `flops=`; a ratio plan
            works without it).
        **criterion_options: passed to the criterion via `context.options`:
            only the options it declares (`reduction=`, how the scores of
            coupled layers combine, for the criteria that combine them;
            `seed=` for `"random"`; `batches=`, `batch_size=` and `loss=` for
            data-driven criteria; `distance=` and `compensate=` for
            `"similarity"`); a bare callable criterion takes any.

    Returns:
        A `PruningPlan` to pass to `kprune.shrink`.

    Raises:
        ValueError: on bad arguments, each message naming the fix.
        TypeError: on an option the criterion does not read (a misspelt
            keyword, or one that would be ignored).
    """
    model, latency = _moved(criterion_options, model, latency, table)
    crit = get_criterion(criterion)
    check_options(plan, criterion_options, [crit])
    _check_table(table, ratio, flops, ratios, latency)
    _check_target(ratio, flops, scope, min_channels, round_to, min_share)
    g = _graph_of(model, input_shape)
    _check_inputs(crit, normalize, data)
    groups = _prunable_groups(g, exclude)
    if ratios is not None:
        groups = _ratio_groups(g, groups, ratios, scope)
    context = ScoringContext(g.model, g, data=data, **criterion_options)
    scores = {grp.name: _checked_scores(crit, grp, context) for grp in groups}
    counter = MacCounter(g)
    if flops is not None and not counter.known:
        counter(np.ones(g.num_units, dtype=bool))  # raises: name input_shape=
    chooser = Chooser(
        groups, scores, scope, min_channels, round_to, normalize, min_share
    )
    timer = table.counter(g) if table is not None else None
    keep = _choose(g, chooser, counter, timer, ratio, flops, ratios, latency)
    target = {
        "ratio": ratio,
        "flops": flops,
        "ratios": None if ratios is None else dict(ratios),
        "latency": latency,
        "scope": scope,
        "min_channels": min_channels,
        "min_share": min_share,
        "round_to": round_to,
        "exclude": list(exclude or []),
    }
    return _result(g, groups, keep, crit, target, counter, context, timer)


def _graph_of(model, input_shape) -> ChannelGraph:
    """The channel graph of `model`, or `model` itself when it is one."""
    if not isinstance(model, ChannelGraph):
        return build_graph(model, input_shape)
    if input_shape is not None:
        raise ValueError(
            "give input_shape= or a ChannelGraph, not both: build the graph with "
            "kprune.graph(model, input_shape=...) instead"
        )
    return model


def _moved(options: dict, model, latency, table):
    """`(model, latency)` with the keywords of kprune 0.1 that moved (popped
    from `options`, deprecated): `graph=` and `latency_ms=`."""
    moved = take_deprecated(
        options,
        {
            "graph": "plan(graph, ...): pass the ChannelGraph as the model",
            "latency_ms": "latency=ms / table.dense_ms (a share of the table's "
            "dense latency)",
        },
        "kprune.plan",
    )
    if moved.get("graph") is not None:
        model = moved["graph"]
    if moved.get("latency_ms") is not None:
        latency = _latency_share(moved["latency_ms"], latency, table)
    return model, latency


def _latency_share(latency_ms, latency, table) -> float:
    """The deprecated `latency_ms=` as a share of the table's dense latency."""
    if latency is not None:
        raise ValueError(
            "give exactly one target: latency= (a share of the table's dense "
            f"latency), not latency_ms= too. Received: latency={latency}, "
            f"latency_ms={latency_ms}"
        )
    check_table(table, True)
    check_settings(latency_ms=latency_ms)
    return latency_ms / table.dense_ms


def _result(g, groups, keep, crit, target, counter, context, timer=None) -> PruningPlan:
    """The plan of the kept units `keep` (group name -> unit indices); with
    a latency `timer`, its prediction goes into the target."""
    decisions = {
        grp.name: GroupPlan(grp.name, grp.size, tuple(int(i) for i in keep[grp.name]))
        for grp in groups
    }
    result = PruningPlan(
        model=g.model.name,
        fingerprint=g.fingerprint(),
        groups=decisions,
        criterion=crit.name,
        target=target,
        macs_before=counter.base,
        notes=list(context.notes),
        compensation=_compensation(context.compensation, decisions),
    )
    _note_uncompensated(result, g, context)
    if counter.known:
        result.macs_after = counter(result.keep_units(g))
    if timer is not None:
        result.target["predicted_ms"] = timer(result.keep_units(g))
        result.target["dense_ms"] = timer.table.dense_ms
        result.target["steps"] = dict(timer.table.steps)
    return result


def _check_inputs(crit, normalize, data) -> None:
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}; got {normalize!r}")
    if crit.needs_data and data is None:
        raise ValueError(
            f"criterion {crit.name!r} runs the model on data: pass data= (a "
            "tf.data.Dataset, a NumPy array, or an (x, y) tuple)"
        )


def _note_uncompensated(result: PruningPlan, g: ChannelGraph, context) -> None:
    """Say which next layers cannot take a removed filter's weights."""
    for name in result.compensation:
        for member in g.group(name).members:
            if member.role != "in":
                continue
            handler = get_handler(member.layer)
            if (
                handler.merge_inputs(member.layer, context.weights(member.layer), [])
                is None
            ):
                result.notes.append(
                    f"{name}: {member.name} mixes no input channels, so nothing is "
                    "compensated there"
                )


def _compensation(proposed: dict, decisions: dict) -> dict:
    """Keep the folds of units the plan really removes, in removal order."""
    result = {}
    for name, triples in proposed.items():
        if name not in decisions:
            continue
        kept = set(decisions[name].keep)
        chosen = [t for t in triples if t[0] not in kept]
        if chosen:
            result[name] = chosen
    return result


def _choose(g, chooser, counter, timer, ratio, flops, ratios, latency):
    """The kept units of each group for whichever target was given."""
    if timer is not None:
        return search_latency(g, chooser, timer, latency * timer.table.dense_ms)
    if flops is not None:
        return search_flops(g, chooser, counter, flops)
    if ratios is not None:
        return chooser.keep(chooser.counts_each(ratios))
    return chooser.choose(ratio)


def _check_table(table, ratio, flops, ratios, latency) -> None:
    """One target is given; a latency target comes with its table."""
    check_one_target(ratio=ratio, flops=flops, ratios=ratios, latency=latency)
    check_settings(latency=latency)
    check_table(table, latency is not None)


def _check_target(ratio, flops, scope, min_channels, round_to, min_share=0.0):
    check_settings(ratio=ratio, flops=flops)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}; got {scope!r}")
    for name, value in (("min_channels", min_channels), ("round_to", round_to)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if (
        isinstance(min_share, bool)
        or not isinstance(min_share, (int, float))
        or not 0 <= min_share < 1
    ):
        raise ValueError(f"min_share must be a number in [0, 1); got {min_share!r}")


def _prunable_groups(g: ChannelGraph, exclude) -> list[Group]:
    if exclude is None:
        return g.prunable
    if isinstance(exclude, str):
        exclude = [exclude]
    names = g.layer_names()
    unknown = [n for n in exclude if n not in names]
    if unknown:
        raise ValueError(
            f"exclude names layers that are not in model '{g.model.name}': {unknown}. "
            "Use layer names as in model.summary() (outer/inner for nested models)."
        )
    skip = set(exclude)
    return [grp for grp in g.prunable if not any(m.name in skip for m in grp.members)]


def _ratio_groups(g: ChannelGraph, groups, ratios, scope) -> list[Group]:
    """The groups `ratios` names (checked): per-group shares to remove."""
    if not isinstance(ratios, Mapping):
        raise TypeError(
            "ratios must map group names to shares of channels to remove, e.g. "
            f"{{'conv1': 0.5}}; got {type(ratios).__name__}"
        )
    if scope != "layer":
        raise ValueError(
            "ratios= sets each group's share itself; it cannot be ranked "
            "globally: leave scope='layer'"
        )
    by_name = {grp.name: grp for grp in groups}
    unknown = [name for name in ratios if name not in by_name]
    if unknown:
        frozen = [name for name in unknown if name in {x.name for x in g.groups}]
        raise ValueError(
            f"ratios names groups that cannot be pruned here: {unknown}"
            + (f" ({frozen} are frozen or excluded)" if frozen else "")
            + f". Prunable groups: {sorted(by_name)}"
        )
    for name, share in ratios.items():
        try:
            check_settings(ratio=share)
        except ValueError as error:
            raise ValueError(f"ratios[{name!r}]: {error}") from None
    return [by_name[name] for name in ratios]


def _checked_scores(crit, group, context) -> np.ndarray:
    scores = np.asarray(crit.fn(group, context), dtype=np.float64).reshape(-1)
    if scores.shape != (group.size,):
        raise ValueError(
            f"criterion {crit.name!r} returned {scores.shape[0]} scores for group "
            f"'{group.name}' of size {group.size}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"criterion {crit.name!r} returned non-finite scores for group "
            f"'{group.name}'; check the model weights (NaN?) or the criterion"
        )
    return scores
