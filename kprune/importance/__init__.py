"""Importance multipliers: a trainable scale per filter, learned, then pruned by.

* `layers`: the Keras wrappers that hold a multiplier and a mask per channel;
* `wrapping`: `wrap`, a copy of a model with wrappers on every filter
  (`kprune.unwrap`, which folds them back, is surgery's);
* `learning`: `learn_importance`, the multipliers' own training phase;
* `callback`: `PruningCallback`, masking channels while `model.fit` trains;
* `schedules`: when the callback masks, and how much.
"""

from kprune.importance.callback import PruningCallback
from kprune.importance.layers import ImportanceWrapper, wrapped_layers
from kprune.importance.learning import learn_importance
from kprune.importance.wrapping import wrap
from kprune.surgery import is_wrapped, unwrap

__all__ = [
    "ImportanceWrapper",
    "PruningCallback",
    "is_wrapped",
    "learn_importance",
    "unwrap",
    "wrap",
    "wrapped_layers",
]
