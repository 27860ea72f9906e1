"""The argument checks every pruning entry point shares, with one wording.

`plan`, `Staged`, `prune_to_tolerance` and `PruningCallback` take the same
targets and steps; each checks them here, so a bad value gets the same message
(naming the fix) wherever it is passed.
"""

from __future__ import annotations

import warnings

STEP_UNITS = ("ratio", "flops", "latency")
MODES = ("auto", "max", "min")

_MEANING = {
    "ratio": "the share of channels to remove",
    "flops": "the share of FLOPs to keep",
    "ratios": "a share of channels to remove per group",
    "latency": "the share of the measured latency to keep",
    "latency_ms": "the predicted milliseconds to stay within",
    "tolerance": "the largest allowed drop of the metric",
}


def check_one_target(**targets) -> str:
    """Exactly one of the keyword targets (`ratio=`, `flops=`, ...) is given;
    returns its name."""
    given = [name for name, value in targets.items() if value is not None]
    if len(given) != 1:
        options = " or ".join(f"{n}= ({_MEANING[n]})" for n in targets)
        received = ", ".join(f"{n}={v}" for n, v in targets.items())
        raise ValueError(f"give exactly one target: {options}. Received: {received}")
    return given[0]


def _fraction(low_open: bool, high_open: bool):
    def inside(value) -> bool:
        if not _number(value):
            return False
        above = value > 0 if low_open else value >= 0
        below = value < 1 if high_open else value <= 1
        return above and below

    return inside


#: Per setting: the test a value must pass, and the message when it fails.
_RULES = {
    "ratio": (
        _fraction(False, True),
        "ratio must be in [0, 1); got {value!r}. Use flops= to prune by a FLOPs "
        "budget instead (ratio is the share of channels to remove).",
    ),
    "flops": (
        _fraction(True, False),
        "flops is the share of FLOPs to keep and must be in (0, 1]; got {value!r}",
    ),
    "latency": (
        _fraction(True, True),
        "latency is the share of the dense model's measured latency to keep and "
        "must be in (0, 1); got {value!r}. Use latency_ms= for milliseconds.",
    ),
    "latency_ms": (
        lambda v: _number(v) and v > 0,
        "latency_ms must be a number of milliseconds > 0; got {value!r}",
    ),
    "step": (
        _fraction(True, True),
        "step must be in (0, 1); got {value!r}. It is the share pruned per round "
        "(0.1 is a good start).",
    ),
    "tolerance": (
        lambda v: _number(v) and v >= 0,
        "tolerance must be >= 0; got {value!r}. It is the largest allowed drop of "
        "the metric (0.01 is one point of accuracy).",
    ),
    "by": (
        lambda v: v in STEP_UNITS,
        f"by must be one of {STEP_UNITS}; got {{value!r}}",
    ),
    "mode": (
        lambda v: v in MODES,
        f"mode must be one of {MODES}; got {{value!r}}. 'max' when higher is "
        "better (accuracy), 'min' when lower is (a loss).",
    ),
    "learning_rate": (
        lambda v: _number(v) and v > 0,
        "learning_rate must be a number > 0 (or None for the compiled rate); "
        "got {value!r}",
    ),
    "max_rounds": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "max_rounds must be >= 1 (an int); got {value!r}",
    ),
    "batch_size": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "batch_size must be an int >= 1 (or None for Keras' 32); got {value!r}",
    ),
}


def check_settings(**given) -> None:
    """Check targets and steps by name (`ratio=`, `flops=`, `step=`,
    `tolerance=`, `by=`, `mode=`, `max_rounds=`); None means not given.

    Raises:
        ValueError: naming the argument, its allowed range and what it means.
        TypeError: for a name this function does not check.
    """
    for name, value in given.items():
        if name not in _RULES:
            raise TypeError(f"check_settings does not know {name!r}")
        valid, message = _RULES[name]
        if value is not None and not valid(value):
            raise ValueError(message.format(value=value))


def check_shares(name: str, values) -> list[float]:
    """A non-empty list or tuple of `name=` settings (`"ratio"`, `"flops"`),
    each checked; returns them sorted, without repeats. A ratio of 0 (the
    unpruned model, which is measured anyway) is refused."""
    listed = list(values) if isinstance(values, (list, tuple)) else None
    if not listed:
        raise ValueError(
            f"give a non-empty list of {name} values ({_MEANING[name]}); got {values!r}"
        )
    for value in listed:
        check_settings(**{name: value})
        if name == "ratio" and value == 0:
            raise ValueError("ratios must be > 0: the unpruned model is the baseline")
    return sorted(set(float(v) for v in listed))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_span(start_epoch, end_epoch, frequency, update_every) -> None:
    """The epochs and frequencies of a schedule are consistent."""
    if start_epoch < 0 or end_epoch < start_epoch:
        raise ValueError(
            f"need 0 <= start_epoch <= end_epoch; got {start_epoch}, {end_epoch}"
        )
    if frequency < 1 or (update_every is not None and update_every < 1):
        raise ValueError("frequency and update_every must be >= 1")


def check_table(table, wanted: bool) -> None:
    """A latency target (`wanted`) comes with its table, and a table with one."""
    if wanted and table is None:
        raise ValueError(
            "a latency target (latency=/latency_ms=) plans against a measured "
            "latency table: pass table=kprune.LatencyTable.measure(model) (or "
            "its JSON file's path)"
        )
    if table is not None and not wanted:
        raise ValueError("table= is only read with latency= or latency_ms=")


def take_deprecated(options: dict, renames: dict, where: str) -> dict:
    """Pop keywords that moved in kprune 0.2 out of `**options`, with a
    `DeprecationWarning` naming the new spelling; returns `{old: value}` of
    those given, for the caller to map (see CHANGELOG.md).

    Args:
        options: the caller's `**options` (changed in place).
        renames: old keyword -> what to use instead, as the warning says it.
        where: the function or class, for the message.
    """
    found = {}
    for old, instead in renames.items():
        if old in options:
            found[old] = options.pop(old)
            warnings.warn(
                f"{where}({old}=...) is deprecated since kprune 0.2 and will be "
                f"removed in 0.3: use {instead}",
                DeprecationWarning,
                stacklevel=3,
            )
    return found
