"""The book's notebooks only call sharpkit and display what it returns: a code cell that defines a function
or a lambda, globs files or runs longer than 15 lines is logic that belongs in a tested function of
``sharpkit.analysis`` (ARCHITECTURE.md, "Where new code goes")."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ._helpers import ROOT

jupytext = pytest.importorskip("jupytext", reason="the book extra is not installed: pip install -e '.[book]'")

pytestmark = pytest.mark.unit  # reads sources only: part of the fast tier
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.md"))
MAX_LINES = 15
GLOBS = {"glob", "rglob", "iglob"}


def problems(source: str) -> list[str]:
    """What makes one code cell more than a call and a display."""
    found = []
    lines = source.strip("\n").splitlines()
    if len(lines) > MAX_LINES:
        found.append(f"{len(lines)} lines (at most {MAX_LINES})")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append(f"defines {node.name!r} (line {node.lineno})")
        elif isinstance(node, ast.Lambda):
            found.append(f"a lambda (line {node.lineno})")
        elif isinstance(node, ast.Attribute) and node.attr in GLOBS:
            found.append(f"globs files with .{node.attr} (line {node.lineno})")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = {getattr(node, "module", None) or ""} | {alias.name for alias in node.names}
            if names & GLOBS:
                found.append(f"imports glob (line {node.lineno})")
    return found


def code_cells(path: Path) -> list[str]:
    return [cell.source for cell in jupytext.read(path).cells if cell.cell_type == "code"]


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"intro", "report", "table", "table_nodata", "kendall_tau", "overview",
                                           "beyond", "metrics_explained"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_code_cell_is_thin(path):
    bad = {i: problems(source) for i, source in enumerate(code_cells(path))}
    bad = {i: p for i, p in bad.items() if p}
    assert not bad, (f"{path.relative_to(ROOT)}: code cells with logic (move it into a tested function of "
                     f"sharpkit.analysis): " + "; ".join(f"cell {i}: {', '.join(p)}" for i, p in bad.items()))


@pytest.mark.parametrize("source, expected", [
    ("def f(x):\n    return x\n", "defines 'f'"),
    ("f = lambda x: x\n", "a lambda"),
    ("files = list(Path('r').glob('*/x.json'))\n", "globs files with .glob"),
    ("import glob\n", "imports glob"),
    ("\n".join(f"x{i} = {i}" for i in range(16)), "16 lines"),
])
def test_the_check_catches_each_kind_of_logic(source, expected):
    assert any(expected in p for p in problems(source)), problems(source)


def test_a_call_and_a_display_pass():
    assert problems("runs = book.load_runs(results_dir, profile)\ndisplay(book.scale_banner(runs, profile))\n") == []
