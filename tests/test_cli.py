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
    assert (f"argument --lr: expected a finite number larger than 0 (e.g. 0.01), but got '{lr}'"
            in capsys.readouterr().err)


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


# --- settings of one run as flags ----------------------------------------------------------------------------

def _printed_config(capsys, control, *flags):
    code = main(["train", "--arch", "resnet18", "--dataset", "digits", "--control", control, "--seed", "0",
                 "--out", "unused", "--print-config", *flags])
    assert code == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("control, flags, field, value", [
    ("baseline_sam", ["--rho", "0.1"], "sam_rho", 0.1),
    ("asam", ["--rho", "1.5"], "sam_rho", 1.5),
    ("weight_decay", ["--weight-decay", "1e-3"], "weight_decay", 1e-3),
    ("baseline", ["--weight-decay", "5e-4"], "weight_decay", 5e-4),
    ("baseline", ["--momentum", "0"], "momentum", 0.0),
    ("baseline", ["--scheduler", "cosine"], "scheduler", "cosine"),
    ("augmentation", ["--augmentation", "none"], "augmentation", "none"),
    ("baseline", ["--augmentation", "resized_crop_flip"], "augmentation", "resized_crop_flip"),
])
def test_a_flag_overrides_the_controls_recipe_and_so_the_run_id(capsys, control, flags, field, value):
    default = _printed_config(capsys, control)
    changed = _printed_config(capsys, control, *flags)
    assert changed["config"][field] == value and default["config"][field] != value
    assert {k: v for k, v in changed["config"].items() if k != field} == \
        {k: v for k, v in default["config"].items() if k != field}  # that one setting alone
    assert changed["config_hash"] != default["config_hash"]


@pytest.mark.parametrize("flags, message", [
    (["--momentum", "1.5"], "argument --momentum: expected a number in [0, 1) (e.g. 0.9), but got '1.5'"),
    (["--weight-decay", "-1"],
     "argument --weight-decay: expected a finite number at least 0 (e.g. 5e-4), but got '-1'"),
    (["--rho", "0"], "argument --rho: expected a finite number larger than 0 (e.g. 0.01), but got '0'"),
    (["--scheduler", "step"], "argument --scheduler: invalid choice: 'step' (choose from"),
    (["--augmentation", "mixup"], "argument --augmentation: invalid choice: 'mixup' (choose from"),
])
def test_an_invalid_flag_value_says_what_is_allowed(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as info:
        main(["train", "--arch", "resnet18", "--dataset", "digits", "--control", "baseline", "--seed", "0",
              "--out", str(tmp_path / "run"), *flags, *TINY])
    assert info.value.code == 2 and message in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_rho_for_a_control_without_sam_is_refused(tmp_path, capsys):
    code = main(["train", "--arch", "resnet18", "--dataset", "digits", "--control", "weight_decay", "--seed", "0",
                 "--out", str(tmp_path / "run"), "--rho", "0.1", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "control 'weight_decay' trains without it. Choose one of baseline_sam" in err
    assert "or drop --rho" in err and not (tmp_path / "run").exists()


def test_help_states_each_flags_default_and_unit(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: the control's: 0.05 for baseline_sam, augmentation_sam, weight_decay_sam; 0.5 for asam, " \
           "average_sam)" in text
    assert "the L2 norm of the weight perturbation" in text and "dimensionless" in text
    assert "(default: the control's: 0.0005 for weight_decay, weight_decay_sam; 0 otherwise)" in text
    assert "(default: the dataset recipe's: cosine for cifar100; none otherwise)" in text
    assert "(default: the dataset recipe's: 0.9)" in text and "default: OUT/init, inside the run folder" in text


# --- the user's own models and datasets (--import) ----------------------------------------------------------

PLUGIN = "sharpkit_test_user_plugin"
PLUGIN_SOURCE = '''
"""A user's module: a tiny MLP (sharpkit's classifier + features contract) and a tiny random dataset."""
import torch
from torch import nn

from sharpkit.data import CIFAR_MEAN, CIFAR_STD, ImageDataset, register_dataset
from sharpkit.models import register_model


class TinyMLP(nn.Module):
    def __init__(self, num_classes, width, image_size):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, width), nn.ReLU())
        self.classifier = nn.Linear(width, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("user_mlp")
def user_mlp(num_classes, *, width=8, image_size=8):
    return TinyMLP(num_classes, width, image_size)


@register_dataset("user-noise", num_classes=4, image_size=8, mean=CIFAR_MEAN, std=CIFAR_STD,
                  description="48 + 16 random 8x8 images in 4 classes")
def user_noise(root, download, path):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.arange(64) % 4
    return ImageDataset("user-noise", x[:48], y[:48], x[48:], y[48:], ("a", "b", "c", "d"), CIFAR_MEAN, CIFAR_STD)
'''

GRID = '''
name = "user-grid"
description = "a user's model and dataset"
controls = ["baseline", "baseline_sam"]
seeds = [0]

[[experiments]]
dataset = "user-noise"
arch = "user_mlp"
model_size = { width = 6 }
train = { epochs = 1, batch_size = 16, lr = 0.05 }
evaluation = { metrics = ["test_accuracy", "sam_sharpness"], sam_samples = 2, batch_size = 16 }
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """A folder holding the user's module, on sys.path (as PYTHONPATH would put it); everything it registers is
    unregistered afterwards, so the other tests see the built-in registries only."""
    import sys

    from sharpkit.data import DATASETS
    from sharpkit.models.registry import list_models, unregister_model

    folder = tmp_path_factory.mktemp("plugin")
    (folder / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    (folder / "grid.toml").write_text(GRID)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(PLUGIN, None)
    if "user_mlp" in list_models():
        unregister_model("user_mlp")
    DATASETS.pop("user-noise", None)


def test_a_user_model_and_dataset_train_and_evaluate_through_import(plugin_dir, tmp_path, capsys):
    out = tmp_path / "runs" / "mine"
    code = main(["train", "--import", PLUGIN, "--arch", "user_mlp", "--dataset", "user-noise", "--control",
                 "baseline_sam", "--seed", "0", "--out", str(out), "--epochs", "1", "--batch-size", "16",
                 "--size", "width=6", "--rho", "0.1", "--momentum", "0.5", "--no-progress"])
    assert code == 0 and "ok: 1/1 epochs" in capsys.readouterr().out
    record = json.loads((out / "result.json").read_text())
    assert (record["config"]["arch"], record["config"]["dataset"]) == ("user_mlp", "user-noise")
    assert (record["config"]["sam_rho"], record["config"]["momentum"]) == (0.1, 0.5)
    assert record["data"]["num_classes"] == 4
    assert main(["models", "--import", PLUGIN]) == 0 and "user_mlp" in capsys.readouterr().out
    code = main(["evaluate", str(out), "--import", PLUGIN, "--metrics", "test_accuracy", "sam_sharpness",
                 "--sam-samples", "2", "--no-progress"])
    assert code == 0 and "sam_sharpness" in capsys.readouterr().out
    evaluated = json.loads((out / "result.json").read_text())["evaluation"]["metrics"]
    assert {"test_accuracy", "sam_sharpness"} <= set(evaluated)


def test_init_weights_are_written_inside_the_run_folder(plugin_dir, tmp_path, capsys):
    out = tmp_path / "runs" / "mine"
    assert main(["train", "--import", PLUGIN, "--arch", "user_mlp", "--dataset", "user-noise", "--control", "baseline",
                 "--seed", "0", "--out", str(out), "--epochs", "1", "--batch-size", "16", "--no-progress"]) == 0
    assert len(list((out / "init").glob("user_mlp-*.pt"))) == 1
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_dir()) == ["init", "mine", "runs"]  # nothing beside OUT


def _stable_records(results):
    return {p.parent.name: (r["status"], r["config"], r["evaluation"]["metrics"], r["metrics"])
            for p in sorted((results / "user-grid" / "runs").glob("*/result.json"))
            for r in [json.loads(p.read_text())]}


def test_a_user_grid_file_with_a_user_model_sweeps_in_process_and_in_spawned_workers(plugin_dir, tmp_path, capsys):
    from sharpkit.experiments.profiles import load_profile_file

    one, two = tmp_path / "one", tmp_path / "two"
    for root, workers in ((one, "1"), (two, "2")):
        code = main(["sweep", "--profile-file", str(plugin_dir / "grid.toml"), "--import", PLUGIN, "--results",
                     str(root / "results"), "--cache", str(root / "cache"), "--workers", workers, "--no-progress"])
        assert code == 0
        assert "profile user-grid: 2 runs; ran 2" in capsys.readouterr().out
    records = _stable_records(one / "results")
    assert len(records) == 2 and {r[0] for r in records.values()} == {"ok"}
    assert set(records) == {spec.run_id for spec in load_profile_file(plugin_dir / "grid.toml").runs()}
    assert all(r[1]["arch"] == "user_mlp" and "sam_sharpness" in r[2] for r in records.values())
    # The two worker processes imported the user's module themselves (spawn starts them fresh) and computed
    # the same bits as the sweep in this process.
    assert _stable_records(two / "results") == records


def test_a_module_that_cannot_be_imported_is_named_with_its_error(tmp_path, capsys):
    code = main(["sweep", "--profile", "smoke", "--import", "sharpkit_no_such_module", "--dry-run", "--no-timing"])
    err = capsys.readouterr().err
    assert code == 2 and "Cannot import the plugin module 'sharpkit_no_such_module' (from --import): " \
                         "ModuleNotFoundError: No module named 'sharpkit_no_such_module'" in err
    assert "Traceback" not in err


def test_a_user_model_without_import_points_to_it(tmp_path, capsys):
    code = main(["train", "--arch", "their_mlp", "--dataset", "digits", "--control", "baseline", "--seed", "0",
                 "--out", str(tmp_path / "run"), *TINY])
    assert code == 2 and "in a module passed with --import MODULE" in capsys.readouterr().err


# --- profile files ------------------------------------------------------------------------------------------

def test_sweep_help_documents_the_profile_file_format(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out = capsys.readouterr().out
    assert "--profile-file FILE" in out and "profile files (--profile-file):" in out
    assert '[[experiments]]\ndataset = "digits"\narch = "resnet18"' in out  # the example, verbatim


def test_a_profile_file_dry_runs_and_a_bad_one_gives_one_clear_error(tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text('name = "tiny"\ncontrols = ["baseline"]\nseeds = [0]\n[[experiments]]\ndataset = "digits"\n'
                    'arch = "vgg19"\nmodel_size = { width = 4 }\ntrain = { epochs = 1 }\n')
    assert main(["sweep", "--profile-file", str(grid), "--dry-run", "--no-timing", "--results", str(tmp_path)]) == 0
    assert "profile tiny (version 1)" in capsys.readouterr().out
    assert main(["sweep", "--profile-file", str(grid), "--export-profile"]) == 0
    assert json.loads(capsys.readouterr().out)["experiments"][0]["model_size"] == {"width": 4}
    grid.write_text(grid.read_text().replace("epochs = 1", "epoch = 1"))
    assert main(["sweep", "--profile-file", str(grid), "--dry-run", "--no-timing"]) == 2
    err = capsys.readouterr().err
    assert f"sharpkit: error: {grid}: experiments[0].train: unknown key(s) 'epoch' (did you mean 'epochs'?)" in err
    assert main(["sweep", "--dry-run"]) == 2
    assert "Expected --profile NAME (one of paper, smoke" in capsys.readouterr().err


def test_a_built_in_profile_exported_and_swept_from_its_file_is_the_same_grid(tmp_path, capsys):
    from sharpkit.experiments.profiles import get_profile, load_profile_file

    assert main(["sweep", "--profile", "cifar10-minima", "--export-profile"]) == 0
    (tmp_path / "minima.json").write_text(capsys.readouterr().out)
    assert [r.run_id for r in load_profile_file(tmp_path / "minima.json").runs()] == \
        [r.run_id for r in get_profile("cifar10-minima").runs()]


# --- paths of npz datasets -----------------------------------------------------------------------------------

def _tiny_npz(path):
    import numpy as np

    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8), y_train=np.arange(32) % 4,
             x_test=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), y_test=np.arange(16) % 4)


NPZ_TRAIN = ["--arch", "resnet18", "--control", "baseline", "--seed", "0", "--width", "4", "--epochs", "1",
             "--batch-size", "16", "--no-progress"]


def test_a_relative_npz_path_is_stored_absolute_so_evaluate_works_after_cd(tmp_path, monkeypatch, capsys):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    _tiny_npz(project / "data" / "tiny.npz")
    elsewhere.mkdir()
    monkeypatch.chdir(project)
    assert main(["train", "--dataset", "npz:data/tiny.npz", "--out", "run", *NPZ_TRAIN]) == 0
    record = json.loads((project / "run" / "result.json").read_text())
    assert record["config"]["dataset"] == f"npz:{project / 'data' / 'tiny.npz'}"
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", str(project / "run"), "--metrics", "test_accuracy", "--no-progress"]) == 0
    assert "test_accuracy" in capsys.readouterr().out


def test_a_run_storing_a_relative_npz_path_evaluates_from_elsewhere_or_says_how(tmp_path, monkeypatch, capsys):
    # As a sweep stores them (the stored profiles' run ids hash the relative name): found through the training
    # directory the record holds, through --data-root, or refused with the fix.
    from sharpkit.run.config import make_train_config
    from sharpkit.run.train import train

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    _tiny_npz(project / "data" / "tiny.npz")
    elsewhere.mkdir()
    monkeypatch.chdir(project)
    config = make_train_config("resnet18", "npz:data/tiny.npz", "baseline", 0, epochs=1, batch_size=16,
                               model_size={"width": 4})
    train(config, project / "run", progress=False)
    monkeypatch.chdir(elsewhere)
    run = str(project / "run")
    assert main(["evaluate", run, "--metrics", "test_accuracy", "--no-progress"]) == 0
    result = project / "run" / "result.json"
    record = json.loads(result.read_text())
    assert record["cwd"] == str(project) and record["config"]["dataset"] == "npz:data/tiny.npz"  # unchanged
    del record["cwd"]  # a record written before the field existed
    result.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["evaluate", run, "--metrics", "test_accuracy", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'npz:data/tiny.npz'" in err and str(elsewhere / "data" / "tiny.npz") in err
    assert "Run the command from the directory the run was trained in, or pass --data-root DIR such that " \
           "DIR/data/tiny.npz is the file." in err
    assert main(["evaluate", run, "--metrics", "test_accuracy", "--no-progress", "--data-root", str(project)]) == 0


# --- messages name only flags that exist ---------------------------------------------------------------------

# Flags of other programs that sharpkit's text quotes: git's, and Li et al.'s loss-landscape script's.
FOREIGN_FLAGS = {"--porcelain", "--untracked-files", "--xignore"}


def _options(parser) -> set[str]:
    import argparse

    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                found |= _options(subparser)
    return found


def test_every_flag_the_package_mentions_exists():
    import ast
    import re
    from pathlib import Path

    import sharpkit
    from sharpkit.cli import build_parser

    # The repository's scripts (python scripts/build_book.py --no-sweep, ...) are commands a message may name too.
    scripts = Path(sharpkit.__file__).parents[1] / "scripts"
    script_flags = {arg.value for path in scripts.glob("*.py") for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"
                    for arg in node.args if isinstance(arg, ast.Constant) and str(arg.value).startswith("--")}
    existing = _options(build_parser()) | FOREIGN_FLAGS | script_flags
    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
    unknown = []
    for path in sorted(Path(sharpkit.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                unknown += [f"{path.name}:{node.lineno} {f}" for f in flag.findall(node.value) if f not in existing]
    assert not unknown, f"messages name flags that no sharpkit command has: {unknown}"
