"""Sharpness-aware optimizers following the ``torch.optim.Optimizer`` contract."""
from .sam import SAM

__all__ = ["SAM"]
