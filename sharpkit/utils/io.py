"""Crash-safe file writes: write to a temporary file in the same folder, then rename over the target,
so a reader (or a resumed run) sees either the old or the new file, never half of one."""
from __future__ import annotations

import json
import os
import pickle
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


class DamagedFileError(ValueError):
    """A file that cannot be read back: cut short (a crash, a full disk, an interrupted copy), overwritten,
    or not written by sharpkit. ``reason`` says what was found; the message adds the fix."""

    def __init__(self, path: str | os.PathLike, reason: str, fix: str) -> None:
        super().__init__(f"{path} cannot be read: {reason}. {fix}")
        self.path = Path(path)
        self.reason = reason


# What torch.load raises for bytes it cannot parse, by where they stop making sense: EOFError (an empty file),
# RuntimeError (no zip directory: cut short), OSError EINVAL (a record cut short), IndexError/KeyError (random
# bytes read as a legacy pickle), UnpicklingError (weights_only refusing what is not tensors and numbers).
_UNREADABLE = (EOFError, RuntimeError, OSError, IndexError, KeyError, pickle.UnpicklingError)


def load_torch(path: str | os.PathLike, map_location: str | torch.device = "cpu",
               fix: str = "Delete it and train again (sharpkit train or sweep): that writes it anew.") -> Any:
    """Load a file written by :func:`save_torch` with ``weights_only=True`` (no arbitrary code from pickles).

    Raises:
        DamagedFileError: the file is there but unreadable; its message names the file, what torch found and
            ``fix`` (what the caller's user should do).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError, torch.OutOfMemoryError):
        raise  # about the file's place or this machine, not its bytes: torch's own message says it
    except _UNREADABLE as error:
        # torch's own text of a weights_only refusal advises weights_only=False, which would run the pickle's
        # code: only its first sentence is quoted.
        reason = (f"torch.load found {_first_sentence(error)}; the file was cut short (a crash, a full disk, an "
                  "interrupted copy) or is not a file sharpkit wrote")
        raise DamagedFileError(path, reason, fix) from error


def _first_sentence(error: BaseException) -> str:
    """``Type: first sentence of the message`` (``Type`` alone for an empty message)."""
    text = str(error).strip()
    sentence = text.splitlines()[0].split(". ")[0] if text else ""
    return f"{type(error).__name__}: {sentence}" if sentence else type(error).__name__
