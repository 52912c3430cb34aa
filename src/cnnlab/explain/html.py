"""Small HTML builders for report.html: escaped text, tables, embedded PNG figures."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from html import escape
from importlib import resources

from matplotlib.figure import Figure

from cnnlab.explain.figures import figure_png


def css() -> str:
    """The report's stylesheet (inlined so the page needs no other file)."""
    return resources.files("cnnlab.explain").joinpath("report.css").read_text(encoding="utf-8")


def esc(value) -> str:
    """Any value as escaped HTML text."""
    return escape(str(value), quote=True)


def fmt(value, exact: bool = False) -> str:
    """A cell value as text: floats to 4 decimals (below 0.001 as 3 significant digits in e
    notation, so a learning rate of 3e-5 is not 0.0000), ints with thousands separators.

    exact: floats as Python writes them (3e-05, 0.99995): for settings, shown as the user gave them.
    """
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if exact:
            return repr(value)
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return "(" + ", ".join(fmt(v, exact) for v in value) + ")"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def _is_num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table(header: Sequence[str], rows: Iterable[Sequence], *, numeric: Sequence[bool] | None = None,
          cls: str = "") -> str:
    """A <table>; cells that are already-escaped HTML go in as Markup, others are escaped.

    Columns flagged numeric (default: those whose cells are all numbers) are right-aligned with
    tabular figures.
    """
    rows = [list(r) for r in rows]
    if numeric is None:
        numeric = [all(_is_num(r[j]) for r in rows if j < len(r) and r[j] is not None)
                   and any(j < len(r) and _is_num(r[j]) for r in rows)
                   for j in range(len(header))]
    head = "".join(f'<th{" class=num" if numeric[j] else ""} scope="col">{esc(h)}</th>'
                   for j, h in enumerate(header))
    body = []
    for r in rows:
        cells = []
        for j, v in enumerate(r):
            text = v if isinstance(v, Markup) else esc(fmt(v))
            cells.append(f'<td{" class=num" if j < len(numeric) and numeric[j] else ""}>{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    c = f' class="{esc(cls)}"' if cls else ""
    return (f'<div class="table-wrap"><table{c}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


class Markup(str):
    """A string of HTML that table() must not escape again."""


def png_img(fig_or_png: Figure | bytes, alt: str, *, width: int | None = None) -> str:
    """An <img> with the PNG embedded as a base64 data URI; width in CSS pixels (default: the
    figure's natural size, capped by the container)."""
    data = fig_or_png if isinstance(fig_or_png, bytes) else figure_png(fig_or_png)
    if width is None and isinstance(fig_or_png, Figure):
        width = int(fig_or_png.get_figwidth() * 96)  # inches at CSS 96 px/in: sharp at 120 dpi
    w = f' width="{width}"' if width else ""
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{esc(alt)}"{w}>'


def figure(fig_or_png: Figure | bytes, alt: str, caption: str = "", *,
           width: int | None = None) -> str:
    """A <figure> holding one embedded PNG and an optional caption."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{png_img(fig_or_png, alt, width=width)}{cap}</figure>"


def section(anchor: str, title: str, body: str, note: str = "") -> str:
    """A <section id=anchor> with an h2 and an optional lead paragraph."""
    lead = f'<p class="note">{esc(note)}</p>' if note else ""
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{lead}{body}</section>'
