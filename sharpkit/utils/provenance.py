"""What produced a result: code version, software, hardware, time."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

_PACKAGES = ("sharpkit", "torch", "torchvision", "numpy", "scipy", "torchmetrics", "scikit-learn", "pandas")


def git_commit(path: str | Path | None = None) -> dict[str, Any]:
    """Commit hash of the repository holding ``path`` (default: this package) and whether the
    work tree had uncommitted changes; ``None`` values outside a git checkout."""
    where = Path(path) if path is not None else Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


# The code version a process (and the worker processes it starts, which inherit the environment) reports:
# the git state when the work began, not when a record is written. A sweep runs for hours; commits or edits
# made meanwhile are not the code that is running.
CODE_VERSION_ENV = "SHARPKIT_CODE_VERSION"


_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # the sharpkit package folder


def code_version() -> dict[str, Any]:
    """The git state pinned by an enclosing :func:`pinned_code_version` (in this process or the one that
    started it) for this same checkout of sharpkit, else the state of the work tree now."""
    pinned = os.environ.get(CODE_VERSION_ENV)
    if pinned:
        try:
            pin = json.loads(pinned)
            if pin.get("package") == _PACKAGE_DIR:  # a child importing another checkout asks its own git
                return pin["git"]
        except (json.JSONDecodeError, AttributeError, KeyError):
            pass
    return git_commit()


@contextlib.contextmanager
def pinned_code_version():
    """Within the ``with`` block, this process and the processes it starts (through the environment)
    report the git state at the block's start; afterwards the previous setting returns. A block nested in
    another keeps the outer state (a sweep started by the CLI reports the CLI's start)."""
    previous = os.environ.get(CODE_VERSION_ENV)
    os.environ[CODE_VERSION_ENV] = json.dumps({"package": _PACKAGE_DIR, "git": code_version()})
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CODE_VERSION_ENV, None)
        else:
            os.environ[CODE_VERSION_ENV] = previous


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# CPU features that change which kernels oneDNN and ATen pick, and so the floating-point result of a
# training: two machines that differ in one of these do not reproduce each other bit for bit.
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in KERNEL_FLAGS if flag in present]
    except OSError:
        pass
    return []


def hardware(device: torch.device | str | None = None) -> dict[str, Any]:
    device = torch.device(device) if device is not None else torch.device("cpu")
    info: dict[str, Any] = {
        "device": str(device),
        "cpu": _cpu_name(),
        "cpu_count": torch.get_num_threads(),  # threads this process computes with
        "logical_cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the ATen kernel set in use
        "cpu_flags": _cpu_flags(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance(device: torch.device | str | None = None) -> dict[str, Any]:
    """One record of code version, package versions, hardware, command line and time."""
    return {
        "git": code_version(),
        "versions": package_versions(),
        "hardware": hardware(device),
        "command": sys.argv,
        "time": utc_now(),
    }
