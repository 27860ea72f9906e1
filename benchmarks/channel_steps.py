"""The channel steps of LiteRT's kernels: latency against channel count.

    python benchmarks/channel_steps.py                      # 3x3, 1x1, depthwise
    python benchmarks/channel_steps.py --size 32 --json out/steps.json

One layer alone (a 3x3 convolution, a 1x1 convolution, a 3x3 depthwise
convolution; `--size` x `--size` x `--in-channels` input) is exported to
TFLite at every channel count from `--step` to `--max` in steps of `--step`
(output channels for the convolutions, the channels of the depthwise one)
and timed in LiteRT (1 thread, `--runs` interleaved runs, medians). Next to
the curve: the step that kprune's probes (kprune/latency_costs.py) find for
the same layer from its few probe counts, which `LatencyTable.measure` uses.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from common import add_eager_flag, add_json_flag, parse_args, write_json  # noqa: E402

from kprune.exporters import benchmark_tflite  # noqa: E402
from kprune.latency.costs import detect, probe_counts  # noqa: E402
from kprune.latency.layerfiles import write_tflite  # noqa: E402
from kprune.results import format_table  # noqa: E402

LAYERS = {
    "conv3x3": lambda c: keras.layers.Conv2D(c, 3, padding="same"),
    "conv1x1": lambda c: keras.layers.Conv2D(c, 1),
    "depthwise3x3": lambda c: keras.layers.DepthwiseConv2D(3, padding="same"),
}


def single(kind: str, size: int, c_in: int, count: int) -> keras.Model:
    channels = count if kind.startswith("depthwise") else c_in
    inputs = keras.Input((size, size, channels))
    return keras.Model(inputs, LAYERS[kind](count)(inputs))


def timed(kind, counts, args) -> dict[int, float]:
    """Median milliseconds of the layer at every count, runs interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for count in counts:
            path = os.path.join(tmp, f"{kind}_{count}.tflite")
            write_tflite(single(kind, args.size, args.in_channels, count), path)
            paths.append(path)
        found = benchmark_tflite(paths, runs=args.runs, warmup=5, verbose=0)
    return {c: t.median_ms for c, t in zip(counts, found)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=LAYERS)
    parser.add_argument("--size", type=int, default=64, help="input height/width")
    parser.add_argument("--in-channels", type=int, default=64)
    parser.add_argument("--max", type=int, default=128, help="most channels")
    parser.add_argument("--step", type=int, default=8, help="channels between points")
    parser.add_argument("--runs", type=int, default=30)
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)
    counts = list(range(args.step, args.max + 1, args.step))
    rows = []
    for kind in args.layers:
        curve = timed(kind, counts, args)
        probes = timed(kind, probe_counts(args.max), args)
        rows.append({"layer": kind, "ms": curve, "probes": probes})
        rows[-1]["step"] = detect(probes)
        print(f"{kind}: the probes find a step of {rows[-1]['step']}", flush=True)
    write_json(args.json, rows)
    headers = ["channels"] + [f"{r['layer']} ms" for r in rows]
    table = [[c] + [f"{r['ms'][c]:.3f}" for r in rows] for c in counts]
    table.append(["probed step"] + [r["step"] for r in rows])
    title = f"LiteRT, 1 thread, {args.size}x{args.size} input, medians of {args.runs}"
    print(format_table(headers, table, title))


if __name__ == "__main__":
    main()
