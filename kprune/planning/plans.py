"""`PruningPlan`: which channels each group keeps. Plain data: it prints as a
table, saves as JSON, draws the channels each group keeps and writes an HTML
page (a `kprune.results.Result` of kind `"plan"`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from kprune.dependency import ChannelGraph
from kprune.results import Result, format_table, human
from kprune.results.plots import draw_kept_channels, new_figure


@dataclass
class GroupPlan:
    """The decision for one group: which of its `size` units stay."""

    name: str
    size: int
    keep: tuple[int, ...]

    @property
    def removed(self) -> int:
        return self.size - len(self.keep)


@dataclass
class PruningPlan(Result):
    """Which channels each prunable group keeps. Plain data: print it, save it.

    Attributes:
        model: name of the model the plan was made for.
        fingerprint: hash of that model's group structure (`shrink` checks it).
        groups: `GroupPlan` per prunable group, by group name. Frozen groups are
            absent: they keep everything.
        criterion: the scoring rule used.
        target: the arguments that shaped the plan (ratio or flops, scope, ...).
        macs_before, macs_after: MACs per sample of the model and of the plan.
        notes: what the criterion had to do differently for some groups.
        compensation: per group, `[removed unit, unit it folds into, factor]`
            triples that `shrink` applies to the next layers' weights (from
            `criterion="similarity", compensate=True`).
    """

    kind: ClassVar[str] = "plan"

    model: str
    fingerprint: str
    groups: dict[str, GroupPlan] = field(default_factory=dict)
    criterion: str = ""
    target: dict = field(default_factory=dict)
    macs_before: int = 0
    macs_after: int = 0
    notes: list[str] = field(default_factory=list)
    compensation: dict[str, list] = field(default_factory=dict)

    @property
    def channels_before(self) -> int:
        return sum(g.size for g in self.groups.values())

    @property
    def channels_after(self) -> int:
        return sum(len(g.keep) for g in self.groups.values())

    @property
    def flops_ratio(self) -> float:
        """FLOPs kept: `macs_after / macs_before`."""
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    def keep_units(self, graph: ChannelGraph) -> np.ndarray:
        """Boolean keep-mask over the units of `graph`, after checking it matches.

        Raises:
            ValueError: if the plan was made for a different model.
        """
        if graph.fingerprint() != self.fingerprint:
            raise ValueError(
                f"this plan was made for model '{self.model}', whose channel groups "
                f"differ from those of model '{graph.model.name}'. Make a plan for "
                "this model with kprune.plan(model, ...)."
            )
        keep = np.ones(graph.num_units, dtype=bool)
        for name, decision in self.groups.items():
            group = graph.group(name)
            if group.size != decision.size:
                raise ValueError(
                    f"group '{name}' has {group.size} channels but the plan expects "
                    f"{decision.size}; make a new plan for this model"
                )
            mask = np.zeros(group.size, dtype=bool)
            mask[list(decision.keep)] = True
            keep[group.units] = mask
        return keep

    def table_data(self, changed_only: bool = True) -> tuple[list, list, str]:
        """Kept and total channels per group (those it changes, by default);
        `(headers, rows, title)`."""
        rows = [
            (g.name, len(g.keep), g.size, f"{len(g.keep) / g.size:.0%}")
            for g in self.groups.values()
            if g.removed or not changed_only
        ]
        head = (
            f"Pruning plan for '{self.model}' ({self.criterion}, "
            f"{_describe_target(self.target)}): {self.channels_after} of "
            f"{self.channels_before} prunable channels kept; "
            + (
                f"MACs {human(self.macs_before)} -> {human(self.macs_after)} "
                f"({self.flops_ratio:.1%})"
                if self.macs_before
                else "MACs not counted (the input size is unknown: plan with "
                "input_shape=(H, W, C) to count them)"
            )
        )
        return ["group", "kept", "total", "share"], rows, head

    def summary(self, changed_only: bool = True) -> str:
        """Per-group table of kept/total channels, and the criterion's notes."""
        table = format_table(*self.table_data(changed_only))
        if self.notes:
            table += "\nNotes:\n" + "\n".join(f"  {n}" for n in self.notes)
        return table

    def __str__(self) -> str:
        return self.summary()

    def figure(self):
        """The channels each group had and keeps, as bars."""
        fig, (ax,) = new_figure(width=max(6.4, 0.25 * len(self.groups)))
        names = list(self.groups)
        draw_kept_channels(
            ax,
            names,
            [self.groups[n].size for n in names],
            [len(self.groups[n].keep) for n in names],
        )
        ax.set_title(self.table_data()[2], fontsize=8, wrap=True)
        return fig

    def to_dict(self) -> dict:
        """The plan as plain Python data (lists, dicts, numbers, strings)."""
        data = super().to_dict()
        for g in data["groups"].values():
            g["keep"] = list(g["keep"])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PruningPlan":
        """The plan that `to_dict()` described (files of kprune 0.1, which
        have no `"kind"`, too)."""
        groups = {
            name: GroupPlan(g["name"], int(g["size"]), tuple(int(i) for i in g["keep"]))
            for name, g in data["groups"].items()
        }
        compensation = {
            name: [(int(a), int(b), float(f)) for a, b, f in triples]
            for name, triples in data.get("compensation", {}).items()
        }
        return super().from_dict(
            {**data, "groups": groups, "compensation": compensation}
        )


def _describe_target(target: dict) -> str:
    parts = [f"{k}={v}" for k, v in target.items() if v not in (None, [], ())]
    return ", ".join(parts)
