"""Layers kprune has no rule for, seen through when running them proves it safe.

A `Lambda` runs Python code, and an unknown layer or `keras.ops` operation has
no handler. If such a call holds no weights (or only scalar ones, a learned
gain), takes one tensor and gives one of the same rank and channel count,
kprune *probes* it: on random inputs, running a
rebuilt copy on a random subset `K` of the channels must give the original
output's channels `K`. That is exactly what surgery needs (the smaller model
runs the copy on the kept channels), so it covers element-wise functions,
spatial ops such as strided slices on H and W, and rejects anything that mixes
channels or holds a per-channel constant. Calls that fail are frozen, with the
reason the probe gave.

The probe also records what the call makes of a zero channel (`sigmoid(0)` is
0.5), which surgery folds into the next layer's bias.
"""

from __future__ import annotations

import weakref

import numpy as np

from kprune import keras_graph
from kprune.handlers.base import LayerHandler, Masks

#: Probe inputs drawn per call, with one channel subset each.
PROBES = 3
#: Relative tolerance of the comparison, against the output's largest value.
RTOL = 1e-5
#: Spatial size used for a dimension the model leaves unknown (None).
UNKNOWN_DIM = 6

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class ProbeResult:
    """What probing one call found.

    Attributes:
        reason: why the call cannot be seen through, or None if it can.
        at_zero: per output channel, the value a zero input channel becomes
            at most positions (the median over positions; None when the probe
            failed).
    """

    def __init__(self, reason: str | None, at_zero: np.ndarray | None = None):
        self.reason = reason
        self.at_zero = at_zero


class ProbedHandler(LayerHandler):
    """Handler of `Lambda` and of every layer or op without a registered handler.

    A call that cannot be probed (it holds weights, has several inputs or
    outputs, changes the channel count) or that fails the probe is frozen, as
    `LayerHandler` freezes any layer it cannot see through.
    """

    stateless = True

    def trace(self, call, output_shapes, tracer):
        result = probe(call, output_shapes, self)
        if result.reason is not None:
            return tracer.opaque(call.inputs, output_shapes, result.reason)
        tracer.note(
            call.input.ids,
            f"{type(call.layer).__name__} '{call.name}' was proven channel-wise by "
            f"probing ({PROBES} random inputs, each on a random subset of channels, "
            f"rtol {RTOL:g})",
        )
        return [call.input.ids]

    def clone(self, layer, config):
        if keras_graph.is_lambda(layer):
            return keras_graph.copy_lambda(layer, config.get("output_shape"))
        return layer.__class__.from_config(config)

    def new_config(self, layer, config, masks):
        shape = config.get("output_shape") if keras_graph.is_lambda(layer) else None
        if isinstance(shape, (list, tuple)) and shape and masks.output is not None:
            shape = list(shape)
            shape[-1] = int(masks.output.sum())
            return {**config, "output_shape": tuple(shape)}
        return config

    def shifts_zero(self, call):
        at_zero = probe(call, [o.shape for o in call.outputs], self).at_zero
        return at_zero is not None and bool(np.any(at_zero != 0))


def probe(call, output_shapes, handler) -> ProbeResult:
    """Probe a call once; later graphs of the same layer reuse the result."""
    layer = call.layer
    key = (tuple(call.input.shape) if call.inputs else (), len(call.inputs))
    try:
        per_layer = _CACHE.setdefault(layer, {})
    except TypeError:  # not weak-referenceable
        per_layer = {}
    if key not in per_layer:
        per_layer[key] = _probe(call, output_shapes, handler)
    return per_layer[key]


def _probe(call, output_shapes, handler) -> ProbeResult:
    kind = f"{type(call.layer).__name__} '{call.name}'"
    unknown = (
        f"{kind} is opaque to kprune: no handler is registered for it (see "
        "kprune.register_handler)"
    )
    weights = getattr(call.layer, "weights", None) or []
    if any(len(w.shape) for w in weights):
        return ProbeResult(f"{unknown}, and it holds weights")
    if len(call.inputs) != 1 or len(output_shapes) != 1 or call.site is None:
        return ProbeResult(f"{unknown}, and it takes or gives several tensors")
    in_shape, out_shape = call.input.shape, output_shapes[0]
    channels = call.input.channels
    if channels is None or len(in_shape) != len(out_shape):
        return ProbeResult(f"{unknown}, and it changes the tensor's rank")
    if out_shape[-1] != channels:
        return ProbeResult(
            f"{kind} changes the channel count ({channels} -> {out_shape[-1]}), so "
            "kprune cannot see through it (register a handler for it)"
        )
    if channels < 2:
        return ProbeResult(f"{unknown}, and its tensor has one channel")
    try:
        return _run_probes(call, handler, in_shape, channels)
    except Exception as error:  # noqa: BLE001 - any failure means "not provable"
        return ProbeResult(
            f"{kind} could not be proven channel-wise: running it on a subset of "
            f"its channels raised {type(error).__name__}"
        )


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    """Equal shapes, the same non-finite entries, finite ones within RTOL."""
    if got.shape != want.shape:
        return False
    finite = np.isfinite(want)
    if not np.array_equal(finite, np.isfinite(got)):
        return False
    if not np.array_equal(got[~finite], want[~finite], equal_nan=True):
        return False
    if not finite.any():
        return True
    scale = max(float(np.abs(want[finite]).max()), 1.0)
    return bool(np.allclose(got[finite], want[finite], rtol=0, atol=RTOL * scale))


def _run_probes(call, handler, in_shape, channels) -> ProbeResult:
    kind = f"{type(call.layer).__name__} '{call.name}'"
    rng = np.random.default_rng(0)
    shape = (2,) + tuple(UNKNOWN_DIM if d is None else d for d in in_shape[1:])
    dtype = getattr(call.input, "dtype", None) or "float32"
    config = handler.config(call.layer)
    for k in range(PROBES):
        keep = np.ones(channels, dtype=bool)
        if k == 0:
            keep[0] = False
        elif k == 1:
            keep[-1] = False
        else:
            keep[rng.permutation(channels)[: channels // 2]] = False
        masks = Masks([keep], [keep], [in_shape], [in_shape])
        clone = handler.clone(call.layer, handler.new_config(call.layer, config, masks))
        x = rng.standard_normal(shape).astype(dtype)
        (full,) = call.site.run([x])
        (part,) = call.site.run([x[..., keep]], operation=clone)
        if getattr(call.layer, "weights", None):
            # Scalar weights only (a learned gain): surgery copies them as they are.
            clone.set_weights(call.layer.get_weights())
            (part,) = call.site.run([x[..., keep]], operation=clone)
        if not _same(part, full[..., keep]):
            return ProbeResult(
                f"{kind} is not channel-wise: on random inputs, removing some "
                "channels changed the others (kprune probed it)"
            )
    (at_zero,) = call.site.run([np.zeros(shape, dtype=dtype)])
    flat = at_zero.reshape(-1, channels).astype(np.float64)
    # Padding with -inf before a max pool (as ResNetV2 does) is channel-wise;
    # what matters is the value most positions take.
    flat[~np.isfinite(flat)] = np.nan
    if np.isnan(flat).all(axis=0).any():
        return ProbeResult(f"{kind} maps a zero channel to a non-finite value")
    return ProbeResult(None, np.nanmedian(flat, axis=0))
