"""Advisory locks, so that two processes never do the same work at once.

A lock is an ``fcntl.flock`` on a file ``.lock`` inside the folder it guards. The kernel releases it when
the process that holds it ends, however it ends, so a lock left by a killed process is simply taken by
the next one (no stale-lock clean-up). The file also names its holder (pid, host, since when), for the
message a second process prints. POSIX only; on other systems locking is a no-op with a warning.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class BusyError(RuntimeError):
    """The folder is locked by another live process; ``holder`` is what that process wrote (may be {})."""

    def __init__(self, folder: Path, holder: dict, what: str) -> None:
        who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
        super().__init__(f"{folder} is busy: {what} is being done by {who}. Wait for it to finish (or stop it); "
                         "a lock of a process that has ended is taken over automatically.")
        self.folder, self.holder = folder, holder


def process_alive(pid: int, host: str | None = None) -> bool:
    """Whether process ``pid`` runs on this machine (True when ``host`` names another machine, or the
    answer is unknown: only a process known to be gone counts as dead). A recycled pid reads as alive."""
    if host is not None and host != socket.gethostname():
        return True
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or no way to ask
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def _acquire(folder: Path, what: str, name: str):
    """The open lock file ``name`` of ``folder``, locked by this process; BusyError when another holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise BusyError(folder, _holder(path), what) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    handle.flush()
    return handle


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "work in this folder", wait_s: float = 0.0,
                name: str = LOCK_NAME) -> Iterator[None]:
    """Hold the lock of ``folder`` (created if needed) for the ``with`` block.

    Args:
        name: the lock file; two different names are two independent locks on one folder (a flock is per
            open file, so one process cannot take the same lock twice, even nested).
        wait_s: how long to wait for another holder (0: not at all). Waiting suits locks held briefly, such
            as a read-modify-write of one small file.

    Raises:
        BusyError: another live process holds it (after ``wait_s``).
    """
    folder = Path(folder)
    if fcntl is None:
        warnings.warn("sharpkit cannot lock folders on this system: do not run two sweeps on one store at once.",
                      stacklevel=1)
        yield
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            handle = _acquire(folder, what, name)
            break
        except BusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
    try:
        yield
    finally:
        handle.close()  # releases the flock


def held_by_another(folder: str | os.PathLike, name: str = LOCK_NAME) -> bool:
    """Whether some process holds the lock ``name`` of ``folder`` (shared or exclusive), as far as this
    process can tell: False when the lock file does not exist. A lock this process holds through another
    open file counts too (ask before taking it). Always False where locking is not available."""
    path = Path(folder) / name
    if fcntl is None or not path.exists():
        return False
    try:
        handle = open(path)  # a flock needs no write access
    except OSError:
        return False
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        handle.close()  # releases the probe's lock, if it got it
    return False


@contextlib.contextmanager
def shared_lock(folder: str | os.PathLike, name: str, wait_s: float = 10.0) -> Iterator[None]:
    """Hold a shared lock ``name`` on ``folder`` for the ``with`` block: any number of processes may hold it
    at once; it only tells :func:`held_by_another` that one of them is alive (the kernel drops it when its
    process ends, however it ends). Waits up to ``wait_s`` for a brief exclusive probe to pass."""
    folder = Path(folder)
    if fcntl is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / name, "a+")
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BusyError(folder, _holder(folder / name), "an exclusive use of this folder") from None
                time.sleep(0.02)
        yield
    finally:
        handle.close()
