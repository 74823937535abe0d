"""Training reuse: a run whose config equals that of a finished training in the cache (another profile's run
that differs only in its evaluation) starts from a copy of that training instead of training again, when the
training would come out bit for bit the same here (same torch, device type, CPU and kernel set, threads).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from ..run.checkpoint import CHECKPOINT_FILE, LOG_FILE, RESULT_FILE
from ..run.config import TrainConfig
from ..utils.io import copy_file, write_json
from ..utils.provenance import arithmetic_differences, hardware, package_versions
from .layout import CacheLayout, default_cache_dir

__all__ = ["REUSED_FROM", "find_finished_training", "finished_trainings", "reuse_training", "same_arithmetic",
           "search_roots"]

REUSED_FROM = "reused_from.json"  # in a work folder seeded by reuse_training: where its training came from


def search_roots(cache: Path) -> list[Path]:
    """Where finished trainings may be found: the run's own cache and, when that is the default per-profile
    cache (``~/.cache/sharpkit/runs/<profile>``), every other profile's default cache beside it. An
    explicit ``--cache`` is searched alone (its parent may hold anything)."""
    roots = [CacheLayout(cache).work_root]
    if cache.parent == default_cache_dir() and cache.parent.is_dir():
        roots += [CacheLayout(other).work_root for other in sorted(cache.parent.iterdir())
                  if other != cache and other.is_dir()]
    return roots


def same_arithmetic(trained_on: dict[str, Any], device: torch.device, threads: int | None = None) -> bool:
    """Whether a training recorded with provenance ``trained_on`` would come out the same here
    (:func:`sharpkit.utils.provenance.arithmetic_differences` finds nothing), with ``threads`` threads per
    process (default: this process's); reductions split by threads round differently."""
    here = {"versions": package_versions(), "hardware": hardware(device)}
    here["hardware"]["cpu_count"] = threads or torch.get_num_threads()
    return not arithmetic_differences(trained_on, here)


def finished_trainings(work_roots: list[Path]) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """Every finished training under ``work_roots``: (its work folder, its record, where the training came
    from: the folder and the provenance of the process that trained it, carried through chains of reuse)."""
    found = []
    for root in work_roots:
        for candidate in sorted(root.glob(f"*/{RESULT_FILE}")) if root.is_dir() else []:
            source = candidate.parent
            if not (source / CHECKPOINT_FILE).exists() or not (source / LOG_FILE).exists():
                continue
            try:
                record = json.loads(candidate.read_text())
                origin = (json.loads((source / REUSED_FROM).read_text()) if (source / REUSED_FROM).exists() else
                          {"work": str(source), "provenance": record.get("provenance"),
                           "started": record.get("started"), "finished": record.get("finished")})
            except (OSError, json.JSONDecodeError):
                continue
            found.append((source, record, origin))
    return found


def find_finished_training(config: TrainConfig, trainings: list[tuple[Path, dict[str, Any], dict[str, Any]]],
                           device: torch.device, exclude: Path | None = None,
                           threads: int | None = None) -> tuple[Path, dict[str, Any]] | None:
    """Among ``trainings`` (:func:`finished_trainings`), one other than the folder ``exclude`` of ``config``
    that would come out the same here (:func:`same_arithmetic`, with ``threads`` per process): its folder
    and where that training came from; None when there is none."""
    wanted = config.config_hash()
    for source, record, origin in trainings:
        if source == exclude or record.get("config_hash") != wanted or record.get("config") != config.to_dict():
            continue
        if same_arithmetic(origin.get("provenance") or {}, device, threads):
            return source, origin
    return None


def reuse_training(config: TrainConfig, work_roots: list[Path], work: Path,
                   device: torch.device) -> dict[str, Any] | None:
    """Seed ``work`` with the finished training of an identical config found under ``work_roots``.

    Runs of two profiles that differ only in their evaluation (e.g. ``beyond-cifar10`` measuring
    ``cifar10-mini``'s models with more metrics) train the same model: training is deterministic given the
    config, the torch version and the hardware's arithmetic (:func:`same_arithmetic`), so the checkpoint of
    one is the checkpoint of the other. The checkpoint and log are copied (the evaluation is not) and
    ``train`` then finds the run finished. Where the training came from is written to
    ``work/reused_from.json`` and returned; None when no finished twin exists.
    """
    found = find_finished_training(config, finished_trainings(work_roots), device, exclude=work)
    if found is None:
        return None
    source, origin = found
    work.mkdir(parents=True, exist_ok=True)
    # The checkpoint goes last and by rename: a crash before it leaves no checkpoint, and the run simply
    # trains (or reuses) again.
    write_json(work / REUSED_FROM, origin)
    shutil.copyfile(source / LOG_FILE, work / LOG_FILE)
    copy_file(source / CHECKPOINT_FILE, work / CHECKPOINT_FILE)  # a temporary file named by this process
    return origin
