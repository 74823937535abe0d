"""sharpkit.utils.locks: a held lock refuses a second holder with a message naming the first; a lock whose holder
died is free at once; waiting for a brief holder works."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sharpkit.utils.locks import BusyError, folder_lock


def _holder(folder, seconds=60):
    """A process that takes the lock of ``folder`` and sleeps; returns once it holds it."""
    ready = folder / "held"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, pathlib
        from sharpkit.utils.locks import folder_lock
        with folder_lock({str(folder)!r}):
            pathlib.Path({str(ready)!r}).write_text("1")
            time.sleep({seconds})
    """)])
    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the holder never took the lock"
    return proc


def test_a_live_holder_refuses_a_second_and_a_dead_one_frees_the_lock(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(BusyError, match=f"process {proc.pid}"):
            with folder_lock(tmp_path, "the test's work"):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with folder_lock(tmp_path):  # the kernel released the dead holder's lock: no stale lock to clean
        pass


def test_waiting_for_a_brief_holder_and_independent_names(tmp_path):
    proc = _holder(tmp_path, seconds=1)
    with folder_lock(tmp_path, name=".other.lock"):  # another name is another lock
        pass
    start = time.time()
    with folder_lock(tmp_path, wait_s=60):
        assert time.time() - start < 30
    proc.wait()


def test_a_shared_lock_is_seen_held_while_its_process_lives(tmp_path, lock_held_elsewhere):
    from sharpkit.utils.locks import held_by_another, process_alive, shared_lock

    assert not held_by_another(tmp_path, ".sweep.lock")  # never taken: no file
    with lock_held_elsewhere("shared_lock", tmp_path, ".sweep.lock") as proc:
        assert held_by_another(tmp_path, ".sweep.lock") and process_alive(proc.pid)
        with shared_lock(tmp_path, ".sweep.lock"):  # shared: a second holder is welcome
            pass
    assert not held_by_another(tmp_path, ".sweep.lock") and not process_alive(proc.pid)
    assert process_alive(os.getpid()) and process_alive(proc.pid, host="another-machine")  # cannot tell: alive
