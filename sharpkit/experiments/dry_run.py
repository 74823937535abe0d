"""The dry run of a sweep: the grid, the metrics plan, which runs will reuse a finished training, and the cost
estimated from a step time and a forward time measured here, counted from the metric settings.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..run.config import TrainConfig
from ..run.evaluate import EvalSettings
from ..run.train import _size_kwargs, resolve_device
from .layout import CacheLayout, profile_cache_dir
from .profiles import Profile
from .reuse import find_finished_training, finished_trainings, search_roots
from .store import ResultStore
from .threads import DEFAULT_THREADS, stored_threads

__all__ = ["dry_run", "evaluation_forward_images", "measure_step_time"]

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
    cache = profile_cache_dir(profile.name, cache_dir)
    reusable = 0
    if device != "auto" and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        log("(no GPU here: cannot tell which runs will reuse a training trained on one)")  # planning a GPU sweep
    else:
        here = resolve_device(device)
        trainings = finished_trainings(search_roots(cache))  # read once for every run of the profile
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
