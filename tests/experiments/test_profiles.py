"""Profiles as data: every built-in profile round-trips with the same run ids, and profile files are
validated with errors that name the place, what is allowed and how to fix it."""
import json
import tomllib

import pytest

from sharpkit.experiments.profiles import PROFILE_FILE_EXAMPLE, PROFILES, Profile, ProfileError, load_profile_file


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_builtin_profile_round_trips_with_identical_run_ids(name):
    profile = PROFILES[name]
    expected = [r.run_id for r in profile.runs()]
    assert [r.run_id for r in Profile.from_dict(profile.to_dict()).runs()] == expected
    # Through JSON text too (tuples become lists, every number a JSON number), as a profile file holds it.
    again = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert [r.run_id for r in again.runs()] == expected
    assert again == profile


def test_the_documented_example_is_a_valid_profile(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(PROFILE_FILE_EXAMPLE)
    profile = load_profile_file(path)
    assert profile.name == "my-grid" and len(profile.runs()) == 2 * 2 * 3
    assert profile.experiments[1].train["sam_rho"] == 0.1 and profile.experiments[0].model_size == {"width": 4}
    # The same grid as JSON gives the same runs.
    json_path = tmp_path / "grid.json"
    json_path.write_text(json.dumps(tomllib.loads(PROFILE_FILE_EXAMPLE)))
    assert [r.run_id for r in load_profile_file(json_path).runs()] == [r.run_id for r in profile.runs()]


def test_defaults_of_a_minimal_file(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('name = "tiny"\n[[experiments]]\ndataset = "digits"\narch = "vgg19"\n')
    profile = load_profile_file(path)
    assert (profile.version, profile.description, profile.seeds) == (1, "", (0, 1))
    assert profile.controls == PROFILES["smoke"].controls  # the paper's six
    # An integer where the config holds a float is that float (and hashes as it).
    path.write_text('name = "tiny"\n[[experiments]]\ndataset = "digits"\narch = "vgg19"\ntrain = { lr = 1 }\n')
    assert load_profile_file(path).runs()[0].config.lr == 1.0
    assert isinstance(load_profile_file(path).experiments[0].train["lr"], float)


def test_a_builtin_profile_or_a_part_of_it_loads_under_its_name_but_other_runs_cannot(tmp_path):
    path = tmp_path / "smoke.json"
    data = PROFILES["smoke"].to_dict()
    path.write_text(json.dumps(data))
    assert load_profile_file(path) == PROFILES["smoke"]
    # A part of it (one block, fewer seeds) is the same runs under the same ids: it may keep the name.
    part = dict(data, experiments=data["experiments"][:1], seeds=[1])
    path.write_text(json.dumps(part))
    assert {r.run_id for r in load_profile_file(path).runs()} < {r.run_id for r in PROFILES["smoke"].runs()}
    data["seeds"] = [0, 1, 2]
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"'smoke' is a built-in profile's name, but this file defines 18 run\(s\) "
                                           r"the built-in does not have \(e\.g\. resnet18 on digits, baseline, seed 2\)"
                                           r".*Give it a name of its own"):
        load_profile_file(path)
    path.write_text(json.dumps(dict(part, version=2)))
    with pytest.raises(ProfileError, match=r"defines version 2 \(the built-in is version 1\)"):
        load_profile_file(path)


BASE = {"name": "mine", "controls": ["baseline"], "seeds": [0],
        "experiments": [{"dataset": "digits", "arch": "resnet18", "model_size": {"width": 4},
                         "train": {"epochs": 1}, "evaluation": {"sam_samples": 2}}]}


def _with(path: str, value):
    """BASE with the key at ``path`` (dots; an int indexes a list) set to ``value`` (or removed: ...)."""
    data = json.loads(json.dumps(BASE))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = data
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize("path, value, message", [
    ("seed", [0], r"grid\.toml: unknown key\(s\) 'seed' \(did you mean 'seeds'\?\); allowed keys: name, version, "
                  r"description, controls, seeds, experiments\."),
    ("name", ..., r"grid\.toml: missing the required key\(s\) 'name'"),
    ("name", "my grid/1", r"grid\.toml: name: expected letters, digits"),
    ("version", "2", r"grid\.toml: version: expected an integer, but got '2' \(str\)"),
    ("version", 0, r"version: expected an integer >= 1, but got 0"),
    ("seeds", [0, 0], r"seeds: 0 repeated; each may appear once"),
    ("seeds", [-1], r"seeds\[0\]: expected a non-negative integer"),
    ("seeds", "0, 1", r"seeds: expected a list of integers, but got '0, 1' \(str\)"),
    ("controls", ["baseline", "dropout"], r"controls\[1\]: unknown control 'dropout'; known: baseline, baseline_sam"),
    ("controls", [], r"controls: expected at least one value"),
    ("experiments", [], r"experiments: expected at least one \(dataset, arch\) block"),
    ("experiments.0.arch", "resnet19", r"experiments\[0\]\.arch: unknown architecture 'resnet19' \(did you mean "
                                       r"'resnet18'\?\); known: .*vit\. Register your own with "
                                       r"sharpkit\.models\.register_model in a module passed with --import\."),
    ("experiments.0.dataset", "cifar11", r"experiments\[0\]\.dataset: unknown dataset 'cifar11' \(did you mean "
                                         r"'cifar10'\?\).*sharpkit\.data\.register_dataset"),
    ("experiments.0.epochs", 3, r"experiments\[0\]: unknown key\(s\) 'epochs'; allowed keys: dataset, arch, "
                                r"model_size, train, evaluation"),
    ("experiments.0.model_size.colour", 3, r"experiments\[0\]\.model_size: unknown key\(s\) 'colour'; allowed "
                                           r"keys: width"),
    ("experiments.0.model_size.width", 4.5, r"experiments\[0\]\.model_size\.width: expected an integer, but got 4\.5"),
    ("experiments.0.train.epoch", 3, r"experiments\[0\]\.train: unknown key\(s\) 'epoch' \(did you mean 'epochs'\?\)"),
    ("experiments.0.train.seed", 3, r"experiments\[0\]\.train: unknown key\(s\) 'seed'"),  # the grid's, not a setting
    ("experiments.0.train.epochs", "2", r"experiments\[0\]\.train\.epochs: expected an integer, but got '2' \(str\)"),
    ("experiments.0.train.bf16", "yes", r"experiments\[0\]\.train\.bf16: expected true or false, but got 'yes'"),
    ("experiments.0.train.train_subset", 2.5, r"train\.train_subset: expected an integer or null"),
    ("experiments.0.train.augmentation", "mixup", r"experiments\[0\]\.train \(with control 'baseline'\): Expected "
                                                  r"argument `augmentation` to be one of 'none', 'crop_flip'"),
    ("experiments.0.train.lr", -1, r"experiments\[0\]\.train \(with control 'baseline'\): .*`lr`.*larger than 0"),
    ("experiments.0.evaluation.metrics", ["test_accuracy", "sharpness"],
     r"experiments\[0\]\.evaluation\.metrics\[1\]: unknown metric 'sharpness'.*known: test_accuracy"),
    ("experiments.0.evaluation.samples", 3, r"evaluation: unknown key\(s\) 'samples'.*allowed keys: metrics"),
    ("experiments.0.evaluation.train_fraction", 2.0, r"experiments\[0\]\.evaluation: Expected `train_fraction` in "
                                                     r"\(0, 1\]"),
    ("experiments.0", "digits", r"experiments\[0\]: expected a table \(dict\) of keys, but got 'digits'"),
])
def test_a_bad_profile_file_gives_one_clear_error(tmp_path, path, value, message):
    file = tmp_path / "grid.toml"
    file.write_text("")  # the data is given directly; the file only names the source
    with pytest.raises(ProfileError, match=message):
        Profile.from_dict(_with(path, value), source=str(file.name))


def test_two_blocks_of_one_dataset_and_arch_are_refused():
    data = json.loads(json.dumps(BASE))
    data["experiments"].append(dict(data["experiments"][0], train={"lr": 0.1}))
    with pytest.raises(ProfileError, match=r"experiments\[1\] repeats dataset 'digits' with arch 'resnet18' of "
                                           r"experiments\[0\].*a profile of its own"):
        Profile.from_dict(data, source="grid.toml")


@pytest.mark.parametrize("name, text, message", [
    ("grid.toml", 'name = "x"\n[[experiments]\n', r"grid\.toml: not a valid TOML file: .*line 2.*Fix the syntax"),
    ("grid.json", '{"name": "x",}', r"grid\.json: not a valid JSON file: .*Fix the syntax"),
    ("grid.yaml", "name: x", r"grid\.yaml: expected a \.toml or \.json profile file, but its suffix is '\.yaml'"),
    ("grid.json", '["x"]', r"grid\.json: expected a table \(dict\) of keys, but got \['x'\]"),
])
def test_unreadable_profile_files_name_the_file_and_the_problem(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ProfileError, match=message):
        load_profile_file(tmp_path / name)


def test_a_missing_profile_file_names_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"No profile file at {tmp_path}/nope\.toml\. Pass --profile-file"):
        load_profile_file(tmp_path / "nope.toml")
