"""Shared test configuration: the test tiers.

Every test belongs to one tier, decided here by where it lives (tests mirror the package, so the folder says
what a test exercises), unless it carries a tier marker itself:

- ``book``: everything under ``tests/book/`` (executes notebooks, builds the site, loads it in Chromium);
- ``sweep``: tests that run whole sweeps or check the stored grids (``tests/experiments/test_sweep.py``,
  ``tests/experiments/test_minima_results.py``);
- ``slow``: builds and installs the wheel in a fresh virtual environment (marked in the test itself);
- ``unit``: the rest, the fast tier of ``make test-fast``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
TIER_BY_PATH = {
    "tests/book/": "book",
    "tests/experiments/test_sweep.py": "sweep",
    "tests/experiments/test_minima_results.py": "sweep",
}
TIERS = ("unit", "sweep", "book", "slow")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(tier) for tier in TIERS):
            continue
        rel = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        tier = next((t for prefix, t in TIER_BY_PATH.items() if rel.startswith(prefix)), "unit")
        item.add_marker(getattr(pytest.mark, tier))
