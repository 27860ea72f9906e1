"""Data in the forms users have it: arrays, `(x, y)` tuples, `tf.data` datasets.

Criteria that run the model, int8 calibration and export verification all read
data through `batches()`, so every entry point accepts the same forms.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

_FORMS = (
    "a NumPy array of inputs, a list of arrays (one per model input), an (x, y) "
    "tuple, or a tf.data.Dataset yielding x or (x, y) batches"
)


def _is_dataset(data) -> bool:
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "take")


def _to_numpy(x):
    if isinstance(x, (list, tuple)):
        return [np.asarray(v) for v in x]
    if isinstance(x, dict):
        return {k: np.asarray(v) for k, v in x.items()}
    return np.asarray(x)


def _length(x) -> int:
    if isinstance(x, list):
        return len(x[0])
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    return len(x)


def _take(x, sl):
    if isinstance(x, list):
        return [v[sl] for v in x]
    if isinstance(x, dict):
        return {k: v[sl] for k, v in x.items()}
    return x[sl]


def batches(
    data, batch_size: int = 32, max_batches: int | None = None, name: str = "data"
) -> Iterator[tuple]:
    """Yield `(x, y)` batches as NumPy values (`y` is None when absent).

    Args:
        data: an array, a list of arrays, an `(x, y)` tuple, or a `tf.data.Dataset`
            (already batched) yielding `x` or `(x, y)`.
        batch_size: batch size for array inputs.
        max_batches: stop after this many batches.
        name: the argument name, for error messages.

    Raises:
        ValueError: if `data` is None or empty.
        TypeError: if `data` is not one of the accepted forms.
    """
    if data is None:
        raise ValueError(f"{name} is required here: pass {_FORMS}")
    count = 0
    if _is_dataset(data):
        for item in data:
            if max_batches is not None and count >= max_batches:
                return
            if isinstance(item, (tuple, list)) and len(item) in (2, 3):
                x, y = item[0], item[1]
            else:
                x, y = item, None
            count += 1
            yield _to_numpy(x), (None if y is None else _to_numpy(y))
        if count == 0:
            raise ValueError(f"{name} is an empty dataset")
        return
    if isinstance(data, tuple) and len(data) == 2:
        x, y = _to_numpy(data[0]), _to_numpy(data[1])
    elif isinstance(data, (np.ndarray, list, dict)) or hasattr(data, "__array__"):
        x, y = _to_numpy(data), None
    else:
        raise TypeError(f"{name} must be {_FORMS}; got {type(data).__name__}")
    n = _length(x)
    if n == 0:
        raise ValueError(f"{name} is empty")
    for start in range(0, n, batch_size):
        if max_batches is not None and count >= max_batches:
            return
        sl = slice(start, start + batch_size)
        count += 1
        yield _take(x, sl), (None if y is None else _take(y, sl))


def first_inputs(data, n: int, name: str = "data") -> list:
    """Up to `n` single samples of model input, each as a list of arrays (one per
    model input, with a batch dim of 1)."""
    samples = []
    for x, _ in batches(data, batch_size=max(n, 1), name=name):
        xs = x if isinstance(x, list) else [x]
        for i in range(_length(xs)):
            samples.append([np.asarray(v[i : i + 1]) for v in xs])
            if len(samples) >= n:
                return samples
    return samples
