"""Results: what kprune hands back to read, save, draw and share.

* `base`: `Result`, the one base every result builds on (a table, JSON with a
  kind, a plot, an HTML page), and `load`, which reads any result back;
* `tables`: the plain-text tables everything prints through;
* `report`: `PruningReport`, the rounds of an iterative run;
* `plots`, `htmlpage`: matplotlib drawings and self-contained HTML pages;
* `tensorboard`: pruning progress as TensorBoard events.

Plans, sensitivity analyses, sweeps, latency tables and profiles are results
too; each lives beside the function that makes it and registers its kind here.
"""

from kprune.results.base import Result, kinds, load
from kprune.results.report import PruningReport, Round
from kprune.results.tables import format_table, human

__all__ = ["PruningReport", "Result", "Round", "format_table", "human", "kinds", "load"]
