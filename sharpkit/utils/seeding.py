"""Seeding and determinism switches (python, numpy, torch; deterministic cuDNN/cuBLAS)."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed every global RNG and ask torch for deterministic kernels.

    cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before its first use to be deterministic, hence the
    environment variable; on the CPU all of this is cheap and harmless.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
