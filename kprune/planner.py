"""Turning scores into a `PruningPlan`: which units each group keeps."""

from __future__ import annotations

import difflib
import inspect
from typing import Callable, Iterable, Mapping

import keras
import numpy as np

from kprune.checks import check_one_target, check_settings, check_table
from kprune.choosing import Chooser, search_flops, search_latency
from kprune.criteria import ScoringContext, get_criterion, registered_options
from kprune.graph import ChannelGraph, Group
from kprune.graph import graph as build_graph
from kprune.handlers import get_handler
from kprune.plans import GroupPlan, PruningPlan
from kprune.profile import MacCounter

SCOPES = ("layer", "global")
NORMALIZE = ("mean", "max", "sum", None)


def plan(
    model: keras.Model,
    criterion="l1",
    ratio: float | None = None,
    *,
    flops: float | None = None,
    ratios: Mapping[str, float] | None = None,
    latency: float | None = None,
    latency_ms: float | None = None,
    table=None,
    scope: str = "layer",
    min_channels: int = 1,
    min_share: float = 0.0,
    round_to: int = 1,
    exclude: list[str] | tuple[str, ...] | None = None,
    data=None,
    seed: int | None = 0,
    reduction: str = "mean",
    normalize: str | None = "mean",
    graph: ChannelGraph | None = None,
    input_shape=None,
    **criterion_options,
) -> PruningPlan:
    """Decide which filters to remove.

    Args:
        model: the Keras model (not modified).
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
            channels are chosen by a greedy knapsack: the fewest score lost
            per millisecond saved (docs/latency.md).
        latency_ms: a budget in predicted milliseconds instead of `latency`.
        table: the `kprune.LatencyTable` measured for this model (or for the
            model it was pruned from), for `latency=`/`latency_ms=`.
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
        data: data for data-driven criteria.
        seed: seed for random criteria.
        reduction: how scores of coupled layers combine: mean, sum or max.
        normalize: with `scope="global"`, divide each group's scores by their
            `"mean"` (default), `"max"` or `"sum"` so groups compare fairly;
            None ranks raw scores.
        graph: the model's `ChannelGraph`, if already built.
        input_shape: `(H, W, C)` to count FLOPs at, for a model built with
            `None` spatial dimensions (needed with `flops=`; a ratio plan
            works without it).
        **criterion_options: passed to the criterion via `context.options`:
            only the options it declares (`batches=`, `batch_size=` and
            `loss=` for data-driven criteria, `distance=` and `compensate=`
            for `"similarity"`); a bare callable criterion takes any.

    Returns:
        A `PruningPlan` to pass to `kprune.shrink`.

    Raises:
        ValueError: on bad arguments, each message naming the fix.
        TypeError: on an option the criterion does not read (a misspelt
            keyword, or one that would be ignored).
    """
    crit = get_criterion(criterion)
    check_options(plan, criterion_options, [crit])
    _check_table(table, ratio, flops, ratios, latency, latency_ms)
    _check_target(ratio, flops, scope, min_channels, round_to, min_share)
    _check_inputs(crit, graph, input_shape, normalize, data)
    g = graph if graph is not None else build_graph(model, input_shape)
    groups = _prunable_groups(g, exclude)
    if ratios is not None:
        groups = _ratio_groups(g, groups, ratios, scope)
    context = ScoringContext(
        model, g, data=data, seed=seed, reduction=reduction, **criterion_options
    )
    scores = {grp.name: _checked_scores(crit, grp, context) for grp in groups}
    counter = MacCounter(g)
    if flops is not None and not counter.known:
        counter(np.ones(g.num_units, dtype=bool))  # raises: name input_shape=
    chooser = Chooser(
        groups, scores, scope, min_channels, round_to, normalize, min_share
    )
    timer = table.counter(g) if table is not None else None
    keep = _choose(
        g, chooser, counter, timer, ratio, flops, ratios, latency, latency_ms
    )
    target = {
        "ratio": ratio,
        "flops": flops,
        "ratios": None if ratios is None else dict(ratios),
        "latency": latency,
        "latency_ms": latency_ms,
        "scope": scope,
        "min_channels": min_channels,
        "min_share": min_share,
        "round_to": round_to,
        "exclude": list(exclude or []),
    }
    return _result(model, g, groups, keep, crit, target, counter, context, timer)


def _result(
    model, g, groups, keep, crit, target, counter, context, timer=None
) -> PruningPlan:
    """The plan of the kept units `keep` (group name -> unit indices); with
    a latency `timer`, its prediction goes into the target."""
    decisions = {
        grp.name: GroupPlan(grp.name, grp.size, tuple(int(i) for i in keep[grp.name]))
        for grp in groups
    }
    result = PruningPlan(
        model=model.name,
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


def _check_inputs(crit, graph, input_shape, normalize, data) -> None:
    if graph is not None and input_shape is not None:
        raise ValueError(
            "give input_shape= or graph=, not both: build the graph with "
            "kprune.graph(model, input_shape=...) instead"
        )
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}; got {normalize!r}")
    if crit.needs_data and data is None:
        raise ValueError(
            f"criterion {crit.name!r} runs the model on data: pass data= (a "
            "tf.data.Dataset, a NumPy array, or an (x, y) tuple)"
        )


def _keywords(fn: Callable) -> tuple[str, ...]:
    """Names `fn` (a function or class) takes by keyword, `**kwargs` aside."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(
        p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds
    )


#: The keywords of `plan()` itself; any other keyword is a criterion option.
PLAN_KEYWORDS = tuple(k for k in _keywords(plan) if k != "model")


def check_options(
    caller: Callable,
    options: Mapping,
    criteria: Iterable,
    *,
    sets: Iterable[str] = (),
) -> None:
    """Check the `**options` given to `caller` against what will read them.

    The one check behind every `**options` of the public API (`plan`, and
    through it `prune`; `Staged`, `prune_to_tolerance`, `PruningCallback`). An
    option passes if it is a `plan()` keyword or one of the `criteria` reads it
    (see `register_criterion(options=)`).

    Args:
        caller: the public function or class the options were given to; named
            in the message, and its own parameters are offered as suggestions.
        options: the keyword arguments to check.
        criteria: the criteria (names, callables or `Criterion`s) the options go
            to; an option one of them reads passes.
        sets: `plan()` keywords that `caller` sets itself, so not options.

    Raises:
        TypeError: for any other option, naming the closest valid one and
            listing the valid ones.
    """
    crits = [get_criterion(c) for c in criteria]
    sets = tuple(sets)
    accepted = [k for k in PLAN_KEYWORDS if k not in sets]
    for name in options:
        if name not in accepted and not any(c.accepts(name) for c in crits):
            raise TypeError(_unknown_option(caller, name, crits, accepted, sets))


def _unknown_option(caller, name: str, crits, accepted, sets) -> str:
    title = f"{caller.__name__}()"
    own = [k for k in _keywords(caller) if k not in (*accepted, "model")]
    declared = sorted({o for c in crits for o in c.options or ()})
    readers = registered_options()
    noun = "criterion" if len(crits) == 1 else "criteria"
    labels = ", ".join(repr(c.name) for c in crits)
    if name in sets:
        head = f"{title} got option {name!r}, which it sets itself."
    elif name in readers:
        head = (
            f"{title} got option {name!r}, which {noun} {labels} does not read, "
            f"so it would be ignored (criteria that read it: "
            f"{', '.join(readers[name])})."
        )
    else:
        head = f"{title} got an unknown option {name!r}."
        candidates = [*declared, *accepted, *own, *readers]
        match = difflib.get_close_matches(name, candidates, n=1)
        if match:
            guess = match[0]
            head += f" Did you mean {guess!r}"
            if guess in readers and guess not in declared:
                head += f" (an option of criterion {readers[guess][0]!r})"
            head += "?"
    listing = (
        f" Options of {noun} {labels}: {', '.join(declared) or 'none'}; "
        f"of plan(): {', '.join(accepted)}"
    )
    if own:
        listing += f"; of {title} itself: {', '.join(own)}"
    return head + listing + "."


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


def _choose(g, chooser, counter, timer, ratio, flops, ratios, latency, latency_ms):
    """The kept units of each group for whichever target was given."""
    if timer is not None:
        share = latency if latency is not None else latency_ms / timer.table.dense_ms
        return search_latency(g, chooser, timer, share * timer.table.dense_ms)
    if flops is not None:
        return search_flops(g, chooser, counter, flops)
    if ratios is not None:
        return chooser.keep(chooser.counts_each(ratios))
    return chooser.choose(ratio)


def _check_table(table, ratio, flops, ratios, latency, latency_ms) -> None:
    """One target is given; a latency target comes with its table."""
    check_one_target(
        ratio=ratio, flops=flops, ratios=ratios, latency=latency, latency_ms=latency_ms
    )
    check_settings(latency=latency, latency_ms=latency_ms)
    check_table(table, latency is not None or latency_ms is not None)


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
