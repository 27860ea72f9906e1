"""`wrap`: importance multipliers (and masks) into a model.

`wrap` gives every filter of every prunable group a trainable multiplier. The
multiplier sits on the layer that makes the filter, or, when a BatchNormalization
follows that layer, on the BatchNorm: batch statistics would divide out a scale
applied before them, so it would never learn (see docs/importance.md). Every
other BatchNorm the channels pass through carries a multiplier and a mask too, so
a masked channel is zero everywhere, as in the shrunk model.

Folding them back out (`kprune.unwrap`) and reading and writing the masks as
plans are surgery's jobs (`kprune.surgery.unwrapping`, `kprune.surgery.masks`).
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from kprune.dependency import ChannelGraph
from kprune.dependency import graph as build_graph
from kprune.handlers import get_handler
from kprune.handlers.base import weight_keys
from kprune.importance.layers import STATE_SIZE, wrapper_class
from kprune.surgery.cloning import copy_layer, rebuild
from kprune.surgery.masks import is_wrapped

INITS = ("ones", "uniform", "normal", "l1", "l2", "bn_gamma")


def wrap(
    model: keras.Model,
    init: str | float | Callable = "ones",
    regularizer: float | keras.regularizers.Regularizer | None = None,
    non_negative: bool = False,
    layers: list[str] | None = None,
    seed: int | None = 0,
) -> keras.Model:
    """A copy of `model` with a trainable importance multiplier on every filter.

    Args:
        model: a functional or Sequential model (not modified).
        init: how the multipliers start. `"ones"` (default) keeps the model's
            outputs; `"uniform"` draws from U(0.5, 1.5) and `"normal"` from
            N(1, 0.1); `"l1"` / `"l2"` use each filter's norm divided by the mean
            norm of its layer; `"bn_gamma"` uses |gamma| of the BatchNorm the
            multiplier sits on, divided by its mean (1 where there is none); a
            number sets them all; a callable `f(layer, channels) -> array` gets
            the layer that makes the filters. A BatchNorm that does not follow
            one filter-making layer directly (pre-activation nets) starts at 1
            under `"l1"`/`"l2"`, and the callable gets the BatchNorm.
        regularizer: L1 penalty weight on the multipliers (Network Slimming), or
            any Keras regularizer.
        non_negative: constrain the multipliers to be >= 0.
        layers: names of the layers whose filters get multipliers (default: every
            layer that makes channels of a prunable group).
        seed: seed for the random inits.

    Returns:
        The wrapped model. Train it, then `kprune.plan(wrapped,
        criterion="importance", ...)`, `kprune.shrink(wrapped, plan)`, or
        `kprune.unwrap(wrapped)`.

    Raises:
        ValueError: for an unknown `init`, an already wrapped model, a model with
            nothing to wrap, or `layers` that cannot carry multipliers (the
            message says why).
    """
    if is_wrapped(model):
        raise ValueError(
            f"model '{model.name}' is wrapped already; call kprune.unwrap(model) "
            "first to start again"
        )
    _check_init(init)
    g = build_graph(model)
    targets = _targets(g, layers)
    if not targets:
        raise ValueError(
            f"model '{model.name}' has no filters kprune can give multipliers to: "
            "no prunable channel group is made by a Conv or Dense layer. "
            "kprune.graph(model).explain() says why each group is frozen."
        )
    rng = np.random.default_rng(seed)
    regularizer = (
        keras.regularizers.L1(float(regularizer))
        if isinstance(regularizer, (int, float))
        else regularizer
    )

    def make_layer(layer):
        if id(layer) not in targets:
            return copy_layer(layer)
        producer = targets[id(layer)]
        inner = layer.__class__.from_config(layer.get_config())
        wrapper = wrapper_class(layer)(
            inner,
            importance_regularizer=regularizer,
            importance_constraint="non_neg" if non_negative else None,
        )
        old = layer.get_weights()

        def weights():
            channels = int(wrapper.importance.shape[0])
            values = _initial_importance(init, producer, layer, channels, rng)
            # A wrapper lists its own variables before the wrapped layer's.
            ones = np.ones(channels, "float32")
            state = np.zeros(STATE_SIZE, "float32")
            # importance, mask, pruning_state, previous_mask
            return [values.astype("float32"), ones, state, ones] + old

        return wrapper, weights

    return rebuild(model, make_layer)


def _check_init(init):
    if callable(init) or isinstance(init, (int, float)):
        return
    if init not in INITS:
        raise ValueError(
            f"init must be one of {INITS}, a number, or a callable "
            f"f(layer, channels); got {init!r}"
        )


def _targets(g: ChannelGraph, names) -> dict[int, object]:
    """`id(carrier layer) -> producer layer` for every multiplier to add.

    The producer is None for a BatchNorm that carries a multiplier without
    following a single filter-making layer directly.
    """
    producers = {}
    for group in g.prunable:
        for member in group.producers():
            if wrapper_class(member.layer) is not None:
                producers.setdefault(member.name, member.layer)
    if names is not None:
        missing = [n for n in names if n not in producers]
        if missing:
            known = g.layer_names()
            why = {
                n: "no such layer"
                if n not in known
                else "it makes no channels of a prunable group, or kprune has no "
                "wrapper for its type"
                for n in missing
            }
            raise ValueError(f"cannot wrap these layers: {why}")
        producers = {n: producers[n] for n in names}
    targets = {}
    for producer in producers.values():
        call = g.calls_of(producer)[0]
        norm = g.norm_after(call)
        carrier = norm.layer if norm is not None else producer
        targets[id(carrier)] = producer
    # A BatchNorm further along maps a masked (zero) channel to the constant
    # beta - gamma * mean / std, which the next layers would still see; the shrunk
    # model has no such channel. Each of them gets a multiplier and a mask too, so
    # masking a channel zeroes it everywhere (pre-activation nets: DenseNet,
    # ResNetV2; a BN after a BN).
    chosen = {id(layer) for layer in producers.values()}
    for group in g.prunable:
        if not any(id(m.layer) in chosen for m in group.producers()):
            continue
        for member in group.members:
            if (
                member.role == "through"
                and get_handler(member.layer).normalizes
                and id(member.layer) not in targets
            ):
                targets[id(member.layer)] = None
    return targets


def _initial_importance(init, producer, carrier, channels, rng) -> np.ndarray:
    if callable(init):
        values = np.asarray(init(producer or carrier, channels), dtype=np.float64)
    elif isinstance(init, (int, float)):
        values = np.full(channels, float(init))
    elif init == "ones":
        values = np.ones(channels)
    elif init == "uniform":
        values = rng.uniform(0.5, 1.5, channels)
    elif init == "normal":
        values = rng.normal(1.0, 0.1, channels)
    elif init == "bn_gamma":
        gamma = _gamma(carrier)
        values = np.ones(channels) if gamma is None else _per_layer(np.abs(gamma))
    elif producer is None:  # "l1" / "l2" on a BatchNorm with no filters of its own
        values = np.ones(channels)
    else:
        weights = dict(zip(weight_keys(producer), producer.get_weights()))
        filters = get_handler(producer).filters(producer, weights)
        order = 1 if init == "l1" else 2
        values = _per_layer(np.linalg.norm(filters, ord=order, axis=1))
    if values.shape != (channels,):
        raise ValueError(
            f"init for layer '{(producer or carrier).name}' gave shape "
            f"{values.shape}; expected ({channels},)"
        )
    return values


def _gamma(layer):
    weights = dict(zip(weight_keys(layer), layer.get_weights()))
    return get_handler(layer).gain(layer, weights)


def _per_layer(values: np.ndarray) -> np.ndarray:
    mean = float(np.mean(values))
    return values / mean if mean > 0 else np.ones_like(values)
