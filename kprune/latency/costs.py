"""What one layer costs at each width, and the channel-count steps at which
a runtime's kernels get faster.

`Cost` holds a layer signature's timings on its grid of channel counts.

LiteRT's kernels (XNNPACK on CPUs) compute the output channels of a
convolution in tiles of a fixed width: on a 2-core Xeon, a float 3x3
convolution at 64x64 takes as long with 40 output channels as with 64, and
drops only at 32. Removing channels within a tile buys nothing, and a grid of
25/50/75/100% of the channels cannot see that. So a latency table first times
a few probes per layer type: one of the model's layers at `A` channels (a
multiple of every candidate step), at `A/2`, and at `A - s + 1` for each
candidate step `s`. Within a tile (`s` at most the step) `A - s + 1` runs as
fast as `A`; one tile further down it is a whole tile faster. The largest `s`
that still runs as fast as `A` is the step. The table's grid is then laid on
multiples of the step and its costs round channel counts up to it, and the
latency planner removes channels a step at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kprune.handlers import get_handler

#: The steps a probe can find (1 when none of them fits).
CANDIDATES = (2, 4, 8, 16, 32)
#: `A - s + 1` runs "as fast as A" when it saves less than this share of what
#: `s - 1` channels save on average between `A/2` and `A`. One tile too far
#: saves about half of that, so the threshold sits well below.
SAME_TILE = 0.25


def check_steps(steps, allow_probe: bool = True):
    """`steps` as given, if it is True/False (to probe or not; only where
    `allow_probe`), None, or a dict of layer type -> positive int step."""
    if allow_probe and isinstance(steps, bool):
        return steps
    if steps is None or (
        isinstance(steps, dict)
        and all(
            isinstance(k, str)
            and isinstance(v, int)
            and not isinstance(v, bool)
            and v > 0
            for k, v in steps.items()
        )
    ):
        return steps
    allowed = "True (probe them), False, " if allow_probe else "None, "
    raise TypeError(
        f"steps must be {allowed}or a dict of layer type -> channel step, e.g. "
        f"{{'Conv2D': 32}} (a table's .steps); got {steps!r}"
    )


def probe_counts(channels: int) -> list[int]:
    """The channel counts a layer with `channels` is probed at: `A` (the
    largest multiple of 64, or else power of two, within `channels`), `A/2`
    and `A - s + 1` for every candidate `s` up to `A/2`. Empty when the layer
    is too narrow (under 8 channels) to show a step."""
    if channels < 8:
        return []
    top = channels // 64 * 64 if channels >= 64 else 1 << (channels.bit_length() - 1)
    return [top, top // 2] + [top - s + 1 for s in CANDIDATES if s <= top // 2]


def representatives(signatures: dict) -> dict[str, tuple]:
    """Per probed layer type, the signature to probe: the one with the most
    channels on its stepped side among those whose channels can change.

    `signatures` maps a signature to `(layer, shapes, out_channels, flags)` as
    `kprune.latency.layerfiles._signatures` gives them. Returns `kind -> (signature,
    layer, shapes, channels)`.
    """
    found: dict[str, tuple] = {}
    for signature, (layer, shapes, out_channels, flags) in signatures.items():
        kind = type(layer).__name__
        side = get_handler(layer).tiles  # "out" for a GEMM, "in" for depthwise
        if side is None or not flags[1 if side == "out" else 0]:
            continue
        channels = out_channels if side == "out" else shapes[0][-1]
        if kind not in found or channels > found[kind][3]:
            found[kind] = (signature, layer, shapes, channels)
    return found


def detect(timings: dict[int, float]) -> int:
    """The step from a probe's milliseconds by channel count (see the module
    doc); 1 when the times do not drop in tiles, or cannot show it (they do
    not grow from `A/2` to `A`)."""
    counts = sorted(timings)
    if len(counts) < 3:
        return 1
    top = counts[-1]
    half = top // 2
    per_channel = (timings[top] - timings[half]) / (top - half)
    if per_channel <= 0:
        return 1
    step = 1
    for s in CANDIDATES:
        count = top - s + 1
        if count not in timings:
            continue
        saved = timings[top] - timings[count]
        if saved < SAME_TILE * per_channel * (s - 1):
            step = s
    return step


def on_steps(counts: list[int], step: int, channels: int) -> list[int]:
    """Grid counts moved to the nearest multiple of `step` (at least one
    step; `channels` itself, the full width, stays)."""
    if step <= 1:
        return sorted(set(counts))
    return sorted(
        {
            channels
            if c >= channels
            else min(channels, max(step, round(c / step) * step))
            for c in counts
        }
    )


@dataclass
class Cost:
    """Milliseconds of one layer signature at a grid of channel counts.

    `ms[i][j]` is the time at `in_widths[i]` input and `out_widths[j]` output
    channels (for a channelwise layer `out_widths` is empty and `ms[i]` is a
    one-element list). Between grid points the time is interpolated linearly;
    outside, the nearest grid value is used. With a `step` above 1 the stepped
    side (the output channels, or a channelwise layer's channels) is first
    rounded up to a multiple of it: the kernel runs whole tiles.
    """

    in_widths: list[int]
    out_widths: list[int]
    ms: list[list[float]]
    step: int = 1

    def __post_init__(self):
        self._table = np.asarray(self.ms, dtype=float)  # not a field: not saved

    def at(self, c_in: int, c_out: int | None = None) -> float:
        """Milliseconds at `c_in` input (and `c_out` output) channels."""
        table = self._table
        if not self.out_widths:
            return float(np.interp(_up(c_in, self.step), self.in_widths, table[:, 0]))
        c_out = _up(c_out, self.step)
        rows = [np.interp(c_out, self.out_widths, row) for row in table]
        return float(np.interp(c_in, self.in_widths, rows))


def _up(count: int, step: int) -> int:
    return count if step <= 1 else math.ceil(count / step) * step


def costs(layers: list[dict], timings: dict, steps: dict) -> dict[str, Cost]:
    """Every signature's `Cost` from the manifest's layer entries, with the
    step of its layer type (`steps`, type -> step)."""
    found: dict[str, dict] = {}
    kinds: dict[str, str] = {}
    for entry in layers:
        point = (entry["c_in"], entry["c_out"])
        found.setdefault(entry["signature"], {})[point] = timings[entry["file"]]
        kinds[entry["signature"]] = entry.get("kind", "")
    result = {}
    for signature, points in found.items():
        ins = sorted({c_in for c_in, _ in points})
        outs = sorted({c_out for _, c_out in points if c_out is not None})
        if outs:
            ms = [[points[(i, o)] for o in outs] for i in ins]
        else:
            ms = [[points[(i, None)]] for i in ins]
        step = int(steps.get(kinds[signature], 1))
        result[signature] = Cost(ins, outs, ms, step)
    return result


def detected_steps(probes: list[dict], timings: dict) -> dict[str, int]:
    """Layer type -> step, from the probe entries of a manifest and their
    milliseconds by file name."""
    by_kind: dict[str, dict[int, float]] = {}
    for entry in probes:
        by_kind.setdefault(entry["kind"], {})[entry["count"]] = timings[entry["file"]]
    return {kind: detect(found) for kind, found in by_kind.items()}
