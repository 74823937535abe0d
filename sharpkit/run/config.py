"""Typed configuration of one training run."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..data.dataset_names import DatasetName, parse_dataset_name
from ..data.datasets import DATASETS
from ..data.datasets import data_root as default_data_root
from ..data.loader import AUGMENTATIONS
from ..utils.validation import check_choice, check_positive
from .controls import CONTROLS, SAM_VARIANTS, get_control, recipe_for

SCHEDULERS = ("none", "cosine")
SCHEDULER_STEPS = ("epoch", "batch")
# Fields added after results were first stored, with the value that reproduces the old behaviour.
OPTIONAL_FIELDS: dict[str, Any] = {"sam_variant": "sam", "fam_strength": 0.0, "test_every": 1}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run's result (and nothing that does not).

    Build one with :func:`make_train_config`, which fills the recipe and control settings.

    Examples:
        >>> from sharpkit.run.config import TrainConfig, make_train_config
        >>> config = make_train_config("resnet18", "cifar10", "weight_decay_sam", seed=0)
        >>> config.weight_decay, config.sam, config.sam_rho, config.epochs
        (0.0005, True, 0.05, 100)
        >>> TrainConfig.from_dict(config.to_dict()) == config, len(config.config_hash())  # the run id
        (True, 16)
    """

    arch: str
    dataset: str
    control: str
    seed: int
    model_size: dict[str, Any] = field(default_factory=dict)  # e.g. {"width": 16}; {} = paper size
    epochs: int = 100
    batch_size: int = 256
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0  # coupled L2 (SGD weight_decay), on all parameters as in the paper
    sam: bool = False
    sam_rho: float = 0.05
    augmentation: str = "none"
    scheduler: str = "none"
    scheduler_step: str = "epoch"
    train_subset: int | None = None  # None = the whole training split
    test_subset: int | None = None
    # The authors' CIFAR-10 weight_decay_sam script trains without SAM; True reproduces that bug.
    reproduce_wd_sam_bug: bool = False
    bf16: bool = False  # bfloat16 autocast of the training steps (CUDA or CPU); metrics stay float32
    channels_last: bool = False
    # Added for the controls beyond the paper; see OPTIONAL_FIELDS.
    sam_variant: str = "sam"  # "sam" | "asam" (eta 0.01) | "average_sam"
    fam_strength: float = 0.0  # FAM penalty on the classifier (closed form); 0 = plain cross-entropy
    # The per-epoch test pass of the log every this many epochs (and always after the last): on long CPU
    # runs it costs a third of the training time. It does not change the training. See OPTIONAL_FIELDS.
    test_every: int = 1

    def __post_init__(self) -> None:
        parse_dataset_name(self.dataset)  # a ValueError naming the allowed forms for "" or a non-string
        check_positive("epochs", self.epochs, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("lr", self.lr)
        check_positive("momentum", self.momentum, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("sam_rho", self.sam_rho)
        check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_choice("scheduler_step", self.scheduler_step, SCHEDULER_STEPS)
        check_choice("sam_variant", self.sam_variant, SAM_VARIANTS)
        check_positive("fam_strength", self.fam_strength, allow_zero=True)
        check_positive("test_every", self.test_every, integer=True)
        get_control(self.control)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Expected `seed` to be a non-negative integer, but got {self.seed!r}.")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None:
                check_positive(name, value, integer=True)

    @property
    def parsed_dataset(self) -> DatasetName:
        """:attr:`dataset` parsed: its registered name and path (``dataset`` itself stays as given: the run id
        hashes it). Raises ``ValueError`` for an empty name."""
        return parse_dataset_name(self.dataset)

    @property
    def uses_sam(self) -> bool:
        """Whether SAM is actually applied (False for the reproduced weight-decay+SAM bug, which CIFAR-10
        spelt ``cifar10`` has: see :attr:`~sharpkit.data.dataset_names.DatasetName.exact_base`)."""
        return self.sam and not (self.reproduce_wd_sam_bug and self.control == "weight_decay_sam"
                                 and self.parsed_dataset.exact_base == "cifar10")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; fields in ``OPTIONAL_FIELDS`` only when they differ from their
        default, so run ids (hashes of this dict) of results stored before they existed stay valid."""
        data = asdict(self)
        for name, default in OPTIONAL_FIELDS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"Unknown TrainConfig field(s) {sorted(unknown)}; known fields are {sorted(known)}. The file "
                "was probably written by another sharpkit version."
            )
        return cls(**data)

    def config_hash(self) -> str:
        """A short stable hash of the full config (names run directories)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def init_key(self, image_size: int, num_classes: int) -> str:
        """What the initial weights depend on: shared by the six controls of a (dataset, arch, seed)."""
        size = ",".join(f"{k}={v}" for k, v in sorted(self.model_size.items()))
        blob = f"{self.dataset}|{self.arch}|{size}|{image_size}|{num_classes}|{self.seed}"
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_train_config(arch: str, dataset: str, control: str, seed: int, **overrides: Any) -> TrainConfig:
    """A run's config: the dataset's recipe, the control's regularisers, then ``overrides``
    (e.g. ``epochs=2, train_subset=2000, model_size={"width": 16}``).

    Examples:
        >>> from sharpkit.run.config import make_train_config
        >>> config = make_train_config("vgg19", "cifar100", "augmentation", seed=3, epochs=2,
        ...                            model_size={"width": 8})
        >>> config.lr, config.scheduler, config.augmentation, config.epochs  # recipe, control, override
        (0.01, 'cosine', 'crop_flip', 2)
    """
    ctrl = get_control(control)
    recipe = recipe_for(dataset)
    augmentation = "auto" if ctrl.augmentation else "none"
    values: dict[str, Any] = dict(
        epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, momentum=recipe.momentum,
        weight_decay=ctrl.weight_decay, sam=ctrl.sam,
        sam_rho=recipe.sam_rho if ctrl.sam_rho is None else ctrl.sam_rho,
        sam_variant=ctrl.sam_variant, fam_strength=ctrl.fam_strength, augmentation=augmentation,
        scheduler=recipe.scheduler, scheduler_step=recipe.scheduler_step,
    )
    values.update(overrides)
    if values["augmentation"] == "auto":
        # The protocol's augmentation depends on the image size: TinyImageNet (64 px) gets
        # RandomResizedCrop, everything else the CIFAR crop+flip (as the recipe, by the name spelt as registered).
        tiny = parse_dataset_name(dataset).exact_base == "tinyimagenet"
        values["augmentation"] = "resized_crop_flip" if tiny else "crop_flip"
    return TrainConfig(arch=arch, dataset=dataset, control=control, seed=seed, **values)


def check_overrides_apply(control: str, overrides: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when an override of one run cannot change what ``control`` trains: SAM's radius
    given to a control without SAM would be stored in the config (and its id) yet never used."""
    if "sam_rho" in overrides and not get_control(control).sam:
        sam_controls = ", ".join(name for name, c in CONTROLS.items() if c.sam)
        raise ValueError(f"The SAM radius (--rho {overrides['sam_rho']}) only acts on a control that trains with "
                         f"SAM, but control {control!r} trains without it. Choose one of {sam_controls}, or drop "
                         "--rho.")


# --- where a run's data is -------------------------------------------------------------------------------
# Dataset names such as ``npz:PATH`` carry a path. The stored profiles name theirs relative to the directory
# the sweep runs in (``npz:../shared/data/...``), and their run ids hash that text, so those names stay as they
# are; what changes is where a relative path is looked for.


def _dataset_path(dataset: str) -> tuple[DatasetName, str] | None:
    """``(parsed name, path)`` of a registered dataset name that takes a path and has one; None otherwise."""
    try:
        name = parse_dataset_name(dataset)
    except ValueError:  # no name at all: left for the dataset's loader to report
        return None
    spec = DATASETS.get(name.base)
    if spec is None or spec.path == "none" or name.path is None:
        return None
    return name, name.path


def _join(folder: str | os.PathLike, path: str) -> Path:
    return Path(os.path.abspath(os.path.join(os.path.expanduser(os.fspath(folder)), os.path.expanduser(path))))


def absolute_dataset(dataset: str) -> str:
    """``dataset`` with its path made absolute when it names an existing file or folder from the current
    directory (``npz:data/x.npz`` -> ``npz:/home/me/project/data/x.npz``); any other name unchanged.

    What ``sharpkit train`` stores for a new run, so that the run can be evaluated from anywhere. A path that
    exists nowhere is left for the dataset's loader to report (it names the path and the directory)."""
    found = _dataset_path(dataset)
    if found is None:
        return dataset
    name, path = found
    here = _join(os.getcwd(), path)
    return name.with_path(str(here)) if not os.path.isabs(path) and here.exists() else dataset


def locate_dataset(dataset: str, trained_in: str | os.PathLike | None = None,
                   data_root: str | os.PathLike | None = None) -> str:
    """The name under which a run's ``dataset`` loads from the current directory.

    A relative path that exists from here is used as it is. Otherwise it is looked for relative to
    ``trained_in`` (the directory the run was trained in: the record's ``cwd``, which records written before
    it existed lack) and then to the data root (``data_root``, else ``$SHARPKIT_DATA``, else
    ``~/.cache/sharpkit/data``); the first existing one is returned as an absolute name. An ``npz:`` file
    found nowhere raises ``FileNotFoundError`` naming each place looked at and the fix; other names are left
    to their loader."""
    found = _dataset_path(dataset)
    if found is None or os.path.isabs(os.path.expanduser(found[1])):
        return dataset
    name, path = found
    places = [("the current directory", os.getcwd())]
    if trained_in is not None:
        places.append(("the directory the run was trained in", os.fspath(trained_in)))
    places.append(("the data root", os.fspath(default_data_root(data_root))))
    for _, folder in places:
        if _join(folder, path).exists():
            return dataset if folder == os.getcwd() else name.with_path(str(_join(folder, path)))
    if name.base != "npz":
        return dataset
    looked = "; ".join(f"{_join(folder, path)} ({label})" for label, folder in places)
    unknown = "" if trained_in is not None else " (its record predates the field `cwd`: it does not say where that was)"
    raise FileNotFoundError(
        f"The run's dataset {dataset!r} names the file {path!r} relative to the directory the run was trained in"
        f"{unknown}, and it is in none of the places looked at: {looked}. Run the command from the directory the "
        f"run was trained in, or pass --data-root DIR such that DIR/{path} is the file.")


def locate_run_dataset(run_dir: str | os.PathLike, data_root: str | os.PathLike | None = None) -> str | None:
    """:func:`locate_dataset` for the run in ``run_dir`` (from its ``result.json``): the name to load its
    data by when it differs from the one in its config; None when that one does (or the run has no readable
    record, which the evaluation then reports)."""
    try:
        from .checkpoint import RESULT_FILE  # it imports this module

        record = json.loads((Path(run_dir) / RESULT_FILE).read_text())
        dataset = record["config"]["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    located = locate_dataset(dataset, record.get("cwd"), data_root)
    return None if located == dataset else located
