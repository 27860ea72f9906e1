"""Self-contained HTML reports: headings, paragraphs, tables and inlined images.

A report is a list of parts made by `heading`, `paragraph`, `table` and
`image`; `write_page` joins them into one HTML file with no outside
references (images are base64 PNG data), which opens anywhere and can be
attached to a ticket or a pull request.
"""

from __future__ import annotations

import base64
import html
import os
from typing import Iterable, Sequence

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; }
.meta { color: #666; font-size: 0.9em; }
"""


def heading(text: str) -> str:
    return f"<h2>{html.escape(text)}</h2>"


def paragraph(text: str, meta: bool = False) -> str:
    css = ' class="meta"' if meta else ""
    return f"<p{css}>{html.escape(text)}</p>"


def table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """An HTML table; cells that read as numbers are aligned right."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text = f"{cell:.4g}" if isinstance(cell, float) else str(cell)
            css = ' class="num"' if _numeric(text) else ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def image(png: bytes, alt: str) -> str:
    """A PNG inlined as data, so the page needs no other file."""
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def write_page(path: str, title: str, parts: Sequence[str]) -> str:
    """Write the parts as one HTML page at `path`; returns the path."""
    if not str(path).lower().endswith((".html", ".htm")):
        raise ValueError(f"an HTML report needs a .html file name; got {path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def _numeric(text: str) -> bool:
    try:
        float(text.rstrip("%xKMG").replace(",", ""))
    except ValueError:
        return False
    return True
