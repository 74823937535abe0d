"""nbval re-executes the committed executed notebooks (tests/book/executed, made from the smoke
profile's stored results) and compares the outputs of the cells tagged ``nbval-check-output``."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ._helpers import EXECUTED, KERNEL_ENV, ROOT, SANITIZE

pytest.importorskip("nbval", reason="nbval is not installed: pip install -e '.[dev]'")
pytest.importorskip("ipykernel", reason="the book extra is not installed: pip install -e '.[book]'")

# One notebook of each kind, and a table page of each branch (runs stored / no runs): the other
# table pages are the same notebook with other parameters, rendered by the site test.
CHECKED = ("table-1", "table-3", "kendall_tau", "overview", "report", "metrics_explained")


def test_committed_notebooks_reproduce_their_checked_outputs():
    notebooks = [str(EXECUTED / f"{name}.ipynb") for name in CHECKED]
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
               f"--nbval-sanitize-with={SANITIZE}", "-p", "no:cacheprovider", "-q", *notebooks]
    # nbval starts each kernel in its notebook's folder, where the injected results_dir points.
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, **KERNEL_ENV})
    assert result.returncode == 0, f"nbval failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert " passed" in result.stdout and "failed" not in result.stdout
