"""The one registry from layer classes to handlers."""

from __future__ import annotations

import keras

from kprune.handlers.base import LayerHandler
from kprune.handlers.probing import ProbedHandler

_HANDLERS: dict[type | str, LayerHandler] = {}
#: For layers and ops without a handler: frozen unless probing proves them
#: channel-wise (only possible for calls that hold no weights).
_UNKNOWN = ProbedHandler()


def register_handler(
    layer_class: type | str, handler: LayerHandler, *, override: bool = False
) -> None:
    """Tell kprune how channels pass through `layer_class` (and its subclasses).

    Args:
        layer_class: a `keras.layers.Layer` subclass (or a `keras.ops` operation
            class) whose calls the handler describes; or the name it is
            registered under for Keras serialization, such as
            `"keras_cv>SqueezeAndExcite2D"`, which spares importing its package.
        handler: an instance of a `kprune.handlers.LayerHandler` subclass.
        override: replace an existing registration for exactly this class.

    Raises:
        TypeError: if the arguments have the wrong types.
        ValueError: if `layer_class` is registered already and `override` is False.
    """
    if not isinstance(layer_class, (type, str)):
        raise TypeError(
            "register_handler expects a layer class, e.g. "
            f"register_handler(MyLayer, MyHandler()). Received: {layer_class!r}"
        )
    if not isinstance(handler, LayerHandler):
        raise TypeError(
            "handler must be an instance of a kprune.handlers.LayerHandler subclass. "
            f"Received: {handler!r}"
        )
    label = getattr(layer_class, "__name__", layer_class)
    if layer_class in _HANDLERS and not override:
        raise ValueError(
            f"{label} already has a handler "
            f"({type(_HANDLERS[layer_class]).__name__}). Pass override=True to "
            "replace it."
        )
    _HANDLERS[layer_class] = handler


def unregister_handler(layer_class: type | str) -> None:
    """Remove the handler registered for exactly `layer_class`, if any."""
    _HANDLERS.pop(layer_class, None)


def get_handler(layer) -> LayerHandler:
    """The handler for `layer` (a layer, or a layer class), found along its
    class hierarchy.

    A subclass of `Conv2D` gets the `Conv2D` handler. A layer with no registered
    class in its hierarchy gets a handler that freezes its channels, unless the
    layer holds no weights and probing proves it channel-wise.
    """
    for cls in (layer if isinstance(layer, type) else type(layer)).__mro__:
        handler = _HANDLERS.get(cls)
        if handler is None and "__module__" in vars(cls):
            handler = _HANDLERS.get(keras.saving.get_registered_name(cls))
        if handler is not None:
            return handler
    return _UNKNOWN


def has_handler(layer) -> bool:
    """True when a handler is registered for `layer`'s class or a base class."""
    return get_handler(layer) is not _UNKNOWN


def registered_classes() -> list[type | str]:
    """Every class that has a handler, in registration order."""
    return list(_HANDLERS)
