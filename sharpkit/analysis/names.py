"""What the book calls things: one mapping from sharpkit's names (datasets, profiles, architectures, the
paper's findings) to the names a reader sees, so that no page spells a dataset as
``npz:../shared/data/cifar10-jpeg-20k.npz`` or invents its own label.

Pure Python: importable without torch, pandas or matplotlib.
"""
from __future__ import annotations

from ..data.dataset_names import parse_dataset_name  # pure Python: no torch

__all__ = [
    "ARCH_NAMES",
    "CLAIM_NAMES",
    "DATASET_NAMES",
    "PROFILE_NAMES",
    "arch_name",
    "claim_name",
    "dataset_name",
    "profile_name",
]

# sharpkit dataset name -> what a reader calls it. Names not listed fall back by `dataset_name`.
DATASET_NAMES: dict[str, str] = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "tinyimagenet": "TinyImageNet",
    "cifar10-c": "CIFAR-10-C",
    "cifar100-c": "CIFAR-100-C",
    "digits": "Digits",
    "npz:../shared/data/cifar10-jpeg-20k.npz": "CIFAR-10 (20k JPEG copy)",
}

# Sweep profile -> a short human name that says the scale (the profile's own name stays the key).
PROFILE_NAMES: dict[str, str] = {
    "paper": "the paper's protocol",
    "smoke": "Smoke test",
    "digits-mini": "Digits, mini",
    "cifar10-mini": "CIFAR-10, early training",
    "cifar10-minima": "CIFAR-10 at minima",
    "beyond-digits": "Beyond the paper, Digits",
    "beyond-cifar10": "Beyond the paper, CIFAR-10",
}

ARCH_NAMES: dict[str, str] = {
    "resnet18": "ResNet-18", "resnet18_tin": "ResNet-18", "vgg19": "VGG-19", "vgg19bn": "VGG-19BN",
    "vgg19bn_tin": "VGG-19BN", "vit": "ViT",
}

# The paper's three findings (Sec. 3), as sharpkit.analysis.report.claims names them.
CLAIM_NAMES: dict[str, str] = {
    "baseline_flattest": "Baseline is the flattest control",
    "sam_raises": "Adding SAM makes a model sharper",
    "best_is_sharper": "The best model on an evaluation is sharper than Baseline",
}


def dataset_name(dataset: str) -> str:
    """The reader's name of a sharpkit dataset: :data:`DATASET_NAMES`, else for ``npz:PATH`` the file's
    name without folder and suffix, else for ``NAME-c:DIR`` the corrupted set's name, else ``dataset``.
    Registered names are recognised as they are spelt in :data:`DATASET_NAMES` (``CIFAR10`` stays
    ``CIFAR10``; see :attr:`~sharpkit.data.dataset_names.DatasetName.exact_base`)."""
    if dataset in DATASET_NAMES:
        return DATASET_NAMES[dataset]
    try:
        name = parse_dataset_name(dataset)
    except ValueError:  # no dataset name (empty, or not a string): shown as it is
        return str(dataset)
    if name.exact_base == "npz" and name.stem is not None:
        return name.stem
    return DATASET_NAMES.get(name.exact_base, str(dataset))


def profile_name(profile: str) -> str:
    """The reader's name of a sweep profile (:data:`PROFILE_NAMES`), else the profile's own name."""
    return PROFILE_NAMES.get(profile, profile)


def arch_name(arch: str) -> str:
    return ARCH_NAMES.get(arch, arch)


def claim_name(claim: str) -> str:
    return CLAIM_NAMES.get(claim, claim)
