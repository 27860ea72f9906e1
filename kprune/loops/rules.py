"""When a pruned model is still good enough: the tolerance rule and the
collapse guard.

`Tolerance` says how far a metric may fall from its baseline; the tolerance
loop (`prune_to_tolerance`) and the callback's tolerance mode
(`PruningCallback(tolerance=...)`) both judge by it. `degenerate` tells a model
that has collapsed to one prediction for every input, which a metric such as
pixel accuracy can hide.
"""

from __future__ import annotations

import copy

import keras
import numpy as np

from kprune.checks import check_settings, take_deprecated
from kprune.data import first_inputs
from kprune.keras_graph import metric_direction


class Tolerance:
    """How far a metric may fall from its baseline.

    ```python
    kprune.prune_to_tolerance(model, train, val, tolerance=0.01)
    kprune.prune_to_tolerance(model, train, val,
                              tolerance=kprune.Tolerance(0.02, relative=True))
    ```

    Args:
        drop: the largest allowed drop (a rise, for a metric to minimise);
            absolute, or a share of the baseline with `relative=True`.
        relative: see `drop`.
        mode: `"max"` when higher is better (accuracy), `"min"` when lower is
            better (a loss), or `"auto"`, which, like Keras' `EarlyStopping`,
            takes `"min"` for a loss and the direction a compiled Keras metric
            declares, and otherwise asks for `mode=`.

    Raises:
        ValueError: for a negative `drop` or an unknown `mode`.
    """

    def __init__(self, drop: float, relative: bool = False, mode: str = "auto"):
        check_settings(tolerance=drop, mode=mode)
        if not isinstance(relative, bool):
            raise ValueError(f"relative must be True or False; got {relative!r}")
        self.drop_allowed, self.relative, self.mode = float(drop), relative, mode
        self.name: str | None = None
        self.baseline: float | None = None
        self.higher_is_better: bool | None = None

    def __repr__(self) -> str:
        return (
            f"Tolerance({self.drop_allowed}, relative={self.relative}, "
            f"mode={self.mode!r})"
        )

    def start(self, name: str, baseline: float, model: keras.Model | None = None):
        """A copy of this rule judging the metric `name` against `baseline`
        (its direction read from `model`'s compiled metrics with `"auto"`)."""
        started = copy.copy(self)
        started.name, started.baseline = name, float(baseline)
        started.higher_is_better = _direction(self.mode, name, model)
        return started

    @property
    def limit(self) -> float:
        """The largest drop allowed."""
        scale = abs(self.baseline) if self.relative else 1.0
        return self.drop_allowed * scale

    def drop(self, value: float) -> float:
        """How much worse `value` is than the baseline (positive = worse)."""
        worse = self.baseline - value
        return worse if self.higher_is_better else -worse

    def holds(self, value: float) -> bool:
        """True while `value` is within the tolerance of the baseline."""
        return self.drop(value) <= self.limit + 1e-9


def as_tolerance(tolerance, options: dict | None = None, where: str = "") -> Tolerance:
    """`tolerance=` as a `Tolerance`: a number is the largest absolute drop; a
    dict is `Tolerance`'s arguments (as a callback's config holds them).

    Args:
        options: the caller's `**options`, from which `relative=` and `mode=`,
            given the way kprune 0.1 took them, are popped (deprecated).
        where: the caller, for the deprecation message.
    """
    moved = take_deprecated(
        options if options is not None else {},
        {
            "relative": "tolerance=kprune.Tolerance(drop, relative=...)",
            "mode": "tolerance=kprune.Tolerance(drop, mode=...)",
        },
        where,
    )
    moved = {k: v for k, v in moved.items() if v is not None}
    if isinstance(tolerance, dict):
        tolerance = Tolerance(**tolerance)
    if moved and tolerance is None:
        raise ValueError(
            f"{', '.join(f'{k}=' for k in sorted(moved))} only apply with "
            "tolerance=, and would be ignored: leave them out"
        )
    if moved and isinstance(tolerance, Tolerance):
        raise ValueError(
            f"give {', '.join(f'{k}=' for k in sorted(moved))} once, in "
            "tolerance=kprune.Tolerance(drop, relative=, mode=)"
        )
    if tolerance is None or isinstance(tolerance, Tolerance):
        return tolerance
    if isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool):
        return Tolerance(tolerance, **moved)
    raise TypeError(
        "tolerance= takes the largest allowed drop of the metric (a number), or "
        f"kprune.Tolerance(drop, relative=, mode=); got {tolerance!r}"
    )


def _direction(mode: str, name: str, model) -> bool:
    """True when higher values of the metric are better."""
    if mode != "auto":
        return mode == "max"
    found = metric_direction(model, name)
    if found is None:
        raise ValueError(
            f"cannot tell whether the metric {name!r} should be maximised or "
            "minimised: pass kprune.Tolerance(..., mode='max') (higher is better, "
            "as for accuracy) or mode='min' (lower is better, as for a loss)"
        )
    return found


def degenerate(model, data, samples: int = 32) -> bool:
    """True when `model` predicts the same thing for every input of `data`: one
    class everywhere (argmax over several channels; one side of 0, or of 0.5
    for values in [0, 1], for one channel), or a constant output.

    A model pruned too far can collapse this way (every pixel background)
    while a metric such as pixel accuracy still looks acceptable; the
    tolerance loop rejects such a round. Without `data`, False.
    """
    if data is None:
        return False
    inputs = first_inputs(data, samples, "val_data")
    if not inputs:
        return False
    batch = [np.concatenate(parts) for parts in zip(*inputs)]
    outputs = model(batch if len(batch) > 1 else batch[0], training=False)
    for y in keras.tree.flatten(outputs):
        y = np.asarray(keras.ops.convert_to_numpy(y), dtype=np.float64)
        if y.ndim < 2:
            continue
        if np.ptp(y) <= 1e-6 * max(np.abs(y).max(), 1e-12):
            return True
        if y.shape[-1] > 1:
            labels = y.argmax(-1)
        else:
            labels = y > (0.5 if y.min() >= 0 and y.max() <= 1 else 0.0)
        if np.all(labels == labels.flat[0]):
            return True
    return False
