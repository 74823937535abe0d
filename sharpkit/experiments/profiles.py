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

from ..utils.validation import check_choice
from ..run.config import TrainConfig, make_train_config
from ..run.controls import EXTRA_CONTROLS, PAPER_CONTROLS
from ..run.evaluate import BEYOND_METRICS, CLEAN_SAM_METRIC, METRICS, EvalSettings

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
        """Every run, seed by seed: within a seed every (dataset, arch) block, and within a block the
        controls side by side. A partial sweep then holds complete seeds, each a full paired comparison of
        the controls of every architecture."""
        return [RunSpec(self.name, exp.config(control, seed), exp.evaluation)
                for seed in self.seeds for exp in self.experiments for control in self.controls]

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
    # METRICS + BEYOND_METRICS (not ALL_METRICS, which grew later): the settings, and so the run ids, of the
    # stored beyond runs stay as they were.
    # The curvature measures cost tens of Hessian-vector products per model: 256 points and a few probes
    # keep 27 runs of the mini profiles near half an hour of measuring on a 2-core CPU.
    evaluation = dataclasses.replace(resnet.evaluation, metrics=METRICS + BEYOND_METRICS, beyond_points=256,
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


# Learning rate per architecture: the held-out probe of scripts/choose_lr.py (the Baseline of seed 99 on the
# profile's training subset minus 1,000 held-out images, at the profile's epochs and schedule): the best
# held-out accuracy among the rates whose probe ends at eval-mode training accuracy >= 0.99. Epochs per
# architecture: the fewest (of 40, 60, 80) at which the probe of the slowest-fitting control, Weight Decay +
# SAM, also reached it. Every probe is in results/cifar10-minima/lr_choice.json.
MINIMA_LR = {"resnet18": 0.1, "vgg19": 0.02, "vit": 0.1}
MINIMA_EPOCHS = {"resnet18": 40, "vgg19": 80, "vit": 80}


def _cifar10_minima(lr: dict[str, float] | None = None) -> Profile:
    # Models at a minimum: cifar10-mini's data (the same 2,500 training and 2,000 test images of the 20k JPEG
    # copy), models and metric settings, trained until every control without augmentation fits its training
    # subset (eval-mode training accuracy >= 0.99, tests/test_minima_results.py), so that the two profiles
    # differ only in how far training went. What departs from the paper and from cifar10-mini, and why:
    # - 40-80 epochs with a cosine schedule (CosineAnnealingLR per epoch, to zero): 10 constant-rate epochs
    #   stop at eval-mode training accuracy 0.24-0.55 (cell means, report.convergence); the decay to zero lets
    #   SGD settle in a minimum within the budget
    #   (the paper's CIFAR-10 recipe is 100 epochs at a constant 0.001, on 20x the data).
    # - one rate per architecture from the held-out probe (the paper uses one rate per dataset): one shared
    #   rate cannot both fit the narrow ViT (needs 0.1) and keep the narrow VGG's held-out accuracy.
    # - bfloat16 autocast of the training steps, every metric in float32. The evidence, on the Intel Xeon with
    #   AVX512-BF16 and AMX this profile was sized on: benchmarks/train_throughput.py measured bf16 / float32
    #   training throughput at one thread of 1.45x (ResNet-18), 1.41x (VGG-19) and 1.31x (ViT);
    #   benchmarks/bf16_parity.py found the paired test-accuracy differences bf16 - float32 of the Baselines of
    #   seeds 0-2 at -0.008, -0.000 and +0.005, every 95% interval holding 0.
    # - 10 seeds, as the paper: with 5 seeds the smallest one-sided Wilcoxon p-value is 1/32 = 0.031, which
    #   no test survives after the Benjamini-Yekutieli correction; 10 seeds allow 1/1024.
    # - SAM sharpness in the clean convention beside the paper's (evaluate.CLEAN_SAM_METRIC).
    # - the log's test pass every 5 epochs (and after the last): 80 passes over 2,000 test images would cost
    #   more than every metric of the evaluation together.
    # Run with 2 workers of one thread each (two single-thread trainings ran at the speed of one alone here,
    # a 2-thread training at 1.1-1.8x): `sharpkit sweep --profile cifar10-minima --dry-run --workers 2`.
    lr = dict(MINIMA_LR if lr is None else lr)
    evaluation = EvalSettings(metrics=METRICS + (CLEAN_SAM_METRIC,), sam_samples=20, corruption_subset=300,
                              batch_size=250, train_fraction=0.4)
    train = {"train_subset": 2500, "test_subset": 2000, "batch_size": 128,
             "scheduler": "cosine", "scheduler_step": "epoch", "channels_last": True, "bf16": True, "test_every": 5}
    return Profile("cifar10-minima", 1, "The paper's structure at a minimum on real CIFAR-10 (the 20k JPEG copy): "
                   "cifar10-mini's data and 3 narrow archs trained 40-80 epochs (cosine) to training accuracy "
                   ">= 0.99 without augmentation; 6 controls, 10 seeds, every metric plus clean-convention SAM "
                   "sharpness.",
                   tuple(Experiment(CIFAR10_JPEG, arch, MINI_SIZES[arch],
                                    {**train, "lr": lr[arch], "epochs": MINIMA_EPOCHS[arch]}, evaluation)
                         for arch in PAPER_ARCHS),
                   seeds=tuple(range(10)))


# beyond-cifar10 trains exactly cifar10-mini's ResNet-18 models: a sweep sharing cifar10-mini's cache reuses
# them for the six paper controls (sharpkit.experiments.sweep.reuse_training).
PROFILES = {p.name: p for p in (_paper(), _smoke(), _digits_mini(), _cifar10_mini(),
                                _cifar10_minima(), _beyond("beyond-digits", _digits_mini()),
                                _beyond("beyond-cifar10", _cifar10_mini()))}


def get_profile(name: str) -> Profile:
    check_choice("profile", name, PROFILES, "List them with `sharpkit sweep --list-profiles`.")
    return PROFILES[name]
