"""Loops: pruning in rounds, fine-tuning between them, and measuring.

* `settings`: `FineTune`, the one settings object for every fine-tuning
  kprune does (epochs, rate and schedule, batch, recalibration, distillation,
  or a function of yours);
* `training`: fitting and evaluating, and the cosine learning-rate schedule;
* `recalibration`: re-estimating BatchNorm statistics after a shrink;
* `distillation`: learning from the unpruned model, on `keras.distillation`;
* `rounds`: the one round step (plan, shrink, recalibrate, fine-tune,
  evaluate, record) and the loop of rounds with its tolerance rule;
* `staged`, `tolerance`: `Staged` and `prune_to_tolerance`, that loop's two
  faces;
* `sweeps`, `sensitivities`: `sweep` and `sensitivity`, the same step at
  several budgets, or per group, with their results.
"""

from kprune.loops.distillation import Distillation, Distiller, distiller
from kprune.loops.recalibration import recalibrate
from kprune.loops.rules import Tolerance
from kprune.loops.sensitivities import Sensitivity, sensitivity
from kprune.loops.settings import FineTune
from kprune.loops.staged import Staged
from kprune.loops.sweeps import Sweep, sweep
from kprune.loops.tolerance import prune_to_tolerance
from kprune.loops.training import CosineRate, evaluate, fine_tune

__all__ = [
    "CosineRate",
    "Distillation",
    "Distiller",
    "FineTune",
    "Sensitivity",
    "Staged",
    "Sweep",
    "Tolerance",
    "distiller",
    "evaluate",
    "fine_tune",
    "prune_to_tolerance",
    "recalibrate",
    "sensitivity",
    "sweep",
]
