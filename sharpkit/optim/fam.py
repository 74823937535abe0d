r"""FAM: relative-flatness-aware minimisation (Adilova et al., 2023), as a differentiable penalty.

Source: Adilova, Abourayya, Li, Dada, Petzka, Egger, Kleesiek and Kamp, "FAM: Relative Flatness
Aware Minimization" (TAG-ML workshop, ICML 2023; below "Adilova et al."). The regularised
objective is

.. math::
    \ell(S, \mathbf W) + \lambda\, \kappa(\mathbf w^l),
    \qquad
    \kappa(\mathbf w^l) = \sum_{s,s'} \langle \mathbf w^l_s, \mathbf w^l_{s'}\rangle\,
                           \mathrm{Tr}\, H_{s,s'}(\mathbf w^l),

with :math:`\mathbf w^l_s` the rows of the chosen layer (the weights into neuron s) and
:math:`H_{s,s'}` the blocks of the Hessian of the batch loss w.r.t. that layer (Petzka, Kamp, Adilova,
Sminchisescu and Boley, "Relative Flatness and Generalization", NeurIPS 2021, the measure of
:func:`sharpkit.metrics.relative_flatness`). Its gradient (their Lemma 1) has a
part through the weights of layer l and a third-derivative part through every weight of the
network; autograd computes both when the penalty is built from differentiable tensors.

Two penalties:

- :func:`~sharpkit.optim.fam_penalty` / :func:`~sharpkit.optim.classifier_relative_flatness`: exact, for
  the final ``nn.Linear`` (the head, found by :func:`sharpkit.metrics.find_head` or named with
  ``head=``) under softmax cross-entropy, through the closed form of
  :func:`sharpkit.metrics.relative_flatness` (same formula, same conventions, here differentiable
  w.r.t. features, weight and bias):

  .. math::
      \kappa = \frac{1}{n}\sum_n \|\phi_n\|^2 \sum_t \mathrm{Var}_{s\sim p_n}(W_{st}),
      \qquad p_n = \mathrm{softmax}(W\phi_n + b),

  optionally with the std reparametrisation of the features (``normalize_features``; the
  standard deviation is then that of the batch, and it is differentiated through). It does not
  depend on the labels: the Hessian of the cross-entropy w.r.t. the logits is
  :math:`\mathrm{diag}(p) - pp^\top` whatever the label. Cost O(batch x classes x features).
- :func:`~sharpkit.optim.simplified_fam_penalty`: any layer, any loss (Adilova et al. sec. 3.2, after
  Petzka, Adilova, Kamp and Sminchisescu, "A Reparameterization-Invariant Flatness Measure for Deep
  Neural Networks", Science meets Engineering of Deep Learning workshop, NeurIPS 2019):
  :math:`\hat\kappa = \|\mathbf w^l\|_2^2\, \mathrm{Tr}(H)` with :math:`H` the Hessian of the loss
  w.r.t. the whole layer and the trace estimated by Hutchinson with Rademacher probes (Adilova et al.
  app. A.2), built with ``create_graph=True`` so the penalty is differentiable. Its probes are drawn
  from the global RNG when no ``generator`` is given: a training regulariser wants fresh probes every
  step (unlike the measures of :mod:`sharpkit.metrics`, which default to a fixed seed).

:func:`~sharpkit.optim.fam_loss` puts the pieces together for a training step, on any model whose
output is the logits of its head: the head's input is read by a forward pre-hook in the same forward
pass.
Units: nats (kappa is invariant to the scale of the weights for the exact form with normalised
features).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics._head import Head, find_head, head_forward
from ..utils.validation import check_positive

__all__ = ["FamLoss", "classifier_relative_flatness", "fam_loss", "fam_penalty", "simplified_fam_penalty"]


def classifier_relative_flatness(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                                 normalize_features: bool = False) -> torch.Tensor:
    """Differentiable relative flatness :math:`\\kappa` of a softmax cross-entropy ``Linear`` head on
    one batch (module docstring), a 0-d tensor in the inputs' dtype.

    Equals :func:`sharpkit.metrics.relative_flatness_from_features` on the single batch
    ``[features]`` with the same ``normalize_features`` (any reduction: one batch).

    Args:
        features: (B, d) inputs of the head (with their autograd graph, for the full FAM gradient).
        weight: (C, d) head weight; bias: (C,) or None.
        normalize_features: std reparametrisation with the batch's feature std (ddof=0); features
            constant over the batch are dropped as in relative_flatness.

    Examples:
        >>> import math, torch
        >>> from sharpkit.metrics import relative_flatness_from_features
        >>> from sharpkit.optim import classifier_relative_flatness
        >>> _ = torch.manual_seed(0)
        >>> features = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
        >>> head = torch.nn.Linear(6, 3).double()
        >>> kappa = classifier_relative_flatness(features, head.weight, head.bias)
        >>> kappa.backward()  # differentiable w.r.t. the features, the weight and the bias
        >>> features.grad.shape
        torch.Size([8, 6])
        >>> math.isclose(float(kappa.detach()), relative_flatness_from_features([features], head.weight, head.bias,
        ...                                                                       normalize_features=False),
        ...              rel_tol=1e-9)
        True
    """
    if not torch.is_tensor(features) or features.ndim != 2 or features.shape[0] == 0:
        raise ValueError("Expected `features` as a tensor of shape (B, d) with B > 0, but got "
                         f"{tuple(features.shape) if torch.is_tensor(features) else type(features).__name__}.")
    if not torch.is_tensor(weight) or weight.ndim != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(f"Expected `weight` of shape (C, {features.shape[1]}) (the features' width), but got "
                         f"{tuple(weight.shape) if torch.is_tensor(weight) else type(weight).__name__}.")
    if bias is not None and (not torch.is_tensor(bias) or bias.shape != (weight.shape[0],)):
        raise ValueError(f"Expected `bias` of shape ({weight.shape[0]},) or None, but got "
                         f"{tuple(bias.shape) if torch.is_tensor(bias) else type(bias).__name__}.")
    logits = F.linear(features, weight, bias)
    p = torch.softmax(logits, dim=1)                               # (B, C)
    # Var_{s~p}(W_st) is shift-invariant in s; centring the columns reduces cancellation.
    centred = weight - weight.mean(dim=0, keepdim=True)
    first = p @ centred                                            # (B, d)
    variance = p @ centred.pow(2) - first.pow(2)                   # c_nt, (B, d)
    squares = features.pow(2)                                      # a_nt, (B, d)
    if not normalize_features:
        return (squares.sum(dim=1) * variance.sum(dim=1)).mean()
    mean = features.mean(dim=0)
    spread = (features - mean).pow(2).mean(dim=0)                  # sigma_t^2
    # Same rule as relative_flatness: sigma <= 1e-12 |mean| means a constant feature (folded into
    # the bias); it must not enter through 1 / sigma^2.
    kept = (spread > 1e-24 * mean.pow(2)).detach()
    inverse = torch.where(kept, 1.0 / torch.where(kept, spread, torch.ones_like(spread)), torch.zeros_like(spread))
    direct = torch.where(kept, spread, torch.zeros_like(spread))
    return ((squares @ inverse) * (variance @ direct)).mean()


def fam_penalty(model: nn.Module, features: torch.Tensor, normalize_features: bool = False, *,
                head: Head = None) -> torch.Tensor:
    """Exact FAM penalty of the model's head on a batch of its input ``features`` (B, d)
    (:func:`classifier_relative_flatness` with the head's weight and bias). Pass the features with
    their graph so the gradient reaches every layer (``model.features(x)`` for sharpkit's models, or
    let :func:`fam_loss` read them with a hook).

    Args:
        model: the network; ``head`` (see :func:`sharpkit.metrics.find_head`) selects its final
            ``nn.Linear`` (default: found automatically, ``model.classifier`` for sharpkit's models).
        features: (B, d) inputs of that head.
        normalize_features: std reparametrisation with the batch's feature std.

    Examples:
        >>> import torch
        >>> from sharpkit.optim import fam_penalty
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
        >>> features = model[:2](torch.randn(8, 4))  # the head's input, with its graph
        >>> penalty = fam_penalty(model, features)  # head: the last Linear, model[2]
        >>> penalty.backward()
        >>> model[0].weight.grad is not None  # the gradient reaches the layers below the head
        True
    """
    layer = find_head(model, head)
    return classifier_relative_flatness(features, layer.weight, layer.bias, normalize_features)


def simplified_fam_penalty(loss: torch.Tensor, weight: torch.Tensor, samples: int = 1,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """:math:`\\|\\mathbf w\\|_2^2 \\cdot \\frac1S\\sum_i z_i^\\top H z_i` (module docstring), differentiable.

    Args:
        loss: scalar loss with its autograd graph (e.g. the batch cross-entropy).
        weight: the layer's weight tensor (a leaf of that graph, e.g. ``model.features[0].weight``).
        samples: number S of Rademacher probes (each one extra double-backward).
        generator: ``torch.Generator`` for the probes, drawn as
            ``2 * torch.randint(0, 2, weight.shape, generator=generator) - 1`` on the generator's device;
            ``None``: global RNG.

    Examples:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from sharpkit.optim import simplified_fam_penalty
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
        >>> loss = F.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
        >>> penalty = simplified_fam_penalty(loss, model[0].weight, samples=4,
        ...                                  generator=torch.Generator().manual_seed(0))
        >>> penalty.ndim, penalty.requires_grad  # a 0-d tensor to add to the loss
        (0, True)
    """
    check_positive("samples", samples, integer=True)
    if not torch.is_tensor(loss) or loss.ndim != 0 or not loss.requires_grad:
        raise ValueError("Expected `loss` as a scalar tensor with an autograd graph (requires_grad=True), "
                         "computed without torch.no_grad().")
    if not torch.is_tensor(weight) or not weight.requires_grad:
        raise ValueError("Expected `weight` as a tensor that requires gradients (a parameter of the model).")
    (grad,) = torch.autograd.grad(loss, weight, create_graph=True)
    device = weight.device if generator is None else generator.device
    estimate = torch.zeros((), dtype=weight.dtype, device=weight.device)
    for _ in range(samples):
        probe = (2 * torch.randint(0, 2, weight.shape, device=device, generator=generator) - 1).to(weight)
        if not grad.requires_grad:  # the loss is linear in the weight: H = 0
            break
        (hessian_probe,) = torch.autograd.grad(grad, weight, grad_outputs=probe, create_graph=True,
                                               retain_graph=True)
        estimate = estimate + (probe * hessian_probe).sum()
    return weight.pow(2).sum() * estimate / samples


@dataclass(frozen=True)
class FamLoss:
    """Result of :func:`fam_loss` (tensors with their graphs).

    Attributes:
        total: ``loss + strength * penalty``, to call ``backward()`` on.
        loss: the batch cross-entropy.
        penalty: :math:`\\kappa` (exact, classifier) or :math:`\\hat\\kappa` (simplified, other layer).

    Examples:
        >>> import torch
        >>> from sharpkit.optim import FamLoss, fam_loss
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
        >>> result = fam_loss(model, torch.randn(8, 4), torch.randint(0, 3, (8,)), strength=0.1)
        >>> isinstance(result, FamLoss), torch.allclose(result.total, result.loss + 0.1 * result.penalty)
        (True, True)
    """

    total: torch.Tensor
    loss: torch.Tensor
    penalty: torch.Tensor


def fam_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, strength: float, layer: str | None = None,
             normalize_features: bool = False, samples: int = 1, generator: torch.Generator | None = None,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy, *,
             head: Head = None) -> FamLoss:
    """FAM objective of one training batch (module docstring), one forward pass.

    Args:
        model: any network whose output is the logits of a final ``nn.Linear`` (for the exact penalty),
            in the mode the training loop set.
        x, y: the batch.
        strength: :math:`\\lambda \\ge 0` (Adilova et al. use 0.1 for image classification).
        layer: ``None`` (or ``"classifier"``, its former name) for the exact penalty on the head
            (cross-entropy only), or the name of any parameter (``model.named_parameters()``) for the
            simplified penalty on it.
        normalize_features: std reparametrisation in the exact penalty.
        samples, generator: Hutchinson probes of the simplified penalty.
        loss_fn: the data loss (the exact penalty assumes cross-entropy and refuses another).
        head: the head of the exact penalty, see :func:`sharpkit.metrics.find_head` (default: found
            automatically); its input is read by a forward pre-hook.

    Examples:
        >>> import torch
        >>> from sharpkit.optim import fam_loss
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
        >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> objective = fam_loss(model, x, y, strength=0.1)  # head: the last Linear, model[2]
        >>> objective.total.backward()
        >>> simplified = fam_loss(model, x, y, strength=0.1, layer="0.weight",  # any parameter, any loss
        ...                       generator=torch.Generator().manual_seed(0))
        >>> simplified.penalty.requires_grad
        True
    """
    check_positive("strength", strength, allow_zero=True)
    if layer is None or layer == "classifier":
        if loss_fn is not F.cross_entropy:
            raise ValueError("The exact head penalty is the closed form for softmax cross-entropy; with another "
                             "`loss_fn` pass layer='<head>.weight' (a parameter name) for the simplified penalty.")
        weights = find_head(model, head)
        features, logits = head_forward(model, weights, x)
        loss = loss_fn(logits, y)
        penalty = classifier_relative_flatness(features, weights.weight, weights.bias, normalize_features)
    else:
        parameters = dict(model.named_parameters())
        if layer not in parameters:
            raise ValueError(f"Expected `layer` to be None (the exact head penalty) or a parameter name of the "
                             f"model, but got {layer!r}; parameter names: {sorted(parameters)!r}.")
        loss = loss_fn(model(x), y)
        penalty = simplified_fam_penalty(loss, parameters[layer], samples, generator)
    return FamLoss(total=loss + strength * penalty, loss=loss, penalty=penalty)
