"""The paper's six training controls and the per-dataset training recipes.

Source: "Understanding Deep Learning Requires Rethinking Sharpness", section 2.1 and appendix C, as
the authors' code runs them (summarised under "Training" on the book's page "The protocol and where we
depart from it").
"""
from __future__ import annotations

from dataclasses import dataclass

from ..data.dataset_names import parse_dataset_name
from ..utils.validation import check_choice


@dataclass(frozen=True)
class Control:
    """A regulariser setting applied on top of the baseline recipe."""

    name: str
    label: str  # as printed in the paper's tables
    augmentation: bool  # the protocol's augmentation for the image size
    weight_decay: float  # coupled L2 on all parameters (SGD's weight_decay)
    sam: bool  # a two-pass sharpness-aware step around SGD
    sam_variant: str = "sam"  # which one: "sam" (Foret et al.), "asam" (Kwon et al.), "average_sam"
    sam_rho: float | None = None  # None: the recipe's rho (SAM's 0.05)
    fam_strength: float = 0.0  # lambda of the FAM penalty on the classifier (Adilova et al.); 0 = off
    in_paper: bool = True  # one of the paper's six controls (its tables and claims use only these)


# Controls beyond the paper, usable in any profile (the "Beyond the paper" chapter); the paper's tables
# and claims ignore them. Radii and strength are their authors' CIFAR-10 defaults: ASAM rho 0.5 with
# eta 0.01 (Kwon, Kim, Park and Choi, "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant
# Learning of Deep Neural Networks", ICML 2021), random-direction SAM rho 0.5 (Boca, Cross, Holm and Korkmaz,
# "Towards an Even Better Understanding of Sharpness-Aware Minimisation", University of Cambridge course
# report, 2023), FAM lambda 0.1 (Adilova et al., "FAM: Relative Flatness Aware Minimization", TAG-ML
# workshop at ICML 2023).
EXTRA_CONTROLS: tuple[Control, ...] = (
    Control("asam", "ASAM", augmentation=False, weight_decay=0.0, sam=True, sam_variant="asam", sam_rho=0.5,
            in_paper=False),
    Control("average_sam", "Average SAM", augmentation=False, weight_decay=0.0, sam=True,
            sam_variant="average_sam", sam_rho=0.5, in_paper=False),
    Control("fam", "FAM", augmentation=False, weight_decay=0.0, sam=False, fam_strength=0.1, in_paper=False),
)

CONTROLS: dict[str, Control] = {
    c.name: c
    for c in (
        Control("baseline", "Baseline", augmentation=False, weight_decay=0.0, sam=False),
        Control("baseline_sam", "Baseline + SAM", augmentation=False, weight_decay=0.0, sam=True),
        Control("augmentation", "Augmentation", augmentation=True, weight_decay=0.0, sam=False),
        Control("augmentation_sam", "Augmentation + SAM", augmentation=True, weight_decay=0.0, sam=True),
        Control("weight_decay", "Weight Decay", augmentation=False, weight_decay=5e-4, sam=False),
        Control("weight_decay_sam", "Weight Decay + SAM", augmentation=False, weight_decay=5e-4, sam=True),
        *EXTRA_CONTROLS,
    )
}
PAPER_CONTROLS: tuple[str, ...] = tuple(name for name, c in CONTROLS.items() if c.in_paper)
SAM_VARIANTS = ("sam", "asam", "average_sam")


def get_control(name: str) -> Control:
    check_choice("control", name, CONTROLS)
    return CONTROLS[name]


@dataclass(frozen=True)
class Recipe:
    """Optimisation settings shared by all controls of one dataset."""

    lr: float
    momentum: float = 0.9
    batch_size: int = 256
    epochs: int = 100
    scheduler: str = "none"  # "none" | "cosine" (CosineAnnealingLR with T_max = epochs)
    # The authors step CIFAR-100's cosine schedule every *batch* with T_max=100, so the rate oscillates
    # with a period of ~200 iterations instead of decaying once; "epoch" is the textbook schedule.
    scheduler_step: str = "epoch"
    sam_rho: float = 0.05


RECIPES: dict[str, Recipe] = {
    "cifar10": Recipe(lr=0.001),
    "cifar100": Recipe(lr=0.01, scheduler="cosine", scheduler_step="batch"),
    "tinyimagenet": Recipe(lr=0.001),
}


def recipe_for(dataset: str) -> Recipe:
    """The recipe of a dataset name. CIFAR-10's recipe serves every dataset the paper does not use
    (``digits``, ``npz:...``), since those are CIFAR-10-like stand-ins, and every name not spelt as
    registered (``CIFAR100``; see :attr:`~sharpkit.data.dataset_names.DatasetName.exact_base`)."""
    return RECIPES.get(parse_dataset_name(dataset).exact_base, RECIPES["cifar10"])
