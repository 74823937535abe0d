"""What a book page displays, as objects with an HTML and a plain-text form: a computed box (admonition), a
figure as an SVG ``<img>`` with real alt text, a CSV download, a styled table. A notebook cell only shows
them; Jupyter (and so the book) renders ``_repr_html_``, a terminal or a test reads ``str()``.

matplotlib is imported only by :func:`figure_html`; nothing here needs torch.
"""
from __future__ import annotations

import base64
import html
import io
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["Box", "Html", "csv_download", "figure_html", "styled", "with_csv"]

# Pixels per CSS inch and points per inch: an SVG of W pt is shown W * 96 / 72 px wide, so that a 10 pt
# font inside it is a 10 pt font on the page.
_PX_PER_PT = 96 / 72


@dataclass(frozen=True)
class Html:
    """Raw HTML for the page and a plain-text stand-in (what a test or a terminal reads)."""

    html: str
    text: str = ""

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def __add__(self, other: Html) -> Html:
        return Html(self.html + other.html, "\n".join(t for t in (self.text, other.text) if t))


def _plain(text: str) -> str:
    return re.sub(r"\*([^*\s][^*]*?)\*", r"\1", text.replace("**", "")).replace("`", "")


def _markup(text: str) -> str:
    """``**bold**`` and ```code``` of a computed sentence as HTML (the rest escaped)."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*([^*\s][^*]*?)\*", r"<em>\1</em>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


@dataclass(frozen=True)
class Box:
    """A computed box of text: ``lines`` in light markup (``**bold**``, ```code```), shown as an admonition
    (a list; an item given as ``(text, sub_items)`` has a nested list) in HTML and as plain text (``str``).
    ``extra_html`` is appended inside the box (a code block, a download link)."""

    title: str
    lines: tuple[str | tuple[str, tuple[str, ...]], ...]
    css: str = "sk-verdict tip"
    extra_html: str = ""
    extra_text: str = ""

    def _repr_html_(self) -> str:
        items = []
        for line in self.lines:
            head, subs = (line, ()) if isinstance(line, str) else line
            sub = "".join(f"<li>{_markup(s)}</li>" for s in subs)
            items.append(f"<li>{_markup(head)}" + (f"<ul>{sub}</ul>" if sub else "") + "</li>")
        listed = f"<ul>{''.join(items)}</ul>" if items else ""
        return (f'<div class="admonition {self.css}"><p class="admonition-title">{html.escape(self.title)}</p>'
                f"{listed}{self.extra_html}</div>")

    def __str__(self) -> str:
        out = [self.title]
        for line in self.lines:
            head, subs = (line, ()) if isinstance(line, str) else line
            out += [f"- {_plain(head)}"] + [f"  - {_plain(s)}" for s in subs]
        return "\n".join(out + ([self.extra_text] if self.extra_text else []))

    __repr__ = __str__


def figure_html(fig: Any, alt: str, caption: str | None = None) -> Html:
    """``fig`` (a matplotlib figure) as an SVG ``<img>`` with ``alt`` text, shown at its natural size (so
    that its fonts keep their point size) and never wider than the page column; the figure is closed, so
    that Jupyter does not show it a second time."""
    import matplotlib.pyplot as plt

    if not alt.strip():
        raise ValueError("Expected a non-empty `alt` text describing the figure, for readers who cannot see it.")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    match = re.search(rb'<svg[^>]*\swidth="([\d.]+)pt"', svg)
    width = f' width="{round(float(match.group(1)) * _PX_PER_PT)}"' if match else ""
    source = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    image = f'<img class="sk-figure" src="{source}" alt="{html.escape(alt, quote=True)}"{width}>'
    text = f"[figure: {alt}]"
    if caption:
        return Html(f'<figure class="sk-figure">{image}<figcaption>{_markup(caption)}</figcaption></figure>',
                    f"{text}\n{_plain(caption)}")
    return Html(f'<figure class="sk-figure">{image}</figure>', text)


def csv_download(data: Any, filename: str, label: str | None = None) -> Html:
    """A link that downloads ``data`` (a frame, with its row labels unless they are just 0..n-1, or CSV text) as
    ``filename``; the file travels inside the page (a ``data:`` address), so it works offline. A pandas Styler
    downloads its frame."""
    if hasattr(data, "data") and isinstance(data.data, pd.DataFrame):  # a Styler: its frame
        data = data.data
    if isinstance(data, pd.DataFrame):
        data = data.to_csv(index=not isinstance(data.index, pd.RangeIndex))  # row labels, unless just 0..n-1
    href = "data:text/csv;charset=utf-8," + urllib.parse.quote(data)
    label = label or f"Download {filename}"
    return Html(f'<p class="sk-download"><a download="{html.escape(filename, quote=True)}" '
                f'href="{href}">{html.escape(label)}</a></p>', f"[{label}]")


def _two_line(value: Any) -> Any:
    if not isinstance(value, str) or " ± " not in value:
        return html.escape(value) if isinstance(value, str) else value
    mean, sem = (html.escape(part) for part in value.split(" ± ", 1))
    return f'<span class="sk-mean">{mean}</span> <span class="sk-sem">± {sem}</span>'


def styled(frame: pd.DataFrame, formats: Mapping[str, str] | str | None = None, caption: str | None = None,
           index: bool = False, na_rep: str = "-", two_line: bool = False) -> Any:
    """``frame`` as a pandas Styler for a page: numbers formatted (``formats``: a format for all, or per
    column), missing values as ``na_rep``, the index hidden unless ``index``, class ``sk-frame`` (the
    stylesheet wraps long cells and lets a wide table scroll in its own box). With ``two_line``, every
    ``"mean ± sem"`` text cell is shown with the SEM under the mean (as the results tables are)."""
    if two_line:
        styler = frame.style.format(_two_line, na_rep=na_rep)
    elif formats is not None:
        styler = frame.style.format(formats, na_rep=na_rep)
    else:
        styler = frame.style.format(na_rep=na_rep)
    if not index:
        styler = styler.hide(axis="index")
    if caption:
        styler = styler.set_caption(caption)
    return styler.set_table_attributes('class="sk-frame"')


def with_csv(table: Any, filename: str) -> list[Any]:
    """``[table, its CSV download]``: what a page displays for every table (a frame or a Styler)."""
    return [table, csv_download(table, filename)]
