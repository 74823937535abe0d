"""The site: built with Sphinx warnings as errors, then loaded in headless Chromium without network.

The book is built by scripts/build_book.py from the committed executed notebooks (tests/book/executed,
smoke profile), so this test renders and inspects pages without re-executing them (test_nbval.py and
test_papermill.py execute notebooks).
"""
from __future__ import annotations

import html
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ._helpers import EXECUTED, PROFILE, RESULTS, ROOT, dump_dom, run_chromium

pytest.importorskip("jupyter_book", reason="the book extra is not installed: pip install -e '.[book]'")

PROSE = ("book/intro", "book/protocol", "book/metrics", "book/tables", "book/rerun")
TABLE = re.compile(r'<table class="sharpkit-table"')


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site's html folder (the build fails on any Sphinx warning)."""
    output = tmp_path_factory.mktemp("book")
    command = [sys.executable, str(ROOT / "scripts" / "build_book.py"), "--profile", PROFILE,
               "--results", str(RESULTS.relative_to(ROOT)), "--executed", str(EXECUTED), "--output", str(output)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"book build failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
    return output / "_build" / "html"


def table_pages(build_book) -> dict[int, bool]:
    """Table number -> whether the smoke profile has runs for it."""
    return {int(p.name.split("-")[1]): p.parameters["dataset"] == "digits"
            for p in build_book.book_pages(PROFILE, "results") if p.source == "table"}


def test_every_page_is_built(site, build_book):
    pages = list(PROSE) + [f"notebooks/{p.name}" for p in build_book.book_pages(PROFILE, "results")]
    missing = [page for page in pages if not (site / f"{page}.html").is_file()]
    assert not missing
    assert (site / "index.html").is_file()


def test_each_table_page_holds_its_two_tables(site, build_book, chromium):
    for n, has_runs in table_pages(build_book).items():
        dom = dump_dom(chromium, site / "notebooks" / f"table-{n}.html")
        assert f"Table {n}: " in dom
        if has_runs:
            assert len(TABLE.findall(dom)) == 2, f"table-{n}: ours and the paper's"
            assert "Ours (smoke)" in dom and "As printed in the paper" in dom
            assert re.search(r'<img[^>]+src="[^"]+\.png"', dom), f"table-{n}: the control-by-control plot"
        else:
            assert len(TABLE.findall(dom)) == 1, f"table-{n}: the paper's only"
            text = html.unescape(re.sub(r"<[^>]+>", "", dom))  # the command is split by syntax highlighting
            assert "No stored runs of" in text and "sharpkit sweep --profile paper --results" in text


def test_the_kendall_page_holds_its_images(site, chromium):
    dom = dump_dom(chromium, site / "notebooks" / "kendall_tau.html")
    sources = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom)
    # One heatmap and one row of scatter plots per architecture of the smoke profile.
    assert len(sources) == 6
    for source in sources:
        image = (site / "notebooks" / source).resolve()
        assert image.is_file() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_formulas_render_without_network(site, chromium):
    if not (site / "_static" / "mathjax" / "tex-mml-chtml.js").is_file():
        pytest.skip("MathJax was not vendored (no npm or no registry): the pages load it from the CDN, "
                    "which a browser without network cannot reach.")
    for page in ("book/metrics", "notebooks/kendall_tau"):
        dom = dump_dom(chromium, site / f"{page}.html")
        formulas = len(re.findall(r'class="math notranslate nohighlight"', dom))
        typeset = len(re.findall(r"<mjx-container", dom))
        assert formulas > 0 and typeset >= formulas, f"{page}: {typeset} of {formulas} formulas typeset"


@pytest.mark.parametrize("page", ["notebooks/table-1", "notebooks/kendall_tau"])
def test_screenshot_of_the_page(site, chromium, page, tmp_path):
    png = tmp_path / f"{page.replace('/', '-')}.png"
    run_chromium(chromium, site / f"{page}.html", f"--screenshot={png}", "--window-size=1400,2400")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 2400)
    # A blank page compresses to a few kilobytes; a page with tables and figures does not.
    assert len(data) > 100_000
