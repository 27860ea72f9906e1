"""The files a latency table is measured from, and reading their timings back.

`write_layer_files(model, directory)` writes, for every channel-dependent layer
signature of the model, one single-layer `.tflite` per grid point of channel
counts, the whole model (`model.tflite`), the model uniformly narrowed to each
grid width (`width_50.tflite`, ...), a manifest (`kprune_layers.json`) that
says what each file is, and `run_benchmark.sh`, which times every file on an
Android device with LiteRT's own `benchmark_model` tool. `read_timings` reads
the timings back: the tool's logs (one `<file>.log` per file), a JSON file or
a dict of milliseconds by file name. `kprune.LatencyTable` builds on both.
"""

from __future__ import annotations

import json
import os
import re

import keras
import numpy as np

from kprune.dependency import ChannelGraph
from kprune.dependency import graph as build_graph
from kprune.exporters import export_tflite
from kprune.handlers import get_handler
from kprune.latency.costs import on_steps, probe_counts, representatives
from kprune.messages import Steps
from kprune.planning.planner import plan as make_plan
from kprune.surgery.shrinking import shrink

MANIFEST = "kprune_layers.json"
MODEL_FILE = "model.tflite"

_SCRIPT = """\
#!/bin/sh
# Times every .tflite file of this folder on an Android device with LiteRT's
# benchmark_model tool, one <file>.log per file; then, on the workstation:
#   table = kprune.LatencyTable.from_timings("{folder}")
# Usage: sh run_benchmark.sh [threads] [path of benchmark_model on the device]
set -e
THREADS=${{1:-{threads}}}
TOOL=${{2:-/data/local/tmp/benchmark_model}}
REMOTE=/data/local/tmp/kprune_layers
cd "$(dirname "$0")"
adb shell mkdir -p "$REMOTE"
adb push *.tflite "$REMOTE/" > /dev/null
for f in *.tflite; do
  adb shell "$TOOL" --graph="$REMOTE/$f" --num_threads="$THREADS" \\
    --warmup_runs={warmup} --num_runs={runs} > "${{f%.tflite}}.log" 2>&1
  echo "$f: $(grep 'Inference (avg)' "${{f%.tflite}}.log")"
done
"""


def call_keys(graph: ChannelGraph):
    """`("layer:index", call)` for every call, the index counting the calls of
    the same layer (a shared layer has several)."""
    seen: dict[str, int] = {}
    for call in graph.calls:
        name = call.layer.name
        seen[name] = seen.get(name, -1) + 1
        yield f"{name}:{seen[name]}", call


def check_widths(widths) -> None:
    values = list(widths) if isinstance(widths, (list, tuple)) else []
    if not values or not all(0 < w <= 1 for w in values) or 1.0 not in values:
        raise ValueError(
            "widths must be shares of the channels in (0, 1] that include 1.0, "
            f"e.g. (0.25, 0.5, 0.75, 1.0); got {widths!r}"
        )


def write_layer_files(
    model: keras.Model,
    directory: str,
    widths,
    quantize: str | None = None,
    representative_data=None,
    calibrate: bool = True,
    verbose: int = 1,
    runs: int = 30,
    warmup: int = 5,
    threads: int = 1,
    steps: dict | None = None,
    probes: list | None = None,
) -> dict:
    """Write the files described in the module doc; return the manifest.

    `steps` (layer type -> channel step, as `kprune.latency.costs.detect`
    finds them) lays the grid on multiples of each type's step; `probes`, the
    manifest entries of probe files already written (`write_probes`), or None
    to write them here."""
    check_quantize(widths, quantize)
    os.makedirs(directory, exist_ok=True)
    g = build_graph(model)
    signatures, calls = _signatures(g)
    if probes is None:
        probes = write_probes(directory, signatures, quantize, verbose)
    layers = _write_variants(directory, signatures, widths, verbose, quantize, steps)
    write_tflite(
        model, os.path.join(directory, MODEL_FILE), quantize, representative_data
    )
    models = [{"file": MODEL_FILE, "width": 1.0, "channels": _channels(g, calls)}]
    if calibrate and g.prunable:
        models += _write_narrowed(
            model, g, calls, directory, widths, quantize, representative_data
        )
    manifest = {
        "kind": "latency_layers",
        "model": model.name,
        "fingerprint": g.fingerprint(),
        "quantize": quantize,
        "widths": list(widths),
        "calls": calls,
        "steps": dict(steps or {}),
        "probes": probes,
        "layers": layers,
        "models": models,
    }
    with open(os.path.join(directory, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    script = _SCRIPT.format(folder=directory, threads=threads, runs=runs, warmup=warmup)
    with open(os.path.join(directory, "run_benchmark.sh"), "w") as f:
        f.write(script)
    return manifest


def check_quantize(widths, quantize) -> None:
    check_widths(widths)
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8'; got {quantize!r}")


def write_probes(directory, signatures, quantize=None, verbose=1) -> list[dict]:
    """The step probes (`kprune.latency.costs`): per probed layer type, its
    widest layer at each probe count, as `probe_NN.tflite`; their entries."""
    jobs = []
    for kind, (signature, layer, shapes, channels) in representatives(
        signatures
    ).items():
        for count in probe_counts(channels):
            if get_handler(layer).tiles == "out":
                jobs.append((kind, layer, shapes, shapes[0][-1], count, count))
            else:
                jobs.append((kind, layer, shapes, count, None, count))
    entries = []
    with Steps("latency table: step probes", len(jobs), verbose) as bar:
        for index, (kind, layer, shapes, c_in, c_out, count) in enumerate(jobs):
            name = f"probe_{index:02d}.tflite"
            single = _single_layer(layer, shapes, c_in, c_out)
            write_tflite(
                single,
                os.path.join(directory, name),
                quantize,
                int8_io=quantize == "int8",
            )
            entries.append({"file": name, "kind": kind, "count": count})
            bar.advance(f"{kind} {count}")
    return entries


def read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        raise ValueError(
            f"{directory} has no {MANIFEST}: pass the folder that "
            "kprune.LatencyTable.write_layers wrote"
        )
    with open(path) as f:
        return json.load(f)


def read_timings(directory: str, manifest: dict, timings=None) -> dict[str, float]:
    """Milliseconds by file name, for every file of the manifest.

    `timings` is a dict of milliseconds by file name, a JSON file holding one,
    or None to read `benchmark_model`'s log next to every file (`<file>.log`).
    """
    entries = manifest.get("probes", []) + manifest["layers"] + manifest["models"]
    files = [e["file"] for e in entries]
    if timings is None:
        found = {}
        for name in files:
            log = os.path.join(directory, name[: -len(".tflite")] + ".log")
            if os.path.exists(log):
                with open(log) as f:
                    found[name] = parse_benchmark_log(f.read(), log)
        timings = found
    elif isinstance(timings, (str, os.PathLike)):
        with open(timings) as f:
            timings = json.load(f)
    if not isinstance(timings, dict):
        raise TypeError(
            "timings must be None (read benchmark_model's <file>.log files), a "
            f"dict of milliseconds by file name, or a JSON file; got {timings!r}"
        )
    missing = [name for name in files if name not in timings]
    if missing:
        raise ValueError(
            f"no timing for {len(missing)} of the {len(files)} files (e.g. "
            f"{missing[:3]}): time every file of {directory} (run_benchmark.sh "
            "writes a .log for each)"
        )
    return {name: float(timings[name]) for name in files}


def parse_benchmark_log(text: str, where: str = "the log") -> float:
    """Milliseconds per inference from LiteRT `benchmark_model` output: the
    median of the timed runs where the tool prints it, else their average."""
    medians = re.findall(r"count=\d+ first=.*?median=([\d.e+]+)", text)
    if medians:
        return float(medians[-1]) / 1000.0
    found = re.search(r"Inference \(avg\): ([\d.e+]+)", text)
    if found is None:
        raise ValueError(
            f"{where} holds no 'Inference (avg)' line: is it the output of "
            "LiteRT's benchmark_model for one .tflite file?"
        )
    return float(found.group(1)) / 1000.0


def write_tflite(
    model, path: str, quantize=None, representative_data=None, int8_io=False
) -> str:
    """`model` as a `.tflite` at `path`; int8 calibrated on `representative_data`
    (random normal inputs when None), with int8 inputs and outputs if `int8_io`."""
    if quantize == "int8" and representative_data is None:
        rng = np.random.default_rng(0)
        shapes = [(16,) + tuple(i.shape[1:]) for i in model.inputs]
        samples = [rng.normal(size=s).astype("float32") for s in shapes]
        representative_data = samples if len(samples) > 1 else samples[0]
    export_tflite(
        model,
        path,
        quantize=quantize,
        representative_data=representative_data,
        int8_io=int8_io,
        verify=False,
    )
    return path


def _signatures(graph: ChannelGraph):
    """Distinct timed layer signatures, and each timed call's signature.

    A signature holds the layer, its input shapes, its output channels, and
    whether its input and output channels can change (only channels of
    prunable groups do; the others are timed at their one width)."""
    prunable = set()
    for group in graph.prunable:
        prunable.update(int(u) for u in np.asarray(group.units).ravel())

    def varies(tensor) -> bool:
        units = graph.units_of(tensor)
        return units is not None and any(int(u) in prunable for u in np.ravel(units))

    signatures, calls = {}, {}
    for key, call in call_keys(graph):
        # Which layers are timed, and how, their handlers say (`timing`):
        # activations are left out, as LiteRT fuses them into the convolution
        # before them, and a BatchNorm folds away.
        kind = type(call.layer).__name__
        if get_handler(call.layer).timing is None or len(call.outputs) != 1:
            continue
        config = {k: v for k, v in call.layer.get_config().items() if k != "name"}
        shapes = [tuple(t.shape[1:]) for t in call.inputs]
        if any(d is None for s in shapes for d in s):
            raise ValueError(
                f"layer '{call.layer.name}' has an unknown spatial size: build the "
                "model for a fixed input size to measure its latency table"
            )
        out_channels = int(call.outputs[0].shape[-1])
        flags = (varies(call.inputs[0]), varies(call.outputs[0]))
        signature = repr(
            (kind, sorted(config.items(), key=str), shapes, out_channels, flags)
        )
        signatures.setdefault(signature, (call.layer, shapes, out_channels, flags))
        calls[key] = signature
    return signatures, calls


def _grid(channels: int, widths, step: int = 1) -> list[int]:
    counts = [max(1, round(w * channels)) for w in widths]
    return on_steps(counts, step, channels)


def _write_variants(directory, signatures, widths, verbose, quantize=None, steps=None):
    """One `.tflite` per signature and grid point; their manifest entries."""
    entries, jobs = [], []
    for signature, (layer, shapes, out_channels, flags) in signatures.items():
        kind = type(layer).__name__
        grid = get_handler(layer).timing == "grid"
        step = (steps or {}).get(kind, 1)
        in_step = 1 if grid else step
        ins = _grid(shapes[0][-1], widths if flags[0] else (1.0,), in_step)
        outs = (
            _grid(out_channels, widths if flags[1] else (1.0,), step)
            if grid
            else [None]
        )
        jobs.extend(
            (signature, kind, layer, shapes, c_in, c_out)
            for c_in in ins
            for c_out in outs
        )
    with Steps("latency table: single-layer models", len(jobs), verbose) as steps:
        for index, (signature, kind, layer, shapes, c_in, c_out) in enumerate(jobs):
            name = f"layer_{index:04d}.tflite"
            single = _single_layer(layer, shapes, c_in, c_out)
            # int8 layers take and give int8, as they do inside an int8 graph: with
            # float ends, each file would also time a quantize and a dequantize
            # of its whole input and output, which grow with the channels too.
            path = os.path.join(directory, name)
            write_tflite(single, path, quantize, int8_io=quantize == "int8")
            entries.append(
                {
                    "file": name,
                    "signature": signature,
                    "kind": kind,
                    "c_in": c_in,
                    "c_out": c_out,
                }
            )
            steps.advance(f"{layer.name} {c_in}x{c_out or c_in}")
    return entries


def _single_layer(layer, shapes, c_in: int, c_out: int | None) -> keras.Model:
    """`layer`'s type and settings alone, at `c_in` input (and `c_out`
    output) channels, with random weights."""
    config = layer.get_config()
    if c_out is not None:
        config["filters" if "filters" in config else "units"] = c_out
    inputs = [keras.Input(tuple(s[:-1]) + (c_in,)) for s in shapes]
    clone = type(layer).from_config(config)
    outputs = clone(inputs if len(inputs) > 1 else inputs[0])
    return keras.Model(inputs, outputs)


def _channels(graph: ChannelGraph, calls: dict, keep_units=None) -> dict:
    """`call key -> [in, out]` channels of every timed call under a keep-mask."""
    if keep_units is None:
        keep_units = np.ones(graph.num_units, dtype=bool)
    found = {}
    for key, call in call_keys(graph):
        if key in calls:
            found[key] = [
                kept_channels(graph, call.inputs[0], keep_units),
                kept_channels(graph, call.outputs[0], keep_units),
            ]
    return found


def kept_channels(graph: ChannelGraph, tensor, keep_units) -> int:
    units = graph.units_of(tensor)
    if units is None:
        return int(tensor.shape[-1])
    return int(keep_units[units].sum())


def _write_narrowed(
    model, graph, calls, directory, widths, quantize, representative_data
) -> list[dict]:
    """The model with every prunable group cut to each width below 1 (by L1),
    timed whole so the table can be calibrated against what the runtime does
    with the whole graph."""
    entries = []
    for width in sorted(w for w in widths if w < 1.0):
        plan = make_plan(graph, "l1", ratio=1.0 - width)
        name = f"width_{round(width * 100):02d}.tflite"
        path = os.path.join(directory, name)
        write_tflite(shrink(model, plan), path, quantize, representative_data)
        channels = _channels(graph, calls, plan.keep_units(graph))
        entries.append({"file": name, "width": width, "channels": channels})
    return entries
