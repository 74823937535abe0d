"""The deterministic trainer: one (arch, dataset, control, seed) run, resumable, with provenance.

Files written to the run directory ``out``:

- ``checkpoint.pt``: model, optimizer (SAM's includes the base optimizer's momentum), scheduler, RNG
  state and the log, after every epoch; loadable with ``torch.load(..., weights_only=True)``;
- ``log.jsonl``: one line per finished epoch (loss, train/test accuracy, learning rate, seconds);
- ``result.json``: status (``ok`` / ``diverged``), final metrics, the full config, the hash of the initial
  weights and provenance (git commit, versions, hardware, wall time).

Their names, the checkpoint's keys and the log's format live in :mod:`sharpkit.run.checkpoint`. :func:`train`
is a short orchestration: set up (:func:`_setup`), resume (:func:`_resume`), the epochs left
(:func:`_train_epoch`, one :func:`_train_step` per batch, :func:`_record_epoch`), then the end (:func:`_record`).

A run is ``diverged`` (in the epoch where it happened, with no metrics) when a training loss of any step,
a weight or buffer at the end of an epoch, a test loss or the final eval-mode training loss is not finite.
A damaged checkpoint is kept aside (``checkpoint.pt.corrupt-<time>``) and the run trained again; a damaged
``log.jsonl`` is rewritten from the checkpoint, which holds the same log.

Initial weights are made once per (dataset, arch, size, seed) in ``init_dir`` and loaded by every
control, so all six controls of a seed start from the same point. The data order depends only on the
seed and the epoch (``sharpkit.data.DeviceLoader``), so they also see the same batches.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import __version__
from ..data import DeviceLoader, ImageDataset, load_clean, subset_indices
from ..data.loader import derived_generator
from ..models import build_model
from ..optim import ASAM, SAM, AverageSAM, fam_penalty, kwon_param_groups
from ..utils.io import check_writable, load_torch, remove_stale_temp_files, save_torch, sign_record, write_json
from ..utils.locks import folder_lock
from ..utils.provenance import provenance, utc_now
from ..utils.seeding import seed_everything
from .checkpoint import (
    CHECKPOINT_FILE,
    RESULT_FILE,
    check_same_config,
    load_for_resume,
    restore_log,
    restore_rng,
)
from .checkpoint import save_checkpoint as _save_checkpoint  # looked up at each call: tests replace it
from .checkpoint import write_log as _write_log
from .config import TrainConfig

RESULT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TrainResult:
    status: str  # "ok" | "diverged"
    out_dir: Path
    epochs_completed: int
    metrics: dict[str, float]
    diverged_epoch: int | None = None


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU. Anything else must name a device this machine has."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:  # torch's message lists two dozen backends, most of which no build here has
        raise ValueError(f"Expected a device such as auto, cpu, cuda or cuda:1, but got {str(device)!r}. "
                         "Use --device auto to take the GPU when there is one.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("Expected a usable device, but CUDA was asked for and torch sees no GPU. "
                         "Use --device cpu (or auto).")
    # torch.accelerator (torch >= 2.6) knows the other backends (mps, xpu, ...); older torch: CPU and CUDA only.
    accelerator = getattr(torch, "accelerator", None)
    usable = device.type in ("cpu", "cuda") or (accelerator is not None and accelerator.is_available()
                                                and accelerator.current_accelerator().type == device.type)
    if not usable:
        raise ValueError(f"Expected a usable device, but {device.type!r} was asked for and torch has no such "
                         "device here. Use --device cpu (or auto).")
    return device


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names and bytes (identical weights <=> identical digest)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def initial_state(config: TrainConfig, num_classes: int, image_size: int,
                  init_dir: str | Path | None) -> dict[str, torch.Tensor]:
    """The initial weights of (dataset, arch, size, seed): loaded from ``init_dir`` when already made,
    otherwise built under ``torch.manual_seed(seed)`` and stored there for the other controls."""
    path = None
    if init_dir is not None:
        path = Path(init_dir) / f"{config.arch}-{config.init_key(image_size, num_classes)}.pt"
        if path.exists():
            # An error rather than re-made in silence: made by another torch or machine, new weights could
            # differ from those the other controls of this seed started from (each records their hash).
            return load_torch(path, fix="Delete it and run again: the initial weights are re-made from the seed.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(config.arch, num_classes=num_classes, **_size_kwargs(config, image_size))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if path is not None:
        save_torch(path, state)
    return state


def _size_kwargs(config: TrainConfig, image_size: int) -> dict[str, Any]:
    size = dict(config.model_size)
    if config.arch == "vit" and "image_size" not in size:
        size["image_size"] = image_size
    return size


_AVERAGE_SAM_STREAM = 3  # key of the perturbation stream (the loader uses others)


def _make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if not config.uses_sam:
        return torch.optim.SGD(model.parameters(), **kwargs)
    # The trainer keeps the arithmetic every stored SAM run was trained with (undo the perturbation by
    # subtraction), so that stored results stay reproducible bit for bit; the library default is exact.
    kwargs["restore"] = "subtract"
    if config.sam_variant == "asam":
        return ASAM(kwon_param_groups(model), torch.optim.SGD, rho=config.sam_rho, **kwargs)
    if config.sam_variant == "average_sam":
        # Its own stream, fixed by the seed (and saved in checkpoints): the perturbations do not
        # depend on the data order or on the other controls.
        generator = derived_generator(config.seed, _AVERAGE_SAM_STREAM)
        return AverageSAM(model.parameters(), torch.optim.SGD, rho=config.sam_rho, generator=generator, **kwargs)
    return SAM(model.parameters(), torch.optim.SGD, rho=config.sam_rho, **kwargs)


def _training_loss(config: TrainConfig, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective to differentiate, cross-entropy, logits) of one batch: cross-entropy, plus the FAM
    penalty on the classifier when the config asks for it."""
    if config.fam_strength == 0.0:
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        return loss, loss, logits
    # The models FAM trains (find_head's convention) have a features(x) method and a classifier head.
    features = cast(Callable[[torch.Tensor], torch.Tensor], model.features)(x)
    logits = cast(torch.nn.Module, model.classifier)(features)
    loss = F.cross_entropy(logits.float(), y)
    penalty = fam_penalty(model, features.float())
    return loss + config.fam_strength * penalty, loss, logits


def _make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer
                    ) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.scheduler == "cosine":
        # T_max counts scheduler steps; with scheduler_step="batch" this is the authors' bug
        # (the rate cycles every 2 * T_max batches instead of decaying once over training).
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DeviceLoader, autocast: contextlib.AbstractContextManager
             | None = None) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) over ``loader``."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in loader:
        with autocast or contextlib.nullcontext():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += y.numel()
    model.train(was_training)
    return {"loss": loss_sum / count, "accuracy": correct / count}


def build_loaders(config: TrainConfig, data: ImageDataset, device: torch.device) -> tuple[DeviceLoader, DeviceLoader]:
    """Train loader (shuffled, augmented per the control) and test loader (in order, clean)."""
    train_idx = subset_indices(len(data.y_train), config.train_subset)
    test_idx = subset_indices(len(data.y_test), config.test_subset)
    train = DeviceLoader(data.x_train[train_idx], data.y_train[train_idx], config.batch_size, data.mean,
                         data.std, shuffle=True, augmentation=config.augmentation, seed=config.seed,
                         device=device, channels_last=config.channels_last)
    test = DeviceLoader(data.x_test[test_idx], data.y_test[test_idx], 1000, data.mean, data.std,
                        device=device, channels_last=config.channels_last)
    return train, test


def train_eval_loader(config: TrainConfig, data: ImageDataset, device: torch.device) -> DeviceLoader:
    """The run's whole training subset in order, clean (no augmentation): what "training accuracy at the
    end" is measured on, in eval mode, so that it says whether the model sits at a minimum of its data."""
    idx = subset_indices(len(data.y_train), config.train_subset)
    return DeviceLoader(data.x_train[idx], data.y_train[idx], 1000, data.mean, data.std, device=device,
                        channels_last=config.channels_last)


def train(config: TrainConfig, out_dir: str | Path, *, data_root: str | None = None,
          init_dir: str | Path | None = None, device: str | torch.device | None = "auto",
          progress: bool = True, dataset: ImageDataset | None = None) -> TrainResult:
    """Train one run to completion (or divergence), resuming from ``out_dir/checkpoint.pt`` if there.

    Args:
        config: the run.
        out_dir: run directory (created).
        data_root: dataset root (see ``sharpkit.data.load_dataset``).
        init_dir: where the shared initial weights live (default ``out_dir/../init``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        progress: show a tqdm bar.
        dataset: an already loaded dataset (skips loading; must be ``config.dataset``).

    Raises:
        sharpkit.utils.locks.BusyError: another live process is training into ``out_dir`` (two runs into one
            folder would overwrite each other's checkpoint; the lock of a process that ended is free).

    Examples:
        >>> import json, tempfile, torch
        >>> from pathlib import Path
        >>> from sharpkit.data import CIFAR_MEAN, CIFAR_STD, ImageDataset
        >>> from sharpkit.run.config import make_train_config
        >>> from sharpkit.run.train import train
        >>> images = torch.randint(0, 256, (48, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        >>> data = ImageDataset("toy", images[:32], torch.arange(32) % 2, images[32:], torch.arange(16) % 2,
        ...                     ("a", "b"), CIFAR_MEAN, CIFAR_STD)  # or a registered name: load_dataset(...)
        >>> config = make_train_config("resnet18", "toy", "baseline_sam", seed=0, epochs=1, batch_size=16,
        ...                            model_size={"width": 2})
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     result = train(config, Path(folder) / "run", dataset=data, progress=False, device="cpu")
        ...     record = json.loads((result.out_dir / "result.json").read_text())  # beside checkpoint.pt, log.jsonl
        >>> result.status, result.epochs_completed, record["status"], record["config"]["control"]
        ('ok', 1, 'ok', 'baseline_sam')
    """
    out = Path(out_dir)
    with folder_lock(out, "a training", name=TRAIN_LOCK):
        return _train(config, out, data_root, init_dir, device, progress, dataset)


TRAIN_LOCK = ".train.lock"  # in the run folder, held while a process trains into it


def _train(config: TrainConfig, out: Path, data_root: str | None, init_dir: str | Path | None,
           device: str | torch.device | None, progress: bool, dataset: ImageDataset | None) -> TrainResult:
    """The training into the locked folder ``out``: set up, resume, train the epochs left, record."""
    run = _setup(config, out, data_root, init_dir, device, dataset)
    state = _resume(run)
    if state.status != "running":  # already finished: report it, rewrite result.json only if lost
        if (out / RESULT_FILE).exists():
            return _result_of(out, state.status, state.log, state.metrics)
        return _finish(run, state, state.wall_before)
    state.t_start = time.perf_counter()
    bar = tqdm(range(state.epoch, config.epochs), initial=state.epoch, total=config.epochs, disable=not progress,
               desc=f"{config.arch}/{config.control}/seed{config.seed}", unit="epoch")
    for epoch in bar:
        entry = _train_epoch(run, epoch)
        if entry is None:
            state.status, state.diverged_epoch = "diverged", epoch + 1
            state.log.append(_diverged_entry(epoch + 1))
            break
        _record_epoch(run, state, entry, bar)
    bar.close()
    return _record(run, state)


@dataclass(frozen=True)
class _Run:
    """What a training works with, made once by :func:`_setup`."""

    config: TrainConfig
    out: Path  # the run folder
    device: torch.device
    data: ImageDataset
    train_loader: DeviceLoader
    test_loader: DeviceLoader
    init: dict[str, torch.Tensor]  # the initial weights (their digest goes into the record)
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    autocast: torch.autocast  # of the training steps: bf16 when config.bf16, else disabled


@dataclass
class _Progress:
    """Where a training stands: what its checkpoint holds of it, and this process's clock."""

    epoch: int = 0  # epochs trained (the index of the next)
    log: list[dict[str, Any]] = field(default_factory=list)
    wall_before: float = 0.0  # seconds trained by the processes before this one
    started: str | None = None  # when the first epoch started (UTC)
    status: str = "running"  # "running" | "ok" | "diverged"
    metrics: dict[str, float] = field(default_factory=dict)  # the record's final metrics, once finished
    diverged_epoch: int | None = None
    t_start: float = 0.0  # time.perf_counter() when this process began training

    def wall(self) -> float:
        """Seconds trained so far, by this process and the ones before it."""
        return self.wall_before + time.perf_counter() - self.t_start


def _setup(config: TrainConfig, out: Path, data_root: str | None, init_dir: str | Path | None,
           device: str | torch.device | None, dataset: ImageDataset | None) -> _Run:
    """Everything a training works with, made in the order that fixes its random draws: the seed, then the
    data, the loaders, the shared initial weights, the model (on the device), optimizer and scheduler."""
    init_dir = Path(init_dir) if init_dir is not None else out.parent / "init"
    device = _check_before_work(config, out, init_dir, device)
    seed_everything(config.seed)

    data = dataset if dataset is not None else load_clean(config.dataset, root=data_root)
    train_loader, test_loader = build_loaders(config, data, device)
    init = initial_state(config, data.num_classes, data.image_size, init_dir)
    model = build_model(config.arch, num_classes=data.num_classes, **_size_kwargs(config, data.image_size))
    model.load_state_dict(init)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(config, model)
    scheduler = _make_scheduler(config, optimizer)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)
    return _Run(config, out, device, data, train_loader, test_loader, init, model, optimizer, scheduler, autocast)


def _check_before_work(config: TrainConfig, out: Path, init_dir: Path, device: str | torch.device | None
                       ) -> torch.device:
    """The device to train on, once it is known to run ``config`` and both folders to be writable (stale
    temporary files of killed writers removed from them); raises before anything is trained."""
    # Before an epoch is spent: a read-only folder or a full disk is named now, not after the training.
    check_writable(out, "the run's checkpoint and record", "pass --out with a folder elsewhere; nothing was trained")
    check_writable(init_dir, "the shared initial weights",
                   "pass --init-dir with a folder elsewhere; nothing was trained")
    remove_stale_temp_files(out, init_dir)
    device = resolve_device(device)
    if config.bf16 and device.type not in ("cuda", "cpu"):
        raise ValueError(f"bf16 autocast is offered on CUDA and CPU devices, not on {device.type!r}; "
                         "turn bf16 off (--bf16 of `sharpkit train`, or the profile's train bf16) or use a cpu or cuda "
                         "device.")
    return device


# The warnings of a resume name the line of train() that called _train (the callee, _resume, _train, train).
_WARN_IN_TRAIN = 4


def _resume(run: _Run) -> _Progress:
    """Where the run stands. From its checkpoint when there is a readable one: the model, optimizer, scheduler
    and random state restored (so the epochs left are those of a run never stopped) and log.jsonl made the
    checkpoint's log; otherwise at the first epoch, started now."""
    path = run.out / CHECKPOINT_FILE
    saved = load_for_resume(path, run.device, stacklevel=_WARN_IN_TRAIN)
    if saved is None:
        return _Progress(started=utc_now())
    check_same_config(saved, path, run.config)
    run.model.load_state_dict(saved.model)
    run.optimizer.load_state_dict(saved.optimizer)
    if run.scheduler is not None:
        run.scheduler.load_state_dict(saved.scheduler)
    restore_rng(saved, run.device)
    restore_log(run.out, saved.log, stacklevel=_WARN_IN_TRAIN)
    finished = saved.status != "running"
    return _Progress(epoch=saved.epoch, log=saved.log, wall_before=saved.wall_time_s, started=saved.started,
                     status=saved.status, metrics=saved.metrics if finished else {})


@dataclass
class _Tally:
    """An epoch's running sums, kept on the device: one synchronisation per epoch instead of one per batch."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int
    finite: torch.Tensor  # every step's objective so far finite

    @classmethod
    def zeros(cls, device: torch.device) -> _Tally:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long), 0,
                   torch.ones((), dtype=torch.bool, device=device))

    def add(self, objective: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        # The objective (cross-entropy, plus FAM's penalty) is non-finite whenever the cross-entropy is.
        self.finite &= torch.isfinite(objective.detach())
        self.loss_sum += loss.detach() * y.numel()
        self.correct += (logits.detach().argmax(1) == y).sum()
        self.seen += y.numel()


def _train_step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimisation step on the batch ``(x, y)`` (SAM's two passes for a SAM config), and the scheduler's
    step when it steps per batch; returns the first pass's (objective, cross-entropy, logits)."""
    config, model, optimizer = run.config, run.model, run.optimizer
    with run.autocast:
        objective, loss, logits = _training_loss(config, model, x, y)
    objective.backward()
    if config.uses_sam:
        assert isinstance(optimizer, SAM)  # _make_optimizer: a SAM variant exactly when uses_sam
        optimizer.first_step(zero_grad=True)
        with run.autocast:
            _training_loss(config, model, x, y)[0].backward()
        optimizer.second_step(zero_grad=True)
    else:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if run.scheduler is not None and config.scheduler_step == "batch":
        run.scheduler.step()
    return objective, loss, logits


def _train_epoch(run: _Run, epoch: int) -> dict[str, Any] | None:
    """Train epoch ``epoch`` (from 0). Its log entry (with the test pass when one is due), or None when the run
    diverged in it: a non-finite training loss, weight, buffer or test loss."""
    epoch_start = time.perf_counter()
    run.model.train()
    run.train_loader.set_epoch(epoch)
    tally = _Tally.zeros(run.device)
    for x, y in run.train_loader:
        tally.add(*_train_step(run, x, y), y)
    if run.scheduler is not None and run.config.scheduler_step == "epoch":
        run.scheduler.step()
    # Each loss is that of the weights before their step, so a finite last loss can hide the non-finite
    # weights its step left (and SAM's second loss is not kept): the weights are read as well.
    finished = bool(tally.finite & _all_finite(run.model))  # synchronises with the device: the time below is real
    train_seconds = time.perf_counter() - epoch_start
    entry: dict[str, Any] = {"epoch": epoch + 1, "train_loss": tally.loss_sum.item() / tally.seen,
                             "train_accuracy": tally.correct.item() / tally.seen}
    finished = finished and math.isfinite(entry["train_loss"])  # finite losses whose sum overflowed
    if finished and ((epoch + 1) % run.config.test_every == 0 or epoch + 1 == run.config.epochs):
        # Measured in float32 whatever the training precision: bf16 only speeds the optimisation steps.
        test = evaluate(run.model, run.test_loader)
        entry.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
        finished = math.isfinite(test["loss"])  # finite but huge weights can still overflow the logits
    if not finished:
        return None
    entry.update({
        "lr": run.optimizer.param_groups[0]["lr"],
        "train_seconds": train_seconds,  # the optimisation steps alone
        "seconds": time.perf_counter() - epoch_start,  # including the test pass
    })
    return entry


def _record_epoch(run: _Run, state: _Progress, entry: dict[str, Any], bar: Any) -> None:
    """Keep a trained epoch: its entry in the log and log.jsonl, then a checkpoint, unless it was the last one
    (:func:`_record` saves that, with the run's status)."""
    state.log.append(entry)
    bar.set_postfix(loss=f"{entry['train_loss']:.3f}", test_acc=f"{entry.get('test_accuracy', float('nan')):.3f}")
    _write_log(run.out, state.log)
    if entry["epoch"] < run.config.epochs:
        _save(run, state, entry["epoch"], state.wall())


def _record(run: _Run, state: _Progress) -> TrainResult:
    """The end of a training: the final metrics when every epoch ran (a non-finite final loss: diverged after
    all), then log.jsonl, the last checkpoint and result.json, the record last."""
    epochs = run.config.epochs
    if state.status == "running":
        state.metrics = _final_metrics(run.model, state.log[-1], train_eval_loader(run.config, run.data, run.device))
        state.status = "ok" if state.metrics else "diverged"
        if not state.metrics:
            state.diverged_epoch = epochs
            state.log[-1] = _diverged_entry(epochs)
    _write_log(run.out, state.log)
    wall = state.wall()
    _save(run, state, state.diverged_epoch - 1 if state.diverged_epoch else epochs, wall)
    return _finish(run, state, wall)


def _save(run: _Run, state: _Progress, epoch: int, wall: float) -> None:
    """Checkpoint the run after ``epoch`` epochs (:func:`sharpkit.run.checkpoint.save_checkpoint`)."""
    _save_checkpoint(run.out / CHECKPOINT_FILE, run.config, run.model, run.optimizer, run.scheduler, epoch,
                     state.log, state.status, state.metrics, wall, run.device, state.started)


def _all_finite(model: torch.nn.Module) -> torch.Tensor:
    """Whether every parameter and buffer of ``model`` is finite, as a device tensor (read, no synchronisation)."""
    tensors = [*model.parameters(), *model.buffers()]
    return torch.stack([torch.isfinite(t.detach()).all() for t in tensors]).all()


def _diverged_entry(epoch: int) -> dict[str, Any]:
    """The log entry of the epoch in which a run diverged (its numbers are not kept: they are not finite)."""
    return {"epoch": epoch, "train_loss": float("nan"), "diverged": True}


def _final_metrics(model: torch.nn.Module, last: dict[str, Any], train_eval: DeviceLoader) -> dict[str, float]:
    """The record's metrics of a run that ran all its epochs; {} when the final model's loss over its
    training data is not finite (the run diverged in its last epoch after all)."""
    final = evaluate(model, train_eval)
    if not math.isfinite(final["loss"]):
        return {}
    metrics = {k: last[k] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}
    # train_loss/train_accuracy above are running means over the last epoch in train mode (augmented
    # batches, BatchNorm batch statistics, weights still moving); these are the final model's.
    metrics.update(train_eval_loss=final["loss"], train_eval_accuracy=final["accuracy"])
    return metrics


def _epochs_and_divergence(log: list[dict[str, Any]]) -> tuple[int, int | None]:
    diverged = next((e["epoch"] for e in log if e.get("diverged")), None)
    return sum(1 for e in log if not e.get("diverged")), diverged


def _result_of(out: Path, status: str, log: list[dict[str, Any]], metrics: dict[str, float]) -> TrainResult:
    epochs_completed, diverged_epoch = _epochs_and_divergence(log)
    return TrainResult(status=status, out_dir=out, epochs_completed=epochs_completed, metrics=metrics,
                       diverged_epoch=diverged_epoch)


def _data_info(data: ImageDataset, train_loader: DeviceLoader, test_loader: DeviceLoader) -> dict[str, Any]:
    return {"name": data.name, "num_classes": data.num_classes, "image_size": data.image_size,
            "train_images": int(train_loader.labels.numel()), "test_images": int(test_loader.labels.numel())}


def _finish(run: _Run, state: _Progress, wall: float) -> TrainResult:
    """Write the run's record, result.json (signed), for the finished ``state``; return what it says."""
    config = run.config
    epochs_completed, diverged_epoch = _epochs_and_divergence(state.log)
    finite_metrics = {k: v for k, v in state.metrics.items() if isinstance(v, float) and math.isfinite(v)}
    record = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "kind": "train",
        "status": state.status,
        "diverged_epoch": diverged_epoch,
        "epochs_completed": epochs_completed,
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        # What relative paths in the config (npz:PATH) resolve against: `sharpkit evaluate` finds them after a cd.
        "cwd": os.getcwd(),
        "data": _data_info(run.data, run.train_loader, run.test_loader),
        "uses_sam": config.uses_sam,
        "metrics": finite_metrics,
        "init_sha256": state_digest(run.init),
        "wall_time_s": wall,
        "started": state.started,
        "finished": utc_now(),
        "sharpkit_version": __version__,
        "provenance": provenance(run.device),
    }
    write_json(run.out / RESULT_FILE, sign_record(record))  # digests of its values (validate_run_record)
    return _result_of(run.out, state.status, state.log, finite_metrics)
