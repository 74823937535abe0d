"""The crash-safe result store of a sweep.

Layout under ``<results>/<profile>/`` (spelled once, in :mod:`sharpkit.experiments.layout`):

- ``sweep.json``: store schema version, the profile definition, and one entry per sweep invocation
  (what ran, what was skipped, wall time, pid and host, provenance; status ``running``, ``finished``, or
  ``killed`` once a later sweep found its process gone);
- ``runs/<run_id>/result.json``: one finished run (status ``ok`` or ``diverged``), named by the hash of
  its full config and evaluation settings, with its training log, metrics, provenance and the digests
  of its values (records stored before digests are valid and "unsigned");
- ``cells/<dataset>-<arch>-<control>.json``: the cross-seed metrics of one cell (computed by
  :mod:`sharpkit.experiments.cells`, written here).

Checkpoints and partial runs live in a cache directory (default ``~/.cache/sharpkit/runs``), which is
never needed to rebuild tables. The store reads and validates these files, writes sweep.json and the cells, and
computes no metric; a run's record is written by its job (:mod:`sharpkit.experiments.job`), signed. A result file
appears (atomically) only when its run is complete, so a sweep killed at any moment and started again redoes
exactly the runs without one; the temporary files a killed writer leaves are removed when the store is next
opened for writing.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..metrics.registry import metric_names
from ..run.config import TrainConfig
from ..run.evaluate import EvalSettings
from ..run.train import TRAIN_LOCK
from ..utils.io import check_writable, digest_mismatches, remove_stale_temp_files, write_json
from ..utils.locks import LOCK_NAME, folder_lock, held_by_another, process_alive, shared_lock
from ..utils.provenance import utc_now
from .layout import SWEEP_FILE, CacheLayout, StoreLayout, cell_name, default_cache_dir, profile_cache_dir
from .profiles import Profile, RunSpec

__all__ = [
    "RESULT_COLUMNS", "RUN_STATUSES", "STORE_SCHEMA_VERSION", "ResultStore", "StoreError", "cell_name",
    "default_cache_dir", "load_results", "load_run_record", "load_sweep_info", "profile_cache_dir",
    "validate_run_record",
]

STORE_SCHEMA_VERSION = 1
RUN_STATUSES = ("ok", "diverged")
# The columns of load_results: what identifies and configures a run, the trainer's final metrics, what
# produced it, then its metrics (each metric's column source is in the registry).
_RUN_COLUMNS = ("run_id", "profile", "profile_version", "arch", "dataset", "control", "seed", "status",
                "diverged_epoch", "epochs", "model_size", "train_subset", "test_subset", "lr", "batch_size", "uses_sam")
_TRAINER_COLUMNS = metric_names(column_source="trainer")
_PROVENANCE_COLUMNS = ("wall_time_s", "eval_wall_time_s", "git_commit", "torch", "device", "finished")
#: Every column load_results can return, in its order (those of an empty store): a frame of stored runs has the
#: evaluation columns its records hold, in their order.
RESULT_COLUMNS: tuple[str, ...] = (_RUN_COLUMNS + _TRAINER_COLUMNS + _PROVENANCE_COLUMNS
                                   + metric_names(column_source="evaluation") + metric_names(column_source="cell"))


class StoreError(ValueError):
    """A results folder that cannot be used as it is; the message says why and what to do."""


def _read_json(path: Path, fix: str | None = None) -> dict[str, Any]:
    """``path``'s JSON. With ``fix`` (what to do about it), anything but a JSON object is refused with a
    :class:`StoreError` naming the file; without it, the caller checks the content (run records:
    :func:`validate_run_record`)."""
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise StoreError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); it was truncated or "
                         "edited by hand. Delete it (or its run folder) and run the sweep again to redo it.") from None
    if fix is not None and not isinstance(content, dict):
        raise StoreError(f"{path} holds a JSON {type(content).__name__}, not an object: it was damaged or edited by "
                         f"hand. {fix}")
    return content


# What to do about a damaged cell file or sweep.json (the sweep rebuilds cells from the stored runs alone).
_CELL_FIX = "Delete it and run the sweep again: it rebuilds the cell from the stored runs, without training."
_SWEEP_FIX = ("Restore it from version control (git checkout -- <file>) or move the profile's folder away; "
              "the runs in it are intact.")


def validate_run_record(record: dict[str, Any], path: Path) -> str:
    """Raise :class:`StoreError` unless ``record`` is a complete, untampered run result.

    Returns ``"signed"`` when the record carries the digests of its values (:func:`sharpkit.utils.io.sign_record`)
    and they all match, ``"unsigned"`` for a record written before digests existed (still valid: its config
    is checked against its run id, its values cannot be)."""
    fix = f"Delete {path.parent} and run the sweep again to redo that run."
    if not isinstance(record, dict):
        raise StoreError(f"{path} holds a JSON {type(record).__name__}, not a run record: it was edited by hand or "
                         f"damaged. {fix}")
    if record.get("store_schema_version") != STORE_SCHEMA_VERSION:
        raise StoreError(f"{path} has store schema version {record.get('store_schema_version')!r}, but this sharpkit "
                         f"reads version {STORE_SCHEMA_VERSION}. Use a results folder written by this version. {fix}")
    for key in ("run_id", "status", "config", "evaluation_settings", "profile"):
        if key not in record:
            raise StoreError(f"{path} lacks the field {key!r}: it was edited by hand or damaged. {fix}")
    if record["status"] not in RUN_STATUSES:
        raise StoreError(f"{path} has status {record['status']!r}; expected one of {RUN_STATUSES}. {fix}")
    try:
        spec = RunSpec(record["profile"], TrainConfig.from_dict(record["config"]),
                       EvalSettings.from_dict(record["evaluation_settings"]))
    except (TypeError, ValueError) as error:
        raise StoreError(f"{path} holds an invalid config ({error}). {fix}") from None
    if spec.run_id != record["run_id"] or path.parent.name != record["run_id"]:
        raise StoreError(f"{path}: its config does not hash to its run id {record['run_id']!r} (folder "
                         f"{path.parent.name!r}); the file was edited by hand or moved. {fix}")
    if record["status"] == "ok":
        missing = set(spec.evaluation.metrics) - set(record.get("evaluation", {}).get("metrics", {}))
        if missing:
            raise StoreError(f"{path} is marked ok but lacks the metrics {sorted(missing)}. {fix}")
    mismatches = digest_mismatches(record)
    if mismatches:
        raise StoreError(f"{path}: {', '.join(mismatches)} {'does' if len(mismatches) == 1 else 'do'} not match the "
                         f"digest written with the record; the file was edited by hand or damaged. {fix}")
    return "unsigned" if mismatches is None else "signed"


class ResultStore:
    """The results of one profile under ``results_root/<profile>``."""

    def __init__(self, results_root: str | Path, profile: Profile, cache_dir: str | Path | None = None) -> None:
        self.profile = profile
        self.layout = StoreLayout.of(results_root, profile.name)
        self.cache_layout = CacheLayout(profile_cache_dir(profile.name, cache_dir))
        self.root = self.layout.root
        self.cache = self.cache_layout.root

    @property
    def sweep_file(self) -> Path:
        return self.layout.sweep_file

    def result_path(self, spec: RunSpec) -> Path:
        return self.layout.result_file(spec.run_id)

    def work_dir(self, spec: RunSpec) -> Path:
        """Where ``spec`` trains (its checkpoint, log and the trainer's record), in the cache."""
        return self.cache_layout.work_dir(spec.run_id)

    def cell_path(self, dataset: str, arch: str, control: str) -> Path:
        return self.layout.cell_file(dataset, arch, control)

    def check_writable(self) -> None:
        """Raise :class:`sharpkit.utils.io.NotWritableError` (read-only, or a full disk, with the path and the
        fix) unless both the results folder and the cache can be written: asked before any run is spent."""
        check_writable(self.root, "the sweep's results", "pass --results with a folder elsewhere; nothing was run")
        check_writable(self.cache, "the sweep's checkpoints and partial runs", "pass --cache with a folder elsewhere "
                       "(or set SHARPKIT_CACHE); nothing was run")

    def remove_stale_temp_files(self) -> list[Path]:
        """Remove the temporary files that killed writers left in the store and its cache (their process is
        gone; see :func:`sharpkit.utils.io.remove_stale_temp_files`); returns what was removed."""
        cache = self.cache_layout
        folders = [self.root, self.layout.cells_dir, cache.root, cache.init_dir, cache.corrupted_dir]
        return remove_stale_temp_files(*folders, *self.layout.run_dirs(), *cache.work_dirs())

    def open(self, write: bool = False) -> dict[str, Any]:
        """Create the store or check that an existing one is compatible; returns sweep.json's content.

        ``write``: the caller is about to write (a sweep): first check that the results folder and the cache
        are writable (:meth:`check_writable`) and remove stale temporary files (:meth:`remove_stale_temp_files`)."""
        if write:
            self.check_writable()
            self.remove_stale_temp_files()
        if self.sweep_file.exists():
            info = _read_json(self.sweep_file, _SWEEP_FIX)
            if info.get("store_schema_version") != STORE_SCHEMA_VERSION:
                raise StoreError(
                    f"{self.root} was written with store schema version {info.get('store_schema_version')!r}; this "
                    f"sharpkit uses version {STORE_SCHEMA_VERSION}. Point --results at another folder or move this one "
                    "away; nothing was changed.")
            if info.get("profile", {}).get("version") != self.profile.version:
                raise StoreError(
                    f"{self.root} holds results of profile {self.profile.name!r} version "
                    f"{info.get('profile', {}).get('version')!r}, but the code defines version {self.profile.version}. "
                    "Results of two definitions never mix: use another --results folder; nothing was changed.")
            return info
        info = {"store_schema_version": STORE_SCHEMA_VERSION, "profile": self.profile.to_dict(), "sweeps": []}
        write_json(self.sweep_file, info)
        return info

    def state(self, spec: RunSpec) -> str:
        """``"done"`` (a valid result), ``"missing"``, or ``"corrupt"`` (unreadable JSON: redo)."""
        path = self.result_path(spec)
        if not path.exists():
            return "missing"
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            return "corrupt"
        validate_run_record(record, path)
        return "done"

    def set_aside(self, spec: RunSpec) -> Path:
        """Move an unreadable result out of the way (kept, never deleted) so the run is redone."""
        path = self.result_path(spec)
        target = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        os.replace(path, target)
        return target

    def pin_threads(self, threads: int) -> None:
        """Record the CPU threads per run of this store's results in sweep.json (once; see
        :func:`sharpkit.experiments.sweep.resolve_threads`)."""
        with folder_lock(self.root, "an update of sweep.json", wait_s=60):
            info = self.open()
            if info.get("threads_per_run") != threads:
                info["threads_per_run"] = threads
                write_json(self.sweep_file, info)

    def adopt_definition(self) -> dict[str, Any] | None:
        """Store the code's definition of the profile in sweep.json when it differs from the stored one
        under the same version (for example seeds added or dropped: runs are keyed by their own config, so
        every stored run stays valid); the replaced definition is kept in ``definition_history`` with the
        time it was replaced. Returns the replaced definition, or None when nothing changed."""
        with folder_lock(self.root, "an update of sweep.json", wait_s=60):
            info = self.open()
            # Compared as JSON (tuples become lists), the form in which the stored one was written.
            new, old = json.loads(json.dumps(self.profile.to_dict())), info.get("profile")
            if old == new:
                return None
            info.setdefault("definition_history", []).append({"replaced": utc_now(), "definition": old})
            info["profile"] = new
            write_json(self.sweep_file, info)
        return old

    def record_sweep(self, entry: dict[str, Any], index: int | None = None) -> int:
        """Append ``entry`` to sweep.json's history (``index`` None) or replace entry ``index`` with it;
        returns its index. A sweep journals itself after every finished run, so an invocation that is killed
        still appears, with the runs and wall time it had done."""
        # Read-modify-write under the store's lock: two sweeps on one store must not lose each other's entries.
        with folder_lock(self.root, "an update of sweep.json", wait_s=60):
            info = self.open()
            if index is None:
                info["sweeps"].append(entry)
                index = len(info["sweeps"]) - 1
            else:
                info["sweeps"][index] = entry
            write_json(self.sweep_file, info)
        return index

    @contextlib.contextmanager
    def sweep_session(self, log=print) -> Iterator[list[dict[str, Any]]]:
        """Hold this store's sweep lock (shared: every live sweep of the store holds it) for the ``with``
        block, after marking ``killed`` the entries of sweep.json still ``running`` whose process is gone
        (:func:`_invocation_ended`); yields those entries. An entry keeps the wall time and runs it last
        journalled, and gains ``killed_noted`` (when this was found)."""
        with contextlib.ExitStack() as held:
            with folder_lock(self.root, "an update of sweep.json", wait_s=60):
                # Under the update lock, before this process holds the sweep lock: a sweep appends its entry
                # only once it holds the sweep lock, so every entry read here whose sweep lives is seen held.
                others = held_by_another(self.root, SWEEP_LOCK)
                info = self.open()
                killed = [e for e in info["sweeps"] if e.get("status") == "running"
                          and _invocation_ended(e, others, self._run_lock_files())]
                for entry in killed:
                    entry.update(status="killed", killed_noted=utc_now())
                if killed:
                    write_json(self.sweep_file, info)
                held.enter_context(shared_lock(self.root, SWEEP_LOCK))
            for entry in killed:
                who = f"pid {entry['pid']} on {entry.get('host', '?')}" if "pid" in entry else "an older sharpkit"
                log(f"the sweep started {entry.get('started', '?')} ({who}) ended without finishing, after "
                    f"{entry.get('ran', 0)} run(s) and {entry.get('wall_time_s', 0.0):.0f} s: marked killed in "
                    f"{self.sweep_file}")
            yield killed

    def _run_lock_files(self) -> list[tuple[Path, str]]:
        """The locks a sweep holds while it runs something: each run folder's in the store, each work
        folder's training lock in the cache (folder, lock name)."""
        locks = [(p.parent, p.name) for p in sorted(self.layout.runs_dir.glob(f"*/{LOCK_NAME}"))]
        return locks + [(p.parent, p.name) for p in sorted(self.cache_layout.work_root.glob(f"*/{TRAIN_LOCK}"))]

    def update_cells(self) -> list[str]:
        """Deprecated (sharpkit 0.1): the cells' metrics are computed by
        :func:`sharpkit.experiments.cells.update_cells`, which this calls."""
        import warnings

        from .cells import update_cells  # cells imports this module

        warnings.warn("ResultStore.update_cells() moved: call sharpkit.experiments.cells.update_cells(store).",
                      DeprecationWarning, stacklevel=2)
        return update_cells(self)

    def complete_cells(self) -> Iterator[tuple[tuple[str, str, str], list[dict[str, Any]]]]:
        """Each cell (dataset, arch, control) of the profile whose runs are all stored, with their records in
        the profile's seed order."""
        by_cell: dict[tuple[str, str, str], list[RunSpec]] = {}
        for spec in self.profile.runs():
            by_cell.setdefault(spec.cell, []).append(spec)
        for cell, specs in by_cell.items():
            if all(self.result_path(s).exists() for s in specs):
                yield cell, [_read_json(self.result_path(s)) for s in specs]

    def write_cell(self, dataset: str, arch: str, control: str, records: list[dict[str, Any]],
                   metrics: dict[str, Any]) -> Path:
        """Write the cell file of the cell whose stored runs are ``records``: which runs it holds, how many
        diverged runs its ``metrics`` (:func:`sharpkit.experiments.cells.cell_metrics`) leave out, and those."""
        cell: dict[str, Any] = {"store_schema_version": STORE_SCHEMA_VERSION, "dataset": dataset, "arch": arch,
                                "control": control, "runs": [r["run_id"] for r in records],
                                "excluded_diverged": sum(r["status"] != "ok" for r in records)}
        path = self.cell_path(dataset, arch, control)
        write_json(path, {**cell, **metrics})
        return path


SWEEP_LOCK = ".sweep.lock"  # in the store's folder: held (shared) by every live sweep of the store


def _invocation_ended(entry: dict[str, Any], sweep_lock_held: bool, run_locks: list[tuple[Path, str]]) -> bool:
    """Whether the sweep invocation of a ``running`` entry of sweep.json is gone. An entry that names its
    process (pid, host) belongs to a sweep that holds the store's sweep lock while alive: gone when no other
    process holds that lock, or when its pid is dead on this very machine. An older entry (no pid) is gone
    only when no process holds any lock of the store (the sweep lock, a run's lock, a training's lock)."""
    if "pid" in entry:
        if not sweep_lock_held:
            return True
        return entry.get("host") == socket.gethostname() and not process_alive(int(entry["pid"]))
    if sweep_lock_held:
        return False
    return not any(held_by_another(folder, name) for folder, name in run_locks)


def _resolve_profile_dir(path: Path, profile: str | None) -> Path:
    if (path / SWEEP_FILE).exists():
        return path
    if profile is not None and StoreLayout.of(path, profile).sweep_file.exists():
        return path / profile
    candidates = StoreLayout.profiles_under(path)
    if profile is None and len(candidates) == 1:
        return path / candidates[0]
    hint = f" It holds results of: {', '.join(candidates)}; pass profile=..." if candidates else (
        " Run `sharpkit sweep --profile NAME --results DIR` to produce results.")
    raise StoreError(f"No sharpkit results at {path}{' for profile ' + repr(profile) if profile else ''}.{hint}")


def load_sweep_info(path: str | Path, profile: str | None = None) -> dict[str, Any]:
    """sweep.json of a results folder: profile definition and the history of sweep invocations
    (with their wall time, hardware, versions and git commit)."""
    root = _resolve_profile_dir(Path(path), profile)
    info = _read_json(StoreLayout(root).sweep_file, _SWEEP_FIX)
    if info.get("store_schema_version") != STORE_SCHEMA_VERSION:
        raise StoreError(f"{root} was written with store schema version {info.get('store_schema_version')!r}; this "
                         f"sharpkit reads version {STORE_SCHEMA_VERSION}. Re-run the sweep into a new folder.")
    info["wall_time_s"] = sum(s.get("wall_time_s", 0.0) for s in info.get("sweeps", []))
    return info


def load_run_record(results_root: str | Path, profile: str, run_id: str) -> dict[str, Any]:
    """The stored record (result.json) of run ``run_id`` of ``profile`` under ``results_root``."""
    return _read_json(StoreLayout.of(results_root, profile).result_file(run_id))


def load_results(path: str | Path, profile: str | None = None) -> pd.DataFrame:
    """A tidy DataFrame of every stored run (one row each): config columns, every metric, status, provenance.

    ``path`` is a profile's results folder (holding sweep.json) or the folder above it (then
    ``profile`` picks one when it holds several). Raises :class:`StoreError` with the fix for a folder of
    another schema version or a result file that is damaged or was edited into an invalid state.
    """
    layout = StoreLayout(_resolve_profile_dir(Path(path), profile))
    load_sweep_info(layout.root)  # schema check
    cells = {}
    for cell_file in layout.cell_files():
        cells.update(_read_json(cell_file, _CELL_FIX).get("per_run", {}))
    rows = []
    for result in layout.result_files():
        record = _read_json(result)
        validate_run_record(record, result)
        config = record["config"]
        prov = record.get("provenance", {})
        row: dict[str, Any] = {
            "run_id": record["run_id"], "profile": record["profile"], "profile_version": record.get("profile_version"),
            "arch": config["arch"], "dataset": config["dataset"], "control": config["control"], "seed": config["seed"],
            "status": record["status"], "diverged_epoch": record.get("diverged_epoch"),
            "epochs": config["epochs"], "model_size": json.dumps(config["model_size"], sort_keys=True),
            "train_subset": config["train_subset"], "test_subset": config["test_subset"], "lr": config["lr"],
            "batch_size": config["batch_size"], "uses_sam": record.get("uses_sam"),
            # train_eval_*: the final model in eval mode over its whole training subset (records since
            # cifar10-minima; older ones leave them None).
            **{name: record.get("metrics", {}).get(name) for name in _TRAINER_COLUMNS},
            "wall_time_s": record.get("wall_time_s"), "eval_wall_time_s": record.get("eval_wall_time_s"),
            "git_commit": prov.get("git", {}).get("commit"), "torch": prov.get("versions", {}).get("torch"),
            "device": prov.get("hardware", {}).get("device"), "finished": record.get("finished"),
        }
        row.update(record.get("evaluation", {}).get("metrics", {}))
        row["prediction_disagreement"] = cells.get(record["run_id"], float("nan"))  # the cell files' per_run
        rows.append(row)
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS if not rows else None)
    if frame.empty:
        return frame
    return frame.sort_values(["dataset", "arch", "control", "seed"], kind="stable").reset_index(drop=True)
