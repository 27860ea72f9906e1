"""The channel dependency graph: which channels of a model must go together.

* `tracer`: every channel of every tensor gets an id; each call's handler says
  how ids flow (new, passed on, coupled or frozen), and coupled ids merge into
  units;
* `channel_graph`: `ChannelGraph`, the units gathered into groups that can be
  pruned together, and `graph(model)`, which builds it (nested models and
  opened composite blocks flattened).

(The package is `dependency`, not `graph`: `kprune.graph` is the function.)
"""

from kprune.dependency.channel_graph import ChannelGraph, Group, Member, graph
from kprune.dependency.tracer import Call, TensorInfo, Tracer

__all__ = ["Call", "ChannelGraph", "Group", "Member", "TensorInfo", "Tracer", "graph"]
