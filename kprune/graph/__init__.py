"""Reading a Keras model into its channel dependency graph."""

from kprune.graph.channel_graph import ChannelGraph, Group, Member, graph
from kprune.graph.tracer import Call, TensorInfo, Tracer

__all__ = ["Call", "ChannelGraph", "Group", "Member", "TensorInfo", "Tracer", "graph"]
