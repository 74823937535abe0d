"""Shared constants and helpers of the model tests: a CPU-cheap size per architecture."""
from __future__ import annotations

import torch
from torch import nn

from sharpkit.models import build_model

# Narrow versions of every registered architecture, so forward passes stay fast on 2 CPU cores.
# A newly registered model must get an entry here (test_registry checks it).
SMALL_SIZES: dict[str, dict] = {
    "resnet18": {"width": 4},
    "vgg19": {"width": 4},
    "vit": {"dim": 16, "depth": 2, "heads": 2, "dim_head": 8, "mlp_dim": 24},
    # No size knobs: torchvision's structure; pretrained weights cannot be downloaded here.
    "resnet18_tin": {"pretrained": False},
    "vgg19bn_tin": {"pretrained": False},
}
NUM_CLASSES = 7  # not 10 or 200, so a hard-coded class count shows up
INPUT_SIDE = 32  # every architecture accepts 32x32 inputs at its small size
BUILD_SEED = 0


def count_linear_conv(model: nn.Module) -> int:
    """The protocol's L of the Fisher-Rao norm: Linear/Conv1d/Conv2d/Conv3d/Embedding modules."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)
    return sum(isinstance(m, kinds) for m in model.modules())


def build_small(arch: str, seed: int = BUILD_SEED) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, NUM_CLASSES, **SMALL_SIZES.get(arch, {}))
