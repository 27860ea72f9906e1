"""What a model was compiled with, and compiling another one the same way.

`model.get_compile_config()` / `compile_from_config()` is Keras' way, but it
deserialises the loss and the metrics by name, so it fails on the commonest
custom setting there is: a loss function the user wrote and did not register
(a Dice loss, say). `compile_like` falls back to the objects `compile` was
given, so kprune keeps the user's compile settings either way.

`metric_direction` reads whether a compiled metric is to be maximised, which
Keras keeps on the metric object (the same rule its `EarlyStopping` uses).
"""

from __future__ import annotations

import warnings

import keras


def compile_settings(model: keras.Model) -> tuple[dict, dict]:
    """What `compile_like` needs to compile another model (or `model` again)
    as `model` is compiled now: its compile config and its compile arguments."""
    return model.get_compile_config(), compile_arguments(model)


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
        with warnings.catch_warnings():
            # A model whose compile() is its own (Keras' Distiller) says it was
            # not compiled from the config, and is not: the objects then do it.
            warnings.simplefilter("ignore", UserWarning)
            target.compile_from_config(config)
        if getattr(target, "compiled", False):
            return
        first = ValueError(f"{type(target).__name__} does not compile from a config")
    except Exception as error:  # noqa: BLE001 - the fallback may still work
        first = error
    if not arguments:
        raise first
    arguments = dict(arguments)
    optimizer = arguments.get("optimizer")
    if isinstance(optimizer, keras.optimizers.Optimizer) and not same_variables:
        arguments["optimizer"] = type(optimizer).from_config(optimizer.get_config())
    try:
        target.compile(**arguments)
    except Exception as error:  # noqa: BLE001 - the first error says more
        raise first from error


def compile_arguments(model) -> dict:
    """The arguments `model.compile` was last called with, as the user gave
    them (the loss and metric objects themselves, not their serialised
    configs); `{}` for a model that is not compiled."""
    saved = getattr(model, "_compile_config", None)
    if not getattr(model, "compiled", False) or saved is None:
        return {}
    return dict(saved.config)


def metric_direction(model, name: str) -> bool | None:
    """True when higher values of the metric `name` (a log key such as
    `"val_accuracy"`) are better, False when lower are, None when the model's
    compiled metrics do not say. A loss is always minimised."""
    bare = name.removeprefix("val_")
    if bare == "loss" or bare.endswith("_loss"):
        return False
    found = []
    for metric in getattr(model, "metrics", None) or []:
        found.extend(getattr(metric, "metrics", None) or [metric])
    for metric in found:
        direction = getattr(metric, "_direction", None)
        if metric.name == bare and direction in ("up", "down"):
            return direction == "up"
    return None
