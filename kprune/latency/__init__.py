"""Latency: what a model costs in a runtime, measured, and planning to it.

* `costs`: one layer's timings on its grid of channel counts (`Cost`), and the
  channel steps a runtime's kernels run in, found by probes;
* `layerfiles`: the single-layer and whole-model files a table is timed from
  (here, or on a device), and reading their timings back;
* `table`: `LatencyTable`, the per-layer latencies calibrated on whole-model
  timings, and `LatencyCounter`, its prediction for any plan, which
  `plan(latency=..., table=...)` reads;
* `measured`: `plan_measured`, a latency plan timed in LiteRT and planned
  again for a corrected budget.

Which layers are timed, and on which side their kernels tile channels, the
handlers say (`LayerHandler.timing`, `LayerHandler.tiles`).
"""

from kprune.latency.measured import plan_measured
from kprune.latency.table import LatencyCounter, LatencyTable, as_table

__all__ = ["LatencyCounter", "LatencyTable", "as_table", "plan_measured"]
