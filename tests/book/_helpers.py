"""Shared pieces of the book tests: paths, the build script as a module, headless Chromium.

The book tests use the `smoke` profile's stored results in ``tests/book/results`` (made by
``sharpkit sweep --profile smoke --results tests/book/results``) and the notebooks executed on them in
``tests/book/executed`` (made by ``python scripts/build_book.py --profile smoke --results
tests/book/results --execute-into tests/book/executed``), so no test trains a network except the one
in ``metrics_explained``.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXECUTED = HERE / "executed"
RESULTS = HERE / "results"
PROFILE = "smoke"
SANITIZE = HERE / "nbval_sanitize.cfg"
# tqdm.auto, imported by sharpkit.run.train, warns on stderr in a kernel without ipywidgets.
KERNEL_ENV = {"PYTHONWARNINGS": "ignore:IProgress not found"}

# Headless, sandbox-free (CI runs as root), and with every network lookup failing, so that what
# renders is what the site holds: a formula typeset here was typeset by the vendored MathJax.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
CHROMIUM_INSTALL = "apt-get update && apt-get install -y chromium"


def load_build_book() -> ModuleType:
    """``scripts/build_book.py`` imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_book", module)
    spec.loader.exec_module(module)
    return module


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(browser: str, page: Path, *options: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Load ``page`` in a fresh headless Chromium profile; the virtual time budget lets scripts
    (MathJax) finish before the DOM is dumped or the screenshot taken."""
    with tempfile.TemporaryDirectory(prefix="sharpkit-chromium-") as profile:
        command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                   *options, page.as_uri()]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)


def dump_dom(browser: str, page: Path) -> str:
    return run_chromium(browser, page, "--dump-dom").stdout
