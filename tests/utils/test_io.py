"""sharpkit.utils.io: temporary files named by their writer and removed once it is gone; read-only folders and
full disks reported as such (path and fix, no traceback); digests of a record's values."""
import errno
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from sharpkit.utils import io
from sharpkit.utils.io import (
    DamagedFileError,
    NotWritableError,
    check_writable,
    digest_mismatches,
    read_json_object,
    remove_stale_temp_files,
    sign_record,
    write_json,
)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def _kill_mid_write(target) -> int:
    """A process killed (SIGKILL) in the middle of io.write_json(target): its pid."""
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from sharpkit.utils import io
        def write(handle):
            handle.write(b"half a fil")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        io._atomic(Path({str(target)!r}), write)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    proc.wait()
    assert proc.returncode == -9
    return proc.pid


def test_a_killed_writers_temp_file_is_named_by_it_and_removed_by_the_next_write(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"old": 1})
    pid = _kill_mid_write(target)
    (left,) = [p for p in tmp_path.iterdir() if p.name != "result.json"]
    assert left.name.startswith(f".result.json.{pid}@") and left.name.endswith(".tmp")
    assert json.loads(target.read_text()) == {"old": 1}  # the old file is whole
    write_json(target, {"new": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
    assert json.loads(target.read_text()) == {"new": 2}


def test_only_temp_files_of_writers_that_are_gone_are_removed(tmp_path):
    host = io._host_tag()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".a.json.{_dead_pid()}@{host}.abc_12.tmp",
            "live": f".a.json.{live.pid}@{host}.abc_12.tmp",
            "mine": f".a.json.{os.getpid()}@{host}.abc_12.tmp",
            "other host, fresh": ".a.json.1@elsewhere-7.abc_12.tmp",
            "other host, old": ".b.json.1@elsewhere-7.abc_12.tmp",
            "unnamed, fresh": ".c.json.abcd1234.tmp",  # sharpkit before pid names
            "unnamed, old": ".d.json.abcd1234.tmp",
            "not a temp file": "notes.tmp.txt",
        }
        for name in names.values():
            (tmp_path / name).write_text("x")
        hours_ago = time.time() - 2 * 3600
        for key in ("other host, old", "unnamed, old"):
            os.utime(tmp_path / names[key], (hours_ago, hours_ago))
        removed = {p.name for p in remove_stale_temp_files(tmp_path)}
        assert removed == {names["dead"], names["other host, old"], names["unnamed, old"]}
        assert {p.name for p in tmp_path.iterdir()} == set(names.values()) - removed
    finally:
        live.kill()
        live.wait()
    assert remove_stale_temp_files(tmp_path / "absent") == []


def _read_only(monkeypatch, folder):
    """Make ``folder`` read-only: chmod where that binds, else (root ignores modes) os.access says so."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: False if str(path).startswith(str(folder))
                        else real(path, mode, *a, **k))


def test_a_read_only_folder_is_reported_before_anything_is_written(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    _read_only(monkeypatch, folder)
    try:
        with pytest.raises(NotWritableError) as error:
            check_writable(folder / "results" / "micro", "the sweep's results", "pass --results elsewhere")
        message = str(error.value)
        assert "read-only" in message and str(folder) in message and "or pass --results elsewhere." in message
        assert isinstance(error.value, OSError) and isinstance(error.value, ValueError)
        assert error.value.errno in (errno.EACCES, errno.EROFS)
        assert not (folder / "results").exists()
    finally:
        folder.chmod(0o755)


def test_a_full_disk_is_reported_up_front_and_when_a_write_fails(tmp_path, monkeypatch):
    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(io, "_probe_write", full)
        with pytest.raises(NotWritableError, match="Disk full") as error:
            check_writable(tmp_path, "the run's metrics", "write elsewhere")
    assert str(tmp_path) in str(error.value) and error.value.errno == errno.ENOSPC

    target = tmp_path / "result.json"
    write_json(target, {"old": 1})
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        with pytest.raises(NotWritableError) as error:
            write_json(target, {"new": 2})
    message = str(error.value)
    assert message.startswith("Disk full") and str(target) in message and "df -h" in message
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # its temporary file went too


def test_a_write_into_a_read_only_file_system_says_so(tmp_path, monkeypatch):
    import tempfile

    def read_only(*_, **__):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(NotWritableError, match="read-only file system") as error:
        write_json(tmp_path / "x" / "log.json", {})
    assert str(tmp_path / "x") in str(error.value) and "chmod" in str(error.value)


def test_digests_find_an_edited_value_and_name_it():
    record = {"status": "ok", "config": {"seed": 0}, "metrics": {"test_loss": 0.5},
              "evaluation": {"metrics": {"test_ece": 0.1}, "details": {"sam_sharpness": {"sem": 0.01}},
                             "settings": {"sam_samples": 3}, "provenance": {"time": 1}},
              "log": [{"epoch": 1, "train_loss": 1.0, "seconds": 2.0}], "wall_time_s": 3.0}
    assert digest_mismatches(record) is None  # unsigned
    sign_record(record)
    assert digest_mismatches(record) == []
    # timings and provenance are not signed: two runs that computed the same values carry the same digests
    twin = json.loads(json.dumps(record))
    twin.update(wall_time_s=9.0, log=[{"epoch": 1, "train_loss": 1.0, "seconds": 7.0}])
    twin["evaluation"]["provenance"] = {"time": 2}
    assert digest_mismatches(twin) == [] and sign_record(dict(twin))["digests"] == record["digests"]
    record["evaluation"]["metrics"]["test_ece"] = 0.01
    record["metrics"]["train_loss"] = 0.3
    assert digest_mismatches(record) == ["evaluation.metrics.test_ece", "metrics.train_loss (added)"]
    # a JSON round trip keeps them valid
    assert digest_mismatches(json.loads(json.dumps(sign_record(record)))) == []


def test_a_record_that_is_no_object_is_named_with_the_fix(tmp_path):
    path = tmp_path / "result.json"
    for text, found in (("[]", "holds a list"), ("null", "holds null"), ('{"a": ', "not valid JSON")):
        path.write_text(text)
        with pytest.raises(DamagedFileError, match=found) as error:
            read_json_object(path, "Train it again.")
        assert str(path) in str(error.value) and "Train it again." in str(error.value)


def test_atomic_path_replaces_only_on_success_and_leaves_no_temporary_file(tmp_path):
    import numpy as np

    from sharpkit.utils.io import atomic_path

    target = tmp_path / "a.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target) as tmp:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(4,))
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
    with atomic_path(target) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(4,))
        array[:] = 7
        array.flush()
        del array
    assert np.load(target).tolist() == [7, 7, 7, 7] and sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
