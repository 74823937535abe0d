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


# Environment variables that change which kernels run (and so the bits of a result) without changing
# anything else a record holds: oneDNN's ISA cap and floating-point mode, MKL's conditional numerical
# reproducibility and instruction cap, ATen's vector kernel set, cuBLAS's workspace (deterministic GEMMs) and
# the TF32 override of NVIDIA's libraries. Recorded when set; a record without the field had none set.
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "MKL_CBWR",
              "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE")
#: The variables of :data:`KERNEL_ENV` that only CUDA kernels read: they cannot change a CPU run's bits
#: (sharpkit.utils.seeding sets CUBLAS_WORKSPACE_CONFIG for every run, on any device).
CUDA_ONLY_ENV = ("CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE")


def kernel_env() -> dict[str, str]:
    """The variables of :data:`KERNEL_ENV` set in this process's environment."""
    return {name: os.environ[name] for name in KERNEL_ENV if name in os.environ}


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
        "kernel_env": kernel_env(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


# What decides the arithmetic of a result besides its config: hardware fields that, when two records
# differ in one, make a bitwise comparison of their results meaningless (other kernels, another reduction
# order). Compared where both records have the field (older records lack the newer ones), except
# ``kernel_env``, whose absence means that none of the variables was set.
ARITHMETIC_HARDWARE = ("cpu", "cpu_count", "cpu_capability", "cpu_flags", "gpu", "cuda")


def arithmetic_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Where the arithmetic of two provenance records (:func:`provenance`) differs: torch version, device
    type, :data:`ARITHMETIC_HARDWARE` and the kernel environment. Empty when the same config trained under
    both would give the same bits, so that a bitwise comparison is meaningful."""
    notes = []
    torch_a, torch_b = a.get("versions", {}).get("torch"), b.get("versions", {}).get("torch")
    if torch_a != torch_b:
        notes.append(f"torch {torch_a} vs {torch_b}")
    ha, hb = a.get("hardware", {}), b.get("hardware", {})
    if torch.device(ha.get("device", "cpu")).type != torch.device(hb.get("device", "cpu")).type:
        notes.append(f"device {ha.get('device')} vs {hb.get('device')}")
    for key in ARITHMETIC_HARDWARE:
        if key in ha and key in hb and ha[key] != hb[key]:
            notes.append(f"{key} {ha[key]!r} vs {hb[key]!r}")
    env_a, env_b = _arithmetic_env(ha), _arithmetic_env(hb)
    if env_a != env_b:
        notes.append(f"kernel_env {env_a!r} vs {env_b!r}")
    return notes


def _arithmetic_env(hardware_record: dict[str, Any]) -> dict[str, str]:
    """The kernel variables that can change the bits of a run on its device: on a CPU, the CUDA-only ones
    are left out. A record written before ``kernel_env`` existed reads as none set."""
    env = dict(hardware_record.get("kernel_env", {}))
    if torch.device(hardware_record.get("device", "cpu")).type != "cuda":
        env = {k: v for k, v in env.items() if k not in CUDA_ONLY_ENV}
    return env


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
