"""The check behind every `**plan_options` of the public API.

`plan()` passes its own keywords on to nothing: any other keyword is an option
of the criterion. `Staged`, `prune_to_tolerance`, `sweep`, `sensitivity`,
`plan_measured` and `PruningCallback` take `**plan_options` for every plan they
make; `check_options` accepts a keyword only if `plan()` or one of the criteria
reads it, so a typo (`scpoe="global"`) or an option the chosen criterion would
ignore raises at once, naming the closest valid keyword.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Callable, Iterable, Mapping

from kprune.criteria import get_criterion, registered_options

#: The keywords of `plan()` itself, but the model (`tests/test_planner.py`
#: checks them against its signature); any other keyword is a criterion option.
PLAN_KEYWORDS = (
    "criterion",
    "ratio",
    "flops",
    "ratios",
    "latency",
    "table",
    "scope",
    "min_channels",
    "min_share",
    "round_to",
    "exclude",
    "data",
    "normalize",
    "input_shape",
)


def _keywords(fn: Callable) -> tuple[str, ...]:
    """Names `fn` (a function or class) takes by keyword, `**kwargs` aside."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(
        p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds
    )


def check_options(
    caller: Callable,
    options: Mapping,
    criteria: Iterable,
    *,
    sets: Iterable[str] = (),
) -> None:
    """Check the `**options` given to `caller` against what will read them.

    The one check behind every `**options` of the public API (`plan`, and
    through it `prune`; `Staged`, `prune_to_tolerance`, `PruningCallback`). An
    option passes if it is a `plan()` keyword or one of the `criteria` reads it
    (see `register_criterion(options=)`).

    Args:
        caller: the public function or class the options were given to; named
            in the message, and its own parameters are offered as suggestions.
        options: the keyword arguments to check.
        criteria: the criteria (names, callables or `Criterion`s) the options go
            to; an option one of them reads passes.
        sets: `plan()` keywords that `caller` sets itself, so not options.

    Raises:
        TypeError: for any other option, naming the closest valid one and
            listing the valid ones.
    """
    crits = [get_criterion(c) for c in criteria]
    sets = tuple(sets)
    accepted = [k for k in PLAN_KEYWORDS if k not in sets]
    for name in options:
        if name not in accepted and not any(c.accepts(name) for c in crits):
            raise TypeError(_unknown_option(caller, name, crits, accepted, sets))


def _unknown_option(caller, name: str, crits, accepted, sets) -> str:
    title = f"{caller.__name__}()"
    own = [k for k in _keywords(caller) if k not in (*accepted, "model")]
    declared = sorted({o for c in crits for o in c.options or ()})
    readers = registered_options()
    noun = "criterion" if len(crits) == 1 else "criteria"
    labels = ", ".join(repr(c.name) for c in crits)
    if name in sets:
        head = f"{title} got option {name!r}, which it sets itself."
    elif name in readers:
        head = (
            f"{title} got option {name!r}, which {noun} {labels} does not read, "
            f"so it would be ignored (criteria that read it: "
            f"{', '.join(readers[name])})."
        )
    else:
        head = f"{title} got an unknown option {name!r}."
        candidates = [*declared, *accepted, *own, *readers]
        match = difflib.get_close_matches(name, candidates, n=1)
        if match:
            guess = match[0]
            head += f" Did you mean {guess!r}"
            if guess in readers and guess not in declared:
                head += f" (an option of criterion {readers[guess][0]!r})"
            head += "?"
    listing = (
        f" Options of {noun} {labels}: {', '.join(declared) or 'none'}; "
        f"of plan(): {', '.join(accepted)}"
    )
    if own:
        listing += f"; of {title} itself: {', '.join(own)}"
    return head + listing + "."
