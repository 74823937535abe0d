r"""Curvature of the training loss from Hessian-vector products: trace, top eigenvalues, dense Hessian.

The loss :math:`L` is the one of :mod:`sharpkit.metrics.landscape`: per-sample weighted batch
losses on a *fixed* list of batches, eval mode (BatchNorm running statistics, no dropout),
evaluated through :func:`torch.func.functional_call` so the model is never written. The Hessian is
taken with respect to all floating parameters or a named subset (``params``); the others are
constants.

Rescaled Hessian (``scaling``): :math:`\tilde H = \mathrm{diag}(\mathbf c)\, H\, \mathrm{diag}(\mathbf c)`,
i.e. :math:`\nabla^2 L \odot \mathbf c\mathbf c^\top`. With :math:`\mathbf c = |\mathbf w|`
(``scaling="adaptive"``) this is the Hessian of elementwise adaptive sharpness of Andriushchenko
et al. (``../shared/papers/001_*``, eqs. 2-3): for :math:`\rho \to 0`,
:math:`S_{avg} \approx \frac{\rho^2}{2}\mathrm{tr}\tilde H` and, at a minimum,
:math:`S_{max} \approx \frac{\rho^2}{2}\lambda_{\max}(\tilde H)`. Any other positive vector
(e.g. the :math:`\sqrt{|v_i|/|u_i|}` of their diagonal-network section 5.2) can be passed as a dict.

Hessian-vector products :math:`Hv` are computed by double backward (reverse-over-reverse), batch
by batch, so memory is that of one batch's graph plus a few parameter-sized vectors.

- :func:`hessian_trace`: Hutchinson's estimator (Hutchinson 1990) with Rademacher probes
  :math:`z_i \in \{-1, 1\}^P`: :math:`\mathrm{tr}\,H \approx \frac1S\sum_i z_i^\top H z_i`, with the
  standard error :math:`\mathrm{std}(z_i^\top H z_i)/\sqrt S`.
- :func:`hessian_top_eigenvalues`: Lanczos with full reorthogonalisation (restarted with a fresh
  random vector orthogonal to the basis on an invariant subspace, so repeated eigenvalues are
  found); Ritz values of the tridiagonal matrix, largest algebraic first.
- :func:`hessian_matrix`: the dense (P, P) Hessian column by column (small models only).
- :func:`hessian_vector_product`: one :math:`Hv` as a ``{name: tensor}`` dict.

Units: those of the loss per squared parameter unit (nats for cross-entropy); the rescaled
Hessian is in nats (the scaling carries the parameter units).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_positive
from ._common import eval_mode, mean_and_sem
from .landscape import _batch_loss, _materialize, _named_parameters, _random_like

__all__ = [
    "HessianEigen",
    "HessianTrace",
    "hessian_matrix",
    "hessian_top_eigenvalues",
    "hessian_trace",
    "hessian_vector_product",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Scaling = str | Mapping[str, torch.Tensor] | None


class _Operator:
    """:math:`v \\mapsto \\tilde H v` on flat vectors (concatenation in ``named_parameters`` order)."""

    def __init__(self, model: nn.Module, batches: Iterable, params: Sequence[str] | None,
                 scaling: Scaling, loss_fn: LossFn) -> None:
        self.model, self.loss_fn = model, loss_fn
        self.data = _materialize(batches, model)
        self.base = _named_parameters(model, params)
        self.names = list(self.base)
        self.shapes = [self.base[n].shape for n in self.names]
        self.sizes = [self.base[n].numel() for n in self.names]
        self.size = sum(self.sizes)
        first = self.base[self.names[0]]
        self.dtype, self.device = first.dtype, first.device
        self.total = sum(y.shape[0] for _, y in self.data)
        self.scale = self._scaling(scaling)

    def _scaling(self, scaling: Scaling) -> torch.Tensor | None:
        if scaling is None:
            return None
        if scaling == "adaptive":
            return self.flatten({n: self.base[n].abs() for n in self.names})
        if not isinstance(scaling, Mapping):
            raise ValueError("Expected `scaling` to be None, 'adaptive' or a dict {parameter name: tensor}, "
                             f"but got {scaling!r}.")
        unknown = [n for n in scaling if n not in self.base]
        if unknown:
            raise ValueError(f"`scaling` names {unknown!r} that are not among the selected parameters "
                             f"{self.names!r}.")
        parts = {}
        for name in self.names:
            c = scaling.get(name)
            if c is None:
                parts[name] = torch.ones_like(self.base[name])  # unscaled
            elif not torch.is_tensor(c) or c.shape != self.base[name].shape:
                raise ValueError(f"`scaling[{name!r}]` must be a tensor of shape {tuple(self.base[name].shape)}.")
            else:
                parts[name] = c.detach().to(self.base[name])
        return self.flatten(parts)

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[n].reshape(-1).to(self.base[n]) for n in self.names])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: part.view(shape) for n, part, shape in zip(self.names, flat.split(self.sizes), self.shapes)}

    def probe(self, generator: torch.Generator | None, distribution: str) -> torch.Tensor:
        # Drawn parameter by parameter so the numbers do not depend on the device.
        return torch.cat([_random_like(self.base[n].shape, self.base[n], generator, distribution).reshape(-1)
                          for n in self.names])

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            vector = vector * self.scale
        pieces = list(self.unflatten(vector).values())
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        with torch.enable_grad():
            for x, y in self.data:
                leaves = {n: self.base[n].detach().requires_grad_(True) for n in self.names}
                loss = _batch_loss(self.model, leaves, x, y, self.loss_fn) * (y.shape[0] / self.total)
                grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True,
                                            allow_unused=True, materialize_grads=True)
                dot = sum((g * v).sum() for g, v in zip(grads, pieces))
                if not dot.requires_grad:  # the loss is at most linear in these parameters
                    continue
                hv = torch.autograd.grad(dot, list(leaves.values()), allow_unused=True,
                                         materialize_grads=True)
                out += torch.cat([h.reshape(-1) for h in hv])
        if self.scale is not None:
            out = out * self.scale
        return out


@dataclass(frozen=True)
class HessianTrace:
    """Result of :func:`hessian_trace`.

    Attributes:
        value: Hutchinson estimate of :math:`\\mathrm{tr}\\,\\tilde H`.
        sem: its standard error, ``std(ddof=1) / sqrt(samples)`` (NaN for one sample).
        values: the per-probe :math:`z_i^\\top \\tilde H z_i`.
        num_params: P, the dimension of the Hessian.
    """

    value: float
    sem: float
    values: tuple[float, ...]
    num_params: int


@dataclass(frozen=True)
class HessianEigen:
    """Result of :func:`hessian_top_eigenvalues`.

    Attributes:
        values: the k largest (algebraic) Ritz values, descending.
        vectors: the matching unit Ritz vectors as ``{name: tensor}`` dicts (Euclidean norm 1 over
            the selected parameters).
        residuals: Lanczos residual norms :math:`\\|\\tilde H x - \\lambda x\\|` of each pair (the
            standard bound :math:`\\beta_m |y_m|`; an eigenvalue is accurate to about
            residual^2 / gap, and exact when the residual is ~0).
        iterations: the number of Lanczos iterations (Hessian-vector products) done.
    """

    values: tuple[float, ...]
    vectors: tuple[dict[str, torch.Tensor], ...]
    residuals: tuple[float, ...]
    iterations: int


def hessian_vector_product(model: nn.Module, batches: Iterable, vector: Mapping[str, torch.Tensor],
                           params: Sequence[str] | None = None, scaling: Scaling = None,
                           loss_fn: LossFn = F.cross_entropy) -> dict[str, torch.Tensor]:
    """:math:`\\tilde H v` for one direction ``vector`` = ``{name: tensor}`` over the selected params
    (module docstring); missing names count as zero."""
    operator = _Operator(model, batches, params, scaling, loss_fn)
    unknown = [n for n in vector if n not in operator.base]
    if unknown:
        raise ValueError(f"`vector` names {unknown!r} that are not among the selected parameters "
                         f"{operator.names!r}.")
    full = {n: vector.get(n, torch.zeros_like(operator.base[n])) for n in operator.names}
    with eval_mode(model):
        return {n: t.clone() for n, t in operator.unflatten(operator(operator.flatten(full))).items()}


def hessian_trace(model: nn.Module, batches: Iterable, samples: int = 100,
                  generator: torch.Generator | None = None, params: Sequence[str] | None = None,
                  scaling: Scaling = None, loss_fn: LossFn = F.cross_entropy) -> HessianTrace:
    """Hutchinson estimate of the trace of the (rescaled) Hessian with its standard error.

    Args:
        model: the network (eval mode during the call; not modified).
        batches: iterable of ``(x, y)``; materialised once on the model's device and reused for
            every probe (a fixed list of batches; pass a subset for large data).
        samples: number S of Rademacher probes (one Hessian-vector product each, i.e. one
            forward-backward-backward pass over ``batches``).
        generator: ``torch.Generator`` for the probes, drawn parameter by parameter as
            ``2 * torch.randint(0, 2, shape, generator=generator) - 1``; ``None``: global RNG.
        params: names of the parameters of the Hessian (default: all floating parameters).
        scaling: ``None`` (plain Hessian), ``"adaptive"`` (:math:`\\mathbf c = |\\mathbf w|`) or a
            dict ``{name: c}`` (missing names: c = 1).
        loss_fn: ``loss_fn(output, y)`` returning the batch mean (default cross-entropy).
    """
    check_positive("samples", samples, integer=True)
    operator = _Operator(model, batches, params, scaling, loss_fn)
    values = []
    with eval_mode(model):
        for _ in range(samples):
            z = operator.probe(generator, "rademacher")
            values.append(float(torch.dot(z.double(), operator(z).double())))
    value, sem = mean_and_sem(values, ddof=1)
    return HessianTrace(value=value, sem=sem, values=tuple(values), num_params=operator.size)


def hessian_top_eigenvalues(model: nn.Module, batches: Iterable, k: int = 1, iters: int = 50,
                            generator: torch.Generator | None = None, params: Sequence[str] | None = None,
                            scaling: Scaling = None, loss_fn: LossFn = F.cross_entropy) -> HessianEigen:
    """The k largest eigenvalues of the (rescaled) Hessian by Lanczos (module docstring).

    Cost: ``min(iters, P)`` Hessian-vector products; memory: that many parameter-sized basis
    vectors (full reorthogonalisation), in the parameters' dtype. With ``iters >= P`` the result
    is the exact spectrum up to rounding; the extreme eigenvalues usually converge in a few dozen
    iterations (check ``residuals``).

    Args:
        model, batches, params, scaling, loss_fn: as :func:`hessian_trace`.
        k: number of eigenvalues (largest algebraic first; ``k <= min(iters, P)``).
        iters: Lanczos iterations (Krylov dimension), capped at P.
        generator: ``torch.Generator`` for the start vector (and restarts); ``None``: global RNG.
    """
    check_positive("k", k, integer=True)
    check_positive("iters", iters, integer=True)
    operator = _Operator(model, batches, params, scaling, loss_fn)
    m = min(iters, operator.size)
    if k > m:
        raise ValueError(f"Expected `k` <= min(iters, number of parameters) = {m}, but got k={k}; raise "
                         "`iters` or ask for fewer eigenvalues.")
    basis = torch.zeros(m, operator.size, dtype=operator.dtype, device=operator.device)
    alphas: list[float] = []
    betas: list[float] = []
    eps = torch.finfo(operator.dtype).eps

    def orthogonalize(vector: torch.Tensor, count: int) -> torch.Tensor:
        # Twice is enough (Kahan-Parlett "twice is enough" for classical Gram-Schmidt).
        for _ in range(2):
            vector = vector - basis[:count].T @ (basis[:count] @ vector)
        return vector

    def fresh(count: int) -> torch.Tensor | None:
        vector = orthogonalize(operator.probe(generator, "normal"), count)
        norm = vector.norm()
        return None if float(norm) <= math.sqrt(eps) else vector / norm

    q = fresh(0)
    last_beta = 0.0
    scale = 0.0
    with eval_mode(model):
        for j in range(m):
            basis[j] = q
            w = operator(q)
            alpha = float(torch.dot(w, q))
            w = orthogonalize(w, j + 1)  # removes alpha q and beta q_prev as well
            beta = float(w.norm())
            alphas.append(alpha)
            scale = max(scale, abs(alpha), beta)
            if j == m - 1:
                last_beta = beta
                break
            if beta <= 1e3 * eps * max(scale, 1e-30) * math.sqrt(operator.size):
                # Invariant subspace: its eigenvalues are exact; continue in the orthogonal complement.
                q = fresh(j + 1)
                if q is None:
                    last_beta = 0.0
                    break
                betas.append(0.0)
            else:
                q = w / beta
                betas.append(beta)
    steps = len(alphas)
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if steps > 1:
        off = torch.tensor(betas[:steps - 1], dtype=torch.float64)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    evals, evecs = torch.linalg.eigh(tridiagonal)
    order = torch.argsort(evals, descending=True)[:k]
    values = tuple(float(evals[i]) for i in order)
    residuals = tuple(abs(last_beta * float(evecs[steps - 1, i])) for i in order)
    ritz = evecs[:, order].to(dtype=operator.dtype, device=operator.device).T @ basis[:steps]
    vectors = tuple({n: t.clone() for n, t in operator.unflatten(v / v.norm()).items()} for v in ritz)
    return HessianEigen(values=values, vectors=vectors, residuals=residuals, iterations=steps)


def hessian_matrix(model: nn.Module, batches: Iterable, params: Sequence[str] | None = None,
                   scaling: Scaling = None, loss_fn: LossFn = F.cross_entropy) -> torch.Tensor:
    """The dense (P, P) (rescaled) Hessian, built from P Hessian-vector products and symmetrised
    (:math:`(H + H^\\top)/2`, removing rounding asymmetry). Memory O(P^2): small models only (e.g.
    the diagonal linear networks of 001 sec. 5.2). Rows/columns follow ``named_parameters()`` order
    of the selected parameters, each flattened row-major. Arguments as :func:`hessian_trace`."""
    operator = _Operator(model, batches, params, scaling, loss_fn)
    columns = []
    with eval_mode(model):
        for i in range(operator.size):
            unit = torch.zeros(operator.size, dtype=operator.dtype, device=operator.device)
            unit[i] = 1.0
            columns.append(operator(unit))
    hessian = torch.stack(columns, dim=1)
    return (hessian + hessian.T) / 2
