"""`Result`: what every kprune result shares, and the registry of their kinds.

A result is plain data (a dataclass) that a user prints, saves and reads back,
draws, and turns into a page to attach to a ticket. The subclasses say what
they hold and how it reads; this base writes the rest once:

* `str(result)` and `table()` from `table_data()`, through `format_table`;
* `to_dict` / `from_dict` / `to_json` / `from_json`, the JSON carrying a
  `"kind"` that `load` reads to rebuild any result from its file;
* `plot(path)` from `figure()`, and `save_html(path)` from `html_parts()`.

A subclass declares its `kind` as a class attribute and is registered by it,
so `kprune report` and `kprune.results.load` read any result kprune writes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

from kprune.results import htmlpage
from kprune.results.plots import figure_png, save_figure
from kprune.results.tables import format_table

#: kind -> result class, filled as the classes are defined.
_KINDS: dict[str, type] = {}


class Result:
    """The base of kprune's results (see the module doc).

    Subclasses are dataclasses with a `kind`; a field whose metadata says
    `{"save": False}` (a callable, say) is left out of `to_dict`.
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if not kind:
            return
        if kind in _KINDS and _KINDS[kind].__qualname__ != cls.__qualname__:
            raise ValueError(
                f"result kind {kind!r} is taken by {_KINDS[kind].__qualname__}; "
                "give the new class another kind"
            )
        _KINDS[kind] = cls

    # ------------------------------------------------------------ reading
    def table_data(self) -> tuple[list, list, str]:
        """`(headers, rows, title)` of the result's table."""
        raise NotImplementedError(f"{type(self).__name__} defines no table")

    def table(self) -> str:
        """The result as a plain-text table."""
        return format_table(*self.table_data())

    def __str__(self) -> str:
        return self.table()

    # --------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        """The result as plain data, with its `"kind"`."""
        data = {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.metadata.get("save", True)
        }
        return {"kind": self.kind, **data}

    @classmethod
    def from_dict(cls, data: dict):
        """The result that `to_dict()` described."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self, path: str | None = None) -> str:
        """The result as JSON; also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path:
            with open(path, "w") as f:
                f.write(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str):
        """Read `to_json`'s output: the JSON text, or a file holding it."""
        data = _read(text_or_path)
        kind = data.get("kind")
        if kind and cls.kind and kind != cls.kind:
            raise ValueError(
                f"this JSON holds a {kind!r} result, not a {cls.kind!r} one: read "
                "it with kprune.results.load, which reads any kind"
            )
        return cls.from_dict(data)

    # ------------------------------------------------------------ drawing
    def figure(self):
        """The result drawn as a matplotlib `Figure`."""
        raise NotImplementedError(f"{type(self).__name__} has nothing to draw")

    def drawable(self) -> bool:
        """True when `figure()` draws something."""
        return type(self).figure is not Result.figure

    def plot(self, path: str) -> str:
        """Save `figure()` to `path` (.png, .svg or .pdf); returns the path."""
        return save_figure(self.figure(), path)

    def html_parts(self) -> list[str]:
        """The parts of `save_html`'s page: the figure, then the table."""
        headers, rows, title = self.table_data()
        parts = [htmlpage.paragraph(title, meta=True)] if title else []
        if self.drawable():
            parts.append(htmlpage.image(figure_png(self.figure()), self.kind))
        return parts + [htmlpage.table(headers, rows)]

    def html_title(self) -> str:
        return f"kprune {self.kind}"

    def save_html(self, path: str) -> str:
        """A self-contained HTML page of the result; returns the path."""
        return htmlpage.write_page(path, self.html_title(), self.html_parts())


def kinds() -> dict[str, type]:
    """Every registered result kind and its class."""
    return dict(_KINDS)


def load(text_or_path: str) -> Result:
    """Any kprune result from its JSON (text or file), by its `"kind"`.

    Raises:
        ValueError: when the JSON names no kind kprune knows.
    """
    data = _read(text_or_path)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in _KINDS:
        known = ", ".join(sorted(_KINDS))
        raise ValueError(
            f"{str(text_or_path)[:80]!r} holds no kprune result kind kprune "
            f"knows (got {kind!r}); the kinds are {known}. Write results with "
            "their to_json()"
        )
    return _KINDS[kind].from_dict(data)


def _read(text_or_path: str):
    text = str(text_or_path)
    if not text.lstrip().startswith(("{", "[")):
        with open(text) as f:
            text = f.read()
    return json.loads(text)


def _plain(value):
    """Dataclasses and tuples inside a result as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
