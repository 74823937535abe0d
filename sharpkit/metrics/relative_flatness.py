r"""Relative flatness (Petzka et al.) of a model's head, in closed form for softmax cross-entropy.

Source: Petzka, Kamp, Adilova, Sminchisescu and Boley, "Relative Flatness and Generalization"
(NeurIPS 2021), neuronwise measure (Adilova et al., "FAM: Relative Flatness Aware Minimization",
TAG-ML workshop at ICML 2023, eq. 1), as the code of "Understanding Deep Learning Requires Rethinking Sharpness" applies
it to the final ``nn.Linear`` layer, the *head*:

.. math::
    \kappa_b = \sum_{s,s'=1}^{C} \langle W_s, W_{s'} \rangle \,\mathrm{Tr}\,H_{s,s'},
    \qquad H_{s,s'} = \Bigl[\frac{\partial^2 \mathcal E_b}
                              {\partial W_{st}\,\partial W_{s't'}}\Bigr]_{t,t'=1}^{d}

with :math:`W \in \mathbb R^{C \times d}` the head's weight, :math:`W_s` its row s (the weights into
output neuron s, Petzka et al.'s :math:`\mathbf w_s`; the authors' code also pairs rows
``W[i, :]`` with the block ``d^2 E / dW[j, t] dW[i, t']``), and :math:`\mathcal E_b` the mean
cross-entropy of batch b.

Closed form. With features :math:`\phi_n`, logits :math:`z_n = W\phi_n + b` and
:math:`p_n = \mathrm{softmax}(z_n)`, the Hessian of the cross-entropy w.r.t. the logits is
:math:`\mathrm{diag}(p_n) - p_n p_n^\top` (independent of the label), so
:math:`\mathrm{Tr}\,H_{s,s'} = \frac{1}{n_b}\sum_n (\delta_{ss'} p_{ns} - p_{ns}p_{ns'})\,\|\phi_n\|^2` and

.. math::
    \kappa_b = \frac{1}{n_b}\sum_{n \in b} \|\phi_n\|^2
        \Bigl(\sum_s p_{ns}\|W_s\|^2 - \bigl\|\sum_s p_{ns} W_s\bigr\|^2\Bigr)
      = \frac{1}{n_b}\sum_{n \in b} \|\phi_n\|^2 \sum_{t=1}^{d} \mathrm{Var}_{s \sim p_n}(W_{st}),

(with :math:`W_s` the *rows*).

Normalisation (the authors' std reparametrisation): :math:`\sigma_t` = std (ddof=0) of feature t
over the whole loader; features :math:`\phi/\sigma` and head columns :math:`W_{:,t}\sigma_t`
(the logits are unchanged). Then with :math:`a_{nt} = \phi_{nt}^2` and
:math:`c_{nt} = \mathrm{Var}_{s\sim p_n}(W_{st})` (unnormalised quantities),

.. math::
    \kappa_b = \frac{1}{n_b}\sum_n \Bigl(\sum_t \frac{a_{nt}}{\sigma_t^2}\Bigr)
               \Bigl(\sum_{t'} \sigma_{t'}^2 c_{nt'}\Bigr) = u^\top M_b\, v,
    \quad M_b = \frac{1}{n_b} a^\top c,\; u = \sigma^{-2},\; v = \sigma^2 .

So one pass suffices: accumulate :math:`\sum_b M_b` (d x d) and the feature moments, apply
:math:`\sigma` at the end. Memory O(batch x (classes + features) + features^2), no (C, d, C, d)
Hessian and no second-order autograd.

A feature with :math:`\sigma_t = 0` (up to rounding: :math:`\sigma_t \le 10^{-12}|\bar\phi_t|`) is
constant over the loader, so :math:`W_{:,t}\phi_t` is the same for every sample: it is folded into
the bias and the feature and its column are dropped (:math:`u_t = v_t = 0`; the function is
unchanged). For a dead ReLU unit (:math:`\phi_t = 0`, the case that occurs in practice) this is
exactly what the authors' code computes (it multiplies the column by :math:`\sigma_t = 0` and skips
the division); for a constant non-zero feature their in-place edit changes the network's function.

Reductions: ``"mean"`` (the default) returns :math:`\kappa` of the mean loss over all samples
(:math:`\sum_b \frac{n_b}{N}\kappa_b`), independent of the batch size; ``"sum_batches"`` (the
paper's convention, :data:`sharpkit.metrics.PAPER_CONVENTIONS`) returns :math:`\sum_b \kappa_b`,
which grows with the number of batches (halve the batch size and it about doubles). Unitless (nats).

Any model: the head is found by :func:`sharpkit.metrics.find_head` (or named with ``head=``) and its
input features are read by a forward pre-hook during ``model(x)``, so the model's output must be
the head's output (the logits). For sharpkit's own models this reads exactly ``model.features(x)``.

Differences to the authors' code, all deliberate: the reparametrisation is not done in place on the
model (theirs edits the two parameter tensors before the head, which preserves the function
for VGG and ViT but not ResNet); sigma and kappa come from the same pass over the loader (theirs
iterates it twice, so with augmentation sigma is estimated on other augmented copies); float64
arithmetic for the head.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.validation import check_choice
from ._common import BatchFn, eval_mode, iterate_batches, model_device_dtype, renamed_argument
from ._head import Head, find_head, head_forward

__all__ = [
    "relative_flatness",
    "relative_flatness_exact",
    "relative_flatness_exact_from_features",
    "relative_flatness_from_features",
]

REDUCTIONS = ("mean", "sum_batches")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_head(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if not torch.is_tensor(weight) or weight.ndim != 2 or not weight.is_floating_point():
        raise ValueError("Expected the head's `weight` as a floating tensor of shape (C, d), but got "
                         f"{tuple(weight.shape) if torch.is_tensor(weight) else type(weight).__name__}.")
    if bias is not None and (not torch.is_tensor(bias) or bias.shape != (weight.shape[0],)):
        raise ValueError(f"Expected the head's `bias` of shape ({weight.shape[0]},) or None, but got "
                         f"{tuple(bias.shape) if torch.is_tensor(bias) else type(bias).__name__}.")


def _check_features(phi: torch.Tensor, width: int) -> None:
    if not torch.is_tensor(phi) or phi.ndim != 2 or phi.shape[1] != width or phi.shape[0] == 0:
        raise ValueError(
            f"Expected every feature batch as a tensor of shape (B, {width}) with B > 0 (the head's "
            f"input width), but got {tuple(phi.shape) if torch.is_tensor(phi) else type(phi).__name__}."
        )


def _non_constant(sigma: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    # Rounding leaves sigma ~ 1e-16 |mean| for a feature whose values are all equal; genuine variation
    # of float32 features is at least ~1e-10 |mean| even on 10^8 samples.
    return sigma > 1e-12 * mean.abs()


class _ClosedForm:
    """Streaming accumulator of the closed form (see the module docstring)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, normalize: bool,
                 reduction: str) -> None:
        _check_head(weight, bias)
        self.weight = weight.detach().double()
        self.bias = None if bias is None else bias.detach().double()
        # Var_{s~p}(W_st) is shift-invariant in s; centring the columns shrinks the cancellation in
        # E[W^2] - E[W]^2 for confident predictions.
        centred = self.weight - self.weight.mean(dim=0, keepdim=True)
        self.centred, self.centred_sq = centred, centred ** 2
        self.normalize, self.reduction = normalize, reduction
        width = weight.shape[1]
        zeros: dict[str, Any] = dict(dtype=torch.float64, device=weight.device)
        self.count = 0
        self.total = torch.zeros((), **zeros)                                       # unnormalised kappa
        self.moment = torch.zeros((width, width), **zeros) if normalize else None   # sum_b M_b
        self.mean = torch.zeros(width, **zeros)
        self.m2 = torch.zeros(width, **zeros)

    def update(self, phi: torch.Tensor) -> None:
        _check_features(phi, self.weight.shape[1])
        phi = phi.detach().to(device=self.weight.device, dtype=torch.float64)     # (B, d)
        logits = phi @ self.weight.T
        if self.bias is not None:
            logits = logits + self.bias
        p = torch.softmax(logits, dim=1)                                            # (B, C)
        first = p @ self.centred                                                    # (B, d)
        var = (p @ self.centred_sq - first ** 2).clamp_min_(0.0)                    # c_nt, (B, d)
        sq = phi ** 2                                                               # a_nt, (B, d)
        n = phi.shape[0]
        factor = 1.0 / n if self.reduction == "sum_batches" else 1.0
        if self.normalize:
            assert self.moment is not None  # allocated when normalize
            self.moment += (sq.T @ var) * factor
            # Chan et al.'s pairwise update of the feature mean and sum of squared deviations.
            batch_mean = phi.mean(dim=0)
            delta = batch_mean - self.mean
            total = self.count + n
            self.mean += delta * (n / total)
            self.m2 += ((phi - batch_mean) ** 2).sum(dim=0) + delta ** 2 * (self.count * n / total)
        else:
            self.total += (sq.sum(dim=1) * var.sum(dim=1)).sum() * factor
        self.count += n

    def compute(self) -> float:
        if self.count == 0:
            raise ValueError("Expected at least one feature batch, but got none.")
        if self.normalize:
            assert self.moment is not None  # allocated when normalize
            sigma = torch.sqrt(self.m2 / self.count)
            kept = _non_constant(sigma, self.mean)  # constant features are folded into the bias
            u = torch.where(kept, sigma, 1.0).pow(-2) * kept
            v = sigma.pow(2) * kept
            value = u @ self.moment @ v
        else:
            value = self.total
        if self.reduction == "mean":
            value = value / self.count
        return float(value)


def relative_flatness_from_features(features: Iterable[torch.Tensor], weight: torch.Tensor,
                                    bias: torch.Tensor | None = None, normalize_features: bool = True,
                                    reduction: str = "mean") -> float:
    """Relative flatness (closed form of the module docstring) from precomputed feature batches.

    The route for any head that :func:`relative_flatness` cannot hook: compute the inputs of the
    final linear map yourself and pass its weight and bias.

    Args:
        features: iterable of (B, d) feature batches (the head's inputs); one pass.
        weight: head weight (C, d); bias: (C,) or None.
        normalize_features: apply the std reparametrisation (the paper's convention).
        reduction: ``"mean"`` (dataset kappa, independent of the batch size) or ``"sum_batches"``
            (the paper's sum of per-batch kappas).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import relative_flatness_from_features
        >>> _ = torch.manual_seed(0)
        >>> head = torch.nn.Linear(6, 3)
        >>> features = [torch.randn(8, 6), torch.randn(8, 6)]  # two batches of the head's inputs
        >>> value = relative_flatness_from_features(features, head.weight, head.bias)
        >>> paper = relative_flatness_from_features(features, head.weight, head.bias, reduction="sum_batches")
        >>> value > 0, round(paper / value, 6)  # the paper's sum grows with the number of batches
        (True, 2.0)
    """
    check_choice("reduction", reduction, REDUCTIONS)
    accumulator = _ClosedForm(weight, bias, normalize_features, reduction)
    for phi in features:
        accumulator.update(phi)
    return accumulator.compute()


def relative_flatness(model: nn.Module, loader: Iterable, normalize_features: bool = True,
                      reduction: str = "mean", *, head: Head = None,
                      batch_fn: BatchFn | None = None) -> float:
    """Relative flatness of the model's head over ``loader`` (closed form, one pass, eval mode).

    The model is not modified (the reparametrisation is applied to copies of the head in float64);
    its train/eval flags are restored afterwards. Softmax cross-entropy only (the closed form); for
    another loss use :func:`relative_flatness_exact` with ``loss_fn``.

    Args:
        model: any classifier whose output is the logits of a final ``nn.Linear``.
        loader: iterable of batches (the training loader, as the paper); iterated once.
        normalize_features: std reparametrisation (paper: True).
        reduction: ``"mean"`` (default: kappa of the dataset-mean loss, independent of the batch size
            and of shuffling) or ``"sum_batches"`` (the paper's sum of per-batch kappas, see
            :data:`sharpkit.metrics.PAPER_CONVENTIONS`).
        head: the head, see :func:`sharpkit.metrics.find_head` (default: found automatically).
        batch_fn: maps a batch to ``(x, y)`` (default: ``(x, y, *rest)`` tuples and dicts).

    Examples:
        >>> import math, torch, torchvision
        >>> from sharpkit.metrics import relative_flatness
        >>> _ = torch.manual_seed(0)
        >>> model = torchvision.models.resnet18(num_classes=10)
        >>> batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))]
        >>> relative_flatness(model, batches, head="fc") > 0  # head=None would find ``fc`` too
        True
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> one, four = [(x, y)], [(x[i:i + 4], y[i:i + 4]) for i in range(0, 16, 4)]
        >>> math.isclose(relative_flatness(mlp, one), relative_flatness(mlp, four), rel_tol=1e-6)
        True
    """
    check_choice("reduction", reduction, REDUCTIONS)
    layer = find_head(model, head)
    device, dtype = model_device_dtype(model)
    accumulator = _ClosedForm(layer.weight, layer.bias, normalize_features, reduction)
    with torch.no_grad(), eval_mode(model):
        for x, _ in iterate_batches(loader, device, dtype, batch_fn):
            accumulator.update(head_forward(model, layer, x)[0])
    return accumulator.compute()


@renamed_argument("batches", "loader")
def relative_flatness_exact_from_features(loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
                                          weight: torch.Tensor, bias: torch.Tensor | None = None,
                                          normalize_features: bool = True, reduction: str = "mean", *,
                                          loss_fn: LossFn = F.cross_entropy) -> float:
    """Relative flatness by its definition, through the full (C, d, C, d) Hessian by autograd.

    The reference for tests on small layers: per batch the Hessian of the batch-mean ``loss_fn``
    w.r.t. the (reparametrised) weight is built by autograd (``torch.func.jacrev`` twice) in float64,
    its d x d blocks are traced and paired with the row Gram matrix. Memory O((C d)^2) per batch.

    Args:
        loader: iterable of ``(features (B, d), labels (B,))``; materialised (sigma needs all of it).
            (Formerly ``batches``, still accepted with a DeprecationWarning.)
        weight, bias, normalize_features, reduction: as :func:`relative_flatness_from_features`.
        loss_fn: ``loss_fn(logits, labels)`` returning the batch mean (default cross-entropy, where
            this equals the closed form).

    Examples:
        >>> import math, torch
        >>> from sharpkit.metrics import relative_flatness_exact_from_features, relative_flatness_from_features
        >>> _ = torch.manual_seed(0)
        >>> head = torch.nn.Linear(6, 3)
        >>> batches = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(2)]
        >>> exact = relative_flatness_exact_from_features(batches, head.weight, head.bias)
        >>> closed = relative_flatness_from_features([phi for phi, _ in batches], head.weight, head.bias)
        >>> math.isclose(exact, closed, rel_tol=1e-9)
        True
    """
    check_choice("reduction", reduction, REDUCTIONS)
    _check_head(weight, bias)
    batches = [(phi.detach().double(), y) for phi, y in loader]
    if not batches:
        raise ValueError("Expected at least one (features, labels) batch, but got none.")
    for phi, _ in batches:
        _check_features(phi, weight.shape[1])
    w = weight.detach().double()
    b = None if bias is None else bias.detach().double()
    kept = torch.ones(w.shape[1], dtype=torch.bool, device=w.device)
    sigma = torch.ones(w.shape[1], dtype=torch.float64, device=w.device)
    if normalize_features:
        everything = torch.cat([phi for phi, _ in batches]).to(w.device)
        sigma = everything.std(dim=0, unbiased=False)
        kept = _non_constant(sigma, everything.mean(dim=0))
    w_scaled = w[:, kept] * sigma[kept]                                    # columns W[:, t] * sigma_t
    gram = w_scaled @ w_scaled.T                                           # <W_s, W_s'>
    total_count = sum(phi.shape[0] for phi, _ in batches)
    value = torch.zeros((), dtype=torch.float64)
    for phi, y in batches:
        phi = phi.to(w.device)
        # Constant features enter as a per-sample-constant offset (a bias), not as weights.
        offset = phi[:, ~kept] @ w[:, ~kept].T if b is None else phi[:, ~kept] @ w[:, ~kept].T + b
        phi_scaled = phi[:, kept] / sigma[kept]

        def loss(v: torch.Tensor, phi_scaled: torch.Tensor = phi_scaled, offset: torch.Tensor = offset,
                 y: torch.Tensor = y) -> torch.Tensor:
            return loss_fn(phi_scaled @ v.T + offset, y.to(w.device))

        # Reverse-over-reverse: the fastest of torch's full-Hessian routes on CPU for this shape.
        hessian = torch.func.jacrev(torch.func.jacrev(loss))(w_scaled)               # (C, d, C, d)
        traces = torch.einsum("itjt->ij", hessian)                                    # Tr H_{s,s'}
        kappa = (gram * traces).sum().cpu()
        value += kappa if reduction == "sum_batches" else kappa * phi.shape[0] / total_count
    return float(value)


def relative_flatness_exact(model: nn.Module, loader: Iterable, normalize_features: bool = True,
                            reduction: str = "mean", *, head: Head = None, batch_fn: BatchFn | None = None,
                            loss_fn: LossFn = F.cross_entropy) -> float:
    """:func:`relative_flatness` through the full Hessian by autograd (reference for small heads).

    Features are collected in eval mode without gradients (the loader is iterated once), then
    :func:`relative_flatness_exact_from_features` is applied. Arguments as :func:`relative_flatness`;
    ``loss_fn(logits, labels)`` is the batch-mean loss whose Hessian is taken (default cross-entropy).

    Examples:
        >>> import math, torch
        >>> from sharpkit.metrics import relative_flatness, relative_flatness_exact
        >>> _ = torch.manual_seed(0)
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(2)]
        >>> math.isclose(relative_flatness_exact(mlp, loader), relative_flatness(mlp, loader), rel_tol=1e-9)
        True
    """
    check_choice("reduction", reduction, REDUCTIONS)
    layer = find_head(model, head)
    device, dtype = model_device_dtype(model)
    with torch.no_grad(), eval_mode(model):
        batches = [(head_forward(model, layer, x)[0], y) for x, y in iterate_batches(loader, device, dtype, batch_fn)]
    return relative_flatness_exact_from_features(batches, layer.weight, layer.bias, normalize_features,
                                                 reduction, loss_fn=loss_fn)
