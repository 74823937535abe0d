"""The result store's layout: where every file of a profile's results folder and of its cache lives.

A results folder ``<results>/<profile>/`` (:class:`StoreLayout`)::

    sweep.json                            the profile's definition and the history of sweep invocations
    runs/<run_id>/result.json             one finished run, named by the hash of its config
    cells/<dataset>-<arch>-<control>.json the cross-seed metrics of one cell

and its cache (:class:`CacheLayout`, default ``$SHARPKIT_CACHE/<profile>``, else
``~/.cache/sharpkit/runs/<profile>``), which is never needed to rebuild a table::

    work/<run_id>/     a run's training folder (checkpoint, log, the trainer's record)
    init/              the initial weights every control of a seed starts from
    corrupted/         the generated corrupted test sets
    slurm/             submitit's logs

This module is the only place that spells these names (a run folder's own files, ``result.json`` among them,
are spelled by :mod:`sharpkit.run.checkpoint`). It is pure paths (no torch, no pandas), so the
torch-free analysis layer finds stored results through it; :class:`sharpkit.experiments.store.ResultStore`
reads and writes the files.

Examples:
    >>> from sharpkit.experiments.layout import CacheLayout, StoreLayout
    >>> store = StoreLayout.of("results", "cifar10-minima")
    >>> store.result_file("3f11adc9e9ae2b4b").as_posix()
    'results/cifar10-minima/runs/3f11adc9e9ae2b4b/result.json'
    >>> store.cell_file("npz:../shared/data/cifar10-jpeg-20k.npz", "vgg19", "baseline").name
    'npz____shared_data_cifar10-jpeg-20k_npz-vgg19-baseline.json'
    >>> CacheLayout("/tmp/cache").work_dir("3f11adc9e9ae2b4b").as_posix()
    '/tmp/cache/work/3f11adc9e9ae2b4b'
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CacheLayout", "StoreLayout", "cell_name", "default_cache_dir", "profile_cache_dir"]

SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"
RESULT_FILE = "result.json"
CELLS_DIR = "cells"


def cell_name(dataset: str, arch: str, control: str) -> str:
    """The file stem of a cell: the dataset name made safe for a file name (``:``, ``/`` and ``.`` become
    ``_``), then the architecture and the control."""
    safe = dataset.replace(":", "_").replace("/", "_").replace(".", "_").strip("_")
    return f"{safe}-{arch}-{control}"


@dataclass(frozen=True, init=False)
class StoreLayout:
    """The paths of one profile's results folder ``root`` (``<results>/<profile>``).

    Examples:
        >>> from sharpkit.experiments.layout import StoreLayout
        >>> store = StoreLayout.of("results", "my-grid")
        >>> store.sweep_file.as_posix(), store.has_runs()  # nothing stored under results/my-grid
        ('results/my-grid/sweep.json', False)
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of(cls, results_root: str | os.PathLike[str], profile: str) -> StoreLayout:
        """The layout of ``profile``'s results under ``results_root``."""
        return cls(Path(results_root) / profile)

    @property
    def sweep_file(self) -> Path:
        return self.root / SWEEP_FILE

    @property
    def runs_dir(self) -> Path:
        return self.root / RUNS_DIR

    @property
    def cells_dir(self) -> Path:
        return self.root / CELLS_DIR

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def result_file(self, run_id: str) -> Path:
        return self.run_dir(run_id) / RESULT_FILE

    def cell_file(self, dataset: str, arch: str, control: str) -> Path:
        return self.cells_dir / f"{cell_name(dataset, arch, control)}.json"

    def result_files(self) -> list[Path]:
        """Every stored run's result file, sorted."""
        return sorted(self.runs_dir.glob(f"*/{RESULT_FILE}"))

    def cell_files(self) -> list[Path]:
        """Every cell file, sorted."""
        return sorted(self.cells_dir.glob("*.json"))

    def run_dirs(self) -> list[Path]:
        """Every run folder (finished or not), sorted."""
        return sorted(p for p in self.runs_dir.iterdir() if p.is_dir()) if self.runs_dir.is_dir() else []

    def has_runs(self) -> bool:
        """Whether the folder holds a sweep.json and at least one finished run."""
        return self.sweep_file.is_file() and any(self.runs_dir.glob(f"*/{RESULT_FILE}"))

    @staticmethod
    def profiles_under(results_root: str | os.PathLike[str]) -> list[str]:
        """The profiles with a sweep.json directly under ``results_root``, by name."""
        return sorted(p.parent.name for p in Path(results_root).glob(f"*/{SWEEP_FILE}"))


def default_cache_dir() -> Path:
    """``$SHARPKIT_CACHE``, else ``~/.cache/sharpkit/runs``: where each profile's cache lives by default."""
    return Path(os.environ.get("SHARPKIT_CACHE", Path.home() / ".cache" / "sharpkit" / "runs"))


def profile_cache_dir(profile: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A profile's cache: ``cache_dir`` when given, else ``default_cache_dir() / profile``."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir() / profile


@dataclass(frozen=True, init=False)
class CacheLayout:
    """The paths of one profile's cache ``root``: checkpoints and partial runs, shared initial weights,
    generated corrupted sets.

    Examples:
        >>> from sharpkit.experiments.layout import CacheLayout, profile_cache_dir
        >>> cache = CacheLayout(profile_cache_dir("digits-mini", "/tmp/cache"))
        >>> cache.init_dir.as_posix(), cache.corrupted_dir.as_posix()
        ('/tmp/cache/init', '/tmp/cache/corrupted')
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def work_root(self) -> Path:
        return self.root / "work"

    def work_dir(self, run_id: str) -> Path:
        return self.work_root / run_id

    def work_dirs(self) -> list[Path]:
        """Every run's training folder, sorted."""
        return sorted(p for p in self.work_root.iterdir() if p.is_dir()) if self.work_root.is_dir() else []

    @property
    def init_dir(self) -> Path:
        return self.root / "init"

    @property
    def corrupted_dir(self) -> Path:
        return self.root / "corrupted"

    @property
    def slurm_dir(self) -> Path:
        return self.root / "slurm"
