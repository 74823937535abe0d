"""Fixtures of the book tests (see _helpers.py for what they use)."""
from __future__ import annotations

from types import ModuleType

import pytest

from ._helpers import CHROMIUM_INSTALL, find_chromium, load_build_book


@pytest.fixture(scope="session")
def build_book() -> ModuleType:
    """scripts/build_book.py, imported."""
    return load_build_book()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary; skips the test when there is none."""
    path = find_chromium()
    if path is None:
        pytest.skip(f"Chromium is not installed; the site test loads the pages in a headless browser "
                    f"(install it with `{CHROMIUM_INSTALL}`; .ci/run does).")
    return path
