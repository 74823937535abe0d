r"""Adaptive average-case and worst-case m-sharpness (Andriushchenko et al., ICML 2023).

Source: Andriushchenko, Croce, Müller, Hein and Flammarion, "A Modern Look at the Relationship
between Sharpness and Generalization" (ICML 2023; below "Andriushchenko et al."), sec. 3.1 eq. 1,
sec. 3.3 and Algorithm 1 of appendix C, after Kwon et al. (ASAM, ICML 2021) and, for m-sharpness,
Foret et al. ("Sharpness-Aware Minimization for Efficiently Improving Generalization", ICLR 2021,
sec. 4.1). For a batch :math:`S` of
:math:`m` training points, weights :math:`\mathbf w` and scale :math:`\mathbf c`
(:math:`|\mathbf w|` when ``adaptive``, all ones otherwise):

.. math::
    S_{avg}(S) = \mathbb E_{\boldsymbol\delta}\, L_S(\mathbf w + \boldsymbol\delta) - L_S(\mathbf w),
    \qquad
    S_{max}(S) = \max_{\|\boldsymbol\delta \odot \mathbf c^{-1}\|_p \le \rho}
                 L_S(\mathbf w + \boldsymbol\delta) - L_S(\mathbf w),

and the reported value is the mean over batches (m-sharpness: the maximum is taken per batch of
``batch_size`` points, then averaged). :math:`L_S` is the batch-mean ``loss_fn`` (cross-entropy by
default), optionally of
the normalised logits :math:`f / \sqrt{\frac1K\sum_i (f_i - \bar f)^2}` (their eq. 5, Tsuzuku et al.
2020), which removes the sensitivity to the scale of the classifier. Units: nats.

Average case (eq. 1 and their code): :math:`\boldsymbol\delta = \rho\,\mathbf c \odot \boldsymbol\xi`
with :math:`\xi_i \sim \mathcal N(0, 1)` for ``norm="l2"`` and :math:`\xi_i \sim U(-1, 1)` for
``norm="linf"``; ``samples`` draws per batch (Andriushchenko et al. use 100). Note that the Gaussian noise is *not*
inside the l2 ball of radius :math:`\rho` (its norm is about :math:`\rho\sqrt P`); the uniform
noise is inside the linf ball.

Worst case: Auto-PGD (Croce and Hein, ICML 2020) in weight space as Andriushchenko et al.'s
Algorithm 1, run on the
normalised perturbation :math:`\mathbf u = \boldsymbol\delta \odot \mathbf c^{-1}` over the round
ball :math:`\|\mathbf u\|_p \le \rho`. In :math:`\mathbf w` this is exactly what they describe: the
gradient w.r.t. :math:`\mathbf u` is :math:`\mathbf c \odot \nabla L`, so the linf step
:math:`\eta\,\mathrm{sign}(\nabla L)` is scaled by :math:`|\mathbf w|`, the l2 step
:math:`\eta\,\mathbf c^2\odot\nabla L/\|\mathbf c\odot\nabla L\|` is the normalised gradient step
of the elliptical geometry, and the Euclidean projection in :math:`\mathbf u` is the projection onto
the ellipsoid in its own metric (a clamp for linf, a rescaling for l2, no bisection needed). The
whole iteration is then invariant under multiplicative reparametrisations, not only its optimum.
Details (Croce and Hein 2020, sec. 3.2):

- random start in the feasible set: uniform in the box (linf), uniform on the sphere (l2);
- initial step :math:`\eta = 2\rho`, momentum :math:`\alpha = 0.75`:
  :math:`z = P(u_k + \eta s_k)`, :math:`u_{k+1} = P(u_k + \alpha(z - u_k) + (1-\alpha)(u_k - u_{k-1}))`
  with :math:`s_k` the sign (linf) or the normalised gradient (l2);
- checkpoints :math:`w_j = \lceil p_j N\rceil`, :math:`p_0 = 0, p_1 = 0.22,
  p_{j+1} = p_j + \max(p_j - p_{j-1} - 0.03, 0.06)`; at each one the step is halved and the
  iterate reset to the best point when (condition 1) fewer than 75% of the steps since the last
  checkpoint increased the loss, or (condition 2) neither the step size nor the best loss changed
  since the last checkpoint;
- the result is the best loss seen among the ``steps + 1`` evaluated points (N = ``steps``
  gradient evaluations). It is a lower bound of the true maximum.

BatchNorm is frozen (eval mode: running statistics, no dropout). Only parameters are perturbed,
never buffers. The model is never written (the loss is evaluated through
``torch.func.functional_call``), so its state and gradients after the call are bit-identical to
before. Device and dtype are the model's. Random draws come from ``generator``, by default a
generator seeded with :data:`sharpkit.metrics.DEFAULT_SEED` (two calls give the same value).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.validation import check_choice, check_positive
from ._common import (
    BatchFn,
    Measurement,
    detail,
    eval_mode,
    iterate_batches,
    mean_and_sem,
    model_device_dtype,
    resolve_generator,
)
from .landscape import _named_parameters, _random_like

__all__ = ["AdaptiveSharpness", "adaptive_sharpness", "apgd_checkpoints", "normalize_logits"]

KINDS = ("average", "worst")
NORMS = ("l2", "linf")
MOMENTUM = 0.75          # alpha of Auto-PGD (Croce and Hein keep it fixed)
SUCCESS_RATIO = 0.75     # condition 1 threshold (their rho)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_SETTINGS = ("rho", "kind", "norm", "adaptive", "logit_normalization", "steps", "samples", "batch_size")


class AdaptiveSharpness(Measurement):
    """Result of :func:`adaptive_sharpness`: ``value`` is the mean over batches of the per-batch
    sharpness (nats), ``sem`` its standard error over batches, ``std(ddof=1) / sqrt(batches)`` (NaN
    for one batch).

    ``details`` (also attributes): ``values`` (per-batch sharpness :math:`S(S_b)`), ``base_losses``
    (per-batch unperturbed loss :math:`L_{S_b}(\\mathbf w)`), ``num_points`` (training points used, a
    multiple of ``batch_size`` when given) and the settings ``rho``, ``kind``, ``norm``, ``adaptive``,
    ``logit_normalization``, ``steps``, ``samples``, ``batch_size``.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import AdaptiveSharpness, adaptive_sharpness
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(2)]
        >>> result = adaptive_sharpness(model, loader, rho=0.01, samples=5, batch_size=4)
        >>> isinstance(result, AdaptiveSharpness), len(result.values), result.num_points, result.kind
        (True, 4, 16, 'average')
    """

    values = detail("values", "Per-batch sharpness.")
    base_losses = detail("base_losses", "Per-batch unperturbed loss.")
    num_points = detail("num_points", "Number of training points used.")
    rho = detail("rho")
    kind = detail("kind")
    norm = detail("norm")
    adaptive = detail("adaptive")
    logit_normalization = detail("logit_normalization")
    steps = detail("steps")
    samples = detail("samples")
    batch_size = detail("batch_size")


def normalize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logit normalisation of Andriushchenko et al. eq. 5: each row divided by its standard deviation over classes
    (ddof=0). Cross-entropy is shift invariant, so only the division matters.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import normalize_logits
        >>> normalize_logits(torch.tensor([[2.0, 6.0], [0.5, -0.5]]))
        tensor([[ 1.,  3.],
                [ 1., -1.]])
    """
    std = (logits - logits.mean(dim=1, keepdim=True)).pow(2).mean(dim=1, keepdim=True).sqrt()
    return logits / std.clamp_min(torch.finfo(logits.dtype).tiny)


def apgd_checkpoints(steps: int) -> tuple[int, ...]:
    """Auto-PGD checkpoints :math:`w_j = \\lceil p_j N \\rceil \\le N` (module docstring), from
    :math:`w_0 = 0`, without repeats.

    Examples:
        >>> from sharpkit.metrics import apgd_checkpoints
        >>> apgd_checkpoints(20)
        (0, 5, 9, 12, 14, 16, 18, 19, 20)
    """
    check_positive("steps", steps, integer=True)
    fractions = [0.0, 0.22]
    while fractions[-1] < 1.0:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    points: list[int] = []
    for p in fractions:
        point = math.ceil(round(p * steps, 9))  # round: 0.22 * 50 must give 11, not 12
        if point > steps:
            break
        if not points or point > points[-1]:
            points.append(point)
    return tuple(points)


def _rebatch(loader: Iterable, batch_size: int | None, device: torch.device, dtype: torch.dtype,
             batch_fn: BatchFn | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of exactly ``batch_size`` points from the loader's stream (the remainder is dropped),
    or the loader's own batches when ``batch_size`` is None."""
    if batch_size is None:
        yield from iterate_batches(loader, device, dtype, batch_fn)
        return
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    held = 0
    for x, y in iterate_batches(loader, device, dtype, batch_fn):
        xs.append(x)
        ys.append(y)
        held += y.shape[0]
        while held >= batch_size:
            x_all, y_all = torch.cat(xs), torch.cat(ys)
            yield x_all[:batch_size], y_all[:batch_size]
            xs, ys = [x_all[batch_size:]], [y_all[batch_size:]]
            held -= batch_size


class _BatchObjective:
    """:math:`u \\mapsto L_S(\\mathbf w + \\mathbf c \\odot u)` on flat vectors for one batch."""

    def __init__(self, model: nn.Module, base: dict[str, torch.Tensor], scale: torch.Tensor,
                 x: torch.Tensor, y: torch.Tensor, logit_normalization: bool, loss_fn: LossFn) -> None:
        self.model, self.x, self.y, self.loss_fn = model, x, y, loss_fn
        self.names = list(base)
        self.shapes = [base[n].shape for n in self.names]
        self.sizes = [base[n].numel() for n in self.names]
        self.weights = torch.cat([base[n].reshape(-1) for n in self.names])
        self.scale = scale
        self.logit_normalization = logit_normalization

    def loss(self, u: torch.Tensor) -> torch.Tensor:
        flat = self.weights + self.scale * u
        values = {n: part.view(shape) for n, part, shape in zip(self.names, flat.split(self.sizes), self.shapes)}
        logits = torch.func.functional_call(self.model, values, (self.x,))
        if self.logit_normalization:
            logits = normalize_logits(logits)
        return self.loss_fn(logits, self.y)

    def value_and_grad(self, u: torch.Tensor) -> tuple[float, torch.Tensor]:
        with torch.enable_grad():
            u = u.detach().requires_grad_(True)
            loss = self.loss(u)
            (grad,) = torch.autograd.grad(loss, u)
        return float(loss.detach()), grad


def _project(u: torch.Tensor, rho: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return u.clamp(-rho, rho)
    length = float(u.norm())
    return u * (rho / length) if length > rho else u


def _direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    length = grad.norm()
    return grad / length if float(length) > 0 else grad


def _auto_pgd(objective: _BatchObjective, start: torch.Tensor, rho: float, norm: str, steps: int) -> float:
    """Best loss found by Auto-PGD (module docstring) from ``start``."""
    checkpoints = set(apgd_checkpoints(steps)[1:])
    eta = 2.0 * rho
    f0, g0 = objective.value_and_grad(start)
    u1 = _project(start + eta * _direction(g0, norm), rho, norm)
    if steps == 1:
        with torch.no_grad():
            return max(f0, float(objective.loss(u1)))
    f1, g1 = objective.value_and_grad(u1)
    best_f, best_u, best_g = (f1, u1, g1) if f1 > f0 else (f0, start, g0)
    history = [f0, f1]
    previous, current, grad = start, u1, g1
    last_checkpoint, eta_at_checkpoint, best_at_checkpoint = 0, eta, f0
    for k in range(1, steps):
        z = _project(current + eta * _direction(grad, norm), rho, norm)
        candidate = _project(current + MOMENTUM * (z - current) + (1 - MOMENTUM) * (current - previous),
                             rho, norm)
        if k == steps - 1:  # the last point needs no gradient
            with torch.no_grad():
                f_new = float(objective.loss(candidate))
            return max(best_f, f_new)
        f_new, g_new = objective.value_and_grad(candidate)
        history.append(f_new)
        if f_new > best_f:
            best_f, best_u, best_g = f_new, candidate, g_new
        previous, current, grad = current, candidate, g_new
        if k in checkpoints:
            increases = sum(history[i + 1] > history[i] for i in range(last_checkpoint, k))
            condition_1 = increases < SUCCESS_RATIO * (k - last_checkpoint)
            condition_2 = eta == eta_at_checkpoint and best_f == best_at_checkpoint
            last_checkpoint, eta_at_checkpoint, best_at_checkpoint = k, eta, best_f
            if condition_1 or condition_2:
                eta /= 2.0
                current, grad = best_u, best_g  # restart from the best point
    return best_f  # pragma: no cover - the loop always returns


def _start(size_like: dict[str, torch.Tensor], rho: float, norm: str,
           generator: torch.Generator | None) -> torch.Tensor:
    if norm == "linf":
        parts = [_random_like(p.shape, p, generator, "box").reshape(-1) for p in size_like.values()]
        return rho * torch.cat(parts)
    parts = [_random_like(p.shape, p, generator, "normal").reshape(-1) for p in size_like.values()]
    u = torch.cat(parts)
    return rho * u / u.norm()


@torch.no_grad()
def adaptive_sharpness(model: nn.Module, loader: Iterable, rho: float, kind: str = "average",
                       norm: str = "l2", adaptive: bool = True, logit_normalization: bool = False,
                       steps: int = 20, batch_size: int | None = 128,
                       generator: torch.Generator | None = None, samples: int = 100, *,
                       loss_fn: LossFn = F.cross_entropy, batch_fn: BatchFn | None = None) -> AdaptiveSharpness:
    """Adaptive (or standard) average- or worst-case m-sharpness (module docstring).

    Args:
        model: classifier (eval mode during the call; never written).
        loader: iterable of training batches, without augmentation (Andriushchenko et al. sec. 3.1
            use the same fixed points for every model, e.g. 1024 points in 8 batches); iterated once.
        rho: radius (in units of :math:`|\\mathbf w|` when adaptive; Andriushchenko et al. use
            0.0005 to 0.004).
        kind: ``"average"`` or ``"worst"``.
        norm: ``"l2"`` or ``"linf"`` (noise distribution for average, ball for worst).
        adaptive: :math:`\\mathbf c = |\\mathbf w|` (elementwise adaptive sharpness) or ones.
        logit_normalization: the loss of normalised logits (Andriushchenko et al. eq. 5).
        steps: Auto-PGD iterations N for ``"worst"`` (Andriushchenko et al.: 20).
        batch_size: m, the points per sharpness batch; the loader's stream is cut into batches of
            exactly m points and the remainder dropped. ``None`` keeps the loader's batches.
        generator: ``torch.Generator`` for the noise (average) or the random start (worst),
            drawn parameter by parameter in ``named_parameters()`` order; ``None``: a CPU generator
            seeded with :data:`sharpkit.metrics.DEFAULT_SEED` (two calls give the same value).
        samples: noise draws per batch for ``"average"`` (Andriushchenko et al.: 100).
        loss_fn: ``loss_fn(logits, y)`` returning the batch mean (default cross-entropy).
        batch_fn: maps a batch to ``(x, y)`` (default: ``(x, y, *rest)`` tuples and dicts).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import adaptive_sharpness
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> batches = [(torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,)))]
        >>> result = adaptive_sharpness(model, batches, rho=0.01, samples=5, batch_size=None)
        >>> result.value == adaptive_sharpness(model, batches, rho=0.01, samples=5, batch_size=None).value
        True
        >>> worst = adaptive_sharpness(model, batches, rho=0.01, kind="worst", norm="linf", steps=5,
        ...                            batch_size=None)  # Auto-PGD, 5 gradient steps
        >>> worst.kind, worst.steps, len(worst.values)
        ('worst', 5, 1)
    """
    check_positive("rho", rho)
    check_choice("kind", kind, KINDS)
    check_choice("norm", norm, NORMS)
    check_positive("steps", steps, integer=True)
    check_positive("samples", samples, integer=True)
    if batch_size is not None:
        check_positive("batch_size", batch_size, integer=True)
    generator = resolve_generator(generator)
    device, dtype = model_device_dtype(model)
    base = _named_parameters(model, None)
    weights = torch.cat([p.reshape(-1) for p in base.values()])
    scale = weights.abs() if adaptive else torch.ones_like(weights)
    values, base_losses = [], []
    num_points = 0
    with eval_mode(model):
        for x, y in _rebatch(loader, batch_size, device, dtype, batch_fn):
            objective = _BatchObjective(model, base, scale, x, y, logit_normalization, loss_fn)
            base_loss = float(objective.loss(torch.zeros_like(weights)))
            if kind == "average":
                total = 0.0
                for _ in range(samples):
                    noise = torch.cat([_random_like(p.shape, p, generator, "normal" if norm == "l2" else "box")
                                       .reshape(-1) for p in base.values()])
                    total += float(objective.loss(rho * noise))
                perturbed = total / samples
            else:
                perturbed = _auto_pgd(objective, _start(base, rho, norm, generator), rho, norm, steps)
            values.append(perturbed - base_loss)
            base_losses.append(base_loss)
            num_points += y.shape[0]
    if not values:
        raise ValueError(
            f"Expected at least `batch_size` = {batch_size} points in the loader, but it holds fewer; "
            "lower `batch_size` or pass batch_size=None to use the loader's own batches."
        )
    value, sem = mean_and_sem(values, ddof=1)
    settings = dict(zip(_SETTINGS, (float(rho), kind, norm, adaptive, logit_normalization, steps, samples,
                                    batch_size), strict=True))
    return AdaptiveSharpness(value=value, sem=sem, details={"values": tuple(values), "base_losses": tuple(base_losses),
                                                            "num_points": num_points, **settings})
