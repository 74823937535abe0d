"""Shared test configuration: the test tiers.

Every test belongs to one tier, decided here by where it lives (tests mirror the package, so the folder says
what a test exercises), unless it carries a tier marker itself:

- ``book``: everything under ``tests/book/`` (executes notebooks, builds the site, loads it in Chromium);
- ``sweep``: tests that run whole sweeps or check the stored grids (``tests/experiments/test_sweep.py`` and
  the tests of its parts: ``test_verify``, ``test_reuse``, ``test_executors``, ``test_threads``, ``test_dry_run``;
  ``tests/experiments/test_minima_results.py``);
- ``slow``: builds and installs the wheel in a fresh virtual environment (marked in the test itself);
- ``unit``: the rest, the fast tier of ``make test-fast``.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
TIER_BY_PATH = {
    "tests/book/": "book",
    "tests/experiments/test_sweep.py": "sweep",
    "tests/experiments/test_verify.py": "sweep",
    "tests/experiments/test_reuse.py": "sweep",
    "tests/experiments/test_executors.py": "sweep",
    "tests/experiments/test_threads.py": "sweep",
    "tests/experiments/test_dry_run.py": "sweep",
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


@pytest.fixture
def make_read_only(monkeypatch):
    """``make_read_only(folder)`` makes ``folder`` unwritable for sharpkit's checks; ``make_read_only.restore()``
    (also run at teardown) undoes it. As root, modes do not stop writes, so there ``os.access`` answers "no
    write access" for everything under the folder instead."""
    folders: list[Path] = []
    real = os.access

    def denied(path, mode, *args, **kwargs):
        return False if any(str(path).startswith(str(f)) for f in folders) else real(path, mode, *args, **kwargs)

    def make(folder: Path) -> None:
        folders.append(folder)
        if os.geteuid() != 0:
            folder.chmod(0o555)
        else:
            monkeypatch.setattr(os, "access", denied)

    def restore() -> None:
        for folder in folders:
            folder.chmod(0o755)
        folders.clear()
        monkeypatch.setattr(os, "access", real)

    make.restore = restore  # type: ignore[attr-defined]
    yield make
    restore()


@pytest.fixture
def lock_held_elsewhere(tmp_path):
    """``with lock_held_elsewhere("shared_lock", folder, name) as proc:``: for the block, another process
    holds that lock of :mod:`sharpkit.utils.locks` (``"shared_lock"`` or ``"folder_lock"``, ``name`` None for
    the default); entered once it holds it, killed at the end (SIGKILL, as a crash would end it)."""
    count = itertools.count()

    @contextlib.contextmanager
    def hold(kind: str, folder: Path, name: str | None = None):
        ready = tmp_path / f"lock-held-{next(count)}"
        args = ", ".join([repr(str(folder))] + ([f"name={name!r}"] if name is not None else []))
        code = (f"import pathlib, time\nfrom sharpkit.utils.locks import {kind}\nwith {kind}({args}):\n"
                f"    pathlib.Path({str(ready)!r}).write_text('1')\n    time.sleep(120)\n")
        proc = subprocess.Popen([sys.executable, "-c", code])
        try:
            deadline = time.time() + 120
            while not ready.exists() and time.time() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert ready.exists(), f"the process meant to hold {kind}({args}) never took it"
            yield proc
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    return hold
