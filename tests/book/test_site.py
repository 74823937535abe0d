"""The site: built with Sphinx warnings as errors, then loaded in headless Chromium without network.

The book is built by scripts/build_book.py from the committed executed notebooks (tests/book/executed,
smoke profile), so this test renders and inspects pages without re-executing them (test_nbval.py and
test_papermill.py execute notebooks). The layout checks run a script inside each page at 1280 and at 400 px
and read its report from the DOM.
"""
from __future__ import annotations

import concurrent.futures
import html
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ._helpers import EXECUTED, PROFILE, RESULTS, ROOT, dump_dom, run_chromium

pytest.importorskip("jupyter_book", reason="the book extra is not installed: pip install -e '.[book]'")

# Building the site (the module's fixture) counts against the first test's timeout: on a loaded 2-core machine
# the build alone can take 15 minutes.
pytestmark = pytest.mark.timeout(2400)

PROSE = ("book/protocol", "book/metrics", "book/tables", "book/rerun", "book/references")
TABLE = re.compile(r'<table class="sharpkit-table"')
SVG_IMG = re.compile(r'<img class="sk-figure" src="data:image/svg\+xml;base64,[^"]+" alt="([^"]*)"')
WIDTHS = (1280, 400)

# Run in each page once it has loaded (and MathJax has typeset): every table, figure, image, code block and
# formula that reaches past the article must sit inside a box of its own that scrolls (overflow-x auto or
# scroll); the page must not scroll sideways; every image needs alt text; at 1280 px a results table must fit
# without scrolling; no parameters or papermill-injected cell may be shown. The report goes into the DOM.
LAYOUT_SCRIPT = r"""
<script>
window.addEventListener('load', function () { setTimeout(function () {
  var article = document.querySelector('article.bd-article') || document.body;
  var box = article.getBoundingClientRect();
  function scrolls(el) {
    for (var a = el.parentElement; a && a !== article.parentElement; a = a.parentElement) {
      var o = getComputedStyle(a).overflowX;
      var inside = a.getBoundingClientRect().right <= box.right + 1;
      if ((o === 'auto' || o === 'scroll' || o === 'hidden') && inside) return true;
    }
    var own = getComputedStyle(el).overflowX;
    return (own === 'auto' || own === 'scroll') && el.getBoundingClientRect().right <= box.right + 1;
  }
  var report = {overflow: [], unfit: [], noalt: [], machinery: []};
  article.querySelectorAll('table, figure, img, pre, mjx-container[display="true"], svg').forEach(function (el) {
    var r = el.getBoundingClientRect();
    if ((r.right > box.right + 1 || r.left < box.left - 1) && !scrolls(el))
      report.overflow.push(el.tagName + '.' + el.className + ' ' + Math.round(r.width) + 'px in '
                           + Math.round(box.width));
  });
  article.querySelectorAll('table.sharpkit-table').forEach(function (t) {
    var parent = t.parentElement;
    if (t.getBoundingClientRect().width > parent.clientWidth + 1)
      report.unfit.push((t.querySelector('caption') || {}).textContent + ' '
                        + Math.round(t.getBoundingClientRect().width) + 'px in ' + parent.clientWidth);
  });
  document.querySelectorAll('img').forEach(function (img) {
    if (!(img.getAttribute('alt') || '').trim()) report.noalt.push(img.getAttribute('src').slice(0, 60));
  });
  article.querySelectorAll('div.cell_input, div.cell').forEach(function (cell) {
    var text = cell.textContent;
    if (/# Parameters|results_dir\s*=|profile\s*=\s*"/.test(text) && cell.matches('div.cell_input, div.cell'))
      report.machinery.push(text.trim().slice(0, 80));
  });
  report.page_width = document.documentElement.scrollWidth;
  report.window = window.innerWidth;
  var pre = document.createElement('pre');
  pre.id = 'sk-layout-report';
  pre.textContent = JSON.stringify(report);
  document.body.appendChild(pre);
}, 1000); });
</script>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site's html folder (the build fails on any Sphinx warning)."""
    output = tmp_path_factory.mktemp("book")
    command = [sys.executable, str(ROOT / "scripts" / "build_book.py"), "--profile", PROFILE,
               "--results", str(RESULTS.relative_to(ROOT)), "--executed", str(EXECUTED), "--output", str(output)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=2300)
    assert result.returncode == 0, f"book build failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
    assert "WARNING" not in result.stdout + result.stderr, "the build printed a Sphinx warning"
    return output / "_build" / "html"


def pages(build_book) -> list[str]:
    return list(PROSE) + [f"notebooks/{p.name}" for p in build_book.book_pages(PROFILE, "results")]


def table_pages(build_book) -> dict[int, bool]:
    """Table number -> whether the smoke profile has runs for it."""
    return {int(p.name.split("-")[1]): p.source == "table"
            for p in build_book.book_pages(PROFILE, "results") if p.name.startswith("table-")}


def text_of(dom: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", dom))  # a command is split by syntax highlighting


def test_every_page_is_built(site, build_book):
    missing = [page for page in pages(build_book) if not (site / f"{page}.html").is_file()]
    assert not missing
    assert (site / "index.html").is_file()
    assert not (site / "genindex.html").exists()  # no index entries: no empty Index page


def test_each_table_page_holds_its_tables(site, build_book, chromium):
    for n, has_runs in table_pages(build_book).items():
        dom = dump_dom(chromium, site / "notebooks" / f"table-{n}.html")
        text = text_of(dom)
        assert f"Table {n}: " in dom
        if has_runs:
            assert len(TABLE.findall(dom)) == 4, f"table-{n}: ours and the paper's, each as evaluations and sharpness"
            assert "Ours (Smoke test)" in text and "As printed in the paper" in text
            assert "Scale: Smoke test" in text and "training accuracy" in text
            assert SVG_IMG.search(dom), f"table-{n}: the control-by-control plot"
            # A CSV download under every table: the four above, the findings and the paired tests.
            downloads = set(re.findall(rf'download="table-{n}-([a-z-]+)\.csv"', dom))
            assert downloads == {"ours-evaluations", "ours-sharpness", "paper-evaluations", "paper-sharpness",
                                 "findings", "tests"}, downloads
        else:
            assert len(TABLE.findall(dom)) == 2, f"table-{n}: the paper's only"
            assert "No stored runs of" in text and "cannot be downloaded" in text
            assert "sharpkit sweep --profile-file paper-table-" in text and "--data-root" in text
            assert "findings in its own numbers" in text  # the apostrophe is typeset as ’


def test_the_intro_and_the_report_open_with_the_computed_verdict(site, chromium):
    for page in ("notebooks/intro", "notebooks/report"):
        dom = dump_dom(chromium, site / f"{page}.html")
        article = dom[dom.index("<article"):]
        # The verdict comes before the first section heading: it is on the first screen.
        assert article.index('class="admonition sk-verdict') < article.index("<h2"), page
        text = text_of(article)
        assert "What we found" in text and "Smoke test" in text and "Benjamini-Yekutieli" in text
        assert re.search(r"holds in \d+ of \d+ cases", text)
        assert SVG_IMG.search(article), f"{page}: the findings matrix"


def test_the_kendall_page_holds_its_figures(site, chromium):
    dom = dump_dom(chromium, site / "notebooks" / "kendall_tau.html")
    alts = SVG_IMG.findall(dom)
    # One heatmap and one figure of scatter plots per architecture of the smoke profile.
    assert len(alts) == 6 and all(alt.strip() for alt in alts)
    assert text_of(dom).count("have an interval above 0") == 3  # a computed reading under each heatmap
    assert 'download="kendall-tau.csv"' in dom


def test_the_references_page_lists_the_cited_works(site, chromium):
    text = text_of(dump_dom(chromium, site / "book" / "references.html"))
    assert "How to cite" in text and "MIT licence" in text
    for author in ("Andriushchenko", "Dinh", "Foret", "Petzka", "Liang"):
        assert author in text


def layout(chromium: str, page: Path, width: int) -> dict:
    probe = page.with_name(page.stem + f".layout-{width}.html")
    probe.write_text(page.read_text().replace("</body>", LAYOUT_SCRIPT + "</body>"))
    try:
        dom = run_chromium(chromium, probe, "--dump-dom", f"--window-size={width},1000").stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="sk-layout-report">(.*?)</pre>', dom, re.S)
    assert found, f"{page.name} at {width} px: the layout script did not report"
    return json.loads(html.unescape(found.group(1)))


def test_no_page_is_wider_than_the_window_and_nothing_overflows_without_its_own_scroll_box(site, build_book,
                                                                                            chromium):
    jobs = [(page, width) for page in pages(build_book) for width in WIDTHS]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        reports = dict(zip(jobs, pool.map(lambda job: layout(chromium, site / f"{job[0]}.html", job[1]), jobs)))
    failures = []
    for (page, width), report in reports.items():
        if report["page_width"] > report["window"]:
            failures.append(f"{page} at {width} px scrolls sideways ({report['page_width']} > {report['window']})")
        failures += [f"{page} at {width} px: {item} overflows without a scroll box" for item in report["overflow"]]
        failures += [f"{page}: <img> without alt text ({src})" for src in report["noalt"]]
        failures += [f"{page}: shows a parameters/injected cell: {cell}" for cell in report["machinery"]]
        if width == 1280:
            failures += [f"{page} at 1280 px: a results table does not fit: {t}" for t in report["unfit"]]
    assert not failures, "\n".join(failures)


def test_formulas_render_without_network(site, chromium):
    if not (site / "_static" / "mathjax" / "tex-mml-chtml.js").is_file():
        pytest.skip("MathJax was not vendored (no npm or no registry): the pages load it from the CDN, "
                    "which a browser without network cannot reach.")
    for page in ("book/metrics", "notebooks/kendall_tau"):
        dom = dump_dom(chromium, site / f"{page}.html")
        formulas = len(re.findall(r'class="math notranslate nohighlight"', dom))
        typeset = len(re.findall(r"<mjx-container", dom))
        assert formulas > 0 and typeset >= formulas, f"{page}: {typeset} of {formulas} formulas typeset"


@pytest.mark.parametrize("page", ["notebooks/intro", "notebooks/report", "notebooks/table-1", "notebooks/table-2",
                                  "notebooks/kendall_tau"])
def test_screenshot_of_the_page(site, chromium, page, tmp_path):
    png = tmp_path / f"{page.replace('/', '-')}.png"
    run_chromium(chromium, site / f"{page}.html", f"--screenshot={png}", "--window-size=1280,1600")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 1600)
    # A blank page compresses to a few kilobytes; a page with tables and figures does not.
    assert len(data) > 60_000
