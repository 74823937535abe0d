"""The command line: a tiny real run, and errors that say what was wrong and how to fix it."""
import json

import pytest

from sharpkit.cli import main

TINY = ["--width", "4", "--epochs", "1", "--train-subset", "64", "--test-subset", "64", "--batch-size", "32",
        "--no-progress"]


def test_train_on_embedded_digits_writes_checkpoint_log_and_result(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SHARPKIT_DATA", str(tmp_path / "no-data-here"))  # digits needs no data folder
    code = main(["train", "--arch", "resnet18", "--dataset", "digits", "--control", "augmentation_sam",
                 "--seed", "0", "--out", str(tmp_path / "run"), *TINY])
    assert code == 0
    assert "ok: 1/1 epochs" in capsys.readouterr().out
    assert {"checkpoint.pt", "log.jsonl", "result.json"} <= {p.name for p in (tmp_path / "run").iterdir()}
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["config"]["model_size"] == {"width": 4} and record["config"]["augmentation"] == "crop_flip"


@pytest.mark.parametrize("args, message", [
    (["--arch", "resnet99", "--dataset", "digits"], "resnet18"),
    (["--arch", "resnet18", "--dataset", "imagenet21k"], "cifar10"),
    (["--arch", "resnet18", "--dataset", "npz:/nonexistent/file.npz"], "/nonexistent/file.npz"),
    (["--arch", "resnet18", "--dataset", "cifar10", "--data-root", "/nonexistent-root"], "/nonexistent-root"),
    (["--arch", "resnet18", "--dataset", "digits", "--size", "colour=3"], "colour"),
    (["--arch", "resnet18", "--dataset", "digits", "--device", "tpu"], "Expected a device such as auto, cpu, cuda"),
])
def test_bad_input_gives_one_clear_error(tmp_path, capsys, args, message):
    code = main(["train", "--control", "baseline", "--seed", "0", "--out", str(tmp_path / "run"), *args, *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "sharpkit: error:" in err and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("lr", ["inf", "nan", "-0.1", "0", "fast"])
def test_a_learning_rate_that_is_not_finite_and_positive_is_refused(tmp_path, capsys, lr):
    with pytest.raises(SystemExit) as info:
        main(["train", "--arch", "resnet18", "--dataset", "digits", "--control", "baseline", "--seed", "0",
              "--out", str(tmp_path / "run"), "--lr", lr, *TINY])
    assert info.value.code == 2 and not (tmp_path / "run").exists()
    assert f"argument --lr: expected a finite number larger than 0 (e.g. 0.01), but got '{lr}'" in capsys.readouterr().err


def test_unknown_control_is_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--arch", "resnet18", "--dataset", "digits", "--control", "dropout", "--seed", "0",
              "--out", str(tmp_path)])
    assert "baseline_sam" in capsys.readouterr().err


def test_listings(capsys):
    assert main(["controls"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("baseline", "augmentation_sam", "weight_decay_sam"))
    assert main(["models"]) == 0 and "vit" in capsys.readouterr().out
    assert main(["datasets"]) == 0 and "digits" in capsys.readouterr().out
