"""The executors: two local workers and Slurm (through submitit's local executor) store what one process does."""
from pathlib import Path

import pytest
import torch

from sharpkit.experiments.store import load_sweep_info
from sharpkit.experiments.sweep import sweep

from ._micro import micro_profile, records

REPO = Path(__file__).resolve().parents[2]


def test_slurm_path_runs_through_submitit_local_executor(reference, tmp_path):
    submitit = pytest.importorskip("submitit")
    executor = submitit.LocalExecutor(folder=str(tmp_path / "submitit"))
    executor.update_parameters(timeout_min=10)
    summary = sweep(micro_profile(), tmp_path / "results", executor="slurm", cache_dir=tmp_path / "cache",
                    slurm_executor=executor, progress=False, log=lambda *_: None)
    assert len(summary.ran) == 4
    assert records(tmp_path / "results") == records(reference)


def test_two_local_workers_give_bit_identical_results_to_one(reference, tmp_path):
    """The threads per run do not depend on --workers (default 1, pinned in the store), so two worker
    processes store exactly what one process stored, cells included."""
    summary = sweep(micro_profile(), tmp_path / "results", workers=2, cache_dir=tmp_path / "cache", progress=False,
                    log=lambda *_: None)
    assert len(summary.ran) == 4
    assert records(tmp_path / "results") == records(reference)

    def cells(root):
        return {p.name: p.read_bytes() for p in sorted(Path(root).glob("micro/cells/*.json"))}

    assert cells(tmp_path / "results") == cells(reference)
    assert load_sweep_info(tmp_path / "results", "micro")["threads_per_run"] == 1


@pytest.mark.unit
def test_a_job_survives_pickling_and_runs_what_run_one_is_given(monkeypatch):
    import pickle

    import sharpkit.experiments.job as job_module
    from sharpkit.experiments.job import RunJob, run_in_own_process, spec_from_dict

    (spec, *_) = micro_profile().runs()
    job = RunJob.of(spec, Path("results"), Path("cache"), 3, data_root=None, device="cpu", threads=1)
    assert pickle.loads(pickle.dumps(job)) == job  # what a worker process or a Slurm job receives
    assert spec_from_dict(job.spec).run_id == spec.run_id and (job.results_root, job.cache_dir) == ("results", "cache")
    calls = []
    monkeypatch.setattr(job_module, "run_one", lambda *args: calls.append(args) or "ok")
    monkeypatch.setattr("sharpkit.utils.plugins.load_plugins", lambda *_, **__: None)
    assert run_in_own_process(job) == "ok"
    assert calls == [(job.spec, "results", "cache", 3, None, "cpu", False, None)]


@pytest.mark.unit
def test_the_pool_places_job_i_on_gpu_i_mod_count_and_reports_as_jobs_finish(monkeypatch):
    """A stand-in for the process pool (in order, in this process) and for two GPUs."""
    import multiprocessing

    from sharpkit.experiments import executors
    from sharpkit.experiments.job import RunJob

    class InlinePool:
        def __init__(self, workers):
            self.workers = workers

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def imap_unordered(self, function, items, chunksize):
            return reversed([function(item) for item in items])  # finished in another order than started

    class Context:
        def Pool(self, workers):  # noqa: N802 - multiprocessing's name
            return InlinePool(workers)

    placed = []
    monkeypatch.setattr(multiprocessing, "get_context", lambda method: Context())
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(executors, "run_in_own_process", lambda job: placed.append(job.device) or job.spec["seed"])
    jobs = [RunJob({"seed": i}, "r", "c", 1, device="auto") for i in range(5)]
    reports = []
    executors.run_pool(jobs, 2, lambda index, status: reports.append((index, status)))
    assert placed == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert reports == [(4, 4), (3, 3), (2, 2), (1, 1), (0, 0)]
