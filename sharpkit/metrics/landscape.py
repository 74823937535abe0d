r"""Shape of the loss around a minimum: 1-D loss curves and the asymmetry factor.

Loss on a fixed list of batches (the same convention for every function of this module, of
``sharpkit.metrics.curvature`` and of ``sharpkit.metrics.adaptive_sharpness``):

.. math::
    L(\mathbf w) = \sum_b \frac{n_b}{N}\, \ell\bigl(f_{\mathbf w}(x_b), y_b\bigr),

with :math:`\ell` = ``loss_fn`` (batch-mean cross-entropy by default, so :math:`L` is the
per-sample mean over the :math:`N` points), evaluated in eval mode (BatchNorm uses its running
statistics, dropout is off) through ``torch.func.functional_call``: the model's own tensors
are never written, so its state after any call is bit-identical to before.

Directions are dicts ``{parameter name: tensor}`` (names of ``model.named_parameters()``); a
parameter missing from a direction does not move.

- :func:`~sharpkit.metrics.random_direction`: Gaussian (or uniform) direction, optionally *filter-normalised* as in
  Li, Xu, Taylor, Studer and Goldstein, "Visualizing the Loss Landscape of Neural Nets" (NeurIPS
  2018, sec. 4): every filter :math:`d_{i,j}` (slice ``[j]`` along the output dimension of a weight
  tensor) is rescaled to the norm of the corresponding filter of the weights,
  :math:`d_{i,j} \leftarrow d_{i,j}\,\|\theta_{i,j}\| / \|d_{i,j}\|`, which removes the scale
  dependence of 1-D plots. Biases and normalisation parameters (tensors with ``ndim <= 1``) get a
  zero direction by default, as Li et al.'s figures (their ``--xignore biasbn``).
- :func:`~sharpkit.metrics.loss_along_direction`: :math:`\{(\alpha, L(\mathbf w + \alpha \mathbf d))\}`.
- :func:`~sharpkit.metrics.asymmetry_factor`: Boca, Cross, Holm and Korkmaz, "Towards an *Even
  Better* Understanding of Sharpness-Aware Minimisation" (University of Cambridge, course report for
  R252 Theory of Deep Learning, 2023), sec. 4.4:

  .. math::
      \Omega = \frac{1}{m}\sum_{i=1}^{m} \frac{\min(l_i^+, l_i^-)}{\max(l_i^+, l_i^-)},\qquad
      l_i^\pm = L(\mathbf w \pm \mu\,\hat{\mathbf u}_i) - L(\mathbf w),

  with :math:`\hat{\mathbf u}_i` unit vectors whose entries are drawn from :math:`U(0, 1)` before
  normalisation (their definition; note that every entry is then positive). At a minimum
  :math:`\Omega \in [0, 1]`: 1 = symmetric, 0 = perfectly asymmetric. Unitless. Its random
  directions come from ``generator``, by default one seeded with :data:`sharpkit.metrics.DEFAULT_SEED`
  (two calls give the same value).

Every function takes the data as ``loader`` (formerly ``batches``, still accepted with a
DeprecationWarning) and a ``batch_fn`` mapping a batch to ``(x, y)``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

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
    renamed_argument,
    resolve_generator,
)

__all__ = ["Asymmetry", "LossCurve", "asymmetry_factor", "loss_along_direction", "random_direction"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Direction = Mapping[str, torch.Tensor]
DISTRIBUTIONS = ("normal", "uniform")


# ---------------------------------------------------------------------------------------------
# Helpers shared with curvature.py and adaptive_sharpness.py
# ---------------------------------------------------------------------------------------------

def _materialize(loader: Iterable, model: nn.Module,
                 batch_fn: BatchFn | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches as a list on the model's device (x in its floating dtype); iterated once."""
    device, dtype = model_device_dtype(model)
    return list(iterate_batches(loader, device, dtype, batch_fn))


def _named_parameters(model: nn.Module, params: Sequence[str] | None) -> dict[str, torch.Tensor]:
    """Detached floating parameters of ``model`` by name: all of them, or the named subset."""
    available = {name: p.detach() for name, p in model.named_parameters() if p.is_floating_point()}
    if params is None:
        if not available:
            raise ValueError("Expected a model with floating-point parameters, but it has none.")
        return available
    if isinstance(params, str):
        raise ValueError(f"Expected `params` as a sequence of parameter names, but got the string {params!r}; "
                         f"wrap it in a list: [{params!r}].")
    unknown = [name for name in params if name not in available]
    if unknown or not params:
        raise ValueError(
            f"Expected `params` to name floating parameters of the model, but got {list(params)!r} "
            f"(unknown: {unknown!r}). Available names: {sorted(available)!r}."
        )
    return {name: available[name] for name in dict.fromkeys(params)}


def _random_like(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None,
                 distribution: str) -> torch.Tensor:
    """Gaussian N(0, 1), uniform U(0, 1), uniform U(-1, 1) ("box") or Rademacher entries.

    Drawn on the generator's device and then moved, so a CPU generator gives the same numbers for
    a model on the GPU.
    """
    device = like.device if generator is None else generator.device
    options: dict[str, Any] = dict(dtype=like.dtype, device=device, generator=generator)
    if distribution == "normal":
        out = torch.randn(shape, **options)
    elif distribution == "uniform":
        out = torch.rand(shape, **options)
    elif distribution == "box":
        out = 2.0 * torch.rand(shape, **options) - 1.0
    elif distribution == "rademacher":
        out = 2.0 * torch.randint(0, 2, shape, device=device, generator=generator).to(like.dtype) - 1.0
    else:  # pragma: no cover - internal
        raise ValueError(distribution)
    return out.to(like.device)


def _batch_loss(model: nn.Module, values: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                loss_fn: LossFn) -> torch.Tensor:
    """``loss_fn(model(x), y)`` with the named parameters replaced by ``values``."""
    return loss_fn(torch.func.functional_call(model, dict(values), (x,)), y)


def _dataset_loss(model: nn.Module, values: Mapping[str, torch.Tensor],
                  batches: Sequence[tuple[torch.Tensor, torch.Tensor]], loss_fn: LossFn) -> torch.Tensor:
    """:math:`L` of the module docstring (per-sample weighting of the batch losses)."""
    total = sum(y.shape[0] for _, y in batches)
    # A tensor; the int 0 only for an empty loader, which the callers' float() takes as well.
    return cast(torch.Tensor, sum(_batch_loss(model, values, x, y, loss_fn) * (y.shape[0] / total)
                                  for x, y in batches))


def _check_direction(direction: Direction, base: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not isinstance(direction, Mapping) or not direction:
        raise ValueError("Expected `direction` as a non-empty dict {parameter name: tensor} (see "
                         f"random_direction), but got {type(direction).__name__}.")
    out = {}
    for name, tensor in direction.items():
        if name not in base:
            raise ValueError(f"Direction entry {name!r} is not a floating parameter of the model; "
                             f"expected names among {sorted(base)!r}.")
        if not torch.is_tensor(tensor) or tensor.shape != base[name].shape:
            shape = tuple(tensor.shape) if torch.is_tensor(tensor) else type(tensor).__name__
            raise ValueError(f"Direction entry {name!r} must have the parameter's shape "
                             f"{tuple(base[name].shape)}, but got {shape}.")
        out[name] = tensor.detach().to(device=base[name].device, dtype=base[name].dtype)
    return out


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

def random_direction(model: nn.Module, filter_normalized: bool = True,
                     generator: torch.Generator | None = None, params: Sequence[str] | None = None,
                     distribution: str = "normal", ignore_1d: bool = True) -> dict[str, torch.Tensor]:
    """A random direction in parameter space, ``{name: tensor}`` (module docstring).

    Args:
        model: the network; its parameters give names, shapes and (when filter-normalising) scales.
        filter_normalized: Li et al.'s filter normalisation; otherwise the direction is scaled to unit
            Euclidean norm over all selected parameters.
        generator: ``torch.Generator`` for reproducible draws (entries drawn parameter by parameter,
            in ``named_parameters()`` order); ``None`` uses torch's global RNG (this is not a measure
            but a source of directions: successive calls must give different directions).
        params: names of the parameters to move (default: all floating parameters).
        distribution: ``"normal"`` (N(0, 1) entries, Li et al.) or ``"uniform"`` (U(0, 1) entries,
            Boca et al.) before normalisation.
        ignore_1d: with filter normalisation, give tensors with ``ndim <= 1`` (biases, BatchNorm and
            LayerNorm affine parameters) a zero direction; if False each of their entries is its own
            filter, i.e. ``|d_i| = |theta_i|``.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import random_direction
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3))
        >>> direction = random_direction(model, generator=torch.Generator().manual_seed(0))
        >>> sorted(direction)
        ['0.bias', '0.weight']
        >>> torch.allclose(direction["0.weight"].norm(dim=1), model[0].weight.norm(dim=1))  # filter norms
        True
        >>> bool((direction["0.bias"] == 0).all())  # ignore_1d: biases do not move
        True
    """
    check_choice("distribution", distribution, DISTRIBUTIONS)
    base = _named_parameters(model, params)
    direction = {name: _random_like(p.shape, p, generator, distribution) for name, p in base.items()}
    if not filter_normalized:
        norm = torch.sqrt(cast(torch.Tensor, sum((d.double() ** 2).sum() for d in direction.values())))
        if float(norm) == 0.0:
            raise ValueError("The drawn direction is zero; the model has no parameter entries to move.")
        return {name: d / norm.to(d) for name, d in direction.items()}
    out = {}
    for name, d in direction.items():
        w = base[name]
        if w.ndim <= 1:
            out[name] = torch.zeros_like(d) if ignore_1d else d.sign() * w.abs()
            continue
        # One filter per slice along dim 0 (output channels of a conv, output neurons of a Linear).
        d_norm = d.flatten(1).norm(dim=1).clamp_min(torch.finfo(d.dtype).tiny)
        w_norm = w.flatten(1).norm(dim=1)
        out[name] = d * (w_norm / d_norm).view(-1, *([1] * (d.ndim - 1)))
    return out


@dataclass(frozen=True)
class LossCurve:
    """Result of :func:`loss_along_direction`.

    Attributes:
        alphas: the step sizes :math:`\\alpha`.
        losses: :math:`L(\\mathbf w + \\alpha\\mathbf d)` for each alpha (units of ``loss_fn``; nats
            for cross-entropy).
        base_loss: :math:`L(\\mathbf w)`.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import LossCurve, loss_along_direction, random_direction
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> direction = random_direction(model, generator=torch.Generator().manual_seed(0))
        >>> curve = loss_along_direction(model, loader, direction, alphas=[-1.0, 0.0, 1.0])
        >>> isinstance(curve, LossCurve), curve.alphas, curve.losses[1] == curve.base_loss
        (True, (-1.0, 0.0, 1.0), True)
    """

    alphas: tuple[float, ...]
    losses: tuple[float, ...]
    base_loss: float


@renamed_argument("batches", "loader")
@torch.no_grad()
def loss_along_direction(model: nn.Module, loader: Iterable, direction: Direction,
                         alphas: Sequence[float], loss_fn: LossFn = F.cross_entropy, *,
                         batch_fn: BatchFn | None = None) -> LossCurve:
    """1-D loss curve :math:`\\alpha \\mapsto L(\\mathbf w + \\alpha\\mathbf d)` (module docstring).

    Args:
        model: the network (eval mode during the call; not modified).
        loader: iterable of batches; materialised once on the model's device, so pass a small
            fixed subset (the same batches serve every alpha).
        direction: ``{parameter name: tensor}``, e.g. from :func:`random_direction`.
        alphas: step sizes, in the units of the direction.
        loss_fn: ``loss_fn(output, y)`` returning the batch mean (default cross-entropy).
        batch_fn: maps a batch to ``(x, y)`` (default: ``(x, y, *rest)`` tuples and dicts).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import loss_along_direction, random_direction
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> direction = random_direction(model, filter_normalized=False, generator=torch.Generator().manual_seed(0))
        >>> curve = loss_along_direction(model, loader, direction, alphas=[-0.5, 0.0, 0.5])
        >>> len(curve.losses), curve.losses[1] == curve.base_loss
        (3, True)
    """
    alphas = [float(a) for a in alphas]
    if not alphas:
        raise ValueError("Expected at least one value in `alphas`, but got none.")
    data = _materialize(loader, model, batch_fn)
    base = _named_parameters(model, None)
    direction = _check_direction(direction, base)
    with eval_mode(model):
        base_loss = float(_dataset_loss(model, {}, data, loss_fn))
        losses = []
        for alpha in alphas:
            moved = {name: base[name] + alpha * d for name, d in direction.items()}
            losses.append(float(_dataset_loss(model, moved, data, loss_fn)))
    return LossCurve(alphas=tuple(alphas), losses=tuple(losses), base_loss=base_loss)


class Asymmetry(Measurement):
    """Result of :func:`asymmetry_factor`: ``value`` is :math:`\\Omega`, the mean of ``ratios`` (NaN if
    any ratio is undefined), and ``sem`` its standard error over directions (``std(ddof=1) / sqrt(m)``).

    ``details`` (also attributes):

    - ``ratios``: :math:`\\min(l_i^+, l_i^-)/\\max(l_i^+, l_i^-)` per direction; NaN when
      :math:`\\max(l_i^+, l_i^-) \\le 0` (the loss does not increase on either side, so the point is
      not a minimum along that line and the ratio has no meaning); negative when only one side
      increases.
    - ``increases_plus``, ``increases_minus``: :math:`l_i^+` and :math:`l_i^-` (nats for cross-entropy).
    - ``base_loss``: :math:`L(\\mathbf w)`; ``mu``: the distance used.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import Asymmetry, asymmetry_factor
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> result = asymmetry_factor(model, loader, mu=0.5, directions=4)
        >>> isinstance(result, Asymmetry), len(result.ratios), len(result.increases_plus), result.mu
        (True, 4, 4, 0.5)
    """

    ratios = detail("ratios")
    increases_plus = detail("increases_plus")
    increases_minus = detail("increases_minus")
    base_loss = detail("base_loss")
    mu = detail("mu")


@renamed_argument("batches", "loader")
@torch.no_grad()
def asymmetry_factor(model: nn.Module, loader: Iterable, mu: float,
                     directions: int | Sequence[Direction] = 30, generator: torch.Generator | None = None,
                     loss_fn: LossFn = F.cross_entropy, params: Sequence[str] | None = None, *,
                     batch_fn: BatchFn | None = None) -> Asymmetry:
    """Asymmetry factor :math:`\\Omega` of Boca et al. (module docstring).

    Args:
        model: the network at (or near) a minimum; not modified.
        loader: iterable of batches defining :math:`L` (Boca et al.: the training set).
        mu: distance :math:`\\mu > 0` along each unit direction (Boca et al. use 5 with 30 directions
            for a MobileNetV2; it is in parameter units, so it is not scale invariant).
        directions: the number m of random directions drawn as Boca et al. (U(0, 1) entries,
            unit Euclidean norm over ``params``), or explicit directions (used as given, e.g.
            filter-normalised ones from :func:`random_direction`).
        generator: ``torch.Generator`` for the random directions; ``None``: a CPU generator seeded
            with :data:`sharpkit.metrics.DEFAULT_SEED`.
        loss_fn: ``loss_fn(output, y)`` returning the batch mean (default cross-entropy).
        params: parameter names the random directions move (default: all).
        batch_fn: maps a batch to ``(x, y)`` (default: ``(x, y, *rest)`` tuples and dicts).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import asymmetry_factor
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> result = asymmetry_factor(model, loader, mu=0.5, directions=4)
        >>> result.value == asymmetry_factor(model, loader, mu=0.5, directions=4).value  # default seed
        True
        >>> -1.0 <= result.value <= 1.0  # 1 = symmetric; negative where one side goes down
        True
    """
    check_positive("mu", mu)
    data = _materialize(loader, model, batch_fn)
    base = _named_parameters(model, None)
    if isinstance(directions, int) and not isinstance(directions, bool):
        check_positive("directions", directions, integer=True)
        generator = resolve_generator(generator)
        directions = [random_direction(model, filter_normalized=False, generator=generator, params=params,
                                       distribution="uniform") for _ in range(directions)]
    elif not isinstance(directions, Sequence) or not directions:
        raise ValueError("Expected `directions` as a positive number of random directions or a non-empty "
                         f"list of {{name: tensor}} dicts, but got {directions!r}.")
    with eval_mode(model):
        base_loss = float(_dataset_loss(model, {}, data, loss_fn))
        plus, minus, ratios = [], [], []
        for direction in directions:
            direction = _check_direction(direction, base)
            up = float(_dataset_loss(model, {n: base[n] + mu * d for n, d in direction.items()}, data,
                                     loss_fn)) - base_loss
            down = float(_dataset_loss(model, {n: base[n] - mu * d for n, d in direction.items()}, data,
                                       loss_fn)) - base_loss
            plus.append(up)
            minus.append(down)
            high = max(up, down)
            ratios.append(min(up, down) / high if high > 0 else float("nan"))
    value = sum(ratios) / len(ratios)
    sem = mean_and_sem(ratios, ddof=1)[1]
    return Asymmetry(value=value, sem=sem, details={"ratios": tuple(ratios), "increases_plus": tuple(plus),
                                                    "increases_minus": tuple(minus), "base_loss": base_loss,
                                                    "mu": float(mu)})
