"""Controls, recipes and the typed run config."""
import pytest

from sharpkit.run.config import TrainConfig, make_train_config
from sharpkit.run.controls import CONTROLS, PAPER_CONTROLS, recipe_for


def test_six_controls_as_in_the_paper():
    assert PAPER_CONTROLS == ("baseline", "baseline_sam", "augmentation", "augmentation_sam", "weight_decay",
                              "weight_decay_sam")
    assert list(CONTROLS)[:6] == list(PAPER_CONTROLS)
    for name in PAPER_CONTROLS:
        control = CONTROLS[name]
        assert control.in_paper and control.sam_variant == "sam" and control.fam_strength == 0.0
        assert control.sam == name.endswith("_sam")
        assert control.augmentation == name.startswith("augmentation")
        assert control.weight_decay == (5e-4 if name.startswith("weight_decay") else 0.0)


def test_extra_controls_are_outside_the_paper_with_their_authors_settings():
    extras = {name: c for name, c in CONTROLS.items() if not c.in_paper}
    assert set(extras) == {"asam", "average_sam", "fam"}
    asam = make_train_config("resnet18", "cifar10", "asam", 0)
    assert asam.uses_sam and asam.sam_variant == "asam" and asam.sam_rho == 0.5
    average = make_train_config("resnet18", "cifar10", "average_sam", 0)
    assert average.uses_sam and average.sam_variant == "average_sam" and average.sam_rho == 0.5
    fam = make_train_config("resnet18", "cifar10", "fam", 0)
    assert not fam.uses_sam and fam.fam_strength == 0.1


@pytest.mark.parametrize("dataset, lr, scheduler, step, augmentation", [
    ("cifar10", 0.001, "none", "epoch", "crop_flip"),
    ("cifar100", 0.01, "cosine", "batch", "crop_flip"),
    ("tinyimagenet", 0.001, "none", "epoch", "resized_crop_flip"),
    ("digits", 0.001, "none", "epoch", "crop_flip"),
    ("npz:/x/y.npz", 0.001, "none", "epoch", "crop_flip"),
])
def test_recipes_follow_the_protocol(dataset, lr, scheduler, step, augmentation):
    config = make_train_config("resnet18", dataset, "augmentation_sam", 3)
    assert (config.lr, config.scheduler, config.scheduler_step) == (lr, scheduler, step)
    assert (config.momentum, config.batch_size, config.epochs, config.sam_rho) == (0.9, 256, 100, 0.05)
    assert config.augmentation == augmentation and config.sam and config.weight_decay == 0.0
    assert recipe_for(dataset).lr == lr


def test_overrides_and_round_trip():
    config = make_train_config("vgg19", "cifar100", "weight_decay", 1, epochs=5, scheduler_step="epoch",
                               model_size={"width": 8})
    assert config.weight_decay == 5e-4 and not config.sam and config.augmentation == "none"
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.config_hash() == TrainConfig.from_dict(config.to_dict()).config_hash()
    assert config.config_hash() != make_train_config("vgg19", "cifar100", "weight_decay", 2, epochs=5,
                                                     scheduler_step="epoch", model_size={"width": 8}).config_hash()


@pytest.mark.parametrize("overrides, match", [
    (dict(epochs=0), "epochs"),
    (dict(lr=-1.0), "lr"),
    (dict(scheduler_step="iteration"), "scheduler_step"),
    (dict(augmentation="mixup"), "augmentation"),
    (dict(train_subset=0), "train_subset"),
])
def test_bad_values_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        make_train_config("resnet18", "cifar10", "baseline", 0, **overrides)


@pytest.mark.parametrize("field", ["lr", "sam_rho", "momentum", "weight_decay", "fam_strength"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), -float("inf")])
def test_non_finite_rates_are_refused_with_a_clear_message(field, value):
    with pytest.raises(ValueError, match=rf"Expected argument `{field}` to be a finite number .*but got {value}"):
        make_train_config("resnet18", "cifar10", "baseline", 0, **{field: value})


def test_unknown_control_and_fields():
    with pytest.raises(ValueError, match="baseline_sam"):
        make_train_config("resnet18", "cifar10", "mixup", 0)
    with pytest.raises(ValueError, match="Unknown TrainConfig"):
        TrainConfig.from_dict({**make_train_config("resnet18", "cifar10", "baseline", 0).to_dict(), "colour": 1})


# --- overrides of one run and where its data is -------------------------------------------------------------

def test_an_override_that_cannot_act_is_refused_naming_the_controls_it_acts_on():
    from sharpkit.run.config import check_overrides_apply

    check_overrides_apply("baseline_sam", {"sam_rho": 0.1})
    check_overrides_apply("baseline", {"weight_decay": 1e-3, "augmentation": "crop_flip"})
    with pytest.raises(ValueError, match=r"control 'baseline' trains without it\. Choose one of baseline_sam.*asam"):
        check_overrides_apply("baseline", {"sam_rho": 0.1})


def test_absolute_dataset_makes_an_existing_relative_path_absolute_and_leaves_the_rest(tmp_path, monkeypatch):
    from sharpkit.run.config import absolute_dataset

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.npz").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert absolute_dataset("npz:data/x.npz") == f"npz:{tmp_path / 'data' / 'x.npz'}"
    assert absolute_dataset(f"npz:{tmp_path / 'data' / 'x.npz'}") == f"npz:{tmp_path / 'data' / 'x.npz'}"
    assert absolute_dataset("npz:data/missing.npz") == "npz:data/missing.npz"  # left for the loader to report
    assert absolute_dataset("cifar10-c:data") == f"cifar10-c:{tmp_path / 'data'}"
    assert absolute_dataset("digits") == "digits" and absolute_dataset("cifar10") == "cifar10"


def test_locate_dataset_looks_in_the_training_directory_then_the_data_root(tmp_path, monkeypatch):
    from sharpkit.run.config import locate_dataset

    trained_in, root, elsewhere = tmp_path / "project", tmp_path / "root", tmp_path / "elsewhere"
    for folder in (trained_in / "data", root / "data", elsewhere):
        folder.mkdir(parents=True)
    (trained_in / "data" / "x.npz").write_bytes(b"")
    monkeypatch.chdir(elsewhere)
    assert locate_dataset("npz:data/x.npz", trained_in) == f"npz:{trained_in / 'data' / 'x.npz'}"
    (root / "data" / "x.npz").write_bytes(b"")
    assert locate_dataset("npz:data/x.npz", None, root) == f"npz:{root / 'data' / 'x.npz'}"
    monkeypatch.chdir(trained_in)
    assert locate_dataset("npz:data/x.npz", None, root) == "npz:data/x.npz"  # found from here: as stored
    assert locate_dataset("digits", None) == "digits"


def test_an_npz_file_found_nowhere_names_every_place_and_the_fix(tmp_path, monkeypatch):
    from sharpkit.run.config import locate_dataset

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        locate_dataset("npz:../shared/x.npz", None, tmp_path / "root")
    message = str(info.value)
    assert "'npz:../shared/x.npz'" in message and "does not say where that was" in message
    assert str(tmp_path.parent / "shared" / "x.npz") in message and "--data-root DIR" in message
    assert "from the directory the run was trained in" in message
