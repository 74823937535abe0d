"""The executors: two local workers and Slurm (through submitit's local executor) store what one process does."""
from pathlib import Path

import pytest

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
