"""`unwrap`: fold importance multipliers and masks into the weights.

Every layer whose handler stands for a wrapper (`LayerHandler.unwrapped`)
becomes the plain layer it wraps, its filters (or BatchNorm scale and offset)
multiplied by `importance * mask`; every other layer is copied. The outputs
stay the same. `kprune.wrap`, which puts the wrappers in, lives with them in
`kprune.importance`; this half is surgery, a rebuild through the handlers,
so exporting and shrinking never need the wrapper classes.
"""

from __future__ import annotations

import keras

from kprune.handlers import get_handler
from kprune.surgery.cloning import copy_layer, rebuild


def unwrap(model: keras.Model) -> keras.Model:
    """Fold the importance multipliers (and masks) into the weights.

    Each wrapper becomes the plain layer it wraps, with its filters (or
    BatchNorm scale and offset) multiplied by `importance * mask`. The outputs
    stay the same. A model without wrappers comes back as a plain copy; the
    model given is not modified.

    Args:
        model: a model from `kprune.wrap` (trained, masked or shrunk), or any
            functional or Sequential model.

    Returns:
        A new model without importance wrappers.
    """

    def make_layer(layer):
        found = get_handler(layer).unwrapped(layer)
        return copy_layer(layer) if found is None else found

    return rebuild(model, make_layer)
