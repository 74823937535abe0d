"""`sharpkit evaluate`: every metric into result.json, on the data the protocol prescribes."""
import json

import numpy as np
import pytest
import torch

from sharpkit import metrics as M
from sharpkit.cli import main
from sharpkit.data import DeviceLoader, derived_generator, load_dataset, subset_indices
from sharpkit.run.config import make_train_config
from sharpkit.run.evaluate import (
    BEYOND_METRICS,
    EvalSettings,
    decode_predictions,
    encode_predictions,
    evaluate_run,
    load_run,
)
from sharpkit.run.train import train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("runs")
    config = make_train_config("resnet18", "digits", "augmentation", 0, epochs=1, batch_size=32, lr=0.05,
                               model_size={"width": 4}, train_subset=96, test_subset=64)
    train(config, out / "run", dataset=digits, progress=False)
    return out / "run"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, digits):
    """A model that actually learned digits (test accuracy well above chance)."""
    out = tmp_path_factory.mktemp("trained")
    config = make_train_config("resnet18", "digits", "baseline", 0, epochs=6, batch_size=64, lr=0.05,
                               model_size={"width": 8})
    train(config, out / "run", dataset=digits, progress=False)
    return out / "run"


SMALL = EvalSettings(sam_samples=3, corruption_subset=24, batch_size=32)


def test_every_metric_lands_in_result_json_and_matches_direct_calls(tiny_run, digits, tmp_path):
    values = evaluate_run(tiny_run, SMALL, dataset=digits, progress=False, cache_dir=tmp_path)
    record = json.loads((tiny_run / "result.json").read_text())
    stored = record["evaluation"]["metrics"]
    assert set(SMALL.metrics) <= set(stored) and stored == {**stored, **values}
    assert stored["test_accuracy"] == pytest.approx(record["metrics"]["test_accuracy"])
    assert record["evaluation"]["settings"]["sam_samples"] == 3
    assert "frost" not in record["evaluation"]["details"]["corruption"]["corruptions"]
    assert len(record["evaluation"]["details"]["corruption"]["corruptions"]) == 18

    # Fisher-Rao on the same (augmented, run-seeded) training loader, computed directly.
    config, model, _ = load_run(tiny_run)
    idx = subset_indices(len(digits.y_train), 96)
    loader = DeviceLoader(digits.x_train[idx], digits.y_train[idx], 32, digits.mean, digits.std, shuffle=True,
                          augmentation="crop_flip", seed=0)
    assert stored["fisher_rao_norm"] == pytest.approx(M.fisher_rao_norm(model, loader), rel=1e-12)
    test_idx = subset_indices(len(digits.y_test), 64)
    logits = model(DeviceLoader(digits.x_test[test_idx], digits.y_test[test_idx], 64, digits.mean, digits.std)
                   .normalize(digits.x_test[test_idx])).detach()
    assert stored["test_ece"] == pytest.approx(M.ece(logits, digits.y_test[test_idx]), abs=1e-6)
    assert torch.equal(decode_predictions(record["evaluation"]["details"]["test_predictions"]), logits.argmax(1))


def test_beyond_metrics_land_in_result_json_and_match_direct_calls(tiny_run, digits):
    settings = EvalSettings(metrics=BEYOND_METRICS, beyond_points=64, beyond_batch_size=32, average_samples=2,
                            worst_steps=3, hessian_samples=3, hessian_iters=4, asymmetry_directions=2)
    values = evaluate_run(tiny_run, settings, dataset=digits, progress=False)
    record = json.loads((tiny_run / "result.json").read_text())
    assert set(BEYOND_METRICS) <= set(record["evaluation"]["metrics"])
    assert all(np.isfinite(values[name]) for name in BEYOND_METRICS)
    assert record["evaluation"]["settings"]["worst_steps"] == 3
    curve = record["evaluation"]["details"]["asymmetry_factor"]
    assert len(curve["curve_alphas"]) == len(curve["curve_losses"]) == 17

    # The same fixed clean points and derived generators, called directly.
    config, model, _ = load_run(tiny_run)
    idx = subset_indices(len(digits.y_train), 96)
    points = idx[subset_indices(len(idx), None, seed=42)[:64]]
    batches = list(DeviceLoader(digits.x_train[points], digits.y_train[points], 32, digits.mean, digits.std))
    trace = M.hessian_trace(model, batches, samples=3, generator=derived_generator(config.seed, 2003))
    assert values["hessian_trace"] == pytest.approx(trace.value, rel=1e-9)
    worst = M.adaptive_sharpness(model, batches, 0.002, kind="worst", norm="linf", steps=3, batch_size=32,
                                 generator=derived_generator(config.seed, 2002))
    assert values["adaptive_worst_sharpness"] == pytest.approx(worst.value, rel=1e-9)


def test_beyond_settings_enter_the_record_only_when_measured():
    plain = EvalSettings().to_dict()
    assert "worst_rho" not in plain and EvalSettings.from_dict(plain) == EvalSettings()
    beyond = EvalSettings(metrics=("test_accuracy", "hessian_trace")).to_dict()
    assert beyond["hessian_samples"] == 10
    with pytest.raises(ValueError, match="worst_steps"):
        EvalSettings(worst_steps=0)


def test_augmented_and_clean_training_data_differ_for_augmentation_controls(tiny_run, digits, tmp_path):
    only = dict(metrics=("fisher_rao_norm",))
    aug = evaluate_run(tiny_run, EvalSettings(**only), dataset=digits, progress=False)
    clean = evaluate_run(tiny_run, EvalSettings(**only, augmented=False), dataset=digits, progress=False)
    assert aug["fisher_rao_norm"] != clean["fisher_rao_norm"]


def test_accuracy_falls_on_average_as_severity_rises(trained_run, digits, tmp_path):
    evaluate_run(trained_run, EvalSettings(metrics=("test_accuracy", "corruption_accuracy"), corruption_subset=200),
                 dataset=digits, progress=False, cache_dir=tmp_path)
    record = json.loads((trained_run / "result.json").read_text())
    assert record["evaluation"]["metrics"]["test_accuracy"] > 0.5  # the model learned something
    per_severity = record["evaluation"]["details"]["corruption"]["per_severity"]
    assert per_severity[0] > per_severity[-1]
    slope = np.polyfit(np.arange(1, 6), per_severity, 1)[0]
    assert slope < 0, per_severity


def test_predictions_round_trip():
    pred = torch.tensor([0, 3, 9, 2])
    assert torch.equal(decode_predictions(encode_predictions(pred)), pred)
    big = torch.tensor([0, 199, 5])
    assert encode_predictions(big)["dtype"] == "uint8" and torch.equal(decode_predictions(encode_predictions(big)), big)
    huge = torch.tensor([0, 300])
    assert encode_predictions(huge)["dtype"] == "uint16"


def test_bad_settings_and_unfinished_runs(tmp_path):
    with pytest.raises(ValueError, match="metrics"):
        EvalSettings(metrics=("flatness",))
    with pytest.raises(ValueError, match="train_fraction"):
        EvalSettings(train_fraction=1.5)
    with pytest.raises(FileNotFoundError, match="sharpkit train"):
        evaluate_run(tmp_path / "nothing")


def test_cli_evaluate_and_corrupt(tiny_run, tmp_path, capsys):
    assert main(["evaluate", str(tiny_run), "--metrics", "test_accuracy", "relative_flatness", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "relative_flatness" in out and "result.json" in out
    assert main(["corrupt", "--dataset", "digits", "--out", str(tmp_path / "c"), "--test-subset", "10",
                 "--corruptions", "contrast", "gaussian_noise", "--no-progress"]) == 0
    assert np.load(tmp_path / "c" / "contrast.npy").shape == (50, 32, 32, 3)
    corrupted = load_dataset(f"cifar10-c:{tmp_path / 'c'}")
    assert set(corrupted.corruptions) == {"contrast", "gaussian_noise"}


def test_clean_sam_sharpness_is_measured_beside_the_papers_on_fixed_clean_batches(tiny_run, digits):
    """``sam_sharpness_clean``: the same points, rho, samples and noise stream as the paper's SAM sharpness,
    but un-augmented and with the same batches for L(theta) and every L(theta + eps). On an augmentation
    control the paper's convention, which re-draws augmentations between the two losses, reads larger."""
    settings = EvalSettings(metrics=("sam_sharpness", "sam_sharpness_clean"), sam_samples=3, batch_size=32)
    values = evaluate_run(tiny_run, settings, dataset=digits, progress=False)
    config, model, _ = load_run(tiny_run)
    idx = subset_indices(len(digits.y_train), 96)
    clean = DeviceLoader(digits.x_train[idx], digits.y_train[idx], 32, digits.mean, digits.std, shuffle=True, seed=0)
    direct = M.sam_sharpness(model, clean, rho=0.005, samples=3, generator=derived_generator(config.seed, 1729),
                             convention="clean")
    assert values["sam_sharpness_clean"] == pytest.approx(direct.value, rel=1e-12)
    assert values["sam_sharpness"] > 3 * values["sam_sharpness_clean"]
    assert "sam_sharpness_clean" not in EvalSettings().metrics  # stored run ids keep their settings hash


def _copy(run, tmp_path):
    import shutil

    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def _edit_checkpoint(run, **changes):
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt.update(changes)
    torch.save(ckpt, run / "checkpoint.pt")


def test_a_checkpoint_that_does_not_belong_to_its_record_is_refused(tiny_run, digits, tmp_path, capsys):
    """The checkpoint is the model measured, result.json names the run the metrics are stored under: they must
    be one training (the trainer writes both at its end, with one config, status and final metrics)."""
    run = _copy(tiny_run, tmp_path)
    config = json.loads((run / "result.json").read_text())["config"]
    _edit_checkpoint(run, config=json.dumps({**config, "seed": 5, "control": "baseline"}, sort_keys=True))
    with pytest.raises(ValueError) as error:
        evaluate_run(run, SMALL, dataset=digits, progress=False)
    message = str(error.value)
    assert f"{run / 'checkpoint.pt'} does not belong to {run / 'result.json'}" in message
    assert "seed 5 in the checkpoint, 0 in the record" in message and "control 'baseline' in the checkpoint" in message
    assert "fresh folder" in message
    assert main(["evaluate", str(run), "--no-progress"]) == 2  # one line, no traceback
    assert "does not belong to" in capsys.readouterr().err

    run = _copy(tiny_run, tmp_path / "b")
    _edit_checkpoint(run, status="running", epoch=0)  # a checkpoint of the training under way
    with pytest.raises(ValueError, match=r"status 'running' at epoch 0 of 1 in the checkpoint, 'ok' in the record"):
        load_run(run)

    run = _copy(tiny_run, tmp_path / "c")
    record = json.loads((run / "result.json").read_text())
    record.pop("digests", None)  # a training's record, unsigned (sharpkit train), edited by hand
    record["metrics"]["test_accuracy"] = 0.99
    (run / "result.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"final metrics: test_accuracy .* in the checkpoint, 0.99 in the record"):
        load_run(run)


def test_an_evaluated_record_is_signed_and_a_hand_edited_value_is_refused(tiny_run, digits, tmp_path):
    from sharpkit.utils.io import digest_mismatches

    run = _copy(tiny_run, tmp_path)
    settings = EvalSettings(metrics=("test_accuracy", "test_ece"))
    evaluate_run(run, settings, dataset=digits, progress=False)
    record = json.loads((run / "result.json").read_text())
    assert digest_mismatches(record) == [] and "evaluation.metrics.test_ece" in record["digests"]
    record["evaluation"]["metrics"]["test_ece"] = 0.0
    (run / "result.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="evaluation.metrics.test_ece does not match the digests") as error:
        evaluate_run(run, settings, dataset=digits, progress=False)
    assert str(run / "result.json") in str(error.value)


def test_generated_corruptions_go_to_sharpkit_cache_unless_a_folder_is_given(tiny_run, digits, tmp_path, monkeypatch):
    from sharpkit.run.evaluate import default_corruption_cache

    monkeypatch.setenv("SHARPKIT_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("SHARPKIT_CACHE", raising=False)
    assert default_corruption_cache() == tmp_path / "data" / "generated-c"
    monkeypatch.setenv("SHARPKIT_CACHE", "")  # empty counts as unset
    assert default_corruption_cache() == tmp_path / "data" / "generated-c"
    monkeypatch.setenv("SHARPKIT_CACHE", str(tmp_path / "cache"))
    assert default_corruption_cache() == tmp_path / "cache" / "generated-c"
    assert default_corruption_cache(str(tmp_path / "root")) == tmp_path / "cache" / "generated-c"

    import sharpkit.data.corruptions as corruptions

    class Written(Exception):
        pass

    def written(images, labels, out_dir, **_):  # where the set would be made (generating it takes a while)
        assert out_dir.is_dir()
        raise Written(out_dir)

    monkeypatch.setattr(corruptions, "write_corrupted_npy", written)
    run = _copy(tiny_run, tmp_path)
    settings = EvalSettings(metrics=("corruption_accuracy",), corruption_subset=2)
    with pytest.raises(Written) as where:
        evaluate_run(run, settings, dataset=digits, progress=False)
    assert where.value.args[0].parent == tmp_path / "cache" / "generated-c" and not (tmp_path / "data").exists()
    assert list((tmp_path / "cache" / "generated-c").iterdir()) == []  # its temporary folder went with it
    with pytest.raises(Written) as where:  # an explicit folder (--corruption-cache) wins over SHARPKIT_CACHE
        evaluate_run(run, settings, dataset=digits, progress=False, cache_dir=tmp_path / "explicit")
    assert where.value.args[0].parent == tmp_path / "explicit"


def test_a_read_only_run_folder_or_cache_or_a_full_disk_is_reported_before_any_metric(tiny_run, digits, tmp_path,
                                                                                     monkeypatch, make_read_only):
    import errno

    from sharpkit.utils import io
    from sharpkit.utils.io import NotWritableError

    run = _copy(tiny_run, tmp_path)
    before = (run / "result.json").read_bytes()

    def no_metric(*_, **__):
        raise AssertionError("a metric was computed before the check")

    monkeypatch.setattr(M, "predict", no_metric)
    make_read_only(run)
    try:
        with pytest.raises(NotWritableError) as error:
            evaluate_run(run, SMALL, dataset=digits, progress=False, cache_dir=tmp_path / "cache")
    finally:
        make_read_only.restore()
    message = str(error.value)
    assert "read-only" in message and str(run) in message and "nothing was computed" in message

    cache = tmp_path / "cache"
    cache.mkdir()
    make_read_only(cache)
    try:
        with pytest.raises(NotWritableError, match="--corruption-cache") as error:
            evaluate_run(run, SMALL, dataset=digits, progress=False, cache_dir=cache)
    finally:
        make_read_only.restore()
    assert str(cache) in str(error.value)

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "_probe_write", full)
    with pytest.raises(NotWritableError, match="Disk full") as error:
        evaluate_run(run, SMALL, dataset=digits, progress=False, cache_dir=cache)
    assert str(run) in str(error.value)
    assert (run / "result.json").read_bytes() == before
