"""Planning: from scores to a `PruningPlan`, for a target.

* `planner`: `plan()`, which scores every prunable group with a criterion and
  keeps the units a target allows (a ratio, per-group ratios, a FLOPs or a
  latency budget) under the constraints (scope, floors, rounding);
* `choosing`: turning scores into kept counts, and the budget searches;
* `options`: the check behind every `**plan_options` of the public API;
* `plans`: the `PruningPlan` result;
* `profiling`: counting parameters and MACs (`profile`, `MacCounter`), which
  FLOPs budgets and every result's "FLOPs kept" read.
"""

from kprune.planning.choosing import BudgetUnreachable
from kprune.planning.options import PLAN_KEYWORDS, check_options
from kprune.planning.planner import plan
from kprune.planning.plans import GroupPlan, PruningPlan
from kprune.planning.profiling import MacCounter, Profile, profile

__all__ = [
    "BudgetUnreachable",
    "GroupPlan",
    "MacCounter",
    "PLAN_KEYWORDS",
    "Profile",
    "PruningPlan",
    "check_options",
    "plan",
    "profile",
]
