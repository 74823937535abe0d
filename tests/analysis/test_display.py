"""sharpkit.analysis.display: boxes, figures with alt text, CSV downloads and styled tables."""
from __future__ import annotations

import base64
import re
import urllib.parse

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sharpkit.analysis.display import Box, Html, csv_download, figure_html, styled  # noqa: E402


def test_box_renders_markup_nested_items_and_plain_text():
    box = Box("Title", ("**bold** and `code` and *em* <x>", ("head", ("one", "two"))), css="sk-banner note",
              extra_html="<pre>cmd</pre>", extra_text="cmd")
    page = box._repr_html_()
    assert page.startswith('<div class="admonition sk-banner note"><p class="admonition-title">Title</p>')
    assert "<b>bold</b>" in page and "<code>code</code>" in page and "<em>em</em>" in page and "&lt;x&gt;" in page
    assert "<li>head<ul><li>one</li><li>two</li></ul></li>" in page and page.endswith("<pre>cmd</pre></div>")
    assert str(box) == "Title\n- bold and code and em <x>\n- head\n  - one\n  - two\ncmd"


def test_figure_html_is_an_svg_img_at_its_natural_width_with_alt_text():
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.plot([0, 1], [0, 1])
    shown = figure_html(fig, 'A line "up"', "Caption **here**")
    match = re.search(r'<img class="sk-figure" src="data:image/svg\+xml;base64,([^"]+)" alt="([^"]+)" width="(\d+)">',
                      shown.html)
    assert match and match.group(2) == "A line &quot;up&quot;"
    assert base64.b64decode(match.group(1)).lstrip().startswith(b"<?xml")
    assert 500 < int(match.group(3)) <= 6 * 96  # natural size: points * 96 / 72, bbox tight
    assert "<figcaption>Caption <b>here</b></figcaption>" in shown.html
    assert str(shown).startswith('[figure: A line "up"]')
    assert not plt.get_fignums()  # closed: Jupyter does not show it twice
    with pytest.raises(ValueError, match="alt"):
        figure_html(plt.figure(), " ")
    plt.close("all")


def test_csv_download_carries_the_data_in_the_link():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y, z"]})
    link = csv_download(frame, "t.csv")
    href = re.search(r'href="data:text/csv;charset=utf-8,([^"]+)"', link.html).group(1)
    assert urllib.parse.unquote(href) == frame.to_csv(index=False)
    assert 'download="t.csv"' in link.html and str(link) == "[Download t.csv]"
    assert isinstance(link + Html("<p>x</p>", "x"), Html)


def test_styled_formats_hides_the_index_and_splits_mean_and_sem():
    frame = pd.DataFrame({"v": [0.123456, None], "cell": ["1.0 ± 0.1", "2"]})
    page = styled(frame, {"v": "{:.2f}"}).to_html()
    assert 'class="sk-frame"' in page and "0.12" in page and ">-<" in page
    two = styled(frame[["cell"]], two_line=True).to_html()
    assert '<span class="sk-mean">1.0</span> <span class="sk-sem">± 0.1</span>' in two
