"""Session-wide cache of the small models (see _helpers.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ._helpers import build_small


@pytest.fixture(scope="session")
def small_model():
    """``small_model(arch)`` -> (model built under BUILD_SEED, copy of its initial state dict),
    built once per session (vgg19bn_tin alone takes seconds)."""
    cache: dict[str, tuple[nn.Module, dict[str, torch.Tensor]]] = {}

    def get(arch: str) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        if arch not in cache:
            model = build_small(arch)
            cache[arch] = (model, {k: v.detach().clone() for k, v in model.state_dict().items()})
        return cache[arch]

    return get

