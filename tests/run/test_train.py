"""The trainer: shared initialisation, shared data order, exact resume, divergence, provenance."""
import json

import pytest
import torch

import sharpkit.run.train as train_module
from sharpkit.data import ImageDataset, load_dataset
from sharpkit.models import build_model
from sharpkit.optim import ASAM, SAM, AverageSAM, fam_loss
from sharpkit.run.config import TrainConfig, make_train_config
from sharpkit.run.controls import CONTROLS
from sharpkit.run.train import build_loaders, initial_state, train
from sharpkit.utils.io import load_torch

SIZE = {"width": 4}


@pytest.fixture(scope="module")
def digits():
    full = load_dataset("digits")
    # 96 train / 64 test images keep every epoch well under a second.
    return ImageDataset(full.name, full.x_train[:96], full.y_train[:96], full.x_test[:64], full.y_test[:64],
                        full.classes, full.mean, full.std)


def _config(control="baseline_sam", **kw):
    args = dict(epochs=3, batch_size=32, model_size=SIZE, lr=0.05)
    args.update(kw)
    return make_train_config("resnet18", "digits", control, 0, **args)


def test_six_controls_share_initial_weights_and_batch_order(digits, tmp_path):
    states, orders = {}, {}
    for name in CONTROLS:  # the paper's six and the extra controls
        config = _config(name)
        states[name] = initial_state(config, digits.num_classes, digits.image_size, tmp_path / "init")
        loader, _ = build_loaders(config, digits, torch.device("cpu"))
        orders[name] = [torch.cat([y for _, y in (loader.set_epoch(e) or loader)]) for e in range(2)]
    assert len(list((tmp_path / "init").iterdir())) == 1  # made once, reused
    reference = states["baseline"]
    for name in CONTROLS:
        assert all(torch.equal(reference[k], states[name][k]) for k in reference)
        assert all(torch.equal(a, b) for a, b in zip(orders["baseline"], orders[name]))
    # a different seed starts elsewhere
    other = initial_state(make_train_config("resnet18", "digits", "baseline", 1, model_size=SIZE),
                          digits.num_classes, digits.image_size, None)
    assert not torch.equal(other["conv1.weight"] if "conv1.weight" in other else next(iter(other.values())),
                           reference["conv1.weight"] if "conv1.weight" in reference else next(iter(reference.values())))


def test_trained_controls_record_the_same_init_digest(digits, tmp_path):
    digests = set()
    for name in ("baseline", "augmentation_sam"):
        train(_config(name, epochs=1), tmp_path / name, dataset=digits, progress=False)
        digests.add(json.loads((tmp_path / name / "result.json").read_text())["init_sha256"])
    assert len(digests) == 1


@pytest.mark.parametrize("control, extra", [
    ("augmentation_sam", {}),
    ("weight_decay", {"scheduler": "cosine", "scheduler_step": "batch"}),
    ("average_sam", {}),  # its perturbation generator is part of the checkpoint
    ("fam", {}),
])
def test_resume_after_a_crash_is_bit_identical(digits, tmp_path, monkeypatch, control, extra):
    config = _config(control, **extra)
    straight = train(config, tmp_path / "straight", dataset=digits, progress=False)

    real_save = train_module._save_checkpoint
    calls = {"n": 0}

    def crash_after_first_epoch(*args, **kwargs):
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(train_module, "_save_checkpoint", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", dataset=digits, progress=False)
    monkeypatch.setattr(train_module, "_save_checkpoint", real_save)
    assert not (tmp_path / "resumed" / "result.json").exists()
    resumed = train(config, tmp_path / "resumed", dataset=digits, progress=False)

    a = load_torch(tmp_path / "straight" / "checkpoint.pt")["model"]
    b = load_torch(tmp_path / "resumed" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.metrics == resumed.metrics and resumed.epochs_completed == 3


def test_outputs_checkpoint_log_and_result_with_provenance(digits, tmp_path):
    result = train(_config("baseline", epochs=2), tmp_path / "run", dataset=digits, progress=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["status"] == "ok"
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]
    assert {"train_loss", "train_accuracy", "test_accuracy"} <= set(log[0])
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["status"] == "ok" and record["schema_version"] == 1
    assert record["metrics"]["test_accuracy"] == log[-1]["test_accuracy"] == result.metrics["test_accuracy"]
    assert record["config"] == _config("baseline", epochs=2).to_dict()
    assert {"git", "versions", "hardware", "time"} <= set(record["provenance"])
    assert record["provenance"]["versions"]["torch"] == torch.__version__.split("+")[0]
    assert record["wall_time_s"] > 0


def test_same_config_and_seed_give_identical_results(digits, tmp_path):
    a = train(_config("augmentation", epochs=1), tmp_path / "a", dataset=digits, progress=False,
              init_dir=tmp_path / "ia")
    b = train(_config("augmentation", epochs=1), tmp_path / "b", dataset=digits, progress=False,
              init_dir=tmp_path / "ib")
    assert a.metrics == b.metrics


def test_divergence_is_flagged_not_averaged(digits, tmp_path):
    result = train(_config("baseline", lr=1e12, epochs=3), tmp_path / "boom", dataset=digits, progress=False)
    record = json.loads((tmp_path / "boom" / "result.json").read_text())
    assert result.status == record["status"] == "diverged"
    assert record["diverged_epoch"] == result.diverged_epoch == 1
    assert record["metrics"] == {}


def test_resume_refuses_a_different_config(digits, tmp_path):
    train(_config("baseline", epochs=1), tmp_path / "run", dataset=digits, progress=False)
    with pytest.raises(ValueError, match="different config"):
        train(_config("baseline_sam", epochs=1), tmp_path / "run", dataset=digits, progress=False)


@pytest.mark.parametrize("control, optimizer_type", [
    ("baseline", torch.optim.SGD), ("baseline_sam", SAM), ("asam", ASAM), ("average_sam", AverageSAM),
    ("fam", torch.optim.SGD),
])
def test_controls_build_their_optimizer_with_the_control_settings(control, optimizer_type):
    config = _config(control)
    model = build_model("resnet18", num_classes=10, width=4)
    optimizer = train_module._make_optimizer(config, model)
    assert type(optimizer) is optimizer_type
    expected_rho = {"asam": 0.5, "average_sam": 0.5}.get(control, 0.05)
    if optimizer_type is not torch.optim.SGD:
        assert optimizer.param_groups[0]["rho"] == expected_rho
    if control == "asam":  # the authors' groups: biases (and BatchNorm shifts) are not rescaled
        assert [g["adaptive"] for g in optimizer.param_groups] == [True, False]
    assert config.fam_strength == (0.1 if control == "fam" else 0.0)


def test_fam_control_steps_on_cross_entropy_plus_the_fam_penalty(digits, tmp_path):
    """One epoch of one batch through the trainer equals one SGD step on fam_loss computed by hand."""
    config = _config("fam", epochs=1, batch_size=96, momentum=0.0)
    init = initial_state(config, digits.num_classes, digits.image_size, tmp_path / "init")
    train(config, tmp_path / "run", dataset=digits, progress=False, init_dir=tmp_path / "init")
    trained = load_torch(tmp_path / "run" / "checkpoint.pt")["model"]

    model = build_model("resnet18", num_classes=10, width=4)
    model.load_state_dict(init)
    loader, _ = build_loaders(config, digits, torch.device("cpu"))
    loader.set_epoch(0)
    (x, y), = list(loader)
    model.train()
    fam_loss(model, x, y, strength=0.1).total.backward()
    torch.optim.SGD(model.parameters(), lr=config.lr).step()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6, msg=name)
    model.load_state_dict(init)
    plain = torch.nn.functional.cross_entropy(model(x), y)
    plain.backward()
    assert not torch.allclose(model.classifier.weight - config.lr * model.classifier.weight.grad,
                              trained["classifier.weight"], atol=1e-6)  # the penalty did change the step


def test_extra_controls_keep_old_run_ids():
    """Fields added for the extra controls stay out of the config dict at their defaults, so run ids of
    results stored before them (results/digits-mini) are unchanged; extra controls record them."""
    paper = _config("baseline_sam").to_dict()
    assert "sam_variant" not in paper and "fam_strength" not in paper
    assert _config("asam").to_dict()["sam_variant"] == "asam"
    assert _config("fam").to_dict()["fam_strength"] == 0.1
    for control in ("baseline", "asam", "fam"):
        assert TrainConfig.from_dict(_config(control).to_dict()) == _config(control)
    with pytest.raises(ValueError, match="sam_variant"):
        _config("baseline_sam", sam_variant="gsam")


def test_wd_sam_bug_switch_only_affects_cifar10_weight_decay_sam():
    assert make_train_config("resnet18", "cifar10", "weight_decay_sam", 0).uses_sam
    assert not make_train_config("resnet18", "cifar10", "weight_decay_sam", 0, reproduce_wd_sam_bug=True).uses_sam
    assert make_train_config("resnet18", "cifar100", "weight_decay_sam", 0, reproduce_wd_sam_bug=True).uses_sam


def test_bf16_on_the_cpu_is_deterministic_changes_the_arithmetic_and_measures_in_float32(digits, tmp_path):
    """bf16 autocast of the training steps on the CPU: the same config and seed give bit-identical weights,
    the weights differ from a float32 run (the autocast is really on), and the logged test accuracy is the
    float32 model's (metrics never run under autocast)."""
    def weights(name, **kw):
        train(_config("baseline_sam", epochs=2, **kw), tmp_path / name, dataset=digits, progress=False,
              init_dir=tmp_path / "init", device="cpu")
        return load_torch(tmp_path / name / "checkpoint.pt")["model"]

    a, b, fp32 = weights("a", bf16=True), weights("b", bf16=True), weights("fp32")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], fp32[k]) for k in a if a[k].is_floating_point())
    assert all(v.dtype != torch.bfloat16 for v in a.values())

    model = build_model("resnet18", num_classes=digits.num_classes, **SIZE)
    model.load_state_dict(a)
    model.eval()
    _, test_loader = build_loaders(_config("baseline_sam", bf16=True), digits, torch.device("cpu"))
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in test_loader)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["test_accuracy"] == correct / len(digits.y_test)


def test_final_training_accuracy_and_loss_are_measured_in_eval_mode_over_the_whole_training_subset(digits, tmp_path):
    config = _config("augmentation", epochs=2, train_subset=80)
    result = train(config, tmp_path / "run", dataset=digits, progress=False)
    model = build_model("resnet18", num_classes=digits.num_classes, **SIZE)
    model.load_state_dict(load_torch(tmp_path / "run" / "checkpoint.pt")["model"])
    model.eval()
    # Independently: the same 80 images, normalised by hand, no augmentation, one batch.
    from sharpkit.data import subset_indices
    idx = subset_indices(len(digits.y_train), 80)
    mean = torch.tensor(digits.mean).view(1, 3, 1, 1)
    std = torch.tensor(digits.std).view(1, 3, 1, 1)
    x = (digits.x_train[idx].float() / 255 - mean) / std
    with torch.no_grad():
        logits = model(x)
    expected_loss = torch.nn.functional.cross_entropy(logits, digits.y_train[idx]).item()
    expected_accuracy = (logits.argmax(1) == digits.y_train[idx]).double().mean().item()
    assert result.metrics["train_eval_accuracy"] == pytest.approx(expected_accuracy, abs=1e-12)
    assert result.metrics["train_eval_loss"] == pytest.approx(expected_loss, rel=1e-5)
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["metrics"]["train_eval_accuracy"] == result.metrics["train_eval_accuracy"]


def test_test_every_thins_the_logs_test_pass_without_changing_the_training(digits, tmp_path):
    every = train(_config("baseline", epochs=3), tmp_path / "every", dataset=digits, progress=False,
                  init_dir=tmp_path / "init")
    thin = train(_config("baseline", epochs=3, test_every=2), tmp_path / "thin", dataset=digits, progress=False,
                 init_dir=tmp_path / "init")
    log = [json.loads(line) for line in (tmp_path / "thin" / "log.jsonl").read_text().splitlines()]
    assert ["test_accuracy" in e for e in log] == [False, True, True]  # epoch 2, and the last
    assert thin.metrics == every.metrics
    a = load_torch(tmp_path / "every" / "checkpoint.pt")["model"]
    b = load_torch(tmp_path / "thin" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "test_every" not in _config("baseline").to_dict()  # stored run ids keep their hash


class _InfiniteGradient(torch.autograd.Function):
    """The identity forward, an infinite gradient backward: the step it feeds leaves non-finite weights
    behind a finite loss, as a step with too large a learning rate does."""

    @staticmethod
    def forward(ctx, objective):
        return objective.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_a_run_whose_last_step_blows_up_is_stored_diverged(digits, tmp_path, monkeypatch):
    config = _config("baseline", epochs=2)  # 96 images in batches of 32: 3 steps an epoch, 6 in all
    real_loss, calls = train_module._training_loss, {"n": 0}

    def last_step_explodes(*args):
        objective, loss, logits = real_loss(*args)
        calls["n"] += 1
        return (_InfiniteGradient.apply(objective) if calls["n"] == 6 else objective), loss, logits

    monkeypatch.setattr(train_module, "_training_loss", last_step_explodes)
    result = train(config, tmp_path / "run", dataset=digits, progress=False)
    assert calls["n"] == 6
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result.status == record["status"] == "diverged"
    assert result.diverged_epoch == record["diverged_epoch"] == 2 and record["metrics"] == {}
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e.get("diverged", False) for e in log] == [False, True]
    assert load_torch(tmp_path / "run" / "checkpoint.pt")["status"] == "diverged"


@pytest.mark.parametrize("nan_call, what", [(1, "test loss"), (2, "eval-mode training loss")])
def test_a_non_finite_test_or_final_training_loss_marks_the_run_diverged(digits, tmp_path, monkeypatch,
                                                                         nan_call, what):
    real_evaluate, calls = train_module.evaluate, {"n": 0}

    def evaluate_with_one_nan(*args, **kwargs):  # call 1: the epoch's test pass; call 2: the final train pass
        measured = real_evaluate(*args, **kwargs)
        calls["n"] += 1
        return {**measured, "loss": float("nan")} if calls["n"] == nan_call else measured

    monkeypatch.setattr(train_module, "evaluate", evaluate_with_one_nan)
    result = train(_config("baseline", epochs=1), tmp_path / "run", dataset=digits, progress=False)
    assert (result.status, result.diverged_epoch, result.metrics) == ("diverged", 1, {}), what
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "diverged"


def test_a_damaged_checkpoint_is_kept_aside_and_the_run_trained_again(digits, tmp_path, monkeypatch):
    config = _config("baseline", epochs=2)
    straight = train(config, tmp_path / "straight", dataset=digits, progress=False)
    real_save = train_module._save_checkpoint

    def crash_after_saving(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(train_module, "_save_checkpoint", crash_after_saving)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", dataset=digits, progress=False)
    monkeypatch.setattr(train_module, "_save_checkpoint", real_save)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    cut = checkpoint.read_bytes()[:5000]
    checkpoint.write_bytes(cut)
    with pytest.warns(UserWarning, match=r"checkpoint.pt cannot be read: .*Kept it as checkpoint.pt.corrupt-\d+ "
                                         r"and training the run again from its first epoch"):
        again = train(config, tmp_path / "run", dataset=digits, progress=False)
    (aside,) = (tmp_path / "run").glob("checkpoint.pt.corrupt-*")
    assert aside.read_bytes() == cut  # kept as it was
    assert again.status == "ok" and again.metrics == straight.metrics
    a, b = load_torch(tmp_path / "straight" / "checkpoint.pt")["model"], load_torch(checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_damaged_init_file_is_named_with_the_fix(digits, tmp_path):
    train(_config("baseline", epochs=1), tmp_path / "a", dataset=digits, progress=False, init_dir=tmp_path / "init")
    (init,) = (tmp_path / "init").iterdir()
    init.write_bytes(init.read_bytes()[:3000])
    with pytest.raises(ValueError, match=rf"{init} cannot be read: .*cut short.*Delete it and run again: the "
                                         "initial weights are re-made from the seed"):
        train(_config("augmentation", epochs=1), tmp_path / "b", dataset=digits, progress=False,
              init_dir=tmp_path / "init")


def test_a_cut_log_is_rebuilt_from_the_checkpoint(digits, tmp_path):
    train(_config("baseline", epochs=1), tmp_path / "run", dataset=digits, progress=False)
    log_path = tmp_path / "run" / "log.jsonl"
    whole = log_path.read_text()
    log_path.write_text(whole[: len(whole) // 2])
    with pytest.warns(UserWarning, match=rf"{log_path} was damaged .*rewrote it from .*checkpoint.pt"):
        result = train(_config("baseline", epochs=1), tmp_path / "run", dataset=digits, progress=False)
    assert result.status == "ok" and log_path.read_text() == whole


@pytest.mark.parametrize("content", [b"", b"junk", b"not a checkpoint\n", bytes(range(256)) * 20, "cut"],
                         ids=["empty", "few-bytes", "text", "random-bytes", "cut-short"])
def test_load_torch_names_a_damaged_file_and_never_advises_weights_only_false(tmp_path, content):
    from sharpkit.utils.io import DamagedFileError, save_torch

    path = tmp_path / "file.pt"
    if content == "cut":
        save_torch(path, {"w": torch.zeros(1000)})
        content = path.read_bytes()[:2000]
    path.write_bytes(content)
    with pytest.raises(DamagedFileError) as info:
        load_torch(path)
    message = str(info.value)
    assert message.startswith(f"{path} cannot be read: torch.load found ") and "Delete it and train again" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message


@pytest.mark.parametrize("device, message", [
    ("tpu", "Expected a device such as auto, cpu, cuda or cuda:1, but got 'tpu'"),
    ("cuda:x", "but got 'cuda:x'"),
    ("meta", "'meta' was asked for and torch has no such device here"),
])
def test_unknown_or_absent_devices_are_refused_with_the_allowed_forms(device, message):
    with pytest.raises(ValueError, match=message):
        train_module.resolve_device(device)
    assert train_module.resolve_device("cpu") == torch.device("cpu")


def test_a_second_training_into_a_busy_folder_refuses(digits, tmp_path, lock_held_elsewhere):
    """Two processes training into one --out would overwrite each other's checkpoint: while one holds the
    folder (here a subprocess holding its lock), a second train() refuses, naming the holder."""

    from sharpkit.run.train import TRAIN_LOCK
    from sharpkit.utils.locks import BusyError

    out = tmp_path / "run"
    with lock_held_elsewhere("folder_lock", out, TRAIN_LOCK) as holder:
        with pytest.raises(BusyError, match=f"process {holder.pid}"):
            train(_config("baseline", epochs=1), out, dataset=digits, progress=False)
    assert train(_config("baseline", epochs=1), out, dataset=digits, progress=False).status == "ok"
