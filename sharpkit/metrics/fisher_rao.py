r"""Fisher-Rao norm of a classifier, analytic form for softmax cross-entropy.

Source: Liang, Poggio, Rakhlin and Stokes, "Fisher-Rao Metric, Geometry, and Complexity of Neural
Networks" (AISTATS 2019), analytic formula of their appendix for the cross-entropy loss, as used by
the code of "Understanding Deep Learning Requires Rethinking Sharpness":

.. math::
    \|\theta\|_{\mathrm{FR}} = \sqrt{(L + 1)^2 \, \frac{1}{N}\sum_{n=1}^{N}
        \bigl(\langle \mathrm{softmax}(f_n), f_n \rangle - f_n[y_n]\bigr)^2}

with :math:`f_n` the logits of sample :math:`n`, :math:`y_n` its label and :math:`L` the depth:
the number of ``Linear``/``Conv1d``/``Conv2d``/``Conv3d``/``Embedding`` modules (ResNet-18: 21,
VGG-19: 18). Unitless (logit scale). Computed in eval mode over the whole loader it is given (the
training loader, augmented for augmentation controls).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ..utils.validation import check_positive
from ._common import BatchFn, as_labels, check_logits_labels, eval_mode, iterate_batches, model_device_dtype

__all__ = ["count_layers", "fisher_rao_norm", "fisher_rao_norm_from_logits", "fisher_rao_terms"]

_COUNTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)


def count_layers(model: nn.Module) -> int:
    """Depth L of the Fisher-Rao formula: number of Linear/Conv1d/Conv2d/Conv3d/Embedding modules
    (subclasses included, each shared module once), as the authors' code counts.

    Examples:
        >>> import torch, torchvision
        >>> from sharpkit.metrics import count_layers
        >>> count_layers(torchvision.models.resnet18(num_classes=10))  # 20 convs + fc
        21
        >>> count_layers(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)))
        2
    """
    return sum(isinstance(module, _COUNTED) for module in model.modules())


def fisher_rao_terms(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample :math:`\\langle \\mathrm{softmax}(f_n), f_n\\rangle - f_n[y_n]`, shape (N,),
    in float64 (softmax in the logits' dtype, as the authors' code).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import fisher_rao_terms
        >>> fisher_rao_terms(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([1, 0])).round(decimals=4)
        tensor([0.7311, 0.0000], dtype=torch.float64)
    """
    check_logits_labels(logits, labels)
    inner = (torch.softmax(logits, dim=1).double() * logits.double()).sum(dim=1)
    return inner - logits.gather(1, as_labels(labels).view(-1, 1)).squeeze(1).double()


def fisher_rao_norm_from_logits(logits: torch.Tensor, labels: torch.Tensor, depth: int) -> float:
    """Fisher-Rao norm (module formula) from precomputed logits (N, C) and labels (N,).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import fisher_rao_norm_from_logits
        >>> round(fisher_rao_norm_from_logits(torch.tensor([[1.0, 0.0]]), torch.tensor([1]), depth=1), 4)
        1.4621
    """
    check_positive("depth", depth, allow_zero=True, integer=True)
    terms = fisher_rao_terms(logits, labels)
    return math.sqrt((depth + 1) ** 2 * float((terms ** 2).mean()))


@torch.no_grad()
def fisher_rao_norm(model: nn.Module, loader: Iterable, depth: int | None = None, *,
                    batch_fn: BatchFn | None = None) -> float:
    """Fisher-Rao norm (module formula) of ``model`` over every batch of ``loader``.

    Runs in eval mode without gradients, batch by batch (memory O(batch x classes)); the model's
    train/eval flags are restored afterwards.

    Args:
        model: classifier returning logits.
        loader: iterable of batches (the training loader, as the paper); iterated once.
        depth: L of the formula; default :func:`count_layers` (the authors' convention).
        batch_fn: maps a batch to ``(x, y)`` (default: ``(x, y, *rest)`` tuples and dicts).

    Examples:
        >>> import math, torch
        >>> from sharpkit.metrics import fisher_rao_norm, fisher_rao_norm_from_logits
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3))
        >>> batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> fisher_rao_norm(model, batches) > 0
        True
        >>> x, y = batches[0]  # the same from the logits, with L = 1 layer
        >>> math.isclose(fisher_rao_norm(model, batches), fisher_rao_norm_from_logits(model(x).detach(), y, depth=1))
        True
    """
    if depth is None:
        depth = count_layers(model)
    check_positive("depth", depth, allow_zero=True, integer=True)
    device, dtype = model_device_dtype(model)
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    with eval_mode(model):
        for x, y in iterate_batches(loader, device, dtype, batch_fn):
            total += (fisher_rao_terms(model(x), y) ** 2).sum()
            count += y.shape[0]
    return math.sqrt((depth + 1) ** 2 * float(total) / count)
