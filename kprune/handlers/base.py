"""What every layer handler answers, and the helpers handlers share.

A handler is the single place that knows, for one layer type:

1. **trace**: how channel ids flow from the inputs to the outputs (new channels,
   the same channels, coupled channels, or frozen ones);
2. **new_config**: how the layer's config changes when channels go;
3. **new_weights**: how its weights are sliced;
4. **zero_weights**: which of its weights to zero so that a removed output channel
   is exactly zero (the reference that surgery is checked against);
5. **filters** and **macs**: the per-filter weights that norm criteria score, and
   the multiply-accumulates of one call.

Handlers are stateless singletons; a layer's masks come in as `Masks`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import keras
import numpy as np


@dataclass
class Masks:
    """Boolean keep-masks over the channels of one call's inputs and outputs.

    An entry is None for a tensor without a channel axis. The shapes are those of
    the original (unpruned) call.
    """

    inputs: list
    outputs: list
    input_shapes: list = field(default_factory=list)
    output_shapes: list = field(default_factory=list)

    @property
    def input(self) -> np.ndarray | None:
        return self.inputs[0] if self.inputs else None

    @property
    def output(self) -> np.ndarray | None:
        return self.outputs[0] if self.outputs else None

    @property
    def changes(self) -> bool:
        """True if any channel of any input or output is removed."""
        return any(m is not None and not m.all() for m in self.inputs + self.outputs)


class LayerHandler:
    """Base handler: an opaque layer. Subclasses override what they support.

    The defaults freeze every channel the layer touches, keep its config and
    weights, and count no MACs, so an unknown layer can never make a wrong model.
    """

    #: True when the layer holds nothing per channel, so two calls of one shared
    #: instance need not be pruned alike (activations, pooling, merges).
    stateless = False
    #: True when the handler copes with constant array arguments (`x * c`):
    #: its `trace` checks them and `new_constant` slices them. Calls with such
    #: arguments are frozen otherwise.
    takes_constants = False
    #: True when `zero_weights` makes a removed output channel exactly zero
    #: whatever comes in (convolutions, BatchNorm), before any activation.
    zeroes_outputs = False
    #: Weight name -> axis of the output channel, for layers whose output
    #: channel `c` is linear in slice `c` of those weights (a kernel and its
    #: bias). `scale_outputs` and `zero_weights` use it.
    output_axes: dict = {}
    #: BatchNorm-like: a per-channel affine map whose batch statistics, in
    #: training, divide out any scale applied before it. The importance
    #: multiplier of the filters it follows sits after it (see `kprune.wrap`).
    normalizes = False
    #: The `kprune.layers` wrapper class (its name) that `kprune.wrap` gives
    #: this layer type, when `scale_outputs` is supported.
    wrapper = "ImportanceWrapper"
    #: How a latency table times this layer's calls alone: `"grid"`, at a grid
    #: of input x output channel counts (convolutions, Dense), or
    #: `"channelwise"`, at one channel count (depthwise convolutions, merges,
    #: pooling); None when it is not timed (an activation or a BatchNorm fuses
    #: into the layer before it; what else runs falls into the overhead).
    timing: str | None = None
    #: The side whose channels the runtime's kernels compute in tiles:
    #: `"out"` for a GEMM's filters, `"in"` for a depthwise convolution's
    #: channels; a latency table probes it for the channel step. None: not
    #: probed.
    tiles: str | None = None

    def timed(self, timing: str, tiles: str | None = None) -> "LayerHandler":
        """A copy of this handler whose layers a latency table times (see
        `timing`, `tiles`), for registering some classes of a family only."""
        if timing not in ("grid", "channelwise") or tiles not in (None, "in", "out"):
            raise ValueError(
                "timing must be 'grid' or 'channelwise' and tiles None, 'in' or "
                f"'out'; got {timing!r}, {tiles!r}"
            )
        found = copy.copy(self)
        found.timing, found.tiles = timing, tiles
        return found

    def trace(self, call, output_shapes, tracer):
        """Return one id array (or None) per output. Default: freeze everything."""
        reason = (
            f"{type(call.layer).__name__} '{call.name}' is opaque to kprune: "
            "no handler is registered for it (see kprune.register_handler)"
        )
        return tracer.opaque(call.inputs, output_shapes, reason)

    def config(self, layer) -> dict:
        """The layer's config, from which `clone` rebuilds it."""
        return layer.get_config()

    def new_config(self, layer, config: dict, masks: Masks) -> dict:
        """The config of the smaller layer."""
        return config

    def clone(self, layer, config: dict):
        """A new, unbuilt layer from `config` (override for layers that need it)."""
        return layer.__class__.from_config(config)

    def new_weights(self, layer, weights: dict, masks: Masks) -> dict:
        """Weights of the smaller layer, by variable name."""
        return weights

    def zero_weights(self, layer, weights: dict, masks: Masks) -> dict:
        """Weights with the removed output channels zeroed (same shapes).

        The default scales them by 0 with `scale_outputs`, when the layer can.
        """
        if masks.output is None or masks.output.all():
            return weights
        zeroed = self.scale_outputs(layer, weights, masks.output.astype("float32"))
        return weights if zeroed is None else zeroed

    def scale_outputs(self, layer, weights: dict, scale: np.ndarray) -> dict | None:
        """Weights whose output channel `c` comes out multiplied by `scale[c]`.

        Zeroing (`scale` 0 or 1) and folding importance multipliers into the
        layer (`kprune.unwrap`) both use it. Returns None for a layer that
        cannot scale its outputs through its weights. The default multiplies
        the slices named in `output_axes`.
        """
        if not self.output_axes:
            return None
        weights = dict(weights)
        for name, axis in self.output_axes.items():
            if name in weights:
                weights[name] = scale_axis(weights[name], scale, axis)
        return weights

    def can_scale(self, layer) -> bool:
        """True when `scale_outputs` works for this layer, which makes it
        wrappable by `kprune.wrap`."""
        overridden = type(self).scale_outputs is not LayerHandler.scale_outputs
        return overridden or bool(self.output_axes)

    def scalable_config(self, layer, config: dict) -> dict:
        """The config of a layer that can hold `scale_outputs`' weights (a
        BatchNorm built without `gamma` needs one)."""
        return config

    # ----------------------------------------------- what criteria may ask
    def inner(self, layer):
        """The layer that holds the weights and behaviour: `layer` itself, or,
        for a wrapper, the layer it wraps."""
        return layer

    def multipliers(self, layer) -> np.ndarray | None:
        """Per-channel multipliers the layer applies on top of its weights
        (kprune's importance wrappers), or None."""
        return None

    def mask(self, layer) -> np.ndarray | None:
        """The per-channel keep mask (1 kept, 0 removed) the layer applies to
        its outputs (kprune's importance wrappers), or None for a layer that
        has none."""
        return None

    def set_mask(self, layer, mask: np.ndarray) -> None:
        """Write the layer's per-channel keep mask (see `mask`)."""
        raise TypeError(f"{type(layer).__name__} '{layer.name}' holds no mask")

    def unwrapped(self, layer) -> tuple | None:
        """For a wrapper, `(plain layer, weights)`: the layer it stands for,
        made anew from its config, and a callable giving that layer's weights
        with the wrapper's multipliers and mask folded in. None for a layer
        that is no wrapper."""
        return None

    def affine(self, layer, weights: dict) -> tuple | None:
        """`(scale, shift)` per channel when the layer computes `x * scale +
        shift` at inference (a BatchNorm), else None."""
        return None

    def gain(self, layer, weights: dict) -> np.ndarray | None:
        """The learned per-channel gain (a BatchNorm's `gamma`), or None."""
        return None

    def rectifies(self, layer) -> bool:
        """True when the layer's output is `max(x, 0)` of something (a ReLU,
        or a layer with a ReLU activation); activation statistics use it."""
        fn = getattr(layer, "activation", None)
        return getattr(fn, "__name__", "") in ("relu", "relu6")

    def shifts_zero(self, call) -> bool:
        """True when a zero channel leaves this call as a non-zero constant.

        `sigmoid(0)` is 0.5 and `x + c` is `c`: a removed channel then reaches
        the next layer as a constant, which `shrink` folds into that layer's
        bias. The default checks the layer's `activation`, if it has one.
        """
        return activation_shifts_zero(call.layer)

    def constant_fold(self, layer) -> str | None:
        """Can a constant input channel be folded into this layer's bias?

        Returns None when it cannot; otherwise how exact the fold is (`"exact"`
        or a phrase such as `"exact away from the border"`).
        """
        return None

    def fold_constant_input(self, layer, weights: dict, values: np.ndarray) -> dict:
        """Weights with input channels that hold the constants `values` (one per
        input channel, 0 for the others) folded into the bias, which is added if
        missing. Only called when `constant_fold` is not None."""
        raise NotImplementedError

    def with_bias(self, layer, config: dict) -> dict:
        """`config` with a bias switched on, for `fold_constant_input` to fill."""
        return {**config, "use_bias": True}

    def new_constant(self, layer, value, masks: Masks):
        """A constant array argument of the call (`c` in `x * c`), sliced."""
        return value

    def merge_inputs(self, layer, weights: dict, merges: list) -> dict | None:
        """Fold input channels into others: for each `(src, dst, factor)` of index
        arrays, the weights reading `dst` gain `factor` times those reading `src`.

        Used by similarity compensation. Return None if the layer does not mix
        its input channels linearly (depthwise convolutions, say).
        """
        return None

    def filters(self, layer, weights: dict) -> np.ndarray | None:
        """`(out_channels, fan_in)` matrix of each output filter, or None.

        The default reads the first weight of `output_axes` (the kernel).
        """
        if not self.output_axes:
            return None
        name, axis = next(iter(self.output_axes.items()))
        kernel = np.moveaxis(weights[name], axis, 0)
        return kernel.reshape(kernel.shape[0], -1)

    def macs(self, layer, input_shapes: list, output_shapes: list) -> int:
        """Multiply-accumulates of one call per sample, for the given shapes."""
        return 0


class PassThroughHandler(LayerHandler):
    """Channel i out is channel i in; nothing is sliced (ReLU, pooling, dropout)."""

    stateless = True

    def trace(self, call, output_shapes, tracer):
        refused = refuse_channels_first(call, output_shapes, tracer)
        return refused or [call.input.ids for _ in output_shapes]


_SHIFTS: dict = {}


def activation_shifts_zero(layer) -> bool:
    """True if the layer's `activation` (if any) maps 0 to something else."""
    fn = getattr(layer, "activation", None)
    if not callable(fn):
        return False
    try:
        return _SHIFTS[fn]
    except (KeyError, TypeError):
        pass
    try:
        value = keras.ops.convert_to_numpy(fn(np.zeros((1, 2), "float32")))
        shifts = bool(np.any(value != 0))
    except Exception:  # noqa: BLE001 - an activation we cannot run: assume it does
        shifts = True
    try:
        _SHIFTS[fn] = shifts
    except TypeError:
        pass
    return shifts


def nonzero_at_zero(call) -> bool:
    """Run the call on all-zero inputs and say whether any output is non-zero."""
    shapes = [tuple(1 if d is None else d for d in i.shape) for i in call.inputs]
    try:
        outputs = call.site.run([np.zeros(s, "float32") for s in shapes])
    except Exception:  # noqa: BLE001 - cannot run it alone: assume it shifts
        return True
    return any(bool(np.any(np.asarray(y) != 0)) for y in outputs)


def channels_first_reason(call) -> str | None:
    """A reason to freeze a layer whose channel axis is not the last one."""
    data_format = getattr(call.layer, "data_format", None)
    if data_format == "channels_first":
        return (
            f"'{call.name}' uses data_format='channels_first'; kprune follows the "
            "last axis only (rebuild the model channels_last)"
        )
    return None


def refuse_channels_first(call, output_shapes, tracer) -> list | None:
    """The frozen outputs of a channels-first call, or None for channels-last."""
    reason = channels_first_reason(call)
    return tracer.opaque(call.inputs, output_shapes, reason) if reason else None


def weight_keys(layer) -> list[str]:
    """Keys for a layer's weights: the variable name, or `name:i` if repeated.

    Composite layers (a squeeze-excite block holding two convs) repeat names like
    `kernel`; the `i`-th occurrence in `layer.weights` order is `kernel:i`. The
    order is fixed by the layer's class and config, so keys match between a
    layer and its clone.
    """
    names = [v.name for v in getattr(layer, "weights", [])]
    repeated = {n for n in names if names.count(n) > 1}
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        if name in repeated:
            keys.append(f"{name}:{seen.get(name, 0)}")
            seen[name] = seen.get(name, 0) + 1
        else:
            keys.append(name)
    return keys


def keep(array: np.ndarray, mask: np.ndarray | None, axis: int) -> np.ndarray:
    """`array` with only the entries of `mask` kept along `axis`."""
    if mask is None or mask.all():
        return array
    return np.compress(mask, array, axis=axis)


def fold_rows(array: np.ndarray, merges: list, axis: int) -> np.ndarray:
    """`array` with `factor * array[src]` added to `array[dst]` along `axis`."""
    array = np.moveaxis(np.array(array, copy=True), axis, 0)
    for src, dst, factor in merges:
        array[dst] += factor * array[src]
    return np.moveaxis(array, 0, axis)


def zero(array: np.ndarray, mask: np.ndarray | None, axis: int) -> np.ndarray:
    """A copy of `array` with the entries outside `mask` set to 0 along `axis`."""
    if mask is None or mask.all():
        return array
    array = np.array(array, copy=True)
    index = [slice(None)] * array.ndim
    index[axis] = ~mask
    array[tuple(index)] = 0
    return array


def kept(mask: np.ndarray | None, default: int) -> int:
    """How many channels a mask keeps (`default` when there is no mask)."""
    return default if mask is None else int(mask.sum())


def spatial_size(shape) -> int:
    """Product of the dims between batch and channels (1 for a 2-D tensor)."""
    size = 1
    for dim in shape[1:-1]:
        size *= int(dim) if dim is not None else 0
    return size


def scale_axis(array: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """`array` with its entries along `axis` multiplied by `scale` (same dtype)."""
    shape = [1] * np.ndim(array)
    shape[axis] = -1
    array = np.asarray(array)
    return (array * np.reshape(scale, shape)).astype(array.dtype)
