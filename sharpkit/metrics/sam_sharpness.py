r"""Random-perturbation ("average-case") SAM sharpness, as the paper's code computes it.

Source: the paper's App. A ("SAM-Sharpness", after Foret et al. 2021 and Jiang et al. 2020) and the
authors' code (``../shared/docs/paper-protocol.md``):

.. math::
    S = \frac{1}{K}\sum_{k=1}^{K} \frac{|L(\theta + \epsilon_k) - L(\theta)|}{\rho},
    \qquad \epsilon_k \sim \mathcal N\!\left(0, \tfrac{\rho^2}{P} I\right)

with :math:`L` the training loss (cross-entropy), :math:`P` the number of parameters (buffers
excluded), :math:`\rho = 0.005` and :math:`K = 100`. Units: nats per unit of :math:`\rho`.

Two conventions:

- ``"paper"`` (the authors' code): every floating-point entry of ``state_dict()`` is perturbed,
  BatchNorm running mean/var included; :math:`L` is the mean over batches of the batch-mean
  cross-entropy, and the loader is iterated afresh for :math:`L(\theta)` and for every
  :math:`L(\theta+\epsilon_k)`, so shuffling/augmentation noise enters every difference.
- ``"clean"``: only parameters are perturbed; the loader is iterated once and the same batches serve
  :math:`L(\theta)` and every :math:`L(\theta+\epsilon_k)`; :math:`L` is the per-sample mean
  cross-entropy over those batches (the empirical risk; equal to the paper's mean of batch means when
  all batches have the same size).

The loss is evaluated in eval mode (BatchNorm uses its running statistics, which the "paper"
convention perturbs), as the authors' code does (their metrics object calls ``model.eval()``).
The perturbation is applied and undone in place: the original values are kept once (one copy of the
floating state, not one per sample) and copied back after each sample, so the model's state after
the call is bit-identical to before, even if the loader raises.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_choice, check_positive
from ._common import eval_mode, iterate_batches, mean_and_sem, model_device_dtype

__all__ = ["SamSharpness", "sam_sharpness"]

CONVENTIONS = ("paper", "clean")


@dataclass(frozen=True)
class SamSharpness:
    """Result of :func:`sam_sharpness`.

    Attributes:
        value: mean over samples of ``|L_k - L_0| / rho``.
        sem: its standard error, ``std(ddof=1) / sqrt(samples)`` (NaN for one sample).
        base_loss: ``L_0``, the unperturbed loss (nats).
        values: the per-sample ``|L_k - L_0| / rho``.
        rho, convention: the arguments used.
    """

    value: float
    sem: float
    base_loss: float
    values: tuple[float, ...]
    rho: float
    convention: str


def _loss_paper(model: nn.Module, loader: Iterable, device: torch.device, dtype: torch.dtype) -> float:
    # Mean over batches of the batch-mean loss, loader iterated afresh (the authors' get_loss).
    losses = [F.cross_entropy(model(x), y) for x, y in iterate_batches(loader, device, dtype)]
    return float(torch.stack(losses).double().mean())


def _loss_fixed(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    total = sum(F.cross_entropy(model(x), y, reduction="sum").double() for x, y in batches)
    return float(total) / sum(y.shape[0] for _, y in batches)


def _noise(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    # Drawn on the generator's device so a CPU generator gives the same numbers for a CUDA model.
    return torch.randn(shape, dtype=like.dtype, device=generator.device, generator=generator).to(like.device)


@torch.no_grad()
def sam_sharpness(model: nn.Module, loader: Iterable, rho: float = 0.005, samples: int = 100,
                  generator: torch.Generator | None = None, convention: str = "paper") -> SamSharpness:
    """Random-perturbation SAM sharpness of ``model`` on ``loader`` (formula in the module docstring).

    Noise of sample k is drawn entry by entry in ``state_dict()`` order (``"paper"``) or
    ``named_parameters()`` order (``"clean"``), each entry as
    ``torch.randn(entry.shape, generator=generator) / sqrt(P) * rho``; with ``generator=None`` the
    global RNG of the entry's device is used.

    Args:
        model: classifier; its train/eval flags and every state entry are restored bit for bit.
        loader: re-iterable of ``(x, y)`` batches (the training loader, as the paper).
        rho: perturbation radius (noise std is ``rho / sqrt(P)``).
        samples: number of random perturbations K.
        generator: optional ``torch.Generator`` for reproducible noise.
        convention: ``"paper"`` or ``"clean"`` (see the module docstring).
    """
    check_positive("rho", rho)
    check_positive("samples", samples, integer=True)
    check_choice("convention", convention, CONVENTIONS)
    device, dtype = model_device_dtype(model)
    num_params = sum(p.numel() for p in model.parameters())
    if convention == "paper":
        # state_dict() tensors share storage with the model, so in-place edits reach it.
        entries = [t for t in model.state_dict().values() if t.is_floating_point()]
    else:
        entries = [p.detach() for p in model.parameters() if p.is_floating_point()]
    originals = [t.clone() for t in entries]

    with eval_mode(model):
        try:
            if convention == "paper":
                def loss() -> float:
                    return _loss_paper(model, loader, device, dtype)
            else:
                batches = list(iterate_batches(loader, device, dtype))

                def loss() -> float:
                    return _loss_fixed(model, batches)
            base = loss()
            values = []
            for _ in range(samples):
                for t in entries:
                    t.add_(_noise(t.shape, t, generator) / (num_params ** 0.5) * rho)
                values.append(abs(loss() - base) / rho)
                for t, original in zip(entries, originals):
                    t.copy_(original)
        finally:
            for t, original in zip(entries, originals):
                t.copy_(original)
    value, sem = mean_and_sem(values, ddof=1)
    return SamSharpness(value=value, sem=sem, base_loss=base, values=tuple(values), rho=rho,
                        convention=convention)
