"""One run of a sweep: train it (or reuse an identical finished training), evaluate it, store its record.

:func:`run_one` is safe to call again after a crash at any point: training resumes from its checkpoint and the
record is written last, atomically. :class:`RunJob` is the same call as a picklable value, what a worker process
or a Slurm job receives (:mod:`sharpkit.experiments.executors`).
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..run.checkpoint import CHECKPOINT_FILE, RESULT_FILE, read_log
from ..run.config import TrainConfig
from ..run.evaluate import EvalSettings, evaluate_run
from ..run.train import resolve_device, train
from ..utils.io import sign_record, write_json
from ..utils.locks import BusyError, folder_lock
from .layout import CacheLayout, StoreLayout
from .profiles import RunSpec
from .reuse import REUSED_FROM, reuse_training, search_roots
from .store import STORE_SCHEMA_VERSION

__all__ = ["RunJob", "run_in_own_process", "run_one"]


def spec_to_dict(spec: RunSpec) -> dict[str, Any]:
    return {"profile": spec.profile, "config": spec.config.to_dict(), "evaluation": spec.evaluation.to_dict()}


def spec_from_dict(data: dict[str, Any]) -> RunSpec:
    return RunSpec(data["profile"], TrainConfig.from_dict(data["config"]), EvalSettings.from_dict(data["evaluation"]))


def run_one(spec_data: dict[str, Any], results_root: str, cache_dir: str, profile_version: int,
            data_root: str | None = None, device: str = "auto", progress: bool = False,
            datasets: dict[str, Any] | None = None) -> str:
    """Train and evaluate one run, then store its record; returns its status. Safe to call again after a
    crash at any point (training resumes from its checkpoint; the record is written last, atomically).

    Returns ``"ok"`` or ``"diverged"``; ``"skipped"`` when the run is stored already, ``"busy"`` when another
    process holds the run's lock in the store (another sweep on the same results, whatever its cache): it is
    left to that one, never done twice at once."""
    spec = spec_from_dict(spec_data)
    result_path = StoreLayout.of(results_root, spec.profile).result_file(spec.run_id)
    if result_path.exists():
        return "skipped"
    work = CacheLayout(cache_dir).work_dir(spec.run_id)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(folder_lock(result_path.parent, f"run {spec.run_id} of profile {spec.profile}"))
        except BusyError:
            return "busy"  # another sweep on this store (or cache) is doing it
        if result_path.exists():  # finished by that other sweep while this one waited in line
            return "skipped"
        return _run_locked(spec, result_path, work, cache_dir, profile_version, data_root, device, progress, datasets)


def _run_locked(spec: RunSpec, result_path: Path, work: Path, cache_dir: str, profile_version: int,
                data_root: str | None, device: str, progress: bool, datasets: dict[str, Any] | None) -> str:
    dataset = (datasets or {}).get(spec.config.dataset)
    started = time.perf_counter()
    if not (work / CHECKPOINT_FILE).exists():
        (work / REUSED_FROM).unlink(missing_ok=True)  # left by a crash before its checkpoint arrived
        reuse_training(spec.config, search_roots(Path(cache_dir)), work, resolve_device(device))
    cache = CacheLayout(cache_dir)
    outcome = train(spec.config, work, data_root=data_root, init_dir=cache.init_dir, device=device,
                    progress=progress, dataset=dataset)
    eval_seconds = None
    if outcome.status == "ok":
        eval_start = time.perf_counter()
        evaluate_run(work, spec.evaluation, data_root=data_root, device=device,
                     cache_dir=cache.corrupted_dir, progress=progress, dataset=dataset)
        eval_seconds = time.perf_counter() - eval_start
    record = json.loads((work / RESULT_FILE).read_text())
    record.update({
        "store_schema_version": STORE_SCHEMA_VERSION, "run_id": spec.run_id, "profile": spec.profile,
        "profile_version": profile_version, "evaluation_settings": spec.evaluation.to_dict(),
        "log": read_log(work),
        "run_wall_time_s": time.perf_counter() - started,  # this call (a resumed run: its last part)
        "eval_wall_time_s": eval_seconds,
    })
    if (work / REUSED_FROM).exists():  # also after a crash between the copy and this record
        record["training_reused_from"] = json.loads((work / REUSED_FROM).read_text())
    write_json(result_path, sign_record(record))  # digests of the values as stored (validate_run_record)
    return outcome.status


@dataclass(frozen=True)
class RunJob:
    """:func:`run_one`'s arguments for one run, as a picklable value: what a worker process or a Slurm job
    receives. ``spec`` is the run as plain data (:func:`spec_to_dict`), so that a process of another sharpkit
    checkout rebuilds (and re-validates) the config instead of unpickling one; ``threads`` are the CPU threads
    per run the store pins (None: this process's)."""

    spec: dict[str, Any]
    results_root: str
    cache_dir: str
    profile_version: int
    data_root: str | None = None
    device: str = "auto"
    threads: int | None = None

    @classmethod
    def of(cls, spec: RunSpec, results_root: str | Path, cache_dir: str | Path, profile_version: int,
           data_root: str | None = None, device: str = "auto", threads: int | None = None) -> RunJob:
        return cls(spec_to_dict(spec), str(Path(results_root)), str(cache_dir), profile_version, data_root, device,
                   threads)

    def run(self, progress: bool = False, datasets: dict[str, Any] | None = None) -> str:
        """:func:`run_one` in this process, at this process's threads."""
        return run_one(self.spec, self.results_root, self.cache_dir, self.profile_version, self.data_root,
                       self.device, progress, datasets)


def run_in_own_process(job: RunJob) -> str:
    """``job`` in a process of its own (a pool worker, a Slurm job), at its threads."""
    from ..utils.plugins import load_plugins

    # A fresh process knows only the built-in models and datasets: import the user's modules the command that
    # started it named ($SHARPKIT_IMPORT, inherited) and the installed entry points, as that command did.
    load_plugins()
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    return job.run()
