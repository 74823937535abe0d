"""The deterministic trainer: one (arch, dataset, control, seed) run, resumable, with provenance.

Files written to the run directory ``out``:

- ``checkpoint.pt``: model, optimizer (SAM's includes the base optimizer's momentum), scheduler, RNG
  state and the log, after every epoch; loadable with ``torch.load(..., weights_only=True)``;
- ``log.jsonl``: one line per finished epoch (loss, train/test accuracy, learning rate, seconds);
- ``result.json``: status (``ok`` / ``diverged``), final metrics, the full config, the hash of the initial
  weights and provenance (git commit, versions, hardware, wall time).

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
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
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
from ..utils.io import (
    DamagedFileError,
    check_writable,
    load_torch,
    remove_stale_temp_files,
    save_torch,
    sign_record,
    write_json,
    write_text,
)
from ..utils.locks import folder_lock
from ..utils.provenance import provenance, utc_now
from ..utils.seeding import seed_everything
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


def _make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
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
    init_dir = Path(init_dir) if init_dir is not None else out.parent / "init"
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

    ckpt_path = out / "checkpoint.pt"
    start_epoch, log, wall_before = 0, [], 0.0
    ckpt = _load_checkpoint(ckpt_path, device)
    if ckpt is not None:
        if json.loads(ckpt["config"]) != config.to_dict():
            raise ValueError(
                f"{ckpt_path} belongs to a different config; refusing to mix two runs. Use another --out "
                "directory or delete the old one."
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in ckpt:
            torch.cuda.set_rng_state(ckpt["rng_cuda"], device)
        start_epoch, log, wall_before = int(ckpt["epoch"]), json.loads(ckpt["log"]), float(ckpt["wall_time_s"])
        _restore_log(out, log)
        started = ckpt["started"] or None
        if ckpt["status"] != "running":  # already finished: report it, rewrite result.json only if lost
            metrics: dict[str, float] = json.loads(ckpt["result_metrics"])
            if (out / "result.json").exists():
                return _result_of(out, config, ckpt["status"], log, metrics)
            return _finish(out, config, ckpt["status"], log, metrics, init, wall_before, device, started,
                           _data_info(data, train_loader, test_loader))
    else:
        started = utc_now()

    t_start = time.perf_counter()
    status, diverged_epoch = "running", None
    bar = tqdm(range(start_epoch, config.epochs), initial=start_epoch, total=config.epochs, disable=not progress,
               desc=f"{config.arch}/{config.control}/seed{config.seed}", unit="epoch")
    for epoch in bar:
        epoch_start = time.perf_counter()
        model.train()
        train_loader.set_epoch(epoch)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        finite = torch.ones((), dtype=torch.bool, device=device)
        for x, y in train_loader:
            with autocast:
                objective, loss, logits = _training_loss(config, model, x, y)
            objective.backward()
            if config.uses_sam:
                assert isinstance(optimizer, SAM)  # _make_optimizer: a SAM variant exactly when uses_sam
                optimizer.first_step(zero_grad=True)
                with autocast:
                    _training_loss(config, model, x, y)[0].backward()
                optimizer.second_step(zero_grad=True)
            else:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if scheduler is not None and config.scheduler_step == "batch":
                scheduler.step()
            # Accumulate on the device; one synchronisation per epoch instead of per batch. The objective
            # (cross-entropy, plus FAM's penalty) is non-finite whenever the cross-entropy is.
            finite &= torch.isfinite(objective.detach())
            loss_sum += loss.detach() * y.numel()
            correct += (logits.detach().argmax(1) == y).sum()
            seen += y.numel()
        if scheduler is not None and config.scheduler_step == "epoch":
            scheduler.step()
        # Each loss is that of the weights before their step, so a finite last loss can hide the non-finite
        # weights its step left (and SAM's second loss is not kept): the weights are read as well.
        finished = bool(finite & _all_finite(model))  # synchronises with the device, so the time below is real
        train_seconds = time.perf_counter() - epoch_start
        entry = {"epoch": epoch + 1, "train_loss": loss_sum.item() / seen, "train_accuracy": correct.item() / seen}
        finished = finished and math.isfinite(entry["train_loss"])  # finite losses whose sum overflowed
        if finished and ((epoch + 1) % config.test_every == 0 or epoch + 1 == config.epochs):
            # Measured in float32 whatever the training precision: bf16 only speeds the optimisation steps.
            test = evaluate(model, test_loader)
            entry.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
            finished = math.isfinite(test["loss"])  # finite but huge weights can still overflow the logits
        if not finished:
            status, diverged_epoch = "diverged", epoch + 1
            log.append(_diverged_entry(epoch + 1))
            break
        entry.update({
            "lr": optimizer.param_groups[0]["lr"],
            "train_seconds": train_seconds,  # the optimisation steps alone
            "seconds": time.perf_counter() - epoch_start,  # including the test pass
        })
        log.append(entry)
        bar.set_postfix(loss=f"{entry['train_loss']:.3f}", test_acc=f"{entry.get('test_accuracy', float('nan')):.3f}")
        _write_log(out, log)
        if epoch + 1 < config.epochs:
            _save_checkpoint(ckpt_path, config, model, optimizer, scheduler, epoch + 1, log, "running", {},
                             wall_before + time.perf_counter() - t_start, device, started)
    bar.close()

    metrics = {}
    if status == "running":
        metrics = _final_metrics(model, log[-1], train_eval_loader(config, data, device))
        status = "ok" if metrics else "diverged"
        if not metrics:
            diverged_epoch = config.epochs
            log[-1] = _diverged_entry(config.epochs)
    _write_log(out, log)
    wall = wall_before + time.perf_counter() - t_start
    epoch_done = diverged_epoch - 1 if diverged_epoch else config.epochs
    _save_checkpoint(ckpt_path, config, model, optimizer, scheduler, epoch_done, log, status, metrics, wall,
                     device, started)
    return _finish(out, config, status, log, metrics, init, wall, device, started,
                   _data_info(data, train_loader, test_loader))


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


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, Any] | None:
    """The run's checkpoint; None when there is none, or when it is damaged: then it is kept beside (renamed,
    never deleted) with a warning, and the run starts over, which ends bit-identical to a run never stopped."""
    if not path.exists():
        return None
    try:
        return load_torch(path, map_location=device)
    except DamagedFileError as error:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        os.replace(path, aside)
        warnings.warn(f"{path} cannot be read: {error.reason}. Kept it as {aside.name} and training the run "
                      "again from its first epoch.", stacklevel=3)
        return None


def _restore_log(out: Path, log: list[dict[str, Any]]) -> None:
    """Make ``log.jsonl`` the log the checkpoint holds. The checkpoint is the authority: a crash between the
    two writes leaves the file one epoch ahead (that epoch is trained again), and a file cut or damaged since
    is rebuilt from it, with a warning."""
    path = out / "log.jsonl"
    if path.is_file() and path.read_bytes() == _log_text(log).encode():
        return
    try:
        for line in path.read_text().splitlines():
            json.loads(line)
    except FileNotFoundError:
        pass
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        warnings.warn(f"{path} was damaged ({error}); rewrote it from {out / 'checkpoint.pt'}, which holds the "
                      "same log.", stacklevel=3)
    _write_log(out, log)


def _epochs_and_divergence(log: list[dict[str, Any]]) -> tuple[int, int | None]:
    diverged = next((e["epoch"] for e in log if e.get("diverged")), None)
    return sum(1 for e in log if not e.get("diverged")), diverged


def _result_of(out: Path, config: TrainConfig, status: str, log: list[dict[str, Any]],
               metrics: dict[str, float]) -> TrainResult:
    epochs_completed, diverged_epoch = _epochs_and_divergence(log)
    return TrainResult(status=status, out_dir=out, epochs_completed=epochs_completed, metrics=metrics,
                       diverged_epoch=diverged_epoch)


def _log_text(log: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(entry) + "\n" for entry in log)


def _write_log(out: Path, log: list[dict[str, Any]]) -> None:
    write_text(out / "log.jsonl", _log_text(log))


def _save_checkpoint(path: Path, config: TrainConfig, model, optimizer, scheduler, epoch: int,
                     log: list[dict[str, Any]], status: str, metrics: dict[str, float], wall: float,
                     device: torch.device, started: str | None) -> None:
    # Only tensors, numbers and strings, so the file loads with weights_only=True.
    state: dict[str, Any] = {
        "format": "sharpkit-checkpoint-1",
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "epoch": epoch,
        "log": json.dumps(log),
        "status": status,
        "result_metrics": json.dumps(metrics),
        "wall_time_s": wall,
        "started": started or "",
        "rng_cpu": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(device)
    save_torch(path, state)


def _data_info(data: ImageDataset, train_loader: DeviceLoader, test_loader: DeviceLoader) -> dict[str, Any]:
    return {"name": data.name, "num_classes": data.num_classes, "image_size": data.image_size,
            "train_images": int(train_loader.labels.numel()), "test_images": int(test_loader.labels.numel())}


def _finish(out: Path, config: TrainConfig, status: str, log: list[dict[str, Any]], metrics: dict[str, float],
            init: dict[str, torch.Tensor], wall: float, device: torch.device, started: str | None,
            data_info: dict[str, Any]) -> TrainResult:
    epochs_completed, diverged_epoch = _epochs_and_divergence(log)
    finite_metrics = {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}
    record = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "kind": "train",
        "status": status,
        "diverged_epoch": diverged_epoch,
        "epochs_completed": epochs_completed,
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        # What relative paths in the config (npz:PATH) resolve against: `sharpkit evaluate` finds them after a cd.
        "cwd": os.getcwd(),
        "data": data_info,
        "uses_sam": config.uses_sam,
        "metrics": finite_metrics,
        "init_sha256": state_digest(init),
        "wall_time_s": wall,
        "started": started,
        "finished": utc_now(),
        "sharpkit_version": __version__,
        "provenance": provenance(device),
    }
    write_json(out / "result.json", sign_record(record))  # digests of its values (validate_run_record)
    return _result_of(out, config, status, log, finite_metrics)
