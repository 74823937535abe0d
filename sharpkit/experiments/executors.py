"""Where a sweep's runs execute:

- :func:`run_inline`: one after another in this process (``workers=1``), each dataset loaded once;
- :func:`run_pool`: ``workers`` spawned processes on this machine (one GPU each, round robin, when there are
  GPUs; on a CPU each at the store's threads per run);
- :func:`run_slurm`: one Slurm array job per run, through submitit, for users who outgrow one machine.

Each calls ``report(index, status)`` as a run finishes (the sweep journals itself then); the runs are
:class:`sharpkit.experiments.job.RunJob` values, the same in every executor.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .job import RunJob, run_in_own_process

__all__ = ["EXECUTORS", "run_inline", "run_pool", "run_slurm"]

EXECUTORS = ("local", "slurm")
Report = Callable[[int, str], None]  # (index of the job, its status) as each run finishes


def run_inline(jobs: Sequence[RunJob], threads: int, progress: bool, report: Report) -> None:
    """Each job in this process at ``threads`` CPU threads (restored afterwards), loading each dataset once."""
    from tqdm import tqdm

    from ..data import load_dataset

    datasets: dict[str, Any] = {}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for index, job in enumerate(tqdm(jobs, desc="sweep", unit="run", disable=not progress)):
            name = job.spec["config"]["dataset"]
            if name not in datasets:
                datasets[name] = load_dataset(name, root=job.data_root)
            report(index, job.run(datasets=datasets))  # run_one, looked up in job at each call
    finally:
        torch.set_num_threads(previous)


def _indexed(item: tuple[int, RunJob]) -> tuple[int, str]:
    index, job = item
    return index, run_in_own_process(job)


def run_pool(jobs: Sequence[RunJob], workers: int, report: Report) -> None:
    """The jobs in ``workers`` spawned processes, started in order and reported as each finishes (so the
    journal and its count are current); on a machine with GPUs, job ``i`` runs on GPU ``i mod count``."""
    import multiprocessing as mp

    device = jobs[0].device if jobs else "auto"
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    placed = [dataclasses.replace(job, device=f"cuda:{i % gpus}") if gpus else job for i, job in enumerate(jobs)]
    with mp.get_context("spawn").Pool(workers) as pool:
        for index, status in pool.imap_unordered(_indexed, list(enumerate(placed)), chunksize=1):
            report(index, status)


def run_slurm(jobs: Sequence[RunJob], folder: Path, report: Report, slurm_executor: Any = None) -> None:
    """One Slurm array job per job through submitit (``slurm_executor``: a configured submitit executor, e.g.
    ``submitit.LocalExecutor`` in tests; default an ``AutoExecutor`` logging to ``folder``); reported in job
    order, each as soon as it and the jobs before it have finished."""
    try:
        import submitit
    except ImportError as error:
        raise ValueError("The slurm executor needs submitit: pip install 'sharpkit[slurm]' (or pip install "
                         "submitit).") from error
    executor = slurm_executor
    if executor is None:
        executor = submitit.AutoExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=24 * 60, gpus_per_node=1, cpus_per_task=8, slurm_array_parallelism=64)
    if not jobs:
        return
    for index, submitted in enumerate(executor.map_array(run_in_own_process, list(jobs))):
        report(index, submitted.result())
