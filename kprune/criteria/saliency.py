"""Saliency criteria: how much each filter matters.

* `l1`, `l2`: filter norms (Li et al. 2017, "Pruning Filters for Efficient ConvNets").
* `bn_scale`: |gamma| of the BatchNorm after the filter (Liu et al. 2017, Network
  Slimming).
* `taylor`: (sum of gradient * weight over the filter)^2, averaged over batches
  (Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning").
* `apoz`: 1 - the average percentage of zeros of the filter's ReLU output
  (Hu et al. 2016, "Network Trimming").
* `importance`: |importance * mask| of kprune's trainable multipliers.
* `importance_l1`: the same times the filter's L1 norm.
* `random`: a baseline.
"""

from __future__ import annotations

import keras
import numpy as np

from kprune import keras_graph
from kprune.criteria.registry import COMBINING, ScoringContext, register_criterion
from kprune.dependency import Group
from kprune.handlers import get_handler
from kprune.handlers.base import weight_keys


def _l2_fallback(group: Group, context: ScoringContext, why: str) -> np.ndarray:
    context.note(group, f"{why}; scored by filter l2 norm instead")
    return l2_norm(group, context)


@register_criterion(
    "l1", options=COMBINING, description="sum of |w| of each filter (Li et al. 2017)"
)
def l1_norm(group: Group, context: ScoringContext) -> np.ndarray:
    return context.filter_scores(group, lambda f: np.abs(f).sum(axis=1))


@register_criterion(
    "l2", options=COMBINING, description="Euclidean norm of each filter"
)
def l2_norm(group: Group, context: ScoringContext) -> np.ndarray:
    return context.filter_scores(group, lambda f: np.sqrt(np.square(f).sum(axis=1)))


@register_criterion(
    "random", options=("seed",), description="uniform random scores (a baseline)"
)
def random_scores(group: Group, context: ScoringContext) -> np.ndarray:
    return context.rng.random(group.size)


@register_criterion(
    "bn_scale",
    options=COMBINING,
    description="|gamma| of the BatchNorm on each channel (Liu et al. 2017)",
)
def bn_scale(group: Group, context: ScoringContext) -> np.ndarray:
    parts = []
    for member in group.members:
        if member.role != "through":
            continue
        handler = get_handler(member.layer)
        bn = handler.inner(member.layer)
        gain = get_handler(bn).gain(bn, context.weights(bn))
        if gain is None:
            continue
        gain = np.abs(gain)
        multipliers = handler.multipliers(member.layer)
        if multipliers is not None:
            gain = gain * np.abs(multipliers)
        parts.append(gain[member.index].sum(axis=1))
    if not parts:
        return _l2_fallback(group, context, "no BatchNormalization")
    return context.reduce(parts, group.size)


@register_criterion(
    "importance",
    options=COMBINING,
    description="|importance * mask| of kprune.wrap's multipliers",
)
def importance(group: Group, context: ScoringContext) -> np.ndarray:
    parts = _multipliers(group, context, "importance")
    if not parts:
        return _l2_fallback(group, context, "no importance multipliers")
    return context.reduce(parts, group.size)


@register_criterion(
    "importance_l1",
    options=COMBINING,
    description="|multiplier| x filter L1: the filter as the multiplier scales it",
)
def importance_l1(group: Group, context: ScoringContext) -> np.ndarray:
    """The L1 norm of each filter times its multiplier (the channel's
    multipliers averaged as `importance` does), wherever the multiplier sits:
    on the convolution, or on the BatchNorm after it."""
    parts = _multipliers(group, context, "importance_l1")
    if not parts:
        context.note(group, "no importance multipliers; scored by filter l1 alone")
        return l1_norm(group, context)
    return context.reduce(parts, group.size) * l1_norm(group, context)


def _multipliers(group: Group, context: ScoringContext, criterion: str) -> list:
    """|multiplier| of the group's units, per member that has them; raises
    when the model has no multipliers at all (it is not wrapped)."""
    parts = []
    for member in group.members:
        multipliers = get_handler(member.layer).multipliers(member.layer)
        if multipliers is not None and member.role in ("out", "through"):
            parts.append(np.abs(multipliers)[member.index].sum(axis=1))
    if not parts and not context.cache.setdefault("wrapped", _any_multipliers(context)):
        raise ValueError(
            f"criterion {criterion!r} reads the multipliers of a wrapped model: "
            "call kprune.wrap(model), train it, then plan"
        )
    return parts


def _any_multipliers(context) -> bool:
    return any(
        get_handler(c.layer).multipliers(c.layer) is not None
        for c in context.graph.calls
    )


@register_criterion(
    "taylor",
    needs_data=True,
    options=("loss", *COMBINING),
    description="(sum grad * weight per filter)^2 over a few batches "
    "(Molchanov et al. 2019)",
)
def taylor(group: Group, context: ScoringContext) -> np.ndarray:
    per_filter = context.cache.get("taylor")
    if per_filter is None:
        per_filter = context.cache["taylor"] = _taylor_per_filter(context)
    parts = [
        per_filter[id(m.layer)][m.index].sum(axis=1)
        for m in group.producers()
        if id(m.layer) in per_filter
    ]
    return context.reduce(parts, group.size)


def _taylor_per_filter(context: ScoringContext) -> dict[int, np.ndarray]:
    import tensorflow as tf

    model = context.model
    loss_fn = _loss_function(context)
    layers = {}
    for group in context.graph.prunable:
        for member in group.producers():
            if getattr(member.layer, "trainable_weights", None):
                layers[id(member.layer)] = member.layer
    layers = list(layers.values())
    variables = [v for layer in layers for v in layer.trainable_weights]
    totals = {id(layer): 0.0 for layer in layers}
    count = 0
    for x, y in context.batches("data"):
        if y is None:
            raise ValueError(
                "criterion 'taylor' needs labels: pass data=(x, y) or a dataset "
                "yielding (x, y)"
            )
        with tf.GradientTape() as tape:
            y_pred = model(x, training=False)
            loss = loss_fn(y, y_pred)
        grads = dict(zip([id(v) for v in variables], tape.gradient(loss, variables)))
        for layer in layers:
            products = {}
            for key, v in zip(weight_keys(layer), layer.weights):
                g = grads.get(id(v))
                value = np.asarray(keras.ops.convert_to_numpy(v))
                products[key] = (
                    np.zeros_like(value) if g is None else np.asarray(g) * value
                )
            filters = get_handler(layer).filters(layer, products)
            totals[id(layer)] = totals[id(layer)] + np.square(filters.sum(axis=1))
        count += 1
    return {key: value / max(count, 1) for key, value in totals.items()}


def _loss_function(context: ScoringContext):
    loss = context.options.get("loss")
    model = context.model
    if loss is None and getattr(model, "compiled", False) and model.loss is not None:
        loss = model.loss
    if loss is None:
        raise ValueError(
            "criterion 'taylor' needs a loss: compile the model, or pass loss= "
            "(e.g. loss='sparse_categorical_crossentropy') to kprune.plan"
        )
    fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    return lambda y, y_pred: keras.ops.mean(fn(y, y_pred))


def _is_relu(layer) -> bool:
    return get_handler(layer).rectifies(layer)


@register_criterion(
    "apoz",
    needs_data=True,
    options=COMBINING,
    description="1 - average percentage of zeros after the ReLU (Hu et al. 2016)",
)
def apoz(group: Group, context: ScoringContext) -> np.ndarray:
    taps = []
    for member in group.members:
        if member.role in ("out", "through") and _is_relu(member.layer):
            taps.append((context.graph.calls_of(member.layer)[0].index, member.index))
    if not taps:
        return _l2_fallback(group, context, "no ReLU to count zeros after")
    zeros = context.cache.get("apoz")
    if zeros is None:
        zeros = context.cache["apoz"] = _zero_fractions(context)
    parts = [1.0 - zeros[call][index].mean(axis=1) for call, index in taps]
    return context.reduce(parts, group.size)


def _zero_fractions(context: ScoringContext) -> dict[int, np.ndarray]:
    """Share of zeros per channel of every ReLU-like call's output."""
    wanted = {c.index for c in context.graph.calls if _is_relu(c.layer)}
    zeros: dict[int, np.ndarray] = {}
    seen: dict[int, int] = {}

    def on_output(index, outputs):
        if index not in wanted:
            return
        value = np.asarray(outputs[0])
        flat = value.reshape(-1, value.shape[-1])
        zeros[index] = zeros.get(index, 0) + (flat == 0).sum(axis=0)
        seen[index] = seen.get(index, 0) + flat.shape[0]

    for x, _ in context.batches("data"):
        xs = x if isinstance(x, list) else [x]
        keras_graph.replay(context.model, xs, on_output)
    return {i: zeros[i] / seen[i] for i in zeros}
