"""Experiment profiles: the grid a sweep runs and the settings of every metric.

A profile fixes datasets, architectures and their sizes, controls, seeds, epochs, data subsets and
each metric's settings. ``paper`` is the full protocol of the paper (nobody runs it on a CPU; it must be
exact and dry-runnable); the others are CPU-scale versions that keep its structure.

Profiles are versioned: a stored result names the profile and version it was produced under, and a
changed profile gets a new version, so results of two definitions never mix.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ._validation import check_choice
from .config import TrainConfig, make_train_config
from .controls import EXTRA_CONTROLS, PAPER_CONTROLS
from .evaluate import ALL_METRICS, EvalSettings

EXTRA_CONTROL_NAMES = tuple(c.name for c in EXTRA_CONTROLS)

PAPER_ARCHS = ("resnet18", "vgg19", "vit")
CIFAR10_JPEG = "npz:../shared/data/cifar10-jpeg-20k.npz"


@dataclass(frozen=True)
class Experiment:
    """One (dataset, arch) block of a profile: how its runs are trained and measured."""

    dataset: str
    arch: str
    model_size: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides (epochs, subsets, lr, ...)
    evaluation: EvalSettings = EvalSettings()

    def config(self, control: str, seed: int) -> TrainConfig:
        return make_train_config(self.arch, self.dataset, control, seed, model_size=dict(self.model_size),
                                 **self.train)


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: what to train and how to evaluate it."""

    profile: str
    config: TrainConfig
    evaluation: EvalSettings

    @property
    def run_id(self) -> str:
        import hashlib
        import json

        blob = json.dumps({"config": self.config.to_dict(), "evaluation": self.evaluation.to_dict()},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def cell(self) -> tuple[str, str, str]:
        return (self.config.dataset, self.config.arch, self.config.control)


@dataclass(frozen=True)
class Profile:
    name: str
    version: int
    description: str
    experiments: tuple[Experiment, ...]
    controls: tuple[str, ...] = PAPER_CONTROLS
    seeds: tuple[int, ...] = (0, 1)

    def runs(self) -> list[RunSpec]:
        """Every run, ordered so that the six controls of a (dataset, arch, seed) are adjacent: a
        partial sweep then already holds complete comparisons."""
        return [RunSpec(self.name, exp.config(control, seed), exp.evaluation)
                for exp in self.experiments for seed in self.seeds for control in self.controls]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "description": self.description,
                "controls": list(self.controls), "seeds": list(self.seeds),
                "experiments": [{"dataset": e.dataset, "arch": e.arch, "model_size": e.model_size,
                                 "train": e.train, "evaluation": e.evaluation.to_dict()} for e in self.experiments]}


def _paper() -> Profile:
    # The paper's settings (../shared/docs/paper-protocol.md): full training sets, 100 epochs, SAM
    # sharpness with 100 samples at rho 0.005, relative flatness summed over batches; CIFAR-100 measures
    # relative flatness on a 20 % split; TinyImageNet measures SAM sharpness on a 50 % split in batches of
    # 512 (their code; the paper's text says 20 %) and has neither corruption accuracy nor relative flatness.
    cifar10 = EvalSettings(corrupted="cifar10-c")
    cifar100 = EvalSettings(corrupted="cifar100-c", relative_flatness_fraction=0.2)
    tin = EvalSettings(metrics=("test_accuracy", "test_ece", "generalization_gap", "fisher_rao_norm", "sam_sharpness"),
                       train_fraction=0.5, batch_size=512)
    experiments = [Experiment("cifar10", arch, evaluation=cifar10) for arch in PAPER_ARCHS]
    experiments += [Experiment("cifar100", arch, evaluation=cifar100) for arch in PAPER_ARCHS]
    experiments += [Experiment("tinyimagenet", arch, evaluation=tin) for arch in ("resnet18_tin", "vgg19bn_tin")]
    return Profile("paper", 1, "The paper's full protocol: 3 archs x CIFAR-10/100 + 2 pretrained archs x "
                   "TinyImageNet, 6 controls, seeds 0-9, 100 epochs.", tuple(experiments), seeds=tuple(range(10)))


# Narrow CPU-scale models: same architectures, fewer channels / a smaller transformer.
SMOKE_SIZES = {"resnet18": {"width": 4}, "vgg19": {"width": 4},
               "vit": {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16, "mlp_dim": 32}}
MINI_SIZES = {"resnet18": {"width": 8}, "vgg19": {"width": 8},
              "vit": {"dim": 64, "depth": 2, "heads": 4, "dim_head": 16, "mlp_dim": 128}}


def _smoke() -> Profile:
    evaluation = EvalSettings(sam_samples=3, corruption_subset=50, batch_size=128)
    train = {"epochs": 2, "train_subset": 256, "test_subset": 200, "batch_size": 64, "lr": 0.05}
    return Profile("smoke", 1, "Plumbing check: digits, the three archs very narrow, 6 controls, 2 seeds, every "
                   "metric at tiny settings; minutes on a CPU.",
                   tuple(Experiment("digits", arch, SMOKE_SIZES[arch], train, evaluation) for arch in PAPER_ARCHS),
                   seeds=(0, 1))


def _digits_mini() -> Profile:
    # lr: the best mean held-out accuracy over the three archs among 0.005-0.1 for the Baseline of seed 99
    # on 997 training images, 300 held out (scripts/choose_lr.py; results/digits-mini/lr_choice.json).
    # 3 seeds, 8 epochs, 200 corrupted test images: measured, this is what fits the 20-minute budget of
    # `make book` on a 2-core CPU (about 20 s per run, training and every metric).
    evaluation = EvalSettings(sam_samples=20, corruption_subset=200, batch_size=128)
    train = {"epochs": 8, "batch_size": 64, "lr": 0.02, "channels_last": True}
    return Profile("digits-mini", 1, "The paper's structure on the embedded digits data (1,297 train / 500 test "
                   "images): 3 narrow archs, 6 controls, 3 seeds, every metric.",
                   tuple(Experiment("digits", arch, MINI_SIZES[arch], train, evaluation) for arch in PAPER_ARCHS),
                   seeds=(0, 1, 2))


def _beyond(name: str, parent: Profile) -> Profile:
    """``parent``'s ResNet-18 block (same training, same paper metrics) with the three extra controls and
    every measure of the papers the paper builds on, for the "Beyond the paper" chapter."""
    resnet = next(e for e in parent.experiments if e.arch == "resnet18")
    # The curvature measures cost tens of Hessian-vector products per model: 256 points and a few probes
    # keep 27 runs of the mini profiles near half an hour of measuring on a 2-core CPU.
    evaluation = dataclasses.replace(resnet.evaluation, metrics=ALL_METRICS, beyond_points=256,
                                     average_samples=5, hessian_samples=5, hessian_iters=8, asymmetry_directions=6)
    return Profile(name, 1, f"{parent.name}'s ResNet-18 with the paper's six controls and ASAM, Average SAM and "
                   f"FAM, 3 seeds, measured by every sharpness measure sharpkit has.",
                   (dataclasses.replace(resnet, evaluation=evaluation),),
                   controls=PAPER_CONTROLS + EXTRA_CONTROL_NAMES, seeds=(0, 1, 2))


def _cifar10_mini(lr: float = 0.1) -> Profile:
    # 2,500 training images (a fixed subset of the 20k JPEG copy), 2,000 test images, 10 epochs, sharpness on
    # 1,000 of the training images: sized from `sharpkit sweep --dry-run` step times so that the 90 runs and
    # their metrics fit 2.5 hours on a 2-core CPU with room to spare. The lr is chosen like digits-mini's
    # (scripts/choose_lr.py, results/cifar10-mini/lr_choice.json).
    evaluation = EvalSettings(sam_samples=20, corruption_subset=300, batch_size=250, train_fraction=0.4)
    train = {"epochs": 10, "train_subset": 2500, "test_subset": 2000, "batch_size": 128, "lr": lr,
             "channels_last": True}
    return Profile("cifar10-mini", 1, "The paper's structure on real CIFAR-10 (the 20k JPEG copy): 3 narrow archs, "
                   "6 controls, 5 seeds, every metric.",
                   tuple(Experiment(CIFAR10_JPEG, arch, MINI_SIZES[arch], train, evaluation) for arch in PAPER_ARCHS),
                   seeds=(0, 1, 2, 3, 4))


# beyond-cifar10 trains exactly cifar10-mini's ResNet-18 models: a sweep sharing cifar10-mini's cache reuses
# them for the six paper controls (sharpkit.sweep.reuse_training).
PROFILES = {p.name: p for p in (_paper(), _smoke(), _digits_mini(), _cifar10_mini(),
                                _beyond("beyond-digits", _digits_mini()),
                                _beyond("beyond-cifar10", _cifar10_mini()))}


def get_profile(name: str) -> Profile:
    check_choice("profile", name, PROFILES, "List them with `sharpkit sweep --list-profiles`.")
    return PROFILES[name]
