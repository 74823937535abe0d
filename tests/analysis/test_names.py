"""sharpkit.analysis.names: one mapping of every name a reader sees."""
from __future__ import annotations

import subprocess
import sys

from sharpkit.analysis.names import (
    CLAIM_NAMES,
    PROFILE_NAMES,
    arch_name,
    claim_name,
    dataset_name,
    profile_name,
)
from sharpkit.analysis.report import ARCH_LABELS, DATASET_LABELS


def test_dataset_names_for_every_form_of_dataset_name():
    assert dataset_name("cifar10") == "CIFAR-10"
    assert dataset_name("npz:../shared/data/cifar10-jpeg-20k.npz") == "CIFAR-10 (20k JPEG copy)"
    assert dataset_name("npz:/data/my-set.npz") == "my-set"
    assert dataset_name("cifar10-c:/data/CIFAR-10-C") == "CIFAR-10-C"
    assert dataset_name("digits") == "Digits"
    assert dataset_name("unknown") == "unknown"


def test_every_built_in_profile_and_finding_has_a_human_name():
    from sharpkit.experiments.profiles import PROFILES

    assert set(PROFILES) <= set(PROFILE_NAMES)
    assert profile_name("cifar10-minima") == "CIFAR-10 at minima" and profile_name("mine") == "mine"
    assert set(CLAIM_NAMES) == {"baseline_flattest", "sam_raises", "best_is_sharper"}
    assert claim_name("sam_raises").startswith("Adding SAM") and claim_name("x") == "x"
    assert arch_name("vgg19bn_tin") == "VGG-19BN"


def test_report_uses_the_same_mapping():
    assert ARCH_LABELS is not None and ARCH_LABELS["vit"] == arch_name("vit")
    assert DATASET_LABELS["cifar100"] == dataset_name("cifar100")


def test_the_new_analysis_modules_import_without_torch():
    code = ("import sys; import sharpkit.analysis.names, sharpkit.analysis.display, sharpkit.analysis.verdict, "
            "sharpkit.analysis.book, sharpkit.analysis.reparametrisation; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
