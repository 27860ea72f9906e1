"""How long graph + plan + shrink take on the zoo, next to Keras building the model.

    python benchmarks/surgery_speed.py                    # the whole zoo
    python benchmarks/surgery_speed.py --models ResNet50 NASNetMobile --repeat 5
    python benchmarks/surgery_speed.py --json out/surgery_speed.json

Each time is the median of `--repeat` runs after one warm-up run. "build" is
`keras.applications.<Model>(weights=None, ...)`; "shrink/build" is the shrink time
over the build time (the target: at most 1.5 for ResNet50).
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from common import add_eager_flag, add_json_flag, parse_args, timed, write_json  # noqa: E402
from zoo import APPLICATIONS  # noqa: E402

import kprune  # noqa: E402
from kprune.results import format_table  # noqa: E402

ZOO = APPLICATIONS


def measure(name: str, repeat: int, ratio: float) -> dict:
    build_fn, size = ZOO[name]

    def build():
        return build_fn(weights=None, input_shape=(size, size, 3), classes=10)

    runs = {"build": [], "graph": [], "plan": [], "shrink": []}
    for i in range(repeat + 1):
        keras.backend.clear_session()
        t_build, model = timed(build)
        t_graph, g = timed(lambda: kprune.graph(model))
        t_plan, plan = timed(lambda: kprune.plan(g, ratio=ratio))
        t_shrink, small = timed(lambda: kprune.shrink(model, plan, graph=g))
        if i == 0:
            continue  # warm-up
        for key, value in zip(runs, (t_build, t_graph, t_plan, t_shrink)):
            runs[key].append(value)
    med = {key: statistics.median(values) for key, values in runs.items()}
    return {
        "model": name,
        "layers": len(model.layers),
        "params": model.count_params(),
        "params_after": small.count_params(),
        **{f"{key}_s": value for key, value in med.items()},
        "total_s": med["graph"] + med["plan"] + med["shrink"],
        "shrink_over_build": med["shrink"] / med["build"],
        "total_over_build": (med["graph"] + med["plan"] + med["shrink"]) / med["build"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per model")
    parser.add_argument("--ratio", type=float, default=0.5)
    add_json_flag(parser)
    args = parse_args(add_eager_flag(parser), argv)

    results = []
    for name in args.models:
        results.append(measure(name, args.repeat, args.ratio))
        print(f"  measured {name}", flush=True)
    rows = [
        (
            r["model"],
            r["layers"],
            f"{r['build_s']:.2f}",
            f"{r['graph_s']:.3f}",
            f"{r['plan_s']:.3f}",
            f"{r['shrink_s']:.2f}",
            f"{r['total_s']:.2f}",
            f"{r['shrink_over_build']:.2f}x",
            f"{r['total_over_build']:.2f}x",
        )
        for r in results
    ]
    print()
    print(
        format_table(
            [
                "model",
                "layers",
                "build s",
                "graph s",
                "plan s",
                "shrink s",
                "total s",
                "shrink/build",
                "total/build",
            ],
            rows,
            title=f"graph + plan (l1, ratio={args.ratio}) + shrink, median of "
            f"{args.repeat} after a warm-up, {os.cpu_count()} CPU cores",
        )
    )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
