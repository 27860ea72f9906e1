"""Which architectures kprune can prune today, and how well: one row per model.

    python benchmarks/coverage.py                     # the whole zoo
    python benchmarks/coverage.py --quick             # a small subset
    python benchmarks/coverage.py --only ResNet50,hub.MiT-B0
    python benchmarks/coverage.py --only 'hub.*' --json out/coverage.json

The zoo: keras.applications (weights=None), keras_cv backbones, keras_hub
backbones and task models built from their constructors (skipped when keras_hub
is not installed), the U-Net and TernausNet of the nuclei benchmarks, and a
top-level `keras.Sequential` CNN built with `model.build()` (benchmarks/zoo.py
and architectures.py, shared with the zoo tests). Nothing downloads. The small
hand-built models that exercise each graph feature (nested models, shared
layers, several inputs) are checked by the test suite instead
(tests/test_graph.py, tests/test_surgery.py).

Each model gets random weights (`zoo.randomize`, so BatchNorm
statistics are not the identity), then `graph`, `plan(criterion="random",
ratio=0.3)` and `shrink` run, and the shrunk model is compared with
`zero_pruned` on random input.

Columns:
  groups      channel groups in the graph
  prunable    share of channel units that sit in prunable groups
  inside      the same share among the units that model inputs and outputs do
              not pin (a backbone's output feature map is never pruned, so for
              a backbone this is the share that matters)
  top frozen  the reason that freezes the most channel units, model inputs and
              outputs left aside (those are always frozen); layer names are
              shortened to '*'
  err         max |shrink - zero_pruned| / max |zero_pruned| over all outputs
  seconds     graph + plan + shrink
  status      ok; ok at the border... when err is above 1e-4 only because a
              removed channel's constant was folded into a 'same' convolution
              (documented as exact away from the border); mismatch (err above
              1e-4; LayerNorm renormalises); or FAIL <stage>: <exception>,
              marked [kprune] when kprune raised it on purpose (its own
              exception class, or a ValueError/TypeError raised in kprune code)
              and [foreign] when an error from Keras or elsewhere escaped
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import traceback
from collections import Counter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from architectures import NUCLEI_ARCHS  # noqa: E402
from common import add_eager_flag, add_json_flag, parse_args, timed, write_json  # noqa: E402
from zoo import (  # noqa: E402
    ANY,
    APPLICATIONS,
    HUB,
    HUB_ANY_SIZE,
    keras_cv_backbones,
    randomize,  # noqa: E402
)

import kprune  # noqa: E402
from kprune.results import format_table  # noqa: E402

KPRUNE_DIR = os.path.dirname(os.path.abspath(kprune.__file__))
RATIO = 0.3
TOLERANCE = 1e-4
ALWAYS_FROZEN = ("model input", "model output")
QUICK = [
    "Sequential(build)",
    "unet",
    "ResNet50",
    "MobileNetV2",
    "cv.ResNet18",
    "hub.ResNet18",
    "hub.MiT-B0",
]

# ------------------------------------------------------------------- the zoo
A = keras.applications
APPLICATIONS = {
    **APPLICATIONS,
    "ResNet50V2": (A.ResNet50V2, 64),
    "InceptionResNetV2": (A.InceptionResNetV2, 75),
    "MobileNet": (A.MobileNet, 64),
    "MobileNetV3Large": (A.MobileNetV3Large, 64),
    "EfficientNetV2B0": (A.EfficientNetV2B0, 64),
}


def application(build_fn, size):
    return lambda: build_fn(weights=None, input_shape=(size, size, 3), classes=10)


def sequential_built():
    """A top-level Sequential without keras.Input, built by `model.build()`."""
    layers = keras.layers
    model = keras.Sequential(
        [
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same"),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.GlobalAveragePooling2D(),
            layers.Dense(10),
        ],
        name="sequential_built",
    )
    model.build((None, 32, 32, 3))
    return model


def keras_cv_zoo() -> dict:
    """The keras_cv backbones of the zoo tests, plus CSPDarkNet."""
    zoo = dict(keras_cv_backbones())

    def csp_darknet():
        import keras_cv

        return keras_cv.models.CSPDarkNetBackbone(
            stackwise_channels=[16, 32, 64, 128],
            stackwise_depth=[1, 1, 1, 1],
            include_rescaling=False,
            input_shape=(64, 64, 3),
        )

    def yolov8_detector():
        import keras_cv

        backbone = zoo["YOLOV8"]()
        return keras_cv.models.YOLOV8Detector(
            num_classes=3, bounding_box_format="xywh", backbone=backbone, fpn_depth=1
        )

    zoo["CSPDarkNet"] = csp_darknet
    zoo["YOLOV8Detector"] = yolov8_detector
    return zoo


def zoo() -> dict:
    """name -> (family, builder or None, note): every model, in table order."""
    entries = {}
    for name, (build_fn, size) in APPLICATIONS.items():
        entries[name] = ("keras.applications", application(build_fn, size), "")
    cv_note = ""
    try:
        import keras_cv  # noqa: F401

        cv = keras_cv_zoo()
    except ImportError as error:  # keras_cv, or pytest for tests/test_zoo.py
        cv = {"*": None}
        cv_note = f"skipped: {error}"
    for name, build in cv.items():
        entries[f"cv.{name}"] = ("keras_cv", build, "" if build else cv_note)
    try:
        import keras_hub  # noqa: F401

        hub_note = ""
    except ImportError:
        hub_note = "skipped: keras_hub is not installed"
    for name, build in HUB.items():
        entries[f"hub.{name}"] = ("keras_hub", None if hub_note else build, hub_note)
    for name in HUB_ANY_SIZE:
        build = None if hub_note else (lambda b=HUB[name]: b(ANY))
        entries[f"hub.{name}@any"] = ("keras_hub", build, hub_note)
    for name, build in NUCLEI_ARCHS.items():
        entries[name] = ("benchmarks/architectures.py", build, "")
    entries["Sequential(build)"] = ("keras.Sequential", sequential_built, "")
    return entries


# -------------------------------------------------------------- measurements
def inputs_for(model, size: int = 64):
    """Random inputs in the structure the model is called with (a dict for
    models with named inputs); `None` dimensions (any-size models) become `size`."""
    try:
        structure = model.input
    except (AttributeError, ValueError):  # a Sequential built with build()
        structure = None
    rng = np.random.default_rng(1)

    def draw(kt):
        shape = (2,) + tuple(size if d is None else d for d in kt.shape[1:])
        return rng.normal(size=shape).astype("float32")

    if isinstance(structure, dict):
        return keras.tree.map_structure(draw, structure)
    xs = [draw(kt) for kt in model.inputs]
    return xs[0] if len(xs) == 1 else xs


def flat_outputs(model, x) -> list[np.ndarray]:
    y = model(x, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.tree.flatten(y)]


def relative_error(want: list, got: list) -> float:
    worst = 0.0
    for a, b in zip(want, got):
        if a.shape != b.shape:
            return float("inf")
        scale = max(float(np.abs(a).max()), 1e-12)
        worst = max(worst, float(np.abs(a - b).max()) / scale)
    return worst


_QUOTED = re.compile(r"'[^']*'")


def short_reason(reason: str, width: int = 70) -> str:
    text = _QUOTED.sub("*", reason)
    return text if len(text) <= width else text[: width - 3] + "..."


def frozen_reasons(g) -> list[dict]:
    """Each distinct frozen reason (layer names shortened to '*'), with the
    channel units it freezes and the classes of the layers it names."""
    calls_by_name = {call.name: call for call in g.calls}
    units: Counter = Counter()
    classes: dict[str, Counter] = {}
    examples: dict[str, list] = {}
    for group in g.groups:
        for reason in group.reasons:
            key = _QUOTED.sub("*", reason)
            units[key] += group.size
            for quoted in _QUOTED.findall(reason):
                call = calls_by_name.get(quoted.strip("'"))
                if call is None:
                    continue
                cls = type(call.layer)
                label = f"{cls.__module__}.{cls.__qualname__}"
                classes.setdefault(key, Counter())[label] += group.size
                names = examples.setdefault(key, [])
                if len(names) < 3 and call.name not in names:
                    names.append(call.name)
    return [
        {
            "reason": key,
            "units": n,
            "classes": dict(classes.get(key, {})),
            "examples": examples.get(key, []),
        }
        for key, n in units.most_common()
    ]


def short_path(path: str) -> str:
    """`kprune/...`, `keras/...`, `keras_hub/...`: paths from the package root."""
    path = os.path.abspath(path)
    if path.startswith(KPRUNE_DIR):
        return os.path.relpath(path, os.path.dirname(KPRUNE_DIR))
    marker = os.sep + "site-packages" + os.sep
    return path.split(marker, 1)[1] if marker in path else path


def describe_error(error: BaseException, stage: str) -> dict:
    frames = traceback.extract_tb(error.__traceback__)
    raised_in = frames[-1].filename if frames else ""
    in_kprune = os.path.abspath(raised_in).startswith(KPRUNE_DIR)
    own = type(error).__module__.startswith("kprune") or (
        isinstance(error, (ValueError, TypeError)) and in_kprune
    )
    tail = [f"{short_path(f.filename)}:{f.lineno} {f.name}" for f in frames[-8:]]
    return {
        "stage": stage,
        "type": f"{type(error).__module__}.{type(error).__qualname__}",
        "message": str(error)[:2000],
        "own": own,
        "frames": tail,
    }


def measure(name: str, family: str, build) -> dict:
    result = {"model": name, "family": family}
    stage = "build"
    try:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = build()
        randomize(model)
        result["params"] = model.count_params()
        stage = "graph"
        t_graph, g = timed(lambda: kprune.graph(model))
        total = sum(gr.size for gr in g.groups)
        free = sum(gr.size for gr in g.prunable)
        pinned = sum(
            gr.size
            for gr in g.groups
            if gr.reasons and all(r.startswith(ALWAYS_FROZEN) for r in gr.reasons)
        )
        result.update(
            groups=len(g.groups),
            units=total,
            prunable_units=free,
            prunable=free / total if total else 0.0,
            inside=free / (total - pinned) if total > pinned else 0.0,
            frozen=frozen_reasons(g),
        )
        stage = "plan"
        t_plan, plan = timed(lambda: kprune.plan(g, criterion="random", ratio=RATIO))
        stage = "shrink"
        t_shrink, small = timed(lambda: kprune.shrink(model, plan, graph=g))
        result["seconds"] = t_graph + t_plan + t_shrink
        result["params_after"] = small.count_params()
        stage = "zero_pruned"
        zero = kprune.zero_pruned(model, plan)
        stage = "compare"
        x = inputs_for(model)
        result["error"] = relative_error(flat_outputs(zero, x), flat_outputs(small, x))
        layer_norm = any(
            isinstance(c.layer, keras.layers.LayerNormalization) for c in g.calls
        )
        border = any(fold and "border" in fold for _, _, fold in g.constant_sinks)
        if result["error"] <= TOLERANCE:
            result["status"] = "ok"
        elif layer_norm:
            result["status"] = "mismatch (LayerNorm)"
        else:
            result["status"] = "ok at the border fold" if border else "mismatch"
    except Exception as error:  # noqa: BLE001 (every failure is a row)
        result["failure"] = describe_error(error, stage)
        f = result["failure"]
        owner = "kprune" if f["own"] else "foreign"
        result["status"] = f"FAIL {stage}: {f['type'].rsplit('.', 1)[-1]} [{owner}]"
    return result


def top_frozen(result: dict) -> str:
    reasons = result.get("frozen")
    if reasons is None:
        return ""
    for entry in reasons:
        if not any(entry["reason"].startswith(k) for k in ALWAYS_FROZEN):
            return short_reason(entry["reason"])
    return "(inputs/outputs only)"


def select(names: list[str], only: str | None, quick: bool) -> list[str]:
    if quick and not only:
        return [n for n in QUICK if n in names]
    if not only:
        return names
    chosen = []
    for pattern in (p.strip() for p in only.split(",") if p.strip()):
        hits = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
        if not hits:
            raise SystemExit(
                f"--only: no model matches {pattern!r}. Models: {', '.join(names)}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help="models to run, comma-separated; shell patterns work ('hub.*')",
    )
    parser.add_argument("--quick", action="store_true", help="a small subset")
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)

    entries = zoo()
    results = []
    for name in select(list(entries), args.only, args.quick):
        family, build, note = entries[name]
        if build is None:
            results.append({"model": name, "family": family, "status": note})
            print(f"  {name}: {note}", flush=True)
            continue
        result = measure(name, family, build)
        results.append(result)
        print(f"  {name}: {result['status']}", flush=True)

    def cell(result, key, fmt):
        value = result.get(key)
        return "" if value is None else fmt.format(value)

    rows = [
        (
            r["model"],
            cell(r, "groups", "{}"),
            cell(r, "prunable", "{:.1%}"),
            cell(r, "inside", "{:.1%}"),
            top_frozen(r),
            cell(r, "error", "{:.1e}"),
            cell(r, "seconds", "{:.2f}"),
            r["status"],
        )
        for r in results
    ]
    print()
    print(
        format_table(
            [
                "model",
                "groups",
                "prunable",
                "inside",
                "top frozen",
                "err",
                "seconds",
                "status",
            ],
            rows,
            title=f"graph + plan (random, ratio={RATIO}) + shrink vs zero_pruned, "
            f"kprune {kprune.__version__}, Keras {keras.__version__}",
        )
    )
    failed = [r for r in results if "failure" in r]
    if failed:
        print()
        for r in failed:
            f = r["failure"]
            text = f["message"].split("Exception encountered:")[-1].strip()
            first = text.splitlines()[0] if text else ""
            print(f"{r['model']}: {f['type']} in {f['stage']}: {first[:160]}")
            print(f"    at {f['frames'][-1] if f['frames'] else '?'}")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
