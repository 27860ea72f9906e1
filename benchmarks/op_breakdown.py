"""Where LiteRT spends its time, by layer type, in a dense and a pruned model.

    python benchmarks/op_breakdown.py                         # MobileNetV2, 128x128
    python benchmarks/op_breakdown.py --model resnet50 --round-to 1 16
    python benchmarks/op_breakdown.py --json out/op_breakdown.json

`benchmarks/tflite_speedup.py` shows that some pruned models turn less of their
MAC ratio into speed-up than others. This script says why. Every convolution,
Dense, merge and padding layer of the model is cut out on its own (same input
shape, same weights), exported to TFLite and timed in LiteRT, for the dense model
and for each pruned variant; the times are summed by layer type. A layer type
whose time falls less than its MACs do (depthwise convolutions, element-wise
adds, padding: memory-bound work whose cost grows with channels, not with
channels squared) caps the model's speed-up below its MAC ratio.

Per-layer times leave out what the whole model shares between layers (the cache
stays warm across a fused chain), so their sum is not the model's latency; the
shares and the per-type ratios are what to read.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from architectures import SPEEDUP_MODELS as MODELS  # noqa: E402
from common import add_eager_flag, add_json_flag, parse_args, write_json  # noqa: E402

import kprune  # noqa: E402
from kprune.results import format_table  # noqa: E402

TIMED = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Conv2DTranspose,
    keras.layers.Dense,
    keras.layers.Add,
    keras.layers.Multiply,
    keras.layers.Concatenate,
    keras.layers.ZeroPadding2D,
)


def kind(layer) -> str:
    """Layer type, with 1x1 convolutions told apart from spatial ones."""
    if type(layer) is keras.layers.Conv2D:
        return "Conv2D 1x1" if tuple(layer.kernel_size) == (1, 1) else "Conv2D kxk"
    return type(layer).__name__


def input_tensors(layer) -> list:
    return layer.input if isinstance(layer.input, list) else [layer.input]


def isolated(layer) -> keras.Model:
    """The layer alone, on inputs of the shapes it sees in its model."""
    inputs = [
        keras.Input(batch_shape=(1,) + tuple(t.shape[1:])) for t in input_tensors(layer)
    ]
    clone = layer.__class__.from_config(layer.get_config())
    out = clone(inputs if len(inputs) > 1 else inputs[0])
    if layer.weights:
        clone.set_weights(layer.get_weights())
    return keras.Model(inputs, out)


def layer_rows(model, workdir: str, tag: str) -> list[dict]:
    rows = []
    profile = {r.name: r.macs for r in kprune.profile(model).layers}
    for layer in model.layers:
        if not isinstance(layer, TIMED):
            continue
        path = os.path.join(workdir, f"{tag}_{layer.name}.tflite")
        kprune.export_tflite(isolated(layer), path, verify=False)
        tensors = input_tensors(layer) + [layer.output]
        values = sum(math.prod(t.shape[1:]) for t in tensors)
        rows.append(
            {
                "layer": layer.name,
                "kind": kind(layer),
                "macs": profile[layer.name],
                "activations": int(values),
                "path": path,
            }
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2", choices=list(MODELS))
    parser.add_argument("--ratio", type=float, default=0.5, help="channels removed")
    parser.add_argument("--round-to", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--runs", type=int, default=30)
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)

    keras.utils.set_random_seed(0)
    dense = MODELS[args.model]()
    variants = [("dense", dense)] + [
        (
            f"r{r}",
            kprune.prune(dense, ratio=args.ratio, criterion="l1", round_to=r),
        )
        for r in args.round_to
    ]
    with tempfile.TemporaryDirectory() as workdir:
        per_variant = {tag: layer_rows(m, workdir, tag) for tag, m in variants}
        paths = [row["path"] for rows in per_variant.values() for row in rows]
        print(f"  timing {len(paths)} single-layer models", flush=True)
        timings = kprune.benchmark_tflite(paths, runs=args.runs, warmup=3)
    by_path = {t.path: t.median_ms for t in timings}
    totals = {tag: summed(rows, by_path) for tag, rows in per_variant.items()}

    base = totals["dense"]
    kinds = sorted(base, key=lambda k: -base[k]["ms"])
    table = []
    for k in kinds:
        for tag, _ in variants[1:]:
            d, p = base[k], totals[tag][k]
            table.append(
                (
                    k,
                    tag,
                    d["layers"],
                    f"{d['ms']:.3f}",
                    f"{d['ms'] / base['all timed layers']['ms']:.1%}",
                    f"{d['macs'] / p['macs']:.2f}x" if p["macs"] else "-",
                    f"{d['activations'] / p['activations']:.2f}x",
                    f"{d['ms'] / p['ms']:.2f}x",
                )
            )
    print()
    print(
        format_table(
            [
                "layer type",
                "variant",
                "layers",
                "dense ms",
                "time share",
                "MAC ratio",
                "activation ratio",
                "time ratio",
            ],
            table,
            title=f"{args.model}: LiteRT time by layer type, each layer timed alone "
            f"(1 thread, median of {args.runs}); variants remove {args.ratio:.0%} of "
            "the channels (rN: round_to=N); ratios are dense / pruned",
        )
    )
    write_json(args.json, totals)
    return totals


def summed(rows: list[dict], by_path: dict) -> dict[str, dict]:
    """Time, MACs and activation values per layer type, and over all types."""
    sums: dict[str, dict] = {}
    for row in rows:
        for key in (row["kind"], "all timed layers"):
            entry = sums.setdefault(
                key, {"layers": 0, "ms": 0.0, "macs": 0, "activations": 0}
            )
            entry["layers"] += 1
            entry["ms"] += by_path[row["path"]]
            entry["macs"] += row["macs"]
            entry["activations"] += row["activations"]
    return sums


if __name__ == "__main__":
    main()
