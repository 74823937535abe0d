r"""Random-perturbation ("average-case") SAM sharpness, as the paper's code computes it.

Source: "Understanding Deep Learning Requires Rethinking Sharpness", App. A ("SAM-Sharpness",
after Foret, Kleiner, Mobahi and Neyshabur, "Sharpness-Aware Minimization for Efficiently Improving
Generalization", ICLR 2021, and Jiang, Neyshabur, Mobahi, Krishnan and Bengio, "Fantastic
Generalization Measures and Where to Find Them", ICLR 2020) and its authors' code:

.. math::
    S = \frac{1}{K}\sum_{k=1}^{K} \frac{|L(\theta + \epsilon_k) - L(\theta)|}{\rho},
    \qquad \epsilon_k \sim \mathcal N\!\left(0, \tfrac{\rho^2}{P} I\right)

with :math:`L` the training loss (``loss_fn``, cross-entropy by default), :math:`P` the number of parameters (buffers
excluded), :math:`\rho = 0.005` and :math:`K = 100`. Units: nats per unit of :math:`\rho`.

Two conventions (``"clean"`` is the default, ``"paper"`` is in
:data:`sharpkit.metrics.PAPER_CONVENTIONS`):

- ``"paper"`` (the authors' code): every floating-point entry of ``state_dict()`` is perturbed,
  BatchNorm running mean/var included; :math:`L` is the mean over batches of the batch-mean
  cross-entropy, and the loader is iterated afresh for :math:`L(\theta)` and for every
  :math:`L(\theta+\epsilon_k)`, so shuffling/augmentation noise enters every difference (on a
  shuffled loader it can exceed the ``"clean"`` value many times over).
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

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.validation import check_choice, check_positive
from ._common import (
    BatchFn,
    Measurement,
    check_reiterable,
    detail,
    eval_mode,
    iterate_batches,
    mean_and_sem,
    model_device_dtype,
    resolve_generator,
)

__all__ = ["SamSharpness", "sam_sharpness"]

CONVENTIONS = ("clean", "paper")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SamSharpness(Measurement):
    """Result of :func:`sam_sharpness`: ``value`` is the mean over samples of ``|L_k - L_0| / rho``
    and ``sem`` its standard error ``std(ddof=1) / sqrt(samples)`` (NaN for one sample).

    ``details`` (also attributes): ``base_loss`` (``L_0``, the unperturbed loss, nats), ``values``
    (the per-sample ``|L_k - L_0| / rho``), ``rho`` and ``convention`` (the arguments used).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import SamSharpness, sam_sharpness
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> result = sam_sharpness(model, loader, samples=5)
        >>> isinstance(result, SamSharpness), len(result.values), result.rho, result.convention
        (True, 5, 0.005, 'clean')
    """

    base_loss = detail("base_loss", "L_0, the unperturbed loss (nats).")
    values = detail("values", "The per-sample |L_k - L_0| / rho.")
    rho = detail("rho", "The radius used.")
    convention = detail("convention", "The convention used.")


def _loss_paper(model: nn.Module, loader: Iterable, device: torch.device, dtype: torch.dtype,
                loss_fn: LossFn, batch_fn: BatchFn | None) -> float:
    # Mean over batches of the batch-mean loss, loader iterated afresh (the authors' get_loss).
    losses = [loss_fn(model(x), y) for x, y in iterate_batches(loader, device, dtype, batch_fn)]
    return float(torch.stack(losses).double().mean())


def _loss_fixed(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], loss_fn: LossFn) -> float:
    # Per-sample mean: the batch sums over the number of points.
    if loss_fn is F.cross_entropy:
        total = sum(F.cross_entropy(model(x), y, reduction="sum").double() for x, y in batches)
    else:
        total = sum(loss_fn(model(x), y).double() * y.shape[0] for x, y in batches)
    return float(total) / sum(y.shape[0] for _, y in batches)


def _noise(shape: torch.Size, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # Drawn on the generator's device so a CPU generator gives the same numbers for a CUDA model.
    return torch.randn(shape, dtype=like.dtype, device=generator.device, generator=generator).to(like.device)


@torch.no_grad()
def sam_sharpness(model: nn.Module, loader: Iterable, rho: float = 0.005, samples: int = 100,
                  generator: torch.Generator | None = None, convention: str = "clean", *,
                  loss_fn: LossFn = F.cross_entropy, batch_fn: BatchFn | None = None) -> SamSharpness:
    """Random-perturbation SAM sharpness of ``model`` on ``loader`` (formula in the module docstring).

    Noise of sample k is drawn entry by entry in ``named_parameters()`` order (``"clean"``) or
    ``state_dict()`` order (``"paper"``), each entry as
    ``torch.randn(entry.shape, generator=generator) / sqrt(P) * rho``.

    Args:
        model: classifier; its train/eval flags and every state entry are restored bit for bit.
        loader: iterable of batches (the training loader, as the paper): iterated once for
            ``"clean"``; re-iterable (not a generator) for ``"paper"``, which iterates it
            ``samples + 1`` times.
        rho: perturbation radius (noise std is ``rho / sqrt(P)``).
        samples: number of random perturbations K.
        generator: ``torch.Generator`` for the noise; ``None``: a CPU generator seeded with
            :data:`sharpkit.metrics.DEFAULT_SEED`, so two calls give the same value.
        convention: ``"clean"`` (default: same batches for every loss, parameters only; independent
            of shuffling) or ``"paper"`` (the authors' code, see
            :data:`sharpkit.metrics.PAPER_CONVENTIONS`); see the module docstring.
        loss_fn: ``loss_fn(output, y)`` returning the batch mean (default cross-entropy).
        batch_fn: maps a batch to ``(x, y)`` (default: ``(x, y, *rest)`` tuples and dicts).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import PAPER_CONVENTIONS, sam_sharpness
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 16), torch.nn.ReLU(),
        ...                             torch.nn.Linear(16, 10))  # any nn.Module: torchvision, timm, ...
        >>> batches = [(torch.randn(4, 3, 4, 4), torch.randint(0, 10, (4,)))]
        >>> result = sam_sharpness(model, batches, samples=2)
        >>> result.value == sam_sharpness(model, batches, samples=2).value  # default seed
        True
        >>> sam_sharpness(model, batches, samples=2, **PAPER_CONVENTIONS["sam_sharpness"]).convention
        'paper'
    """
    check_positive("rho", rho)
    check_positive("samples", samples, integer=True)
    check_choice("convention", convention, CONVENTIONS)
    if convention == "paper":
        check_reiterable(loader, 'sam_sharpness(convention="paper")', f"{samples + 1} times (once per sample and once "
                         "for the unperturbed loss)")
    generator = resolve_generator(generator)
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
                    return _loss_paper(model, loader, device, dtype, loss_fn, batch_fn)
            else:
                batches = list(iterate_batches(loader, device, dtype, batch_fn))

                def loss() -> float:
                    return _loss_fixed(model, batches, loss_fn)
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
    return SamSharpness(value=value, sem=sem, details={"base_loss": base, "values": tuple(values), "rho": rho,
                                                       "convention": convention})
