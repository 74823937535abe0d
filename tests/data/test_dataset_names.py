"""The dataset-name parser (sharpkit.data.dataset_names) against what every call site computed before it.

Each ``old_*`` function below is the hand-written split a call site used before the parser existed, copied
verbatim; the tests check that the call site, now built on the parser, computes the same for every name of
:data:`NAMES` (spaces, upper case, paths holding ':', empty paths, corrupted sets, unregistered names). The
few names where a call site now agrees with ``load_dataset`` instead are listed in :data:`PATH_SPACES`, and
the names the parser refuses (``""``, ``" "``, ``":x"``) in :data:`NO_NAMES`.
"""
from __future__ import annotations

import doctest
import subprocess
import sys

import numpy as np
import pytest

import sharpkit.data.dataset_names as dataset_names
from sharpkit.analysis.names import DATASET_NAMES, dataset_name
from sharpkit.analysis.report import PAPER_DATASETS, paper_dataset
from sharpkit.data.dataset_names import DatasetName, parse_dataset_name
from sharpkit.data.datasets import DATASETS, _name_forms, load_dataset
from sharpkit.experiments import dry_run
from sharpkit.experiments.profiles import Profile, ProfileError, get_profile
from sharpkit.run import config as run_config
from sharpkit.run.config import TrainConfig, make_train_config
from sharpkit.run.controls import RECIPES, recipe_for

NAMES = [
    "cifar10", "CIFAR10", " cifar10 ", "Cifar10", "cifar10:", "cifar10:x", "cifar10 :x",
    "cifar100", "CIFAR100", " cifar100", "cifar100 ", "cifar100:x",
    "tinyimagenet", "TinyImageNet", "tinyimagenet ", "tinyimagenet:x",
    "digits", "Digits", " digits ", "digits:", "digits:x",
    "cifar10-c", "CIFAR10-C", "cifar10-c:", "cifar10-c:/data/CIFAR-10-C", "Cifar10-C : /data/CIFAR-10-C",
    "cifar100-c", "cifar100-c:/x", "CIFAR100-C:/x", "tinyimagenet-c",
    "npz:data/x.npz", "NPZ:data/x.npz", " npz:data/x.npz", "npz :data/x.npz", "Npz : data/x.npz ",
    "npz:", "npz", "npz:C:/x.npz", "npz:C:\\data\\cifar100-x.NPZ", "npz:../shared/data/cifar10-jpeg-20k.npz",
    "npz:/x/CIFAR100_small.npz", "npz:/x/tinyimagenet-64.npz", "npz:/x/other.npz", "npz:/x/y/", "npz:a:b:c",
    "npz:data/cifar100.npz", "unknown", "unknown:x",
]
# Names whose path has spaces around it, which load_dataset strips. The call sites that split by hand kept
# them, and so opened (the dry run) or named (the reader's name, the paper's dataset) a file that training
# never reads; they now use the stripped path, as load_dataset does. Registered names, case and spaces of
# the name before ':' are untouched: only the path's surrounding spaces.
PATH_SPACES = ["npz: data/x.npz", "npz:data/x.npz ", "npz: cifar100.npz", "npz: "]
# Not dataset names at all: the parser refuses them (every call site but load_dataset's message used to
# fall back to a default for them).
NO_NAMES = ["", " ", ":", ":x", " : x"]


def outcome(f, *args):
    """What ``f(*args)`` returns, or the type of what it raises."""
    try:
        return f(*args)
    except Exception as error:  # noqa: BLE001 - any exception is an outcome to compare
        return type(error)


# --- the old call sites, verbatim ---------------------------------------------------------------------------

def old_load_dataset(name):
    """sharpkit/data/datasets.py load_dataset: ("load", base, path) or ("error", message)."""
    base, sep, path = name.strip().partition(":")
    base = base.strip().lower()
    spec = DATASETS.get(base)
    if spec is None:
        return ("error", f"Expected a dataset name among {_name_forms()}, but got {name!r}.")
    if sep and spec.path == "none":
        return ("error", f"Dataset {base!r} takes no path, but got {name!r}. Pass {base!r} and put the data "
                         f"under the data root instead.")
    if spec.path == "required" and not path.strip():
        return ("error", f"Dataset {base!r} needs a file: pass {base + ':<path>'!r}, but got {name!r}.")
    return ("load", base, path.strip() or None)


def old_dataset_path(dataset):
    """sharpkit/run/config.py _dataset_path."""
    base, sep, path = dataset.strip().partition(":")
    spec = DATASETS.get(base.strip().lower())
    if not sep or spec is None or spec.path == "none" or not path.strip():
        return None
    return base.strip(), path.strip()


def old_uses_sam(config):
    """sharpkit/run/config.py TrainConfig.uses_sam."""
    return config.sam and not (config.reproduce_wd_sam_bug and config.control == "weight_decay_sam"
                               and config.dataset.split(":")[0] == "cifar10")


def old_augmentation(dataset):
    """sharpkit/run/config.py make_train_config, the "auto" augmentation."""
    return "resized_crop_flip" if dataset.split(":")[0] == "tinyimagenet" else "crop_flip"


def old_recipe_for(dataset):
    """sharpkit/run/controls.py recipe_for."""
    base = dataset.split(":", 1)[0]
    return RECIPES.get(base, RECIPES["cifar10"])


def old_profile_base(dataset):
    """sharpkit/experiments/profiles.py _experiment: the name checked against the registry."""
    return dataset.partition(":")[0].strip().lower()


def old_train_size(dataset):
    """sharpkit/experiments/sweep.py _train_size (now in dry_run.py) (without a train subset)."""
    name = dataset.split(":", 1)
    if name[0] == "npz":
        with np.load(name[1], mmap_mode="r") as data:
            return int(data["y_train"].shape[0])
    return dry_run.KNOWN_TRAIN_SIZES.get(name[0], 50_000)


def old_step_time_shape(dataset):
    """sharpkit/experiments/sweep.py measure_step_time: the image size and number of classes it probes."""
    base = dataset.split(":")[0]
    return dry_run.KNOWN_IMAGE_SIZES.get(base, 32), dry_run.KNOWN_CLASSES.get(base, 10)


def old_dataset_name(dataset):
    """sharpkit/analysis/names.py dataset_name."""
    if dataset in DATASET_NAMES:
        return DATASET_NAMES[dataset]
    base, _, path = str(dataset).partition(":")
    if base == "npz" and path:
        return path.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".npz")
    if base in DATASET_NAMES:
        return DATASET_NAMES[base]
    return str(dataset)


def old_paper_dataset(dataset):
    """sharpkit/analysis/report.py paper_dataset."""
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"Expected `dataset` to be a sharpkit dataset name such as 'cifar10' or 'digits', "
                         f"but got {dataset!r}.")
    base, _, path = dataset.partition(":")
    base = base.removesuffix("-c")
    if base in PAPER_DATASETS:
        return base
    if base == "npz":
        stem = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
        for name in sorted(PAPER_DATASETS, key=len, reverse=True):
            if stem.startswith(name):
                return name
    return "cifar10"


# --- the parser ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES + PATH_SPACES)
def test_the_parser_splits_as_load_dataset_did(name):
    base, sep, path = name.strip().partition(":")
    parsed = parse_dataset_name(name)
    assert (parsed.text, parsed.base, parsed.path, parsed.has_colon) == (
        name, base.strip().lower(), path.strip() or None, bool(sep))
    assert parsed == DatasetName(name) and parsed.family == parsed.base.removesuffix("-c")


@pytest.mark.parametrize("name", NAMES + PATH_SPACES)
def test_exact_base_is_the_registered_part_as_the_hand_splits_saw_it(name):
    head = name.split(":")[0]
    assert parse_dataset_name(name).exact_base == (head if head == head.strip().lower() else "")


@pytest.mark.parametrize("name, base, path, stem", [
    ("npz:C:/x.npz", "npz", "C:/x.npz", "x"),
    ("npz:a:b:c", "npz", "a:b:c", "a:b:c"),
    ("npz:", "npz", None, None),
    ("npz: ", "npz", None, None),
    (" NPZ : ../shared/data/cifar10-jpeg-20k.npz ", "npz", "../shared/data/cifar10-jpeg-20k.npz", "cifar10-jpeg-20k"),
    ("npz:C:\\data\\Tiny.NPZ", "npz", "C:\\data\\Tiny.NPZ", "Tiny.NPZ"),
    ("cifar10-c:/data/CIFAR-10-C/", "cifar10-c", "/data/CIFAR-10-C/", ""),
    ("CIFAR100-C", "cifar100-c", None, None),
])
def test_paths_keep_their_colons_and_lose_their_spaces(name, base, path, stem):
    parsed = parse_dataset_name(name)
    assert (parsed.base, parsed.path, parsed.stem) == (base, path, stem)


@pytest.mark.parametrize("name", NO_NAMES)
def test_a_name_without_a_registered_part_is_refused_with_what_is_allowed(name):
    with pytest.raises(ValueError, match=r"Expected a dataset name: a registered name such as 'cifar10' or "
                                         r"'digits', optionally followed by ':' and a path") as error:
        parse_dataset_name(name)
    assert repr(name) in str(error.value)
    assert ("which is empty" if not name.strip() else "which has nothing before ':'") in str(error.value)


@pytest.mark.parametrize("value", [None, 3, b"cifar10", ["cifar10"]])
def test_a_non_string_is_refused_naming_its_type(value):
    with pytest.raises(ValueError, match=rf"as a string: .* but got .* \({type(value).__name__}\)\."):
        parse_dataset_name(value)


def test_the_parsed_name_is_frozen_and_keeps_the_text_as_given():
    parsed = parse_dataset_name(" Npz : data/x.npz ")
    with pytest.raises(AttributeError):
        parsed.base = "digits"  # type: ignore[misc]
    assert parsed.text == " Npz : data/x.npz " and parsed.with_path("/abs/x.npz") == "Npz:/abs/x.npz"


def test_the_docstring_examples_run():
    failed, attempted = doctest.testmod(dataset_names, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert attempted >= 10 and failed == 0


def test_the_parser_imports_without_torch_and_the_package_binds_its_names_on_use():
    code = ("import sys; import sharpkit.data.dataset_names; print('torch' in sys.modules); "
            "import sharpkit.data as data; print('DeviceLoader' in dir(data), 'torch' in sys.modules); "
            "from sharpkit.data import DeviceLoader, load_dataset; print('torch' in sys.modules, "
            "DeviceLoader.__module__, load_dataset.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "False", "True", "sharpkit.data.loader", "sharpkit.data.datasets"]


def test_submodules_are_attributes_of_the_package_as_when_it_imported_them_eagerly():
    code = ("import sys; import sharpkit.data as data; print('torch' in sys.modules); "
            "print(data.datasets.__name__, data.loader.__name__, 'torch' in sys.modules); "
            "print(hasattr(data, 'no_such_module'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "sharpkit.data.datasets", "sharpkit.data.loader", "True", "False"]


def test_the_package_still_exports_its_names():
    import sharpkit.data as data

    assert "default_augmentation" not in data.__all__
    for name in data.__all__:
        assert getattr(data, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'default_augmentation'"):
        data.default_augmentation  # noqa: B018 - removed as unused


# --- every call site against its old split -------------------------------------------------------------------

class _Loaded(Exception):
    """Raised by the stand-in loaders with the path load_dataset passed them."""


@pytest.mark.parametrize("name", NAMES + PATH_SPACES + NO_NAMES)
def test_load_dataset_passes_the_same_path_and_refuses_the_same_names(name, monkeypatch):
    from dataclasses import replace

    def loader(root, download, path):
        raise _Loaded(path)

    for key, spec in list(DATASETS.items()):
        monkeypatch.setitem(DATASETS, key, replace(spec, loader=loader))
    expected = old_load_dataset(name)
    if expected[0] == "error":
        with pytest.raises(ValueError) as error:
            load_dataset(name)
        assert str(error.value) == expected[1]
    else:
        with pytest.raises(_Loaded) as loaded:
            load_dataset(name)
        assert loaded.value.args == (expected[2],)


@pytest.mark.parametrize("name", NAMES + PATH_SPACES + NO_NAMES)
def test_dataset_path_finds_the_same_name_and_path(name):
    expected = old_dataset_path(name)
    found = run_config._dataset_path(name)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        parsed, path = found
        assert path == expected[1] and parsed.base == expected[0].lower()
        assert parsed.with_path(path) == f"{expected[0]}:{expected[1]}"  # what absolute_dataset stores


@pytest.mark.parametrize("name", NAMES + PATH_SPACES)
def test_the_config_choices_match_the_name_as_spelt(name):
    assert recipe_for(name) == old_recipe_for(name)
    augmented = make_train_config("resnet18", name, "augmentation", 0)
    assert augmented.augmentation == old_augmentation(name)
    buggy = make_train_config("resnet18", name, "weight_decay_sam", 0, reproduce_wd_sam_bug=True)
    assert buggy.uses_sam == old_uses_sam(buggy)
    assert buggy.parsed_dataset == parse_dataset_name(name) and buggy.dataset == name  # stored as given


@pytest.mark.parametrize("name", NAMES + PATH_SPACES)
def test_profiles_check_the_same_registered_name(name):
    assert parse_dataset_name(name).base == old_profile_base(name)


@pytest.mark.parametrize("name", NO_NAMES)
def test_a_profile_without_a_dataset_name_says_what_one_looks_like(name):
    data = get_profile("smoke").to_dict()
    data["experiments"] = [{**data["experiments"][0], "dataset": name}]
    with pytest.raises(ProfileError, match=r"grid\.toml: experiments\[0\]\.dataset: Expected a dataset name: .* "
                                           r"Registered: cifar10, cifar100, "):
        Profile.from_dict(data, "grid.toml")


@pytest.mark.parametrize("name", NAMES)
def test_the_dry_run_sizes_the_same_data(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for file in ("x.npz", "cifar100.npz"):
        np.savez(tmp_path / "data" / file, y_train=np.zeros(7, np.int64))
    config = TrainConfig("resnet18", name, "baseline", 0)
    new, old = outcome(dry_run._train_size, config), outcome(old_train_size, name)
    if isinstance(old, type):  # an error stays an error ('npz' alone: IndexError before, FileNotFoundError now)
        assert isinstance(new, type) and issubclass(new, Exception)
    else:
        assert new == old
    base = config.parsed_dataset.exact_base  # the line of measure_step_time
    assert (dry_run.KNOWN_IMAGE_SIZES.get(base, 32), dry_run.KNOWN_CLASSES.get(base, 10)) == old_step_time_shape(name)


@pytest.mark.parametrize("name", NAMES)
def test_the_reader_sees_the_same_names(name):
    assert dataset_name(name) == old_dataset_name(name)
    assert paper_dataset(name) == old_paper_dataset(name)


def test_spaces_around_a_path_are_dropped_as_load_dataset_drops_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "x.npz", y_train=np.zeros(7, np.int64))
    # Before: the dry run opened " data/x.npz" (FileNotFoundError), and the reader saw "x.npz " and CIFAR-10.
    assert outcome(old_train_size, "npz: data/x.npz") is FileNotFoundError
    assert dry_run._train_size(TrainConfig("resnet18", "npz: data/x.npz", "baseline", 0)) == 7
    assert (old_dataset_name("npz:data/x.npz "), dataset_name("npz:data/x.npz ")) == ("x.npz ", "x")
    assert (old_paper_dataset("npz: cifar100.npz"), paper_dataset("npz: cifar100.npz")) == (
        "cifar10", "cifar100")
    # Each is now read as the same name without those spaces was read before; its config is as before.
    for name in PATH_SPACES:
        parsed = parse_dataset_name(name)
        if parsed.path is not None:
            unspaced = f"{parsed.base}:{parsed.path}"
            assert dataset_name(name) == old_dataset_name(unspaced)
            assert paper_dataset(name) == old_paper_dataset(unspaced)
        assert recipe_for(name) == old_recipe_for(name) and old_augmentation(name) == "crop_flip"


@pytest.mark.parametrize("name", NO_NAMES)
def test_no_name_raises_where_a_default_was_guessed(name):
    """The call sites that guessed CIFAR-10 (its recipe, 50,000 images) for an empty name now say it is none;
    load_dataset and the profiles refused these names already, and the reader's name shows them as they are."""
    for call in (recipe_for, lambda n: make_train_config("resnet18", n, "baseline", 0),
                 lambda n: dry_run._train_size(TrainConfig("resnet18", n, "baseline", 0)), paper_dataset):
        with pytest.raises(ValueError, match="Expected a dataset name"):
            call(name)
    assert dataset_name(name) == old_dataset_name(name) == name
    assert run_config.absolute_dataset(name) == name and run_config.locate_dataset(name) == name


def test_an_unregistered_npz_c_name_is_no_longer_read_as_npz():
    """'npz-c:...' (no such dataset) had its '-c' dropped and was read as an npz file by paper_dataset."""
    assert old_paper_dataset("npz-c:/x/cifar100.npz") == "cifar100"
    assert paper_dataset("npz-c:/x/cifar100.npz") == "cifar10"
