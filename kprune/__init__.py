"""kprune: structured pruning for Keras 3 networks.

The flat public API (see docs/ and shared/DESIGN.md):

    kprune.graph(model)              channel dependency graph
    kprune.profile(model)            params, MACs, FLOPs
    kprune.plan(model, ...)          which filters to remove
    kprune.shrink(model, plan)       a new, smaller model
    kprune.prune(model, ratio=...)   plan + shrink
    kprune.wrap / kprune.unwrap      trainable importance multipliers per filter
    kprune.FineTune(...)             how every loop fine-tunes
    kprune.Staged(...)               saliency, then similarity, round by round
    kprune.prune_to_tolerance(...)   prune while the metric stays within a tolerance
    kprune.PruningCallback(...)      prune during model.fit
    kprune.export(model, path, ...)  LiteRT or SavedModel, verified in its runtime

Each concept has a package of its own (docs/architecture.md): `dependency`,
`handlers`, `criteria`, `planning`, `surgery`, `exporters`, `loops`,
`latency`, `importance`, `results`, `cli`.
"""

from kprune import criteria, datasets, handlers
from kprune.criteria import register_criterion
from kprune.dependency import ChannelGraph, Group
from kprune.dependency import graph as graph
from kprune.exporters import (
    ExportResult,
    TFLiteBenchmark,
    benchmark_tflite,
    export,
    export_saved_model,
    export_tflite,
    verify_tflite,
)
from kprune.handlers import LayerHandler, register_handler
from kprune.importance import layers
from kprune.importance.callback import PruningCallback
from kprune.importance.learning import learn_importance
from kprune.importance.wrapping import wrap
from kprune.latency import LatencyTable, plan_measured
from kprune.loops import (
    Distillation,
    Distiller,
    FineTune,
    Sensitivity,
    Staged,
    Sweep,
    Tolerance,
    distiller,
    fine_tune,
    prune_to_tolerance,
    recalibrate,
    sensitivity,
    sweep,
)
from kprune.planning import Profile, PruningPlan
from kprune.planning import plan as plan
from kprune.planning import profile as profile
from kprune.results import PruningReport
from kprune.surgery import masks_plan, prune, set_masks, shrink, unwrap, zero_pruned
from kprune.version import __version__

__all__ = [
    "ChannelGraph",
    "Distillation",
    "Distiller",
    "ExportResult",
    "FineTune",
    "Group",
    "LatencyTable",
    "LayerHandler",
    "Profile",
    "PruningCallback",
    "PruningPlan",
    "PruningReport",
    "Sensitivity",
    "Staged",
    "Sweep",
    "TFLiteBenchmark",
    "Tolerance",
    "__version__",
    "benchmark_tflite",
    "criteria",
    "datasets",
    "distiller",
    "export",
    "export_saved_model",
    "export_tflite",
    "fine_tune",
    "graph",
    "handlers",
    "layers",
    "learn_importance",
    "masks_plan",
    "plan",
    "plan_measured",
    "profile",
    "prune",
    "prune_to_tolerance",
    "recalibrate",
    "register_criterion",
    "register_handler",
    "sensitivity",
    "set_masks",
    "shrink",
    "sweep",
    "unwrap",
    "verify_tflite",
    "wrap",
    "zero_pruned",
]
