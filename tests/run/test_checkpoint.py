"""The run folder's checkpoint: its format on disk, resuming (a damaged one kept aside), the log beside it, and
the checks that refuse another run's checkpoint."""
import doctest
import json
import re

import pytest
import torch

import sharpkit.run.checkpoint as checkpoint_module
from sharpkit.run.checkpoint import (
    CHECKPOINT_FILE,
    LOG_FILE,
    RESULT_FILE,
    Checkpoint,
    check_matches_record,
    check_same_config,
    load_for_resume,
    log_text,
    read_finished,
    read_log,
    restore_log,
    restore_rng,
    save_checkpoint,
    write_log,
)
from sharpkit.run.config import make_train_config
from sharpkit.utils.io import DamagedFileError

CPU = torch.device("cpu")
# The keys of every checkpoint ever written, in order: existing checkpoints must keep loading.
KEYS = ["format", "config", "model", "optimizer", "scheduler", "epoch", "log", "status", "result_metrics",
        "wall_time_s", "started", "rng_cpu"]
LOG = [{"epoch": 1, "train_loss": 1.25, "train_accuracy": 0.5, "lr": 0.1, "seconds": 0.5}]


def _config(seed=0, **overrides):
    return make_train_config("resnet18", "toy", "baseline", seed, epochs=3, **overrides)


def _trained_state():
    """A model, SGD with momentum state after one step, and a cosine scheduler after one step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    torch.nn.functional.cross_entropy(model(torch.randn(8, 3)), torch.arange(8) % 2).backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def _save(path, config, status="running", metrics=None, epoch=1, started="2024-01-01T00:00:00Z"):
    model, optimizer, scheduler = _trained_state()
    save_checkpoint(path, config, model, optimizer, scheduler, epoch, LOG, status, metrics or {}, 12.5, CPU, started)
    return model, optimizer, scheduler


def test_the_names_and_format_tag_are_those_of_every_stored_run():
    assert (CHECKPOINT_FILE, LOG_FILE, RESULT_FILE) == ("checkpoint.pt", "log.jsonl", "result.json")
    assert checkpoint_module.CHECKPOINT_FORMAT == "sharpkit-checkpoint-1"


def test_a_saved_checkpoint_loads_with_weights_only_and_keeps_its_keys(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    config = _config()
    model, optimizer, scheduler = _save(path, config)
    state = torch.load(path, weights_only=True)  # no pickled code: tensors, numbers and strings only
    assert list(state) == KEYS
    assert state["format"] == "sharpkit-checkpoint-1" and state["epoch"] == 1 and state["status"] == "running"
    assert json.loads(state["config"]) == config.to_dict() and state["config"] == json.dumps(config.to_dict(),
                                                                                              sort_keys=True)
    assert json.loads(state["log"]) == LOG and state["result_metrics"] == "{}" and state["wall_time_s"] == 12.5
    assert state["scheduler"] == scheduler.state_dict()
    assert all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())


def test_load_for_resume_gives_back_what_was_saved(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    config = _config()
    model, optimizer, _ = _save(path, config, status="ok", metrics={"test_accuracy": 0.75}, epoch=3)
    rng = torch.get_rng_state()  # the state when it was saved (nothing drawn since)
    torch.rand(3)
    saved = load_for_resume(path, CPU)
    assert isinstance(saved, Checkpoint)
    assert (saved.epoch, saved.status, saved.metrics, saved.log) == (3, "ok", {"test_accuracy": 0.75}, LOG)
    assert (saved.config, saved.wall_time_s, saved.started) == (config.to_dict(), 12.5, "2024-01-01T00:00:00Z")
    assert saved.model.keys() == model.state_dict().keys()
    assert all(torch.equal(saved.model[k], v) for k, v in model.state_dict().items())
    momentum = {i: s["momentum_buffer"] for i, s in optimizer.state_dict()["state"].items()}
    assert momentum and all(torch.equal(saved.optimizer["state"][i]["momentum_buffer"], m)
                            for i, m in momentum.items())
    assert torch.equal(saved.rng_cpu, rng) and not torch.equal(saved.rng_cpu, torch.get_rng_state())
    assert saved.rng_cuda is None  # saved for CUDA runs only


def test_a_run_never_started_has_no_checkpoint_and_an_empty_started_reads_none(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    assert load_for_resume(path, CPU) is None
    _save(path, _config(), started=None)
    assert torch.load(path, weights_only=True)["started"] == ""
    assert load_for_resume(path, CPU).started is None


@pytest.mark.parametrize("damage", ["cut", "empty"])
def test_a_damaged_checkpoint_is_set_aside_with_a_warning(tmp_path, damage):
    path = tmp_path / CHECKPOINT_FILE
    _save(path, _config())
    damaged = path.read_bytes()[:2000] if damage == "cut" else b""
    path.write_bytes(damaged)
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))} cannot be read: torch.load found .*Kept it as "
                                         r"checkpoint.pt.corrupt-\d+ and training the run again from its first epoch"):
        assert load_for_resume(path, CPU) is None
    (aside,) = tmp_path.glob("checkpoint.pt.corrupt-*")
    assert aside.read_bytes() == damaged and not path.exists()  # kept as it was, never deleted


def test_restore_rng_makes_the_draws_of_the_saved_state(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    _save(path, _config())
    saved = load_for_resume(path, CPU)
    torch.set_rng_state(saved.rng_cpu)
    expected = torch.rand(5)
    torch.manual_seed(123)
    restore_rng(saved, CPU)
    assert torch.equal(torch.rand(5), expected)


def test_resuming_refuses_another_runs_checkpoint(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    _save(path, _config())
    saved = load_for_resume(path, CPU)
    check_same_config(saved, path, _config())
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} belongs to a different config; refusing to mix "
                                         "two runs. Use another --out directory or delete the old one."):
        check_same_config(saved, path, _config(lr=0.5))


def test_log_helpers_write_read_and_restore_a_damaged_log(tmp_path):
    write_log(tmp_path, LOG)
    assert (tmp_path / LOG_FILE).read_text() == log_text(LOG) == json.dumps(LOG[0]) + "\n"
    assert read_log(tmp_path) == LOG
    whole = (tmp_path / LOG_FILE).read_text()
    (tmp_path / LOG_FILE).write_text(whole[: len(whole) // 2])
    with pytest.warns(UserWarning, match=rf"{re.escape(str(tmp_path / LOG_FILE))} was damaged .*; rewrote it from "
                                         rf"{re.escape(str(tmp_path / CHECKPOINT_FILE))}, which holds the same log"):
        restore_log(tmp_path, LOG)
    assert (tmp_path / LOG_FILE).read_text() == whole


def test_restore_log_is_silent_for_a_log_ahead_missing_or_already_equal(tmp_path, recwarn):
    ahead = [*LOG, {"epoch": 2, "train_loss": 1.0}]  # a crash between log.jsonl and the checkpoint
    write_log(tmp_path, ahead)
    restore_log(tmp_path, LOG)
    assert read_log(tmp_path) == LOG
    (tmp_path / LOG_FILE).unlink()
    restore_log(tmp_path, LOG)
    assert read_log(tmp_path) == LOG
    before = (tmp_path / LOG_FILE).stat().st_mtime_ns
    restore_log(tmp_path, LOG)
    assert (tmp_path / LOG_FILE).stat().st_mtime_ns == before  # not rewritten
    assert not recwarn.list


def _finished_run(tmp_path, config, metrics):
    model, _, _ = _save(tmp_path / CHECKPOINT_FILE, config, status="ok", metrics=metrics, epoch=config.epochs)
    finite = {k: v for k, v in metrics.items() if v == v}  # the record keeps the finite ones, as the trainer's
    return model, {"status": "ok", "metrics": finite, "config": config.to_dict()}


def test_read_finished_gives_the_weights_of_the_run_its_record_describes(tmp_path):
    config = _config()
    model, record = _finished_run(tmp_path, config, {"test_accuracy": 0.75, "test_loss": float("nan")})
    weights = read_finished(tmp_path, record, config, "cpu", "Train it again.")
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    (tmp_path / CHECKPOINT_FILE).write_bytes((tmp_path / CHECKPOINT_FILE).read_bytes()[:2000])
    with pytest.raises(DamagedFileError, match=r"checkpoint.pt cannot be read: .*Train it again\.$"):
        read_finished(tmp_path, record, config, "cpu", "Train it again.")


def test_the_match_check_refuses_a_checkpoint_of_another_config_status_or_result(tmp_path):
    config = _config()
    _, record = _finished_run(tmp_path, config, {"test_accuracy": 0.75})
    ckpt, result = tmp_path / CHECKPOINT_FILE, tmp_path / RESULT_FILE
    other = _config(seed=5, lr=0.5)
    with pytest.raises(ValueError) as error:
        read_finished(tmp_path, record, other, "cpu", "Train it again.")
    message = str(error.value)
    assert message.startswith(f"{ckpt} does not belong to {result} (config: lr {config.lr} in the checkpoint, 0.5 "
                              "in the record, seed 0 in the checkpoint, 5 in the record)")
    assert message.endswith("train the run again into a fresh folder (sharpkit train ... --out NEW_FOLDER) and "
                            "evaluate that.")

    state = torch.load(ckpt, weights_only=True)
    with pytest.raises(ValueError, match=r"status 'running' at epoch 1 of 3 in the checkpoint, 'ok' in the record"):
        check_matches_record({**state, "status": "running", "epoch": 1}, ckpt, record, result, config)
    with pytest.raises(ValueError, match=r"final metrics: test_accuracy 0.75 in the checkpoint, 0.5 in the record"):
        check_matches_record(state, ckpt, {**record, "metrics": {"test_accuracy": 0.5}}, result, config)
    check_matches_record(state, ckpt, record, result, config)  # its own record
    check_matches_record({"model": state["model"]}, ckpt, record, result, other)  # keys it lacks: not checked


DOCTESTS = sorted(doctest.DocTestFinder(exclude_empty=True).find(checkpoint_module), key=lambda test: test.name)


@pytest.mark.parametrize("test", DOCTESTS, ids=[test.name for test in DOCTESTS])
def test_the_docstring_examples_run(test):
    """tests/test_docs.py runs the examples of the public API's modules; these of this module run here."""
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    state = torch.get_rng_state()
    try:
        runner.run(test, out=lambda text: None)
    finally:
        torch.set_rng_state(state)
    assert runner.failures == 0, test.name


def test_every_public_function_has_an_example():
    public = [name for name in dir(checkpoint_module) if not name.startswith("_")
              and callable(getattr(checkpoint_module, name))
              and getattr(getattr(checkpoint_module, name), "__module__", None) == checkpoint_module.__name__]
    assert len(public) >= 10
    assert [name for name in public if ">>>" not in (getattr(checkpoint_module, name).__doc__ or "")] == []
