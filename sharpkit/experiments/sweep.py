"""Run a profile's whole grid: train, evaluate, then cross-seed metrics per cell; resumable.

Executors:

- ``local``: ``workers`` processes on this machine (one per GPU when there are GPUs; on a CPU the cores
  are split between them); ``workers=1`` runs in this process.
- ``slurm``: one Slurm array job per pending run, through submitit, for users who outgrow one machine.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metrics.registry import REGISTRY
from ..run.checkpoint import CHECKPOINT_FILE, LOG_FILE, RESULT_FILE, read_log
from ..run.config import TrainConfig
from ..run.evaluate import EvalSettings, evaluate_run
from ..utils.io import copy_file, sign_record, write_json
from ..utils.locks import BusyError, folder_lock
from ..utils.provenance import (
    arithmetic_differences,
    hardware,
    package_versions,
    pinned_code_version,
    provenance,
    utc_now,
)
from ..utils.validation import check_choice, check_positive
from .cells import update_cells
from .layout import CacheLayout, StoreLayout, default_cache_dir, profile_cache_dir
from .profiles import Profile, RunSpec
from .store import STORE_SCHEMA_VERSION, ResultStore

EXECUTORS = ("local", "slurm")


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


def _spec_to_dict(spec: RunSpec) -> dict[str, Any]:
    return {"profile": spec.profile, "config": spec.config.to_dict(), "evaluation": spec.evaluation.to_dict()}


def _spec_from_dict(data: dict[str, Any]) -> RunSpec:
    return RunSpec(data["profile"], TrainConfig.from_dict(data["config"]), EvalSettings.from_dict(data["evaluation"]))


def run_one(spec_data: dict[str, Any], results_root: str, cache_dir: str, profile_version: int,
            data_root: str | None = None, device: str = "auto", progress: bool = False,
            datasets: dict[str, Any] | None = None) -> str:
    """Train and evaluate one run, then store its record; returns its status. Safe to call again after a
    crash at any point (training resumes from its checkpoint; the record is written last, atomically).

    Returns ``"ok"`` or ``"diverged"``; ``"skipped"`` when the run is stored already, ``"busy"`` when another
    process holds the run's lock in the store (another sweep on the same results, whatever its cache): it is
    left to that one, never done twice at once."""
    spec = _spec_from_dict(spec_data)
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
    from ..run.train import resolve_device, train

    dataset = (datasets or {}).get(spec.config.dataset)
    started = time.perf_counter()
    if not (work / CHECKPOINT_FILE).exists():
        (work / REUSED_FROM).unlink(missing_ok=True)  # left by a crash before its checkpoint arrived
        reuse_training(spec.config, _work_roots(Path(cache_dir)), work, resolve_device(device))
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


REUSED_FROM = "reused_from.json"  # in a work folder seeded by reuse_training: where its training came from


def _work_roots(cache: Path) -> list[Path]:
    """Where finished trainings may be found: the run's own cache and, when that is the default per-profile
    cache (``~/.cache/sharpkit/runs/<profile>``), every other profile's default cache beside it. An
    explicit ``--cache`` is searched alone (its parent may hold anything)."""
    roots = [CacheLayout(cache).work_root]
    if cache.parent == default_cache_dir() and cache.parent.is_dir():
        roots += [CacheLayout(other).work_root for other in sorted(cache.parent.iterdir())
                  if other != cache and other.is_dir()]
    return roots


def _same_arithmetic(trained_on: dict[str, Any], device: torch.device, threads: int | None = None) -> bool:
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
    that would come out the same here (:func:`_same_arithmetic`, with ``threads`` per process): its folder
    and where that training came from; None when there is none."""
    wanted = config.config_hash()
    for source, record, origin in trainings:
        if source == exclude or record.get("config_hash") != wanted or record.get("config") != config.to_dict():
            continue
        if _same_arithmetic(origin.get("provenance") or {}, device, threads):
            return source, origin
    return None


def reuse_training(config: TrainConfig, work_roots: list[Path], work: Path,
                   device: torch.device) -> dict[str, Any] | None:
    """Seed ``work`` with the finished training of an identical config found under ``work_roots``.

    Runs of two profiles that differ only in their evaluation (e.g. ``beyond-cifar10`` measuring
    ``cifar10-mini``'s models with more metrics) train the same model: training is deterministic given the
    config, the torch version and the hardware's arithmetic (:func:`_same_arithmetic`), so the checkpoint of
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


DEFAULT_THREADS = 1  # CPU threads per run when neither --threads nor the store says otherwise


def stored_threads(store: ResultStore) -> int | None:
    """The CPU threads per run a store's results were computed with: pinned in its sweep.json by the first
    sweep, else (stores older than the pin) the thread count every stored run's provenance agrees on; None
    for a store without runs. Raises when older runs disagree (such a store already mixes arithmetics)."""
    pinned = store.open().get("threads_per_run")
    if pinned is not None:
        return int(pinned)
    counts = set()
    for path in store.layout.result_files():
        try:
            hardware = json.loads(path.read_text()).get("provenance", {}).get("hardware", {})
        except (OSError, json.JSONDecodeError):
            continue
        if hardware.get("device", "cpu").startswith("cpu") and hardware.get("cpu_count"):
            counts.add(int(hardware["cpu_count"]))
    if len(counts) > 1:
        raise ValueError(f"The runs in {store.root} were computed with different CPU thread counts {sorted(counts)}; "
                         "their results differ in the last bits. Pass --threads N to choose one for new runs.")
    return counts.pop() if counts else None


def resolve_threads(store: ResultStore, requested: int | None) -> int:
    """CPU threads per run for a sweep into ``store``: ``requested`` (``--threads``), else the store's
    (:func:`stored_threads`), else :data:`DEFAULT_THREADS`. The number of workers never decides it: CPU
    reductions split over another number of threads round differently, and one store must not mix them.
    A ``requested`` count that differs from the store's is refused."""
    if requested is not None:
        check_positive("threads", requested, integer=True)
    existing = stored_threads(store)
    if requested is not None and existing is not None and requested != existing:
        raise ValueError(f"{store.root} holds runs computed with {existing} CPU thread(s) per run; --threads "
                         f"{requested} would mix two arithmetics in one store. Use --threads {existing} (or leave "
                         "it out), or another --results folder.")
    return requested or existing or DEFAULT_THREADS


def run_with_threads(spec_data: dict[str, Any], results_root: str, cache_dir: str, version: int,
                     data_root: str | None, device: str, threads: int) -> str:
    """:func:`run_one` in a process of its own (a pool worker, a Slurm job) at ``threads`` CPU threads."""
    from ..utils.plugins import load_plugins

    # A fresh process knows only the built-in models and datasets: import the user's modules the command that
    # started it named ($SHARPKIT_IMPORT, inherited) and the installed entry points, as that command did.
    load_plugins()
    torch.set_num_threads(threads)
    return run_one(spec_data, results_root, cache_dir, version, data_root, device)


# run_one's positional arguments of one run: (spec_data, results_root, cache_dir, profile_version, data_root).
RunArgs = tuple[dict[str, Any], str, str, int, str | None]


def _worker(args: tuple) -> str:
    return run_with_threads(*args)


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
    started_at, t0 = utc_now(), time.perf_counter()
    specs = profile.runs()
    summary = SweepSummary(profile.name, len(specs))
    pending = []
    for spec in specs:
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
    args = [(_spec_to_dict(s), str(Path(results_root)), str(store.cache), profile.version, data_root) for s in pending]
    journal_index = None

    def journal(status: str) -> None:
        # The invocation's entry in sweep.json, rewritten after every finished run: a sweep killed mid-way
        # (or a session that ends) still records what it did and how long it took.
        nonlocal journal_index
        summary.wall_time_s = time.perf_counter() - t0
        entry = {"started": started_at, "finished": utc_now(), "status": status, "wall_time_s": summary.wall_time_s,
                 "executor": executor, "workers": workers, "ran": len(summary.ran), "pending": len(pending),
                 "skipped": len(summary.skipped), "redone": len(summary.redone), "diverged": len(summary.diverged),
                 "busy": len(summary.busy), "pid": os.getpid(), "host": socket.gethostname(),
                 "provenance": provenance(device if device != "auto" else None)}
        journal_index = store.record_sweep(entry, journal_index)

    def finished(spec: RunSpec, status: str) -> None:
        if status == "busy":
            summary.busy.append(spec.run_id)
            log(f"run {spec.run_id} is being run by another sweep on this store: left to it")
            return
        if status == "skipped":  # stored by another sweep meanwhile
            summary.skipped.append(spec.run_id)
            return
        summary.ran.append(spec.run_id)
        if status == "diverged":
            summary.diverged.append(spec.run_id)
        journal("running")

    if pending:
        journal("running")
    if executor == "slurm":
        for spec, status in zip(pending, _run_slurm(args, store, device, slurm_executor, threads)):
            finished(spec, status)
    elif workers == 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            _run_inline(pending, args, data_root, device, progress, finished)
        finally:
            torch.set_num_threads(previous)
    else:
        _run_pool(pending, args, workers, device, finished, threads)
    # Cells are rebuilt even when nothing ran: a sweep that died after its last run, or a cell file deleted
    # by hand, heals on the next invocation (an unchanged cell is rewritten byte for byte).
    written = update_cells(store)
    if pending:
        journal("finished")
    elif written:
        log(f"rebuilt {len(written)} cell file(s) from the stored runs")
    summary.wall_time_s = time.perf_counter() - t0
    for line in summary.lines():
        log(line)
    return summary


def _run_inline(pending: list[RunSpec], args: list[RunArgs], data_root: str | None, device: str, progress: bool,
                finished) -> None:
    from tqdm import tqdm

    from ..data import load_dataset

    datasets: dict[str, Any] = {}
    arg: RunArgs  # tqdm is untyped: without this, *arg might hold run_one's keyword arguments too
    for spec, arg in tqdm(list(zip(pending, args)), desc="sweep", unit="run", disable=not progress):
        name = spec.config.dataset
        if name not in datasets:
            datasets[name] = load_dataset(name, root=data_root)
        finished(spec, run_one(*arg, device=device, progress=False, datasets=datasets))


def _indexed_worker(job: tuple[int, tuple]) -> tuple[int, str]:
    index, args = job
    return index, _worker(args)


def _run_pool(pending: list[RunSpec], args: list[tuple], workers: int, device: str, finished, threads: int) -> None:
    import multiprocessing as mp

    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    jobs = []
    for i, arg in enumerate(args):
        dev = f"cuda:{i % gpus}" if gpus else device
        jobs.append((i, (*arg, dev, threads)))
    with mp.get_context("spawn").Pool(workers) as pool:
        # Started in grid order, reported as each finishes (so the journal and its count are current).
        for index, status in pool.imap_unordered(_indexed_worker, jobs, chunksize=1):
            finished(pending[index], status)


def _run_slurm(args: list[tuple], store: ResultStore, device: str, slurm_executor: Any, threads: int) -> list[str]:
    try:
        import submitit
    except ImportError as error:
        raise ValueError("The slurm executor needs submitit: pip install 'sharpkit[slurm]' (or pip install "
                         "submitit).") from error
    executor = slurm_executor
    if executor is None:
        executor = submitit.AutoExecutor(folder=str(store.cache_layout.slurm_dir))
        executor.update_parameters(timeout_min=24 * 60, gpus_per_node=1, cpus_per_task=8, slurm_array_parallelism=64)
    if not args:
        return []
    columns = list(zip(*[(*arg, device, threads) for arg in args]))
    jobs = executor.map_array(run_with_threads, *columns)
    return [job.result() for job in jobs]


# --- dry run -------------------------------------------------------------------------------------------

KNOWN_TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "tinyimagenet": 100_000, "digits": 1_297}
KNOWN_IMAGE_SIZES = {"tinyimagenet": 64}
KNOWN_CLASSES = {"cifar100": 100, "tinyimagenet": 200}


def _train_size(config: TrainConfig) -> int:
    if config.train_subset is not None:
        return config.train_subset
    name = config.parsed_dataset
    if name.exact_base == "npz":
        import numpy as np

        with np.load(name.path or "", mmap_mode="r") as data:
            return int(data["y_train"].shape[0])
    return KNOWN_TRAIN_SIZES.get(name.exact_base, 50_000)


def measure_step_time(config: TrainConfig, device: str = "auto", probe_batch: int | None = None,
                      threads: int | None = None) -> tuple[float, float]:
    """Seconds of one SGD step at ``config.batch_size`` and of a forward pass of one image in eval mode,
    measured on a ``probe_batch`` of random images (default: the batch size up to 128; small batches
    underuse the CPU, so they would overstate the cost) after a warm-up step, with the config's precision
    (bf16 autocast) and memory layout, at ``threads`` CPU threads (default: this process's), and scaled
    linearly."""
    import contextlib

    from ..models import build_model, model_knobs
    from ..run.train import _size_kwargs, resolve_device

    dev = resolve_device(device)
    probe_batch = probe_batch or min(config.batch_size, 128)
    base = config.parsed_dataset.exact_base
    size = KNOWN_IMAGE_SIZES.get(base, 32)
    kwargs = _size_kwargs(config, size)
    if "pretrained" in model_knobs(config.arch):
        kwargs["pretrained"] = False  # the step time does not depend on the weights
    model = build_model(config.arch, num_classes=KNOWN_CLASSES.get(base, 10), **kwargs).to(dev)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    x = torch.randn(probe_batch, 3, size, size, device=dev).contiguous(memory_format=layout)
    y = torch.zeros(probe_batch, dtype=torch.long, device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext()
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)

    def timed(step) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - start)
        return min(times[1:])

    def train_step() -> None:
        with autocast:
            out = model(x)
        torch.nn.functional.cross_entropy(out.float(), y).backward()
        opt.step()
        opt.zero_grad()

    @torch.no_grad()
    def forward() -> None:
        model(x)

    try:
        step = timed(train_step)
        model.eval()
        forward_time = timed(forward)
    finally:
        torch.set_num_threads(previous)
    return step * config.batch_size / probe_batch, forward_time / probe_batch


def evaluation_forward_images(config: TrainConfig, settings: EvalSettings) -> int:
    """How many image forward passes (eval mode) the per-epoch test passes and the evaluation of one run
    cost, counted from the metric settings: the cost model of the dry run (a backward pass counts as two
    forwards)."""
    from ..data.corruptions import CORRUPTIONS, SEVERITIES

    train_images = _train_size(config)
    test_images = config.test_subset or 10_000
    points = round(settings.train_fraction * train_images)
    wanted = set(settings.metrics)
    test_passes = config.epochs // config.test_every + (config.epochs % config.test_every != 0)
    count = test_passes * test_images + test_images  # the trainer's test passes; the stored predictions
    count += train_images * (1 + ("generalization_gap" in wanted))  # final eval-mode training accuracy
    if "corruption_accuracy" in wanted:
        count += len(CORRUPTIONS) * len(SEVERITIES) * min(settings.corruption_subset or test_images, test_images)
    if "fisher_rao_norm" in wanted:
        count += 3 * points
    count += sum((settings.sam_samples + 1) * points for name in ("sam_sharpness", "sam_sharpness_clean")
                 if name in wanted)
    if "relative_flatness" in wanted:
        count += 3 * round((settings.relative_flatness_fraction or settings.train_fraction) * train_images)
    return count


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def dry_run(profile: Profile, measure: bool = True, device: str = "auto", log=print,
            cache_dir: str | Path | None = None, workers: int = 1, results_root: str | Path = "results",
            threads: int | None = None) -> dict[str, Any]:
    """Print the grid (cells, runs, epochs), the metrics plan, how many runs a sweep with ``workers`` local
    workers will let reuse a finished training from the cache (``cache_dir`` as for :func:`sweep`) and,
    when ``measure``, an estimated cost from a measured step time per (dataset, arch, size). Returns the
    numbers printed."""
    runs = profile.runs()
    cells = {spec.cell for spec in runs}
    log(f"profile {profile.name} (version {profile.version}): {profile.description}")
    log(f"{len(profile.experiments)} dataset x arch blocks, {len(profile.controls)} controls, "
        f"{len(profile.seeds)} seeds -> {len(cells)} cells, {len(runs)} training runs")
    total_epochs = sum(spec.config.epochs for spec in runs)
    total_seconds = total_eval_seconds = 0.0
    # What each run will compute with: --threads, else the stored results' count, else the default (a dry
    # run creates no store: it only reads one that exists).
    existing = ResultStore(results_root, profile)
    threads = threads or ((stored_threads(existing) if existing.sweep_file.exists() else None) or DEFAULT_THREADS)
    precision = sorted({"bf16" if spec.config.bf16 else "fp32" for spec in runs})
    log(f"cost model: step and forward times measured here ({'/'.join(precision)}, "
        f"{threads} thread(s) per run, {workers} worker(s)); SAM steps count twice; "
        "evaluation counted in image forward passes from the metric settings")
    header = (f"{'dataset':28s} {'arch':9s} {'size':22s} {'runs':>5s} {'epochs':>6s} {'steps/run':>9s} "
              f"{'s/step':>7s} {'train':>8s} {'eval':>8s}")
    log(header)
    for exp in profile.experiments:
        exp_runs = [s for s in runs if (s.config.dataset, s.config.arch) == (exp.dataset, exp.arch)]
        config = exp_runs[0].config
        steps = math.ceil(_train_size(config) / config.batch_size) * config.epochs
        sam_runs = sum(1 for s in exp_runs if s.config.uses_sam)
        step_time, forward_time = (measure_step_time(config, device, threads=threads) if measure
                                   else (float("nan"), float("nan")))
        seconds = step_time * steps * (len(exp_runs) + sam_runs)
        eval_seconds = forward_time * evaluation_forward_images(config, exp.evaluation) * len(exp_runs)
        total_seconds += 0.0 if math.isnan(seconds) else seconds
        total_eval_seconds += 0.0 if math.isnan(eval_seconds) else eval_seconds
        size = json.dumps(exp.model_size, separators=(",", ":")) if exp.model_size else "paper size"
        log(f"{exp.dataset[-28:]:28s} {exp.arch:9s} {size[:22]:22s} {len(exp_runs):5d} {config.epochs:6d} "
            f"{steps:9d} {step_time:7.3f} {_duration(seconds):>8s} {_duration(eval_seconds):>8s}")
    from ..run.train import resolve_device

    cache = profile_cache_dir(profile.name, cache_dir)
    reusable = 0
    if device != "auto" and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        log("(no GPU here: cannot tell which runs will reuse a training trained on one)")  # planning a GPU sweep
    else:
        here = resolve_device(device)
        trainings = finished_trainings(_work_roots(cache))  # read once for every run of the profile
        # A run's own folder holds its own (possibly finished) training: resuming it is not reuse.
        reusable = sum(find_finished_training(spec.config, trainings, here,
                                              exclude=CacheLayout(cache).work_dir(spec.run_id), threads=threads)
                       is not None for spec in runs)
    if reusable:
        log(f"{reusable} of the {len(runs)} runs will reuse a finished training found in the cache ({cache}); "
            "the estimate below counts them as trained")
    wall_seconds = (total_seconds + total_eval_seconds) / workers
    log(f"total: {len(runs)} training runs, {total_epochs} epochs"
        + (f", estimated {_duration(total_seconds)} of training and {_duration(total_eval_seconds)} of test passes "
           f"and evaluation on {device if device != 'auto' else 'this machine'}: {_duration(wall_seconds)} of wall "
           f"time with {workers} worker(s), before reused trainings" if measure else ""))
    log("metrics plan:")
    for exp in profile.experiments:
        ev = exp.evaluation
        parts = [", ".join(ev.metrics)]
        parts.append(f"SAM sharpness: {ev.sam_samples} samples, rho {ev.sam_rho}, {ev.sam_convention} convention")
        parts.append(f"sharpness data: {ev.train_fraction:.0%} of the training (sub)set in batches of {ev.batch_size}, "
                     f"{'augmented' if ev.augmented else 'clean'} for augmentation controls")
        if "relative_flatness" in ev.metrics:
            parts.append(f"relative flatness on {(ev.relative_flatness_fraction or ev.train_fraction):.0%}, "
                         f"{ev.rf_reduction}")
        if "corruption_accuracy" in ev.metrics:
            parts.append(f"corruptions: {ev.corrupted or f'generated from {ev.corruption_subset} test images'}")
        log(f"  {exp.dataset} / {exp.arch}: " + "; ".join(parts))
    return {"cells": len(cells), "runs": len(runs), "epochs": total_epochs, "estimated_seconds": total_seconds,
            "estimated_eval_seconds": total_eval_seconds, "estimated_wall_seconds": wall_seconds,
            "reusable": reusable}


# --- verification ---------------------------------------------------------------------------------------

# Every metric is computed from seeded generators, so on the same hardware and software a re-run is
# bit-identical. SAM sharpness is a Monte-Carlo estimate: with its seeded noise it repeats exactly too, but
# floating-point sums over 10^4-10^6 perturbed entries are the first to move if thread counts or kernels
# differ, so it gets a stated tolerance (the registry's verify_tolerance; 0, exact, for every other metric).
SAMPLED_METRICS: dict[str, float] = {name: info.verify_tolerance for name, info in REGISTRY.items()
                                     if info.verify_tolerance > 0}


@dataclass(frozen=True)
class VerifyOutcome:
    run_id: str
    passed: bool
    lines: tuple[str, ...]


def _compare_records(stored: dict[str, Any], fresh: dict[str, Any]) -> tuple[bool, list[str]]:
    notes, passed = [], True
    if stored["status"] != fresh["status"]:
        return False, [f"status {stored['status']} -> {fresh['status']}"]
    pairs = {f"train.{k}": (v, fresh.get("metrics", {}).get(k)) for k, v in stored.get("metrics", {}).items()}
    pairs.update({k: (v, fresh.get("evaluation", {}).get("metrics", {}).get(k))
                  for k, v in stored.get("evaluation", {}).get("metrics", {}).items()})
    for name, (old, new) in sorted(pairs.items()):
        tolerance = SAMPLED_METRICS.get(name, 0.0)
        if new is None:
            passed = False
            notes.append(f"{name}: missing in the re-run")
            continue
        rel = abs(new - old) / max(abs(old), 1e-300)
        if (tolerance == 0.0 and new != old) or rel > tolerance:
            passed = False
            notes.append(f"{name}: stored {old!r} re-run {new!r} (rel. diff {rel:.2e}, allowed {tolerance:.0e})")
    old_pred = stored.get("evaluation", {}).get("details", {}).get("test_predictions")
    new_pred = fresh.get("evaluation", {}).get("details", {}).get("test_predictions")
    if old_pred != new_pred:
        passed = False
        notes.append("test predictions differ")
    return passed, notes


VERIFY_FALSE_ALARM = 0.01  # per run: the in-distribution check's chance of failing a faithful re-run


def _cell_values(store: ResultStore, spec: RunSpec) -> dict[str, list[float]]:
    """Every stored metric of the other seeds of ``spec``'s cell (status ok): name -> values."""
    values: dict[str, list[float]] = {}
    for other in store.profile.runs():
        if other.cell != spec.cell or other.run_id == spec.run_id or not store.result_path(other).exists():
            continue
        record = json.loads(store.result_path(other).read_text())  # read once (state() would read it again)
        if record.get("status") != "ok":
            continue
        for name, value in _metric_pairs(record):
            values.setdefault(name, []).append(value)
    return values


def _metric_pairs(record: dict[str, Any]) -> list[tuple[str, float]]:
    pairs = [(f"train.{k}", v) for k, v in record.get("metrics", {}).items()]
    pairs += list(record.get("evaluation", {}).get("metrics", {}).items())
    return [(name, float(value)) for name, value in pairs if isinstance(value, (int, float))]


def _in_distribution(stored: dict[str, Any], fresh: dict[str, Any],
                     seeds: dict[str, list[float]]) -> tuple[bool, list[str]]:
    """Each re-run metric against the spread of its cell's other stored seeds: a two-sided t prediction
    interval ``mean +- t(1 - a/2, n-1) * s * sqrt(1 + 1/n)`` with ``a`` = :data:`VERIFY_FALSE_ALARM` / (number of
    metrics), so a faithful re-run on other arithmetic fails with probability <= 1 % (seeds i.i.d. normal)."""
    from scipy import stats as scipy_stats

    fresh_values = dict(_metric_pairs(fresh))
    names = [name for name, _ in _metric_pairs(stored)]
    alpha = VERIFY_FALSE_ALARM / max(len(names), 1)
    passed, lines = True, []
    for name in sorted(names):
        new, others = fresh_values.get(name), seeds.get(name, [])
        if new is None:
            passed = False
            lines.append(f"{name}: not reproduced (missing in the re-run)")
            continue
        if len(others) < 2:
            passed = False
            lines.append(f"{name}: cannot be checked in distribution (fewer than 2 other seeds stored)")
            continue
        n, mean, sd = len(others), float(np.mean(others)), float(np.std(others, ddof=1))
        half = float(scipy_stats.t.ppf(1 - alpha / 2, n - 1)) * sd * math.sqrt(1 + 1 / n)
        ok = abs(new - mean) <= half or new == mean
        passed &= ok
        lines.append(f"{name}: {'reproduced in distribution' if ok else 'not reproduced'} (re-run {new:.6g}; the "
                     f"cell's {n} other seeds {mean:.6g} +- {half:.3g})")
    return passed, lines


def verify(profile: Profile, results_root: str | Path, k: int, *, seed: int = 0, data_root: str | None = None,
           device: str = "auto", work_dir: str | Path | None = None, log=print) -> list[VerifyOutcome]:
    """Re-run ``k`` randomly chosen stored runs from scratch and check every stored metric.

    Where the re-run's arithmetic equals the stored run's (:func:`arithmetic_differences` finds nothing:
    same torch, device type, CPU and kernel set, threads), every metric must be reproduced bitwise (SAM
    sharpness within :data:`SAMPLED_METRICS`): "reproduced bitwise" or "not reproduced". Where it differs,
    bits cannot match, and each metric is checked against the spread of the cell's other stored seeds
    (:func:`_in_distribution`): "reproduced in distribution" or "not reproduced". Prints one line per run
    and the notes under it."""
    import random
    import tempfile

    check_positive("k", k, integer=True)
    store = ResultStore(results_root, profile)
    store.open()
    done = [spec for spec in profile.runs() if store.state(spec) == "done"]
    if not done:
        raise ValueError(f"No stored runs of profile {profile.name!r} in {store.root}: run the sweep first.")
    chosen = random.Random(seed).sample(done, min(k, len(done)))
    outcomes = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for spec in chosen:
            stored = json.loads(store.result_path(spec).read_text())
            threads = stored.get("provenance", {}).get("hardware", {}).get("cpu_count")
            previous = torch.get_num_threads()
            if threads:
                torch.set_num_threads(int(threads))  # same reduction order as the stored run
            try:
                start = time.perf_counter()
                run_one(_spec_to_dict(spec), str(Path(tmp) / "results"), str(Path(tmp) / "cache"), profile.version,
                        data_root=data_root, device=device)
                seconds = time.perf_counter() - start
            finally:
                torch.set_num_threads(previous)
            fresh_file = StoreLayout.of(Path(tmp) / "results", spec.profile).result_file(spec.run_id)
            fresh = json.loads(fresh_file.read_text())
            differences = arithmetic_differences(stored.get("provenance", {}), fresh.get("provenance", {}))
            count = len(_metric_pairs(stored))
            label = f"{spec.config.arch}/{spec.config.control}/seed{spec.config.seed}"
            if not differences:
                passed, notes = _compare_records(stored, fresh)
                verdict = "reproduced bitwise" if passed else "not reproduced bitwise"
            else:
                passed, notes = _in_distribution(stored, fresh, _cell_values(store, spec))
                notes = [f"arithmetic differs from the stored run's ({'; '.join(differences)}): checked in "
                         f"distribution, false-alarm rate {VERIFY_FALSE_ALARM:.0%} per run"] + notes
                verdict = "reproduced in distribution" if passed else "not reproduced"
            head = f"{'PASS' if passed else 'FAIL'} {spec.run_id} {label}: {count} metrics {verdict} in {seconds:.0f} s"
            log(head)
            for note in notes:
                log(f"    {note}")
            outcomes.append(VerifyOutcome(spec.run_id, passed, (head, *notes)))
    return outcomes
