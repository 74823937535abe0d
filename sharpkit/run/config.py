"""Typed configuration of one training run."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..utils.validation import check_choice, check_positive
from .controls import SAM_VARIANTS, get_control, recipe_for
from ..data.loader import AUGMENTATIONS

SCHEDULERS = ("none", "cosine")
SCHEDULER_STEPS = ("epoch", "batch")
# Fields added after results were first stored, with the value that reproduces the old behaviour.
OPTIONAL_FIELDS: dict[str, Any] = {"sam_variant": "sam", "fam_strength": 0.0, "test_every": 1}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run's result (and nothing that does not).

    Build one with :func:`make_train_config`, which fills the recipe and control settings.
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
    def uses_sam(self) -> bool:
        """Whether SAM is actually applied (False for the reproduced weight-decay+SAM bug)."""
        return self.sam and not (self.reproduce_wd_sam_bug and self.control == "weight_decay_sam"
                                 and self.dataset.split(":")[0] == "cifar10")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; fields in :data:`OPTIONAL_FIELDS` only when they differ from their
        default, so run ids (hashes of this dict) of results stored before they existed stay valid."""
        data = asdict(self)
        for name, default in OPTIONAL_FIELDS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
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
    (e.g. ``epochs=2, train_subset=2000, model_size={"width": 16}``)."""
    ctrl = get_control(control)
    recipe = recipe_for(dataset)
    augmentation = "auto" if ctrl.augmentation else "none"
    values: dict[str, Any] = dict(
        epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, momentum=recipe.momentum,
        weight_decay=ctrl.weight_decay, sam=ctrl.sam,
        sam_rho=recipe.sam_rho if ctrl.sam_rho is None else ctrl.sam_rho,
        sam_variant=ctrl.sam_variant, fam_strength=ctrl.fam_strength, augmentation=augmentation, scheduler=recipe.scheduler, scheduler_step=recipe.scheduler_step,
    )
    values.update(overrides)
    if values["augmentation"] == "auto":
        # The protocol's augmentation depends on the image size: TinyImageNet (64 px) gets
        # RandomResizedCrop, everything else the CIFAR crop+flip.
        values["augmentation"] = "resized_crop_flip" if dataset.split(":")[0] == "tinyimagenet" else "crop_flip"
    return TrainConfig(arch=arch, dataset=dataset, control=control, seed=seed, **values)


def with_overrides(config: TrainConfig, **changes: Any) -> TrainConfig:
    return replace(config, **changes)
