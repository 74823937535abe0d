"""The sweep: crash safety (SIGKILL), damaged files, schema checks, journalling, concurrent sweeps, the stored
grids."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sharpkit.experiments.profiles import get_profile
from sharpkit.experiments.store import StoreError, load_results, load_sweep_info
from sharpkit.experiments.sweep import sweep

from ._micro import MICRO_SOURCE, micro_profile, records

REPO = Path(__file__).resolve().parents[2]


def test_sweep_stores_every_run_and_cell(reference):
    df = load_results(reference, "micro")
    assert len(df) == 4 and set(df.status) == {"ok"}
    assert set(df.control) == {"baseline", "baseline_sam"} and set(df.seed) == {0, 1}
    for column in ("test_accuracy", "test_ece", "corruption_accuracy", "fisher_rao_norm", "sam_sharpness",
                   "relative_flatness", "prediction_disagreement", "generalization_gap"):
        assert df[column].notna().all(), column
    info = load_sweep_info(reference, "micro")
    assert info["profile"]["name"] == "micro" and info["wall_time_s"] > 0
    assert {"git", "versions", "hardware"} <= set(info["sweeps"][0]["provenance"])


def test_a_second_sweep_skips_everything(reference, tmp_path):
    messages = []
    summary = sweep(micro_profile(), reference, cache_dir=tmp_path / "empty-cache", progress=False, log=messages.append)
    assert summary.ran == [] and len(summary.skipped) == 4
    assert any("skipping 4 runs" in m for m in messages)


def test_sigkill_at_random_moments_then_resume_gives_identical_results(reference, tmp_path):
    script = tmp_path / "run_sweep.py"
    script.write_text(MICRO_SOURCE + textwrap.dedent(f"""
        from sharpkit.experiments.sweep import sweep
        sweep(micro_profile(), {str(tmp_path / 'results')!r}, cache_dir={str(tmp_path / 'cache')!r}, progress=False)
    """))
    rng = random.Random(0)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait until the sweep is at work (torch imported, a run started), then kill at a random moment.
        deadline = time.time() + 60
        while proc.poll() is None and not (tmp_path / "cache" / "work").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        kills += proc.wait() == -signal.SIGKILL
    assert kills >= 2, "the sweep finished before it could be killed: the test did not test anything"
    summary = sweep(micro_profile(), tmp_path / "results", cache_dir=tmp_path / "cache", progress=False,
                    log=lambda *_: None)
    assert len(summary.ran) + len(summary.skipped) == 4
    files = list((tmp_path / "results" / "micro" / "runs").glob("*/result.json*"))
    assert len(files) == 4  # each run exactly once, nothing half-written left behind
    assert records(tmp_path / "results") == records(reference)


def test_truncated_result_is_detected_and_redone(reference, tmp_path):
    import shutil

    shutil.copytree(reference, tmp_path / "results")
    victim = next((tmp_path / "results" / "micro" / "runs").glob("*/result.json"))
    victim.write_text(victim.read_text()[:200])  # a crash mid-write by some other tool
    messages = []
    summary = sweep(micro_profile(), tmp_path / "results", cache_dir=tmp_path / "cache", progress=False,
                    log=messages.append)
    assert summary.redone == [victim.parent.name] and summary.ran == [victim.parent.name]
    assert any("unreadable" in m for m in messages)
    assert list(victim.parent.glob("result.json.corrupt-*"))  # kept aside, not deleted
    assert records(tmp_path / "results") == records(reference)


def test_hand_edited_result_gives_one_clear_error_and_nothing_is_overwritten(reference, tmp_path):
    import shutil

    shutil.copytree(reference, tmp_path / "results")
    victim = next((tmp_path / "results" / "micro" / "runs").glob("*/result.json"))
    record = json.loads(victim.read_text())
    record["config"]["seed"] = 7
    victim.write_text(json.dumps(record))
    before = victim.read_text()
    with pytest.raises(StoreError, match="edited by hand") as error:
        load_results(tmp_path / "results", "micro")
    assert str(victim) in str(error.value) and "sweep again" in str(error.value)
    with pytest.raises(StoreError, match="edited by hand"):
        sweep(micro_profile(), tmp_path / "results", cache_dir=tmp_path / "cache", progress=False, log=lambda *_: None)
    assert victim.read_text() == before


def test_stored_records_are_signed_and_a_hand_edited_metric_is_named(reference, tmp_path):
    import shutil

    from sharpkit.experiments.store import validate_run_record

    shutil.copytree(reference, tmp_path / "results")
    paths = sorted((tmp_path / "results" / "micro" / "runs").glob("*/result.json"))
    assert {validate_run_record(json.loads(p.read_text()), p) for p in paths} == {"signed"}
    record = json.loads(paths[0].read_text())
    record["evaluation"]["metrics"]["sam_sharpness"] *= 0.5
    paths[0].write_text(json.dumps(record))
    with pytest.raises(StoreError, match="evaluation.metrics.sam_sharpness does not match the digest") as error:
        load_results(tmp_path / "results", "micro")
    assert str(paths[0]) in str(error.value) and "edited by hand" in str(error.value)


def test_a_read_only_results_folder_is_reported_before_any_run(tmp_path, monkeypatch, make_read_only):
    import sharpkit.experiments.job as job_module  # the executors call job.run_one
    from sharpkit.cli import main

    def no_run(*_, **__):
        raise AssertionError("a run started")

    monkeypatch.setattr(job_module, "run_one", no_run)
    results = tmp_path / "results"
    results.mkdir()
    make_read_only(results)
    try:
        with pytest.raises(OSError, match="read-only") as error:
            sweep(micro_profile(), results, cache_dir=tmp_path / "cache", progress=False, log=lambda *_: None)
        assert str(results) in str(error.value) and "--results" in str(error.value)
        assert main(["sweep", "--profile", "digits-mini", "--results", str(results), "--cache",
                     str(tmp_path / "cache"), "--no-progress"]) == 2  # the message, not a traceback
    finally:
        make_read_only.restore()
    assert list(results.iterdir()) == []


def test_results_of_another_schema_or_profile_version_are_refused(reference, tmp_path):
    import shutil

    shutil.copytree(reference, tmp_path / "results")
    sweep_file = tmp_path / "results" / "micro" / "sweep.json"
    info = json.loads(sweep_file.read_text())
    info["store_schema_version"] = 99
    sweep_file.write_text(json.dumps(info))
    before = sweep_file.read_text()
    with pytest.raises(StoreError, match="schema version 99"):
        load_results(tmp_path / "results", "micro")
    with pytest.raises(StoreError, match="schema version 99"):
        sweep(micro_profile(), tmp_path / "results", cache_dir=tmp_path / "cache", progress=False, log=lambda *_: None)
    assert sweep_file.read_text() == before
    info["store_schema_version"] = 1
    info["profile"]["version"] = 0
    sweep_file.write_text(json.dumps(info))
    with pytest.raises(StoreError, match="version 0"):
        sweep(micro_profile(), tmp_path / "results", cache_dir=tmp_path / "cache", progress=False, log=lambda *_: None)


def test_diverged_runs_are_kept_flagged_and_left_out_of_cells(tmp_path):
    summary = sweep(micro_profile(lr=1e12), tmp_path / "results", cache_dir=tmp_path / "cache", progress=False,
                    log=lambda *_: None)
    assert len(summary.diverged) == 4
    df = load_results(tmp_path / "results", "micro")
    assert set(df.status) == {"diverged"} and df.diverged_epoch.notna().all()
    cell = json.loads(next((tmp_path / "results" / "micro" / "cells").glob("*.json")).read_text())
    assert cell["excluded_diverged"] == 2 and "prediction_disagreement" not in cell


def test_bad_names_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="smoke"):
        get_profile("nonexistent")
    with pytest.raises(StoreError, match="sharpkit sweep"):
        load_results(tmp_path)
    with pytest.raises(ValueError, match="executor"):
        sweep(micro_profile(), tmp_path, executor="kubernetes")


def test_report_cli_prints_tables_and_claims(reference, capsys, tmp_path):
    from sharpkit.cli import main

    assert main(["report", "--profile", "micro", "--results", str(reference), "--html", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "ViT trained on Digits" in out and "Baseline + SAM" in out and "claims" in out
    assert "<table" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("profile_dir", sorted(p.parent for p in (REPO / "results").glob("*/sweep.json")),
                         ids=lambda p: p.name)
def test_committed_results_are_valid_records_of_their_profile(profile_dir):
    """Every result stored in the repository still validates (schema, run id = hash of its config) and
    belongs to the current profile of that name: a code change that silently moved run ids or profile
    settings would orphan them."""
    frame = load_results(profile_dir)
    profile = get_profile(profile_dir.name)
    expected = {spec.run_id for spec in profile.runs()}
    assert len(frame) > 0 and set(frame["run_id"]) <= expected
    assert set(frame["status"]) <= {"ok", "diverged"}


def test_every_record_of_a_sweep_names_the_code_it_started_with(tmp_path, monkeypatch):
    """Commits or edits made while a sweep runs are not the code that runs: the git state is taken once,
    when the sweep starts, and also reaches worker processes (through the environment)."""
    import itertools
    import subprocess

    from sharpkit.utils import provenance

    calls = itertools.count()
    monkeypatch.setattr(provenance, "git_commit", lambda path=None: {"commit": f"state{next(calls)}", "dirty": False})
    monkeypatch.delenv(provenance.CODE_VERSION_ENV, raising=False)
    sweep(micro_profile(), tmp_path / "results", cache_dir=tmp_path / "cache", progress=False, log=lambda *_: None)
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "micro" / "runs").glob("*/result.json")]
    named = {r["provenance"]["git"]["commit"] for r in records} | {
        r["evaluation"]["provenance"]["git"]["commit"] for r in records} | {
        s["provenance"]["git"]["commit"] for s in load_sweep_info(tmp_path / "results", "micro")["sweeps"]}
    assert len(records) == 4 and named == {"state0"}
    assert provenance.CODE_VERSION_ENV not in os.environ  # unpinned after the sweep
    with provenance.pinned_code_version():
        pinned = provenance.code_version()["commit"]
        child = subprocess.run([sys.executable, "-c", "from sharpkit.utils.provenance import code_version; "
                                "print(code_version()['commit'])"], capture_output=True, text=True, check=True)
    assert pinned == "state1" and child.stdout.strip() == "state1"  # the child would have asked git itself
    with provenance.pinned_code_version():  # a pin from another checkout of sharpkit is not ours
        os.environ[provenance.CODE_VERSION_ENV] = json.dumps({"package": "/elsewhere", "git": {"commit": "x"}})
        assert provenance.code_version()["commit"].startswith("state")
    assert provenance.CODE_VERSION_ENV not in os.environ


def test_each_invocation_is_journalled_after_every_run_even_when_killed(tmp_path, monkeypatch):
    """sweep.json records an invocation as soon as it starts and after every finished run, so a sweep that
    dies (here: its third run raises) still shows the runs and the wall time it did."""
    import sharpkit.experiments.job as job_module  # the executors call job.run_one

    calls = []
    real = job_module.run_one

    def dies_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(job_module, "run_one", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        sweep(micro_profile(), tmp_path / "results", cache_dir=tmp_path / "cache", progress=False, log=lambda *_: None)
    (entry,) = load_sweep_info(tmp_path / "results", "micro")["sweeps"]
    assert entry["status"] == "running" and entry["ran"] == 2 and entry["pending"] == 4 and entry["wall_time_s"] > 0
    assert entry["pid"] == os.getpid() and "host" in entry  # so that a later sweep can tell it is gone
    monkeypatch.setattr(job_module, "run_one", real)
    messages = []
    sweep(micro_profile(), tmp_path / "results", cache_dir=tmp_path / "cache", progress=False, log=messages.append)
    first, second = load_sweep_info(tmp_path / "results", "micro")["sweeps"]
    # the killed invocation is marked so on restart, with the runs and wall time it last journalled
    assert first == {**entry, "status": "killed", "killed_noted": first["killed_noted"]}
    assert any("marked killed" in m and "after 2 run(s)" in m for m in messages)
    assert second["status"] == "finished" and second["ran"] == 2 and second["skipped"] == 2


def test_cells_are_rebuilt_when_nothing_is_pending(reference, tmp_path):
    import shutil

    root = tmp_path / "results"
    shutil.copytree(reference, root)
    cells = sorted((root / "micro" / "cells").glob("*.json"))
    kept = {p.name: p.read_bytes() for p in cells}
    cells[0].unlink()
    messages = []
    summary = sweep(micro_profile(), root, cache_dir=tmp_path / "cache", progress=False, log=messages.append)
    assert summary.ran == [] and any("rebuilt" in m for m in messages)
    assert {p.name: p.read_bytes() for p in (root / "micro" / "cells").glob("*.json")} == kept
    sweeps_before = load_sweep_info(reference, "micro")["sweeps"]
    assert load_sweep_info(root, "micro")["sweeps"] == sweeps_before  # nothing ran: no new entry


def test_two_concurrent_sweeps_on_one_store_do_every_run_once(reference, tmp_path):
    """Two sweeps started together on one results folder, each with its own cache: every run is trained by
    exactly one of them (the other finds it locked and leaves it), sweep.json keeps both invocations, and
    the store equals the one of a single sweep."""
    script = tmp_path / "run_sweep.py"
    script.write_text(MICRO_SOURCE + textwrap.dedent("""
        import json, sys
        from sharpkit.experiments.sweep import sweep
        summary = sweep(micro_profile(), sys.argv[1], cache_dir=sys.argv[2], progress=False, log=lambda *_: None)
        print(json.dumps({"ran": summary.ran, "busy": summary.busy, "skipped": summary.skipped}))
    """))
    results = tmp_path / "results"
    procs = [subprocess.Popen([sys.executable, str(script), str(results), str(tmp_path / f"cache-{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    ran = [run for o in outcomes for run in o["ran"]]
    assert sorted(ran) == sorted(set(ran)) and len(ran) == 4  # each run trained once, by one of the two
    assert any(o["busy"] or o["skipped"] for o in outcomes)
    # Whatever was busy for one sweep was finished by the other: run the store once more, nothing to do.
    again = sweep(micro_profile(), results, cache_dir=tmp_path / "cache-2", progress=False, log=lambda *_: None)
    assert again.ran == [] and len(again.skipped) == 4
    assert records(results) == records(reference)
    entries = load_sweep_info(results, "micro")["sweeps"]
    assert len(entries) == 2 and sum(e["ran"] for e in entries) == 4
