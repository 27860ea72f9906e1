"""Compiling a model as another one is compiled.

`model.get_compile_config()` / `compile_from_config()` is Keras' way, but it
deserialises the loss and the metrics by name, so it fails on the commonest
custom setting there is: a loss function the user wrote and did not register
(a Dice loss, say). `compile_like` falls back to the objects `compile` was
given, so kprune keeps the user's compile settings either way.
"""

from __future__ import annotations

import keras

from kprune import keras_graph


def compile_settings(model: keras.Model) -> tuple[dict, dict]:
    """What `compile_like` needs to compile another model (or `model` again)
    as `model` is compiled now: its compile config and its compile arguments."""
    return model.get_compile_config(), keras_graph.compile_arguments(model)


def compile_like(
    target: keras.Model, settings: tuple[dict, dict], same_variables: bool = False
) -> None:
    """Compile `target` with `settings` (from `compile_settings`).

    From the config first; where that does not deserialise, from the original
    objects. The optimizer object is reused only with `same_variables` (it is
    built for one model's variables); otherwise a fresh one is made from its
    config.

    Raises:
        the config's error, when neither way compiles `target`.
    """
    config, arguments = settings
    try:
        target.compile_from_config(config)
        return
    except Exception as error:  # noqa: BLE001 - the fallback may still work
        if not arguments:
            raise
        first = error
    arguments = dict(arguments)
    optimizer = arguments.get("optimizer")
    if isinstance(optimizer, keras.optimizers.Optimizer) and not same_variables:
        arguments["optimizer"] = type(optimizer).from_config(optimizer.get_config())
    try:
        target.compile(**arguments)
    except Exception as error:  # noqa: BLE001 - the first error says more
        raise first from error
