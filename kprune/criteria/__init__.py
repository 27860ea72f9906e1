"""Scoring rules: one score per unit of a group; low scores are pruned first.

Saliency criteria (`l1`, `l2`, `bn_scale`, `taylor`, `apoz`, `importance`,
`random`) measure how much a filter matters; similarity criteria (`fpgm`,
`similarity`) how redundant it is. Register your own with `register_criterion`,
declaring the options it reads.
"""

from kprune.criteria import saliency, similarity
from kprune.criteria.registry import (
    DATA_OPTIONS,
    REDUCTIONS,
    Criterion,
    ScoringContext,
    available_criteria,
    get_criterion,
    register_criterion,
    registered_options,
    unregister_criterion,
)
from kprune.criteria.similarity import pairwise, redundancy_order

__all__ = [
    "DATA_OPTIONS",
    "REDUCTIONS",
    "Criterion",
    "ScoringContext",
    "available_criteria",
    "get_criterion",
    "pairwise",
    "redundancy_order",
    "register_criterion",
    "registered_options",
    "saliency",
    "similarity",
    "unregister_criterion",
]
