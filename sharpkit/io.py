"""Crash-safe file writes: write to a temporary file in the same folder, then rename over the target,
so a reader (or a resumed run) sees either the old or the new file, never half of one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    blob = (json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n").encode()
    _atomic(Path(path), lambda handle: handle.write(blob))


def write_text(path: str | os.PathLike, text: str) -> None:
    _atomic(Path(path), lambda handle: handle.write(text.encode()))


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    _atomic(Path(path), lambda handle: torch.save(obj, handle))


def load_torch(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a sharpkit checkpoint with ``weights_only=True`` (no arbitrary code from pickles)."""
    return torch.load(path, map_location=map_location, weights_only=True)
