"""Surgery: new models made from a model and a plan; the caller's model is
never touched.

* `cloning`: `rebuild`, one layer-by-layer copy through
  `keras.models.clone_model` that every surgery below goes through;
* `shrinking`: `shrink` (a smaller model from a plan, or from the masks of a
  wrapped model), `prune` (plan and shrink) and `zero_pruned`, the zeroed
  reference `shrink` is checked against;
* `folding`: the constants that removed channels leave behind, folded into
  the next layer's bias;
* `unwrapping`: `unwrap`, importance multipliers folded into the weights;
* `masks`: the masks of a wrapped model read and written as plans.
"""

from kprune.surgery.cloning import RebuildError, copy_layer, rebuild
from kprune.surgery.masks import is_wrapped, masked_layers, masks_plan, set_masks
from kprune.surgery.shrinking import prune, shrink, zero_pruned
from kprune.surgery.unwrapping import unwrap

__all__ = [
    "RebuildError",
    "copy_layer",
    "is_wrapped",
    "masked_layers",
    "masks_plan",
    "prune",
    "rebuild",
    "set_masks",
    "shrink",
    "unwrap",
    "zero_pruned",
]
