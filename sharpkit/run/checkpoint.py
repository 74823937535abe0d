"""The run folder's files and its checkpoint: the one place that knows their names and the checkpoint's keys.

A run folder (``sharpkit train --out``) holds:

- :data:`CHECKPOINT_FILE`: the model, optimizer (SAM's includes the base optimizer's momentum), scheduler,
  random state and log, after every epoch and at the end; only tensors, numbers and strings, so that it loads
  with ``torch.load(..., weights_only=True)``. Its keys are those of :data:`CHECKPOINT_FORMAT` (saved by
  :func:`save_checkpoint`); they never change, so that every checkpoint ever written still loads;
- :data:`LOG_FILE`: one JSON line per finished epoch, a copy of the log the checkpoint holds (the checkpoint is
  the authority: :func:`restore_log` rewrites the file from it);
- :data:`RESULT_FILE`: the run's record (written by the trainer, extended by the evaluation).

The trainer saves and resumes with :func:`save_checkpoint`, :func:`load_for_resume`, :func:`check_same_config`
and :func:`restore_rng`; the evaluation reads a finished run's model with :func:`read_finished`, which refuses
(:func:`check_matches_record`) a checkpoint that is not the training its record describes.

Examples:
    >>> from sharpkit.run.checkpoint import CHECKPOINT_FILE, CHECKPOINT_FORMAT, LOG_FILE, RESULT_FILE
    >>> CHECKPOINT_FILE, LOG_FILE, RESULT_FILE, CHECKPOINT_FORMAT
    ('checkpoint.pt', 'log.jsonl', 'result.json', 'sharpkit-checkpoint-1')
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..utils.io import DamagedFileError, load_torch, save_torch, write_text
from .config import TrainConfig

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_FORMAT = "sharpkit-checkpoint-1"  # the "format" key of every checkpoint: its keys, as saved below


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back for resuming, its JSON fields decoded.

    Examples:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from sharpkit.run.checkpoint import load_for_resume, save_checkpoint
        >>> from sharpkit.run.config import make_train_config
        >>> config = make_train_config("resnet18", "toy", "baseline", seed=0, epochs=2)
        >>> model = torch.nn.Linear(2, 2)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "checkpoint.pt"
        ...     save_checkpoint(path, config, model, optimizer, None, 1, [{"epoch": 1}], "running", {}, 2.5,
        ...                     torch.device("cpu"), "2024-01-01T00:00:00Z")
        ...     saved = load_for_resume(path, torch.device("cpu"))
        >>> saved.epoch, saved.log, saved.status, saved.wall_time_s, saved.config == config.to_dict()
        (1, [{'epoch': 1}], 'running', 2.5, True)
    """

    config: dict[str, Any]  # TrainConfig.to_dict() of the run
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]  # {} for a run without a scheduler
    epoch: int  # epochs trained
    log: list[dict[str, Any]]  # one entry per epoch trained
    status: str  # "running" | "ok" | "diverged"
    metrics: dict[str, float]  # the record's final metrics ({} while running)
    wall_time_s: float  # seconds trained so far, over every process that trained the run
    started: str | None  # when the run's first epoch started (UTC)
    rng_cpu: torch.Tensor
    rng_cuda: torch.Tensor | None  # saved when the run trains on CUDA

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Checkpoint:
        """Decode the dict :func:`save_checkpoint` saved (KeyError when a key is missing).

        Examples:
            >>> import torch
            >>> from sharpkit.run.checkpoint import Checkpoint
            >>> state = {"config": "{}", "model": {}, "optimizer": {}, "scheduler": {}, "epoch": 3, "log": "[]",
            ...          "status": "ok", "result_metrics": '{"test_accuracy": 0.5}', "wall_time_s": 1.0,
            ...          "started": "", "rng_cpu": torch.get_rng_state()}
            >>> saved = Checkpoint.from_state(state)
            >>> saved.metrics, saved.started, saved.rng_cuda
            ({'test_accuracy': 0.5}, None, None)
        """
        return cls(config=json.loads(state["config"]), model=state["model"], optimizer=state["optimizer"],
                   scheduler=state["scheduler"], epoch=int(state["epoch"]), log=json.loads(state["log"]),
                   status=state["status"], metrics=json.loads(state["result_metrics"]),
                   wall_time_s=float(state["wall_time_s"]), started=state["started"] or None,
                   rng_cpu=state["rng_cpu"], rng_cuda=state.get("rng_cuda"))


def save_checkpoint(path: Path, config: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None, epoch: int, log: list[dict[str, Any]],
                    status: str, metrics: dict[str, float], wall: float, device: torch.device,
                    started: str | None) -> None:
    """Save the state of a run after ``epoch`` epochs, crash-safely (a temporary file renamed over ``path``).

    Everything a resumed run needs to continue bit for bit: the weights, the optimizer's and scheduler's state,
    the random state of the CPU (and of ``device`` when it is CUDA), and the log; with ``status`` other than
    ``"running"``, the record's final ``metrics`` too, so that a lost ``result.json`` can be rewritten. Only
    tensors, numbers and strings (JSON for the rest), so the file loads with ``weights_only=True``.

    Examples:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from sharpkit.run.checkpoint import save_checkpoint
        >>> from sharpkit.run.config import make_train_config
        >>> config = make_train_config("resnet18", "toy", "baseline", seed=0, epochs=1)
        >>> model = torch.nn.Linear(2, 2)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "checkpoint.pt"
        ...     save_checkpoint(path, config, model, optimizer, None, 1, [], "ok", {"test_accuracy": 0.5}, 2.5,
        ...                     torch.device("cpu"), None)
        ...     state = torch.load(path, weights_only=True)
        >>> state["format"], state["epoch"], state["status"], state["result_metrics"], state["started"]
        ('sharpkit-checkpoint-1', 1, 'ok', '{"test_accuracy": 0.5}', '')
    """
    # Only tensors, numbers and strings, so the file loads with weights_only=True.
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
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


def load_for_resume(path: Path, device: torch.device, *, stacklevel: int = 2) -> Checkpoint | None:
    """The checkpoint a run resumes from; None when there is none, or when it is damaged.

    A damaged one (cut short by a crash or a full disk, overwritten) is kept beside, renamed to
    ``checkpoint.pt.corrupt-<unix time>`` (never deleted: it may be all that is left of a long training), with
    a warning, and the run starts over, which ends bit-identical to a run never stopped. ``stacklevel`` is
    :func:`warnings.warn`'s: the frame the warning names (2: the caller of this function).

    Examples:
        >>> import tempfile, warnings, torch
        >>> from pathlib import Path
        >>> from sharpkit.run.checkpoint import load_for_resume
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "checkpoint.pt"
        ...     nothing = load_for_resume(path, torch.device("cpu"))
        ...     _ = path.write_bytes(b"")  # damaged
        ...     with warnings.catch_warnings(record=True) as caught:
        ...         warnings.simplefilter("always")
        ...         damaged = load_for_resume(path, torch.device("cpu"))
        ...     kept = [p.name.split("-")[0] for p in Path(folder).iterdir()]
        >>> nothing, damaged, kept, "training the run again" in str(caught[0].message)
        (None, None, ['checkpoint.pt.corrupt'], True)
    """
    if not path.exists():
        return None
    try:
        return Checkpoint.from_state(load_torch(path, map_location=device))
    except DamagedFileError as error:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        os.replace(path, aside)
        warnings.warn(f"{path} cannot be read: {error.reason}. Kept it as {aside.name} and training the run "
                      "again from its first epoch.", stacklevel=stacklevel)
        return None


def check_same_config(checkpoint: Checkpoint, path: Path, config: TrainConfig) -> None:
    """Raise ValueError unless ``checkpoint`` (read from ``path``) is a training of ``config``: resuming
    another run's checkpoint would mix two runs into one.

    Examples:
        >>> import torch
        >>> from pathlib import Path
        >>> from sharpkit.run.checkpoint import Checkpoint, check_same_config
        >>> from sharpkit.run.config import make_train_config
        >>> config = make_train_config("resnet18", "toy", "baseline", seed=0)
        >>> saved = Checkpoint(config.to_dict(), {}, {}, {}, 1, [], "running", {}, 0.0, None, torch.zeros(1), None)
        >>> check_same_config(saved, Path("checkpoint.pt"), config)  # the same run: nothing said
        >>> check_same_config(saved, Path("checkpoint.pt"), make_train_config("resnet18", "toy", "baseline", seed=1))
        Traceback (most recent call last):
        ValueError: checkpoint.pt belongs to a different config; refusing to mix two runs. ...
    """
    if checkpoint.config != config.to_dict():
        raise ValueError(
            f"{path} belongs to a different config; refusing to mix two runs. Use another --out "
            "directory or delete the old one."
        )


def restore_rng(checkpoint: Checkpoint, device: torch.device) -> None:
    """Set torch's random state to the one saved with ``checkpoint``: the CPU's, and ``device``'s when it is
    CUDA and the checkpoint has one (the draws of the epochs left are those a run never stopped makes).

    Examples:
        >>> import torch
        >>> from sharpkit.run.checkpoint import Checkpoint, restore_rng
        >>> saved = Checkpoint({}, {}, {}, {}, 1, [], "running", {}, 0.0, None, torch.get_rng_state(), None)
        >>> first = torch.rand(2)
        >>> restore_rng(saved, torch.device("cpu"))
        >>> torch.equal(torch.rand(2), first)
        True
    """
    torch.set_rng_state(checkpoint.rng_cpu)
    if device.type == "cuda" and checkpoint.rng_cuda is not None:
        torch.cuda.set_rng_state(checkpoint.rng_cuda, device)


def read_finished(run: Path, record: dict[str, Any], config: TrainConfig, device: torch.device | str,
                  fix: str) -> dict[str, torch.Tensor]:
    """The model weights (on ``device``) of the finished run in folder ``run`` whose record is ``record``.

    Raises:
        DamagedFileError: the checkpoint cannot be read; the message names it and ends with ``fix``.
        FileNotFoundError: there is no checkpoint.
        ValueError: the checkpoint is not the training ``record`` describes (:func:`check_matches_record`).

    Examples:
        >>> import json, tempfile, torch
        >>> from pathlib import Path
        >>> from sharpkit.run.checkpoint import read_finished, save_checkpoint
        >>> from sharpkit.run.config import make_train_config
        >>> config = make_train_config("resnet18", "toy", "baseline", seed=0, epochs=1)
        >>> model = torch.nn.Linear(2, 2)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> record = {"status": "ok", "metrics": {"test_accuracy": 0.5}}
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     save_checkpoint(Path(folder) / "checkpoint.pt", config, model, optimizer, None, 1, [], "ok",
        ...                     record["metrics"], 1.0, torch.device("cpu"), None)
        ...     weights = read_finished(Path(folder), record, config, "cpu", "Train it again.")
        >>> torch.equal(weights["weight"], model.weight)
        True
    """
    path = run / CHECKPOINT_FILE
    state = load_torch(path, map_location=device, fix=fix)
    check_matches_record(state, path, record, run / RESULT_FILE, config)
    return state["model"]


def _config_dict(data: Any) -> Any:
    """A config dict as the current TrainConfig writes it (defaults of fields added since filled in)."""
    try:
        return TrainConfig.from_dict(data).to_dict()
    except (TypeError, ValueError, KeyError, AttributeError):
        return data


def check_matches_record(state: dict[str, Any], ckpt_path: Path, record: dict[str, Any], result_path: Path,
                         config: TrainConfig) -> None:
    """Raise ValueError unless the checkpoint ``state`` is the finished training that ``record`` describes.

    The trainer writes both at the end of a run, with the same config, status and final metrics; a checkpoint
    of another run, or of the same run still under way, would make the metrics describe another model than
    the one the record names. Keys missing from ``state`` are not checked.

    Examples:
        >>> import json
        >>> from pathlib import Path
        >>> from sharpkit.run.checkpoint import check_matches_record
        >>> from sharpkit.run.config import make_train_config
        >>> config = make_train_config("resnet18", "toy", "baseline", seed=0)
        >>> state = {"config": json.dumps(config.to_dict()), "status": "ok", "result_metrics": "{}"}
        >>> check_matches_record(state, Path("checkpoint.pt"), {"status": "ok"}, Path("result.json"), config)
        >>> state["status"] = "running"
        >>> check_matches_record(state, Path("checkpoint.pt"), {"status": "ok"}, Path("result.json"), config)
        Traceback (most recent call last):
        ValueError: checkpoint.pt does not belong to result.json (status 'running' at epoch None of 100 ...
    """
    problems = []
    if "config" in state:
        stored = _config_dict(json.loads(state["config"]))
        recorded = config.to_dict()
        if stored != recorded:
            keys = sorted(k for k in set(stored) | set(recorded) if stored.get(k) != recorded.get(k))
            problems.append("config: " + ", ".join(f"{k} {stored.get(k)!r} in the checkpoint, {recorded.get(k)!r} "
                                                    "in the record" for k in keys))
    status = state.get("status")
    if status is not None and status != record.get("status"):
        progress = f" at epoch {state.get('epoch')} of {config.epochs}" if status == "running" else ""
        problems.append(f"status {status!r}{progress} in the checkpoint, {record.get('status')!r} in the record")
    if not problems and "result_metrics" in state:
        metrics = {k: v for k, v in json.loads(state["result_metrics"]).items()
                   if isinstance(v, float) and math.isfinite(v)}
        recorded = record.get("metrics", {})
        keys = sorted(k for k in set(metrics) | set(recorded) if metrics.get(k) != recorded.get(k))
        if keys:
            problems.append("final metrics: " + ", ".join(f"{k} {metrics.get(k)!r} in the checkpoint, "
                                                          f"{recorded.get(k)!r} in the record" for k in keys))
    if problems:
        raise ValueError(
            f"{ckpt_path} does not belong to {result_path} ({'; '.join(problems)}): the metrics would describe "
            "another model than the one the record names. Put back the checkpoint that was written with this "
            "result.json, or train the run again into a fresh folder (sharpkit train ... --out NEW_FOLDER) and "
            "evaluate that.")


def log_text(log: list[dict[str, Any]]) -> str:
    """The text of :data:`LOG_FILE` for ``log``: one JSON object per line, one line per epoch.

    Examples:
        >>> from sharpkit.run.checkpoint import log_text
        >>> log_text([{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}])
        '{"epoch": 1, "train_loss": 0.5}\\n{"epoch": 2, "train_loss": 0.25}\\n'
    """
    return "".join(json.dumps(entry) + "\n" for entry in log)


def write_log(out: Path, log: list[dict[str, Any]]) -> None:
    """Write ``log`` to the run folder ``out``'s :data:`LOG_FILE`, crash-safely (whole or not at all).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from sharpkit.run.checkpoint import read_log, write_log
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     write_log(Path(folder), [{"epoch": 1, "train_loss": 0.5}])
        ...     read_log(Path(folder))
        [{'epoch': 1, 'train_loss': 0.5}]
    """
    write_text(out / LOG_FILE, log_text(log))


def read_log(out: Path) -> list[dict[str, Any]]:
    """The entries of the run folder ``out``'s :data:`LOG_FILE`, one per epoch (FileNotFoundError without one).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from sharpkit.run.checkpoint import LOG_FILE, read_log
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = (Path(folder) / LOG_FILE).write_text('{"epoch": 1}\\n{"epoch": 2}\\n')
        ...     read_log(Path(folder))
        [{'epoch': 1}, {'epoch': 2}]
    """
    return [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]


def restore_log(out: Path, log: list[dict[str, Any]], *, stacklevel: int = 2) -> None:
    """Make the run folder ``out``'s :data:`LOG_FILE` the log the checkpoint holds.

    The checkpoint is the authority: a crash between the two writes leaves the file one epoch ahead (that
    epoch is trained again), and a file cut or damaged since is rebuilt from it, with a warning (``stacklevel``
    as :func:`warnings.warn`'s; 2: the caller of this function). A file already equal is left untouched.

    Examples:
        >>> import tempfile, warnings
        >>> from pathlib import Path
        >>> from sharpkit.run.checkpoint import LOG_FILE, read_log, restore_log
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = (Path(folder) / LOG_FILE).write_text('{"epoch": 1, "tra')  # cut short
        ...     with warnings.catch_warnings(record=True) as caught:
        ...         warnings.simplefilter("always")
        ...         restore_log(Path(folder), [{"epoch": 1, "train_loss": 0.5}])
        ...     read_log(Path(folder)), "was damaged" in str(caught[0].message)
        ([{'epoch': 1, 'train_loss': 0.5}], True)
    """
    path = out / LOG_FILE
    if path.is_file() and path.read_bytes() == log_text(log).encode():
        return
    try:
        for line in path.read_text().splitlines():
            json.loads(line)
    except FileNotFoundError:
        pass
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        warnings.warn(f"{path} was damaged ({error}); rewrote it from {out / CHECKPOINT_FILE}, which holds the "
                      "same log.", stacklevel=stacklevel)
    write_log(out, log)
