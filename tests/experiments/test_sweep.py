"""Sweep + store: crash safety (SIGKILL), damaged files, schema checks, slurm through submitit."""
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
from sharpkit.experiments.sweep import dry_run, sweep

REPO = Path(__file__).resolve().parents[2]

MICRO_SOURCE = """
from sharpkit.run.evaluate import EvalSettings
from sharpkit.experiments.profiles import Experiment, Profile

def micro_profile(lr=0.05):
    evaluation = EvalSettings(sam_samples=2, corruption_subset=8, batch_size=32)
    train = {"epochs": 2, "train_subset": 64, "test_subset": 32, "batch_size": 32, "lr": lr}
    size = {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "mlp_dim": 16}
    return Profile("micro", 1, "test profile", (Experiment("digits", "vit", size, train, evaluation),),
                   controls=("baseline", "baseline_sam"), seeds=(0, 1))
"""
namespace: dict = {}
exec(MICRO_SOURCE, namespace)
micro_profile = namespace["micro_profile"]

VOLATILE = {"provenance", "wall_time_s", "run_wall_time_s", "eval_wall_time_s", "started", "finished", "log"}


def _stable(record):
    """A run record without timings and provenance (which legitimately differ between sweeps)."""
    out = {k: v for k, v in record.items() if k not in VOLATILE}
    out["evaluation"] = {k: v for k, v in record["evaluation"].items() if k != "provenance"}
    out["log"] = [{k: v for k, v in e.items() if "seconds" not in k} for e in record["log"]]
    return out


def _records(root):
    return {p.parent.name: _stable(json.loads(p.read_text()))
            for p in sorted(Path(root).glob("micro/runs/*/result.json"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    summary = sweep(micro_profile(), root / "results", cache_dir=root / "cache", progress=False, log=lambda *_: None)
    assert len(summary.ran) == 4 and not summary.diverged
    return root / "results"


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
    assert _records(tmp_path / "results") == _records(reference)


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
    assert _records(tmp_path / "results") == _records(reference)


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


def test_slurm_path_runs_through_submitit_local_executor(reference, tmp_path):
    submitit = pytest.importorskip("submitit")
    executor = submitit.LocalExecutor(folder=str(tmp_path / "submitit"))
    executor.update_parameters(timeout_min=10)
    summary = sweep(micro_profile(), tmp_path / "results", executor="slurm", cache_dir=tmp_path / "cache",
                    slurm_executor=executor, progress=False, log=lambda *_: None)
    assert len(summary.ran) == 4
    assert _records(tmp_path / "results") == _records(reference)


def test_paper_profile_dry_run_prints_480_runs():
    lines = []
    numbers = dry_run(get_profile("paper"), measure=False, log=lines.append)
    assert numbers["runs"] == 480 and numbers["cells"] == 48
    text = "\n".join(lines)
    assert "480 training runs" in text and "tinyimagenet" in text and "cifar100-c" in text
    runs = get_profile("paper").runs()
    assert sum(1 for r in runs if r.config.dataset in ("cifar10", "cifar100")) == 360
    assert {r.config.epochs for r in runs} == {100} and {r.config.seed for r in runs} == set(range(10))


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


def test_verify_reruns_stored_runs_and_passes(reference, capsys):
    from sharpkit.experiments.sweep import verify

    outcomes = verify(micro_profile(), reference, 1, device="cpu", log=print)
    assert len(outcomes) == 1 and outcomes[0].passed
    assert capsys.readouterr().out.startswith("PASS")


def test_verify_detects_a_changed_metric(reference, tmp_path):
    import shutil

    from sharpkit.experiments.sweep import verify
    from sharpkit.utils.io import sign_record

    shutil.copytree(reference, tmp_path / "results")
    for path in (tmp_path / "results" / "micro" / "runs").glob("*/result.json"):
        record = json.loads(path.read_text())
        record["evaluation"]["metrics"]["test_ece"] += 0.01
        path.write_text(json.dumps(sign_record(record)))  # signed again: as if computed so, not edited
    outcomes = verify(micro_profile(), tmp_path / "results", 1, device="cpu", log=lambda *_: None)
    assert not outcomes[0].passed and any("test_ece" in line for line in outcomes[0].lines)


def test_two_local_workers_give_bit_identical_results_to_one(reference, tmp_path):
    """The threads per run do not depend on --workers (default 1, pinned in the store), so two worker
    processes store exactly what one process stored, cells included."""
    summary = sweep(micro_profile(), tmp_path / "results", workers=2, cache_dir=tmp_path / "cache", progress=False,
                    log=lambda *_: None)
    assert len(summary.ran) == 4
    assert _records(tmp_path / "results") == _records(reference)

    def cells(root):
        return {p.name: p.read_bytes() for p in sorted(Path(root).glob("micro/cells/*.json"))}

    assert cells(tmp_path / "results") == cells(reference)
    assert load_sweep_info(tmp_path / "results", "micro")["threads_per_run"] == 1


def test_a_store_keeps_its_thread_count(reference, tmp_path):
    import shutil

    from sharpkit.experiments.store import ResultStore
    from sharpkit.experiments.sweep import resolve_threads

    root = tmp_path / "results"
    shutil.copytree(reference, root)
    store = ResultStore(root, micro_profile())
    assert resolve_threads(store, None) == 1 and resolve_threads(store, 1) == 1
    with pytest.raises(ValueError, match="--threads 1"):
        sweep(micro_profile(), root, threads=2, cache_dir=tmp_path / "cache", progress=False, log=lambda *_: None)
    # A store older than the pin: the thread count its runs' provenance agrees on.
    info = json.loads((root / "micro" / "sweep.json").read_text())
    del info["threads_per_run"]
    (root / "micro" / "sweep.json").write_text(json.dumps(info))
    assert resolve_threads(store, None) == 1
    record_path = next((root / "micro" / "runs").glob("*/result.json"))
    record = json.loads(record_path.read_text())
    record["provenance"]["hardware"]["cpu_count"] = 2
    record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="different CPU thread counts"):
        resolve_threads(store, None)


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


def test_a_profile_that_only_measures_more_reuses_the_training_and_matches_a_fresh_run(reference, tmp_path,
                                                                                      monkeypatch):
    """A second profile with the same training and another evaluation takes the finished checkpoints from
    the cache instead of training again, and its records equal those of a sweep that trained from scratch."""
    import dataclasses
    import shutil

    import torch

    base = micro_profile()
    experiment = base.experiments[0]
    measured_more = dataclasses.replace(
        base, name="micro-more",
        experiments=(dataclasses.replace(experiment, evaluation=dataclasses.replace(
            experiment.evaluation, sam_samples=3, metrics=experiment.evaluation.metrics + ("hessian_trace",),
            beyond_points=16, hessian_samples=2)),))
    shared_cache = tmp_path / "shared-cache"
    shutil.copytree(reference.parent / "cache", shared_cache)
    quiet = {"progress": False, "log": lambda *_: None}
    planned: list[str] = []
    assert dry_run(measured_more, measure=False, cache_dir=shared_cache, log=planned.append)["reusable"] == 4
    assert any("4 of the 4 runs will reuse a finished training" in line for line in planned)
    assert dry_run(measured_more, measure=False, cache_dir=tmp_path / "empty", log=planned.append)["reusable"] == 0
    # a profile's own finished runs are not "reuse" (they are resumed, or skipped when stored)
    assert dry_run(base, measure=False, cache_dir=shared_cache, log=planned.append)["reusable"] == 0
    # workers with another thread count than the trainings' would train again
    assert dry_run(measured_more, measure=False, cache_dir=shared_cache, workers=2, threads=torch.get_num_threads() + 1,
                   results_root=tmp_path / "none", log=planned.append)["reusable"] == 0
    # planning a GPU sweep on a machine without one: no count, no error
    if not torch.cuda.is_available():
        assert dry_run(measured_more, measure=False, device="cuda", cache_dir=shared_cache,
                       log=planned.append)["reusable"] == 0
    sweep(measured_more, tmp_path / "reused", cache_dir=shared_cache, **quiet)
    sweep(measured_more, tmp_path / "fresh", cache_dir=tmp_path / "fresh-cache", **quiet)

    def records(root):
        return {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("micro-more/runs/*/result.json"))}

    reused, fresh, trained = records(tmp_path / "reused"), records(tmp_path / "fresh"), {
        p.parent.name: json.loads(p.read_text()) for p in reference.glob("micro/runs/*/result.json")}
    assert reused.keys() == fresh.keys() and len(reused) == 4
    by_config = {r["config_hash"]: r for r in trained.values()}
    for run_id, record in reused.items():
        source = by_config[record["config_hash"]]
        # the log (with its per-epoch seconds) is the original training's: nothing was trained again
        assert record["log"] == source["log"]
        assert record["training_reused_from"]["provenance"] == source["provenance"]
        assert "training_reused_from" not in fresh[run_id]
        assert _stable(record) == _stable(fresh[run_id]) | {"training_reused_from": record["training_reused_from"]}


def test_reuse_needs_the_same_config_and_arithmetic_and_survives_a_crash_after_the_copy(reference, tmp_path):
    import torch

    from sharpkit.experiments.sweep import REUSED_FROM, reuse_training, run_one

    roots = [reference.parent / "cache" / "work"]
    spec = micro_profile().runs()[0]
    cpu = torch.device("cpu")
    # another learning rate is another training
    other = micro_profile(lr=0.1).runs()[0]
    assert reuse_training(other.config, roots, tmp_path / "other", cpu) is None
    assert not (tmp_path / "other").exists()
    previous = torch.get_num_threads()
    try:
        # the same config trained with another thread count rounds differently: not reused either (the
        # reference sweep ran its runs at the default 1 thread)
        torch.set_num_threads(2)
        assert reuse_training(spec.config, roots, tmp_path / "threads", cpu) is None
        torch.set_num_threads(1)
        # a crash after the copy and before the record: the rerun still says where the training came from
        cache = tmp_path / "cache"
        work = cache / "work" / spec.run_id
        origin = reuse_training(spec.config, roots, work, cpu)
        assert origin is not None and (work / "checkpoint.pt").exists() and (work / REUSED_FROM).exists()
        data = {"profile": "micro", "config": spec.config.to_dict(), "evaluation": spec.evaluation.to_dict()}
        assert run_one(data, str(tmp_path / "results"), str(cache), 1, device="cpu") == "ok"
    finally:
        torch.set_num_threads(previous)
    record = json.loads((tmp_path / "results" / "micro" / "runs" / spec.run_id / "result.json").read_text())
    stored = json.loads((reference / "micro" / "runs" / spec.run_id / "result.json").read_text())
    assert record["training_reused_from"]["provenance"] == stored["provenance"]
    assert _stable(record) == _stable(stored) | {"training_reused_from": record["training_reused_from"]}


def test_trainings_are_looked_for_in_every_default_profile_cache_but_only_in_an_explicit_one(tmp_path, monkeypatch):
    from sharpkit.experiments.reuse import search_roots

    monkeypatch.setenv("SHARPKIT_CACHE", str(tmp_path / "runs"))
    for name in ("cifar10-mini", "beyond-cifar10", "smoke"):
        (tmp_path / "runs" / name / "work").mkdir(parents=True)
    own = tmp_path / "runs" / "beyond-cifar10"
    assert search_roots(own) == [own / "work", tmp_path / "runs" / "cifar10-mini" / "work",
                                tmp_path / "runs" / "smoke" / "work"]
    explicit = tmp_path / "elsewhere" / "mine"
    assert search_roots(explicit) == [explicit / "work"]


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


def test_dry_run_cost_model_counts_test_passes_and_evaluation_and_splits_over_workers():
    from sharpkit.experiments.sweep import evaluation_forward_images

    profile = micro_profile()
    spec = profile.runs()[0]
    # by hand: 2 epochs x 32 test images + the final predictions; 64 training images twice (final eval-mode
    # accuracy, generalisation gap); 18 corruptions x 5 severities x 8 images; Fisher-Rao (forward+backward)
    # on 64 points; SAM sharpness (2 samples + the base loss) on 64; relative flatness on 64.
    expected = 2 * 32 + 32 + 2 * 64 + 18 * 5 * 8 + 3 * 64 + 3 * 64 + 3 * 64
    assert evaluation_forward_images(spec.config, spec.evaluation) == expected
    one = dry_run(profile, measure=True, log=lambda *_: None)
    two = dry_run(profile, measure=True, workers=2, log=lambda *_: None)
    for numbers in (one, two):
        assert numbers["estimated_seconds"] > 0 and numbers["estimated_eval_seconds"] > 0
    assert one["estimated_wall_seconds"] == pytest.approx(one["estimated_seconds"] + one["estimated_eval_seconds"])
    assert two["estimated_wall_seconds"] == pytest.approx(
        (two["estimated_seconds"] + two["estimated_eval_seconds"]) / 2)


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
    assert _records(results) == _records(reference)
    entries = load_sweep_info(results, "micro")["sweeps"]
    assert len(entries) == 2 and sum(e["ran"] for e in entries) == 4


def test_verify_on_other_arithmetic_checks_in_distribution(reference, tmp_path):
    """A stored record whose arithmetic fields differ from this machine's (here: edited in a copy) cannot be
    compared bit for bit: verify says so and checks each metric against the cell's other seeds instead."""
    import shutil

    from sharpkit.experiments.sweep import verify

    shutil.copytree(reference, tmp_path / "results")
    for path in (tmp_path / "results" / "micro" / "runs").glob("*/result.json"):
        record = json.loads(path.read_text())
        record["provenance"]["hardware"]["cpu"] = "Another CPU"
        path.write_text(json.dumps(record))
    lines: list[str] = []
    (outcome,) = verify(micro_profile(), tmp_path / "results", 1, device="cpu", log=lines.append)
    assert "arithmetic differs" in lines[1] and "'Another CPU'" in lines[1]
    # micro stores 2 seeds per cell: one other seed is too few for a spread, and verify says so
    assert not outcome.passed and any("fewer than 2 other seeds" in line for line in lines)
    assert "bitwise" not in lines[0]


def test_in_distribution_check_accepts_a_seed_like_value_and_rejects_an_outlier():
    import numpy as np

    from sharpkit.experiments.verify import _in_distribution

    rng = np.random.default_rng(0)
    seeds = {"test_accuracy": list(0.40 + 0.01 * rng.standard_normal(9)), "train.train_loss": [0.01] * 9}
    stored = {"metrics": {"train_loss": 0.01}, "evaluation": {"metrics": {"test_accuracy": 0.41}}}
    near = {"metrics": {"train_loss": 0.01}, "evaluation": {"metrics": {"test_accuracy": 0.405}}}
    far = {"metrics": {"train_loss": 0.01}, "evaluation": {"metrics": {"test_accuracy": 0.55}}}
    ok, lines = _in_distribution(stored, near, seeds)
    assert ok and all("reproduced in distribution" in line for line in lines)
    ok, lines = _in_distribution(stored, far, seeds)
    assert not ok and any(line.startswith("test_accuracy: not reproduced") for line in lines)
    # A rate of false alarms near the stated 1 %: faithful "re-runs" drawn like the seeds.
    alarms = sum(not _in_distribution(stored, {"metrics": {"train_loss": 0.01}, "evaluation": {"metrics": {
        "test_accuracy": float(0.40 + 0.01 * rng.standard_normal())}}}, seeds)[0] for _ in range(2000))
    assert alarms / 2000 < 0.03
