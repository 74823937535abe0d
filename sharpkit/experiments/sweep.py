"""Run a profile's whole grid: train, evaluate, then the cross-seed metrics per cell; resumable.

The sweep is the orchestration; each job has its own module:

- one run: :mod:`sharpkit.experiments.job` (:func:`run_one`, :class:`RunJob`);
- reusing a finished identical training: :mod:`sharpkit.experiments.reuse`;
- where runs execute (this process, local workers, Slurm): :mod:`sharpkit.experiments.executors`;
- the CPU threads per run pinned per store: :mod:`sharpkit.experiments.threads`;
- the cost estimate: :mod:`sharpkit.experiments.dry_run`; re-running stored runs: :mod:`sharpkit.experiments.verify`;
- the cells' cross-seed metrics: :mod:`sharpkit.experiments.cells`.

Their public names are importable from here too (``from sharpkit.experiments.sweep import verify``). To stand in
for a name in a test, patch it where it is used: the executors and :func:`verify` call
``sharpkit.experiments.job.run_one``.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.provenance import pinned_code_version, provenance, utc_now
from ..utils.validation import check_choice, check_positive
from .cells import update_cells
from .dry_run import (
    KNOWN_CLASSES,
    KNOWN_IMAGE_SIZES,
    KNOWN_TRAIN_SIZES,
    dry_run,
    evaluation_forward_images,
    measure_step_time,
)
from .executors import EXECUTORS, run_inline, run_pool, run_slurm
from .job import RunJob, run_one
from .profiles import Profile, RunSpec
from .reuse import REUSED_FROM, find_finished_training, finished_trainings, reuse_training
from .store import ResultStore
from .threads import DEFAULT_THREADS, resolve_threads, stored_threads
from .verify import SAMPLED_METRICS, VERIFY_FALSE_ALARM, VerifyOutcome, verify

__all__ = [
    "DEFAULT_THREADS", "EXECUTORS", "KNOWN_CLASSES", "KNOWN_IMAGE_SIZES", "KNOWN_TRAIN_SIZES", "REUSED_FROM",
    "SAMPLED_METRICS", "VERIFY_FALSE_ALARM", "RunJob", "SweepSummary", "VerifyOutcome",
    "dry_run", "evaluation_forward_images", "find_finished_training", "finished_trainings", "measure_step_time",
    "resolve_threads", "reuse_training", "run_one", "stored_threads", "sweep", "verify",
]


@dataclass
class SweepSummary:
    profile: str
    total: int
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already stored
    busy: list[str] = field(default_factory=list)  # being run by another sweep on the same store: left to it
    redone: list[str] = field(default_factory=list)  # unreadable results set aside and redone
    diverged: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0

    def lines(self) -> list[str]:
        return [f"profile {self.profile}: {self.total} runs; ran {len(self.ran)}, skipped {len(self.skipped)} already "
                f"stored, redid {len(self.redone)} damaged, {len(self.diverged)} diverged (kept, flagged, excluded "
                f"from means); {self.wall_time_s:.0f} s"
                + (f"; {len(self.busy)} left to another sweep running them on this store" if self.busy else "")]


def sweep(profile: Profile, results_root: str | Path = "results", *, executor: str = "local", workers: int = 1,
          cache_dir: str | Path | None = None, data_root: str | None = None, device: str = "auto",
          progress: bool = True, slurm_executor: Any = None, threads: int | None = None,
          log=print) -> SweepSummary:
    """Run every run of ``profile`` that has no stored result, then the per-cell metrics.

    Args:
        profile: what to run.
        results_root: results go to ``results_root/<profile>/``.
        executor: ``"local"`` or ``"slurm"``.
        workers: local worker processes (GPUs: one each, round robin).
        cache_dir: checkpoints and partial runs (default ``$SHARPKIT_CACHE/<profile>``, ``$SHARPKIT_CACHE``
            defaulting to ``~/.cache/sharpkit/runs``).
        slurm_executor: a configured ``submitit`` executor to use instead of ``submitit.AutoExecutor``
            (tests pass ``submitit.LocalExecutor``).
        threads: CPU threads per run (:func:`resolve_threads`: default the store's, else 1); pinned in the
            store's sweep.json, so that any number of workers gives the same bits.

    Every record names the git state at the start of the sweep (:func:`sharpkit.utils.provenance.pinned_code_version`)
    and carries the digests of its values (:func:`sharpkit.utils.io.sign_record`). Each invocation journals
    itself in sweep.json with its pid and host; an earlier one left ``running`` whose process is gone is
    marked ``killed`` (:meth:`~sharpkit.experiments.store.ResultStore.sweep_session`).

    Raises:
        sharpkit.utils.io.NotWritableError: the results folder or the cache is read-only or on a full disk
            (found before any run is spent).
    """
    check_choice("executor", executor, EXECUTORS)
    check_positive("workers", workers, integer=True)
    with pinned_code_version():
        store = ResultStore(results_root, profile, cache_dir)
        # Before any run: a read-only or full results folder or cache is reported (with the fix), temporary
        # files of killed writers are removed, and invocations that were killed are marked so in sweep.json.
        store.open(write=True)
        replaced = store.adopt_definition()
        if replaced is not None:
            log(f"the definition of profile {profile.name!r} stored in {store.sweep_file} differed from the code's "
                f"(seeds {replaced.get('seeds')} -> {list(profile.seeds)}); stored the code's, the old one is kept "
                "in its definition_history")
        with store.sweep_session(log):
            return _sweep(profile, results_root, executor, workers, cache_dir, data_root, device, progress,
                          slurm_executor, threads, log)


def _sweep(profile: Profile, results_root: str | Path, executor: str, workers: int, cache_dir: str | Path | None,
           data_root: str | None, device: str, progress: bool, slurm_executor: Any, threads: int | None,
           log) -> SweepSummary:
    store = ResultStore(results_root, profile, cache_dir)
    store.open()
    threads = resolve_threads(store, threads)
    store.pin_threads(threads)
    summary = SweepSummary(profile.name, len(profile.runs()))
    journal = _Journal(store, summary, executor, workers, device)  # its clock starts now
    pending = _pending(store, summary, log)
    journal.pending = len(pending)
    jobs = [RunJob.of(s, results_root, store.cache, profile.version, data_root, device, threads) for s in pending]

    def report(index: int, status: str) -> None:
        if _tally(summary, pending[index].run_id, status, log):
            journal.write("running")

    if pending:
        journal.write("running")
    if executor == "slurm":
        run_slurm(jobs, store.cache_layout.slurm_dir, report, slurm_executor)
    elif workers == 1:
        run_inline(jobs, threads, progress, report)
    else:
        run_pool(jobs, workers, report)
    # Cells are rebuilt even when nothing ran: a sweep that died after its last run, or a cell file deleted
    # by hand, heals on the next invocation (an unchanged cell is rewritten byte for byte).
    written = update_cells(store)
    if pending:
        journal.write("finished")
    elif written:
        log(f"rebuilt {len(written)} cell file(s) from the stored runs")
    summary.wall_time_s = journal.seconds()
    for line in summary.lines():
        log(line)
    return summary


def _pending(store: ResultStore, summary: SweepSummary, log) -> list[RunSpec]:
    """The runs of the store's profile without a valid stored result, in grid order; an unreadable result is
    set aside (kept) and its run redone."""
    pending = []
    for spec in store.profile.runs():
        state = store.state(spec)
        if state == "done":
            summary.skipped.append(spec.run_id)
            continue
        if state == "corrupt":
            moved = store.set_aside(spec)
            log(f"result of run {spec.run_id} was unreadable (truncated?): kept as {moved.name}, redoing the run")
            summary.redone.append(spec.run_id)
        pending.append(spec)
    if summary.skipped:
        log(f"skipping {len(summary.skipped)} runs already stored in {store.root}")
    return pending


def _tally(summary: SweepSummary, run_id: str, status: str, log) -> bool:
    """Count a finished job's ``status`` in ``summary``; whether it ran here (and so changes the journal)."""
    if status == "busy":
        summary.busy.append(run_id)
        log(f"run {run_id} is being run by another sweep on this store: left to it")
        return False
    if status == "skipped":  # stored by another sweep meanwhile
        summary.skipped.append(run_id)
        return False
    summary.ran.append(run_id)
    if status == "diverged":
        summary.diverged.append(run_id)
    return True


class _Journal:
    """This invocation's entry in sweep.json, rewritten after every finished run: a sweep killed mid-way (or
    a session that ends) still records what it did and how long it took."""

    def __init__(self, store: ResultStore, summary: SweepSummary, executor: str, workers: int, device: str) -> None:
        self.store, self.summary = store, summary
        self.index: int | None = None  # of the entry in sweep.json, once written
        self.started, self.t0 = utc_now(), time.perf_counter()
        self.executor, self.workers, self.device = executor, workers, device
        self.pending = 0  # runs this invocation set out to do

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def write(self, status: str) -> None:
        summary = self.summary
        summary.wall_time_s = self.seconds()
        entry = {"started": self.started, "finished": utc_now(), "status": status, "wall_time_s": summary.wall_time_s,
                 "executor": self.executor, "workers": self.workers, "ran": len(summary.ran),
                 "pending": self.pending, "skipped": len(summary.skipped), "redone": len(summary.redone),
                 "diverged": len(summary.diverged), "busy": len(summary.busy), "pid": os.getpid(),
                 "host": socket.gethostname(), "provenance": provenance(self.device if self.device != "auto" else None)}
        self.index = self.store.record_sweep(entry, self.index)
