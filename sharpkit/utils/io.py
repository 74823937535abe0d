"""Crash-safe file writes: write to a temporary file in the same folder, then rename over the target,
so a reader (or a resumed run) sees either the old or the new file, never half of one.

A temporary file is named ``.<target>.<pid>@<host>.<random>.tmp``: a writer that is killed leaves it behind,
and the next writer of the same target (or :func:`remove_stale_temp_files`, when a store or cache is opened)
removes the ones whose process is no longer alive. A write that fails because the folder is read-only or the
disk is full raises :class:`NotWritableError` (an ``OSError``) that says so, names the path and the fix;
:func:`check_writable` asks the same question before any work is spent.

Records (``result.json``) carry :func:`record_digests`, short digests of their values, written by every
writer (:func:`sign_record`), so that a value edited by hand is found (:func:`digest_mismatches`).
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import pickle
import re
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from .locks import process_alive


def _host_tag() -> str:
    """This machine's name as it appears in temporary file names (letters, digits and '-')."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def temp_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}@{_host_tag()}."


TEMP_SUFFIX = ".tmp"
# .<target>.<pid>@<host>.<random>.tmp (mkstemp's random part has no dots)
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[^.]+\.tmp$")
# Temporary files of writers that did not name themselves (sharpkit before the pid names: mkstemp's
# ``.<target>.<random>.tmp``; a reused checkpoint's ``checkpoint.pt.tmp``; the TinyImageNet cache's
# ``<target>.<pid>.tmp``; a generated corruption folder ``<name>.tmp-<pid>`` and its files ``.tmp-<random>.npy``):
# removed once untouched for
# UNNAMED_STALE_S (a writer updates its file's time as it writes).
_UNNAMED_TEMP = re.compile(r"^(\..+\.[a-z0-9_]{8}\.tmp|checkpoint\.pt\.tmp|.+\.\d+\.tmp|.+\.tmp-\d+"
                           r"|\.tmp-[a-z0-9_]{8}\.(npy|json))$")
UNNAMED_STALE_S = 3600.0


def temp_writer(name: str) -> tuple[int, str, bool] | None:
    """``(pid, host, on this host)`` of the writer of a temporary file named ``name``; None when ``name`` is
    not such a file."""
    match = _TEMP_NAME.match(name)
    if match is None:
        return None
    return int(match["pid"]), match["host"], match["host"] == _host_tag()


def _is_stale(entry: Path, now: float) -> bool:
    writer = temp_writer(entry.name)
    if writer is not None:
        pid, _, here = writer
        if here:
            return not process_alive(pid)
    elif not _UNNAMED_TEMP.match(entry.name):
        return False
    # a writer on another machine (its pid means nothing here) or one that did not name itself
    try:
        return now - entry.lstat().st_mtime > UNNAMED_STALE_S
    except OSError:
        return False


def remove_stale_temp_files(*folders: str | os.PathLike, pattern: str = "*") -> list[Path]:
    """Remove the temporary files (and generated-set folders) that killed writers left in ``folders`` (each
    searched without descending; ``pattern`` restricts the names looked at); returns what was removed. Files
    of live writers are kept; nothing is raised (a folder that is absent or read-only is left as it is)."""
    removed, now = [], time.time()
    for folder in folders:
        try:
            entries = sorted(Path(folder).glob(pattern))
        except OSError:
            continue
        for entry in entries:
            if not (entry.name.endswith(TEMP_SUFFIX) or ".tmp-" in entry.name) or not _is_stale(entry, now):
                continue
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError:
                continue
            removed.append(entry)
    return removed


class NotWritableError(OSError, ValueError):
    """A folder or file that cannot be written: read-only (or not this user's) or on a full disk. An
    ``OSError`` with the original ``errno``, and a ``ValueError`` like sharpkit's other errors that carry
    their fix (the command line prints the message, not a traceback)."""

    def __init__(self, path: str | os.PathLike, code: int | None, message: str) -> None:
        super().__init__(code, message)
        self.path = Path(path)
        self.message = message

    def __str__(self) -> str:
        return self.message


_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_FULL = (errno.ENOSPC, errno.EDQUOT)
_WRITE_ELSEWHERE = "write somewhere else (--out, --results, --cache or --corruption-cache)"


def _why_unwritable(error: OSError, path: Path, what: str | None = None, fix: str | None = None
                    ) -> NotWritableError | None:
    """The :class:`NotWritableError` for ``error``, raised writing ``path`` (``what`` would have been written
    there; ``fix``: the other way out, besides freeing space or making the folder writable); None when it
    is another error."""
    folder = path if path.is_dir() else path.parent
    head = f"{what} cannot be written there" if what else f"cannot write {path}"
    other = fix or _WRITE_ELSEWHERE + ", then run the command again"
    if error.errno in _FULL:
        quota = " (or the user's quota is used up)" if error.errno == errno.EDQUOT else ""
        kept = "" if what else "; files already there were kept whole (a write goes to a temporary file first)"
        return NotWritableError(path, error.errno, f"Disk full: no space left on the device holding {folder}{quota}: "
                                f"{head}. Free space on it (df -h {folder}), or {other}{kept}.")
    if error.errno in _READ_ONLY:
        state = ("is on a read-only file system" if error.errno == errno.EROFS else
                 "is read-only for this user (permission denied)")
        return NotWritableError(path, error.errno, f"{folder} {state}: {head}. Make it writable (chmod u+w {folder}, "
                                f"or mount it read-write), or {other}.")
    return None


PROBE_BYTES = 64 * 1024  # what check_writable writes: a disk with less free space is as good as full


def _existing(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists (where a mkdir of ``folder`` would write)."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def check_writable(folder: str | os.PathLike, what: str, fix: str) -> None:
    """Raise :class:`NotWritableError` unless files can be written into ``folder`` (or, if it does not exist
    yet, into the nearest ancestor that does): not read-only, not this user's to write, or a full disk. Asked
    before work is spent, so that a run does not compute for hours and then fail to store its result.

    Args:
        what: what would be written there ("the sweep's results"), for the message.
        fix: the way out besides freeing space or making the folder writable, as the end of a sentence
            ("pass --results with a folder elsewhere; nothing was run").
    """
    target = _existing(Path(folder))
    if not target.is_dir():
        raise NotWritableError(target, errno.ENOTDIR, f"{target} is not a folder, so {what} cannot be written "
                                                      f"into {folder}: {fix}.")
    if not os.access(target, os.W_OK | os.X_OK):
        code = errno.EROFS if _read_only_mount(target) else errno.EACCES
        unwritable = _why_unwritable(OSError(code, os.strerror(code)), target, what, fix)
        assert unwritable is not None  # EROFS and EACCES are both in _READ_ONLY
        raise unwritable
    try:
        _probe_write(target)
    except OSError as error:
        known = _why_unwritable(error, target, what, fix)
        if known is None:
            raise
        raise known from None


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _probe_write(folder: Path) -> None:
    """Write (and sync) :data:`PROBE_BYTES` into a temporary file in ``folder``, then remove it."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=temp_prefix("write-probe"), suffix=TEMP_SUFFIX)
    try:
        os.write(fd, b"\0" * PROBE_BYTES)
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """The one atomic writer of sharpkit: yields a temporary file beside ``path`` (named with this process,
    :func:`temp_prefix`), which replaces ``path`` when the block ends normally and is removed otherwise, so a
    reader never sees a half-written file. Temporary files a killed writer of the same file left are removed
    first; a read-only folder or a full disk raises :class:`NotWritableError` naming the fix. For writers
    that need a path (``np.lib.format.open_memmap``); :func:`write_json`, :func:`write_text` and
    :func:`save_torch` write through it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the temporary files a killed writer of this same file left
        remove_stale_temp_files(path.parent, pattern=f".{glob.escape(path.name)}.*{TEMP_SUFFIX}")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=TEMP_SUFFIX)
        os.close(fd)
    except OSError as error:
        known = _why_unwritable(error, path)
        if known is None:
            raise
        raise known from error
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        known = _why_unwritable(error, path) if isinstance(error, OSError) else None
        if known is None:
            raise
        raise known from error


def _atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` atomically through ``write(handle)`` on a binary handle, synced to disk first."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def write_json(path: str | os.PathLike, data: Any) -> None:
    blob = (json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n").encode()
    _atomic(Path(path), lambda handle: handle.write(blob))


def write_text(path: str | os.PathLike, text: str) -> None:
    _atomic(Path(path), lambda handle: handle.write(text.encode()))


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    _atomic(Path(path), lambda handle: torch.save(obj, handle))


def make_temp_dir(parent: str | os.PathLike, name: str) -> Path:
    """A new private folder in ``parent`` to build ``parent/name`` in before renaming it into place, named like
    the temporary files (so :func:`remove_stale_temp_files` removes it once its writer is gone)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=temp_prefix(name), suffix=TEMP_SUFFIX))


def copy_file(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copy ``source`` to ``path`` crash-safely (a temporary file, synced, then renamed over ``path``)."""
    with open(source, "rb") as src:
        _atomic(Path(path), lambda handle: shutil.copyfileobj(src, handle, 1 << 20))


class DamagedFileError(ValueError):
    """A file that cannot be read back: cut short (a crash, a full disk, an interrupted copy), overwritten,
    or not written by sharpkit. ``reason`` says what was found; the message adds the fix."""

    def __init__(self, path: str | os.PathLike, reason: str, fix: str) -> None:
        super().__init__(f"{path} cannot be read: {reason}. {fix}")
        self.path = Path(path)
        self.reason = reason


def read_json_object(path: str | os.PathLike, fix: str) -> dict[str, Any]:
    """The JSON object (a dict) in ``path``; :class:`DamagedFileError` naming the file and ``fix`` when it is
    cut short, not JSON, or holds something else (``[]``, ``null``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" ({error.msg} at line {error.lineno})" if isinstance(error, json.JSONDecodeError) else ""
        raise DamagedFileError(path, f"it is not valid JSON{where}; it was cut short or edited by hand",
                               fix) from None
    if not isinstance(data, dict):
        kind = {list: "a list", type(None): "null", str: "a string", bool: "a boolean"}.get(type(data), "a number")
        raise DamagedFileError(path, f"it holds {kind} where a JSON object (a record) belongs", fix)
    return data


# --- digests of a record's values --------------------------------------------------------------------------

DIGESTS_KEY = "digests"
# The parts of a record that are signed: what tables, figures and claims are built from. Timings and
# provenance are left out (they legitimately differ between two runs that computed the same values), so
# identical results carry identical digests.
_SIGNED_FIELDS = ("status", "diverged_epoch", "epochs_completed", "config", "config_hash", "data", "uses_sam",
                  "init_sha256", "run_id", "profile", "profile_version", "evaluation_settings", "log")
_SIGNED_DICTS = ("metrics",)  # one digest per entry
_SIGNED_EVALUATION = ("metrics", "details")  # one digest per entry of record["evaluation"][...]


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _without_timings(log: Any) -> Any:
    if not isinstance(log, list):
        return log
    return [{k: v for k, v in e.items() if not k.endswith("seconds")} if isinstance(e, dict) else e for e in log]


def record_digests(record: dict[str, Any]) -> dict[str, str]:
    """Short SHA-256 digests (16 hex digits) of a record's values, one per field: ``status``, ``config``, ...,
    ``metrics.<name>`` for each training metric, ``evaluation.metrics.<name>`` and ``evaluation.details.<name>``
    for each evaluation value, ``evaluation.settings``; the log without its timings. A digest has no key: it
    finds values edited by hand or damaged, not a forger who recomputes it."""
    digests = {}
    for name in _SIGNED_FIELDS:
        if name in record:
            digests[name] = _digest(_without_timings(record[name]) if name == "log" else record[name])
    for name in _SIGNED_DICTS:
        value = record.get(name)
        if isinstance(value, dict):
            digests.update({f"{name}.{k}": _digest(v) for k, v in value.items()})
    evaluation = record.get("evaluation")
    if isinstance(evaluation, dict):
        for name in _SIGNED_EVALUATION:
            value = evaluation.get(name)
            if isinstance(value, dict):
                digests.update({f"evaluation.{name}.{k}": _digest(v) for k, v in value.items()})
        if "settings" in evaluation:
            digests["evaluation.settings"] = _digest(evaluation["settings"])
    return digests


def sign_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with :func:`record_digests` of its present values under ``"digests"`` (set in place and
    returned). Every writer of a record calls it last, after its own changes."""
    record.pop(DIGESTS_KEY, None)
    record[DIGESTS_KEY] = record_digests(record)
    return record


def digest_mismatches(record: dict[str, Any]) -> list[str] | None:
    """None for a record without digests (written before they existed: unsigned); else the fields whose
    value does not match its digest, was added after signing or was removed (empty: intact)."""
    if DIGESTS_KEY not in record:
        return None
    stored = record[DIGESTS_KEY]
    if not isinstance(stored, dict):
        return [DIGESTS_KEY]
    fresh = record_digests(record)
    changed = sorted(name for name in set(stored) & set(fresh) if stored[name] != fresh[name])
    added = sorted(f"{name} (added)" for name in set(fresh) - set(stored))
    removed = sorted(f"{name} (removed)" for name in set(stored) - set(fresh))
    return changed + added + removed


# What torch.load raises for bytes it cannot parse, by where they stop making sense: EOFError (an empty file),
# RuntimeError (no zip directory: cut short), OSError EINVAL (a record cut short), IndexError/KeyError (random
# bytes read as a legacy pickle), struct.error (a few bytes too short for a legacy header), UnpicklingError
# (weights_only refusing what is not tensors and numbers).
_UNREADABLE = (EOFError, RuntimeError, OSError, IndexError, KeyError, struct.error, pickle.UnpicklingError)


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
