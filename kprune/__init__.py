"""kprune: structured (filter) pruning for Keras 3 CNNs.

The flat public API (see docs/ and shared/DESIGN.md):

    kprune.graph(model)              channel dependency graph
    kprune.profile(model)            params, MACs, FLOPs
    kprune.plan(model, ...)          which filters to remove
    kprune.shrink(model, plan)       a new, smaller model
    kprune.prune(model, ratio=...)   plan + shrink
    kprune.wrap / kprune.unwrap      trainable importance multipliers per filter
    kprune.Staged(...)               saliency, then similarity, round by round
    kprune.prune_to_tolerance(...)   prune while the metric stays within a tolerance
    kprune.PruningCallback(...)      prune during model.fit
    kprune.export_tflite(model, ...) TFLite export with verification
"""

from kprune import criteria, datasets, handlers, layers, zoo
from kprune.callbacks import PruningCallback
from kprune.criteria import register_criterion
from kprune.curves import Sensitivity
from kprune.distillation import Distillation, Distiller
from kprune.export import ExportResult, export_saved_model, export_tflite
from kprune.graph import ChannelGraph, Group
from kprune.graph import graph as graph
from kprune.handlers import LayerHandler, register_handler
from kprune.latency import LatencyTable
from kprune.latency_fit import plan_measured
from kprune.learning import learn_importance
from kprune.litert import TFLiteBenchmark, benchmark_tflite, verify_tflite
from kprune.masks import masks_plan, set_masks
from kprune.planner import plan as plan
from kprune.plans import PruningPlan
from kprune.profile import Profile
from kprune.profile import profile as profile
from kprune.recalibration import recalibrate
from kprune.report import PruningReport
from kprune.sensitivity import sensitivity
from kprune.staged import Staged
from kprune.surgery import prune, shrink, zero_pruned
from kprune.sweep import Sweep, sweep
from kprune.tolerance import prune_to_tolerance
from kprune.version import __version__
from kprune.wrapping import unwrap, wrap

__all__ = [
    "ChannelGraph",
    "Distillation",
    "Distiller",
    "ExportResult",
    "TFLiteBenchmark",
    "benchmark_tflite",
    "export_saved_model",
    "export_tflite",
    "Group",
    "LatencyTable",
    "plan_measured",
    "LayerHandler",
    "Profile",
    "PruningCallback",
    "PruningPlan",
    "PruningReport",
    "Sensitivity",
    "Staged",
    "Sweep",
    "__version__",
    "criteria",
    "datasets",
    "graph",
    "handlers",
    "layers",
    "learn_importance",
    "masks_plan",
    "set_masks",
    "unwrap",
    "verify_tflite",
    "wrap",
    "zoo",
    "plan",
    "profile",
    "prune",
    "prune_to_tolerance",
    "recalibrate",
    "sensitivity",
    "register_criterion",
    "register_handler",
    "shrink",
    "sweep",
    "zero_pruned",
]
