"""The result store: records whose values carry digests (an edited value is named, an old unsigned record still
valid), a read-only or full store reported before any work, stale temporary files removed on opening, and sweep
invocations that were killed marked so in sweep.json."""
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from sharpkit.experiments.store import SWEEP_LOCK, ResultStore, StoreError, validate_run_record
from sharpkit.utils import io
from sharpkit.utils.io import NotWritableError, sign_record

PROFILE_SOURCE = """
from sharpkit.experiments.profiles import Experiment, Profile
from sharpkit.run.evaluate import EvalSettings
PROFILE = Profile("micro", 1, "test profile", (Experiment("digits", "vit", {"dim": 16, "depth": 1, "heads": 2,
                  "dim_head": 8, "mlp_dim": 16}, {"epochs": 2, "train_subset": 64, "test_subset": 32},
                  EvalSettings(sam_samples=2, corruption_subset=8, batch_size=32)),),
                  controls=("baseline",), seeds=(0,))
"""
_namespace: dict = {}
exec(PROFILE_SOURCE, _namespace)
PROFILE = _namespace["PROFILE"]


def _record(tmp_path):
    """A complete store record of PROFILE's run (values made up) and where it lives."""
    (spec,) = PROFILE.runs()
    record = {"store_schema_version": 1, "run_id": spec.run_id, "status": "ok", "profile": "micro",
              "config": spec.config.to_dict(), "evaluation_settings": spec.evaluation.to_dict(),
              "metrics": {"test_loss": 1.5}, "provenance": {"hardware": {"cpu": "x"}}, "wall_time_s": 2.0,
              "evaluation": {"metrics": {name: 0.25 for name in spec.evaluation.metrics},
                             "details": {"test_predictions": {"dtype": "uint8", "n": 0, "base64": ""}}}}
    return record, tmp_path / "micro" / "runs" / spec.run_id / "result.json"


def test_a_hand_edited_metric_is_named_and_an_unsigned_record_stays_valid(tmp_path):
    record, path = _record(tmp_path)
    assert validate_run_record(record, path) == "unsigned"  # as every record stored before digests
    sign_record(record)
    assert validate_run_record(record, path) == "signed"
    record["provenance"]["hardware"]["cpu"] = "y"  # not a value: still valid
    assert validate_run_record(record, path) == "signed"
    record["evaluation"]["metrics"]["test_ece"] = 0.125
    with pytest.raises(StoreError) as error:
        validate_run_record(record, path)
    message = str(error.value)
    assert "evaluation.metrics.test_ece" in message and "edited by hand" in message and str(path) in message
    assert "run the sweep again" in message
    with pytest.raises(StoreError, match="holds a JSON list"):
        validate_run_record([], path)


def test_a_read_only_or_full_store_is_refused_before_anything_is_written(tmp_path, monkeypatch, make_read_only):
    results = tmp_path / "results"
    results.mkdir()
    store = ResultStore(results, PROFILE, cache_dir=tmp_path / "cache")
    make_read_only(results)
    try:
        with pytest.raises(NotWritableError) as error:
            store.open(write=True)
        message = str(error.value)
        assert "read-only" in message and str(results) in message and "--results" in message
        assert "nothing was run" in message
    finally:
        make_read_only.restore()
    monkeypatch.undo()
    assert not store.sweep_file.exists()

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "_probe_write", full)
    with pytest.raises(NotWritableError, match="Disk full") as error:
        store.open(write=True)
    assert str(results) in str(error.value)
    assert not store.sweep_file.exists()
    monkeypatch.undo()
    store.open(write=True)
    assert store.sweep_file.exists()


def test_opening_a_store_for_writing_removes_temp_files_of_dead_writers(tmp_path):
    store = ResultStore(tmp_path / "results", PROFILE, cache_dir=tmp_path / "cache")
    (spec,) = PROFILE.runs()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stale = f"{dead.stdout.strip()}@{io._host_tag()}.k1ll3d.tmp"
    leftovers = [store.root / f".sweep.json.{stale}", store.result_path(spec).parent / f".result.json.{stale}",
                 store.work_dir(spec) / f".checkpoint.pt.{stale}", store.cache / "init" / f".vit-x.pt.{stale}"]
    live = store.work_dir(spec) / f".log.jsonl.{os.getpid()}@{io._host_tag()}.mine.tmp"
    for path in leftovers + [live]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    store.open(write=True)
    assert not any(path.exists() for path in leftovers) and live.exists()


def _entry(**fields):
    return {"started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T01:00:00+00:00", "status": "running",
            "wall_time_s": 3600.0, "ran": 3, "pending": 9, **fields}


def _write_sweeps(store, entries):
    info = store.open()
    info["sweeps"] = entries
    store.sweep_file.write_text(json.dumps(info))


def _sweeps(store):
    return json.loads(store.sweep_file.read_text())["sweeps"]


def test_entries_of_killed_invocations_are_marked_killed_and_live_ones_kept(tmp_path):
    store = ResultStore(tmp_path / "results", PROFILE, cache_dir=tmp_path / "cache")
    store.open(write=True)
    # A sweep in another process: it holds the store's sweep lock and journals itself, as sweep() does.
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, socket, time, pathlib
        from sharpkit.experiments.store import ResultStore
        exec({PROFILE_SOURCE!r})
        store = ResultStore({str(tmp_path / 'results')!r}, PROFILE, cache_dir={str(tmp_path / 'cache')!r})
        with store.sweep_session(log=lambda *_: None):
            store.record_sweep({{"started": "now", "status": "running", "wall_time_s": 12.7, "ran": 2,
                                "pid": os.getpid(), "host": socket.gethostname()}})
            pathlib.Path({str(ready)!r}).write_text("1")
            time.sleep(120)
    """)])
    try:
        deadline = time.time() + 120
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the child sweep never started"
        messages = []
        with store.sweep_session(log=messages.append) as killed:  # the child lives: its entry stays running
            assert killed == [] and messages == []
        assert [e["status"] for e in _sweeps(store)] == ["running"]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    messages = []
    with store.sweep_session(log=messages.append) as killed:
        assert len(killed) == 1
    (entry,) = _sweeps(store)
    assert entry["status"] == "killed" and entry["wall_time_s"] == 12.7 and entry["pid"] == child.pid
    assert "killed_noted" in entry
    assert f"pid {child.pid}" in messages[0] and "13 s" in messages[0] and "marked killed" in messages[0]


def test_a_dead_pid_on_this_machine_is_killed_even_while_another_sweep_runs(tmp_path, lock_held_elsewhere):
    store = ResultStore(tmp_path / "results", PROFILE, cache_dir=tmp_path / "cache")
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    here, elsewhere = socket.gethostname(), "another-machine"
    _write_sweeps(store, [_entry(pid=dead, host=here), _entry(pid=dead, host=elsewhere),
                          _entry(status="finished", pid=dead, host=here)])
    with lock_held_elsewhere("shared_lock", store.root, SWEEP_LOCK):
        with store.sweep_session(log=lambda *_: None):
            pass
        # dead here: killed; on another machine its pid cannot be asked while a sweep holds the lock
        assert [e["status"] for e in _sweeps(store)] == ["killed", "running", "finished"]
    with store.sweep_session(log=lambda *_: None):  # no live sweep at all: every running entry is gone
        pass
    assert [e["status"] for e in _sweeps(store)] == ["killed", "killed", "finished"]


def test_an_old_entry_without_pid_is_marked_killed_only_when_no_process_holds_a_lock_of_the_store(tmp_path,
                                                                                                  lock_held_elsewhere):
    store = ResultStore(tmp_path / "results", PROFILE, cache_dir=tmp_path / "cache")
    (spec,) = PROFILE.runs()
    _write_sweeps(store, [_entry()])
    run_folder = store.result_path(spec).parent
    with lock_held_elsewhere("folder_lock", run_folder):
        with store.sweep_session(log=lambda *_: None):
            pass
        assert _sweeps(store)[0]["status"] == "running"  # something still runs a run of this store
    with store.sweep_session(log=lambda *_: None):
        pass
    assert _sweeps(store)[0]["status"] == "killed" and _sweeps(store)[0]["wall_time_s"] == 3600.0


def test_a_changed_seed_list_is_stored_and_the_old_definition_kept(tmp_path):
    store = ResultStore(tmp_path / "results", PROFILE, cache_dir=tmp_path / "cache")
    store.open(write=True)
    assert store.adopt_definition() is None  # unchanged: nothing written
    assert "definition_history" not in json.loads(store.sweep_file.read_text())
    wider = PROFILE.__class__(**{**PROFILE.__dict__, "seeds": (0, 1, 2)})
    store2 = ResultStore(tmp_path / "results", wider, cache_dir=tmp_path / "cache")
    assert store2.adopt_definition()["seeds"] == [0]
    info = json.loads(store.sweep_file.read_text())
    assert info["profile"]["seeds"] == [0, 1, 2]
    assert [h["definition"]["seeds"] for h in info["definition_history"]] == [[0]]
    assert store2.adopt_definition() is None
    # A run of the old definition keeps its id under the new one: runs are keyed by their own config.
    assert PROFILE.runs()[0].run_id == wider.runs()[0].run_id


@pytest.mark.parametrize("content", ["[]", "null", "3"])
def test_a_cell_file_or_sweep_json_that_is_not_an_object_is_named_with_the_fix(tmp_path, content):
    from sharpkit.experiments.store import load_results, load_sweep_info

    store = ResultStore(tmp_path / "results", PROFILE, cache_dir=tmp_path / "cache")
    store.open(write=True)
    cell = store.root / "cells" / "digits-vit-baseline.json"
    cell.parent.mkdir(parents=True, exist_ok=True)
    cell.write_text(content)
    with pytest.raises(StoreError, match=r"digits-vit-baseline\.json holds a JSON .*rebuilds the cell"):
        load_results(store.root)
    cell.unlink()
    assert load_results(store.root).empty
    store.sweep_file.write_text(content)
    with pytest.raises(StoreError, match=r"sweep\.json holds a JSON .*runs in it are intact"):
        load_sweep_info(store.root)


def test_every_column_of_the_stored_frames_is_a_result_column():
    """RESULT_COLUMNS (derived from the registry's column sources) names every column a frame of stored runs
    has, and is exactly the columns of an empty store's frame."""
    from pathlib import Path

    from sharpkit.experiments.store import RESULT_COLUMNS, load_results
    from sharpkit.metrics.registry import metric_names

    results = Path(__file__).resolve().parents[2] / "results"
    for profile in ("cifar10-minima", "beyond-digits"):
        assert set(load_results(results, profile).columns) <= set(RESULT_COLUMNS), profile
    assert set(metric_names(column_source="trainer")) | {"prediction_disagreement"} <= set(RESULT_COLUMNS)
    assert not set(metric_names(group="derived")) & set(RESULT_COLUMNS)


def test_an_empty_store_gives_a_frame_of_every_result_column(tmp_path):
    from sharpkit.experiments.store import RESULT_COLUMNS, load_results

    ResultStore(tmp_path / "results", PROFILE, cache_dir=tmp_path / "cache").open(write=True)
    frame = load_results(tmp_path / "results", "micro")
    assert frame.empty and tuple(frame.columns) == RESULT_COLUMNS


def test_complete_cells_are_those_whose_runs_are_all_stored_and_write_cell_names_them(tmp_path):
    record, path = _record(tmp_path)
    store = ResultStore(tmp_path, PROFILE, cache_dir=tmp_path / "cache")
    store.open(write=True)
    assert list(store.complete_cells()) == []  # the one run of the one cell is not stored
    io.write_json(path, record)
    ((cell, records),) = store.complete_cells()
    assert cell == ("digits", "vit", "baseline") and records == [json.loads(path.read_text())]
    written = store.write_cell(*cell, [{**record, "status": "diverged"}], {"extra": 1})
    assert written == store.cell_path(*cell) and json.loads(written.read_text()) == {
        "store_schema_version": 1, "dataset": "digits", "arch": "vit", "control": "baseline",
        "runs": [record["run_id"]], "excluded_diverged": 1, "extra": 1}
    with pytest.warns(DeprecationWarning, match="sharpkit.experiments.cells.update_cells"):
        assert store.update_cells() == ["digits-vit-baseline"]
