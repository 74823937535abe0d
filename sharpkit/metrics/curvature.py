r"""Curvature of the training loss from Hessian-vector products: trace, top eigenvalues, dense Hessian.

The loss :math:`L` is the one of ``sharpkit.metrics.landscape``: per-sample weighted batch
losses on a *fixed* list of batches, eval mode (BatchNorm running statistics, no dropout),
evaluated through ``torch.func.functional_call`` so the model is never written. The Hessian is
taken with respect to all floating parameters or a named subset (``params``); the others are
constants.

Rescaled Hessian (``scaling``): :math:`\tilde H = \mathrm{diag}(\mathbf c)\, H\, \mathrm{diag}(\mathbf c)`,
i.e. :math:`\nabla^2 L \odot \mathbf c\mathbf c^\top`. With :math:`\mathbf c = |\mathbf w|`
(``scaling="adaptive"``) this is the Hessian of elementwise adaptive sharpness of Andriushchenko
et al. ("A Modern Look at the Relationship between Sharpness and Generalization", ICML 2023,
eqs. 2-3): for :math:`\rho \to 0`,
:math:`S_{avg} \approx \frac{\rho^2}{2}\mathrm{tr}\tilde H` and, at a minimum,
:math:`S_{max} \approx \frac{\rho^2}{2}\lambda_{\max}(\tilde H)`. Any other positive vector
(e.g. the :math:`\sqrt{|v_i|/|u_i|}` of their diagonal-network section 5.2) can be passed as a dict.

Hessian-vector products :math:`Hv` are computed by double backward (reverse-over-reverse), batch
by batch, so memory is that of one batch's graph plus a few parameter-sized vectors.

- :func:`~sharpkit.metrics.hessian_trace`: Hutchinson's estimator (Hutchinson, "A Stochastic
  Estimator of the Trace of the Influence Matrix for Laplacian Smoothing Splines", Communications in
  Statistics - Simulation and Computation, 1990) with Rademacher probes
  :math:`z_i \in \{-1, 1\}^P`: :math:`\mathrm{tr}\,H \approx \frac1S\sum_i z_i^\top H z_i`, with the
  standard error :math:`\mathrm{std}(z_i^\top H z_i)/\sqrt S`.
- :func:`~sharpkit.metrics.hessian_top_eigenvalues`: Lanczos with full reorthogonalisation (restarted with a fresh
  random vector orthogonal to the basis on an invariant subspace, so repeated eigenvalues are
  found); Ritz values of the projected matrix, largest algebraic first. With ``max_vectors`` the
  basis is bounded and the iteration is thick-restarted (Wu and Simon, "Thick-Restart Lanczos
  Method for Large Symmetric Eigenvalue Problems", SIAM J. Matrix Anal. Appl. 2000; the symmetric
  case of Stewart's Krylov-Schur method, 2001): when the basis is full it is compressed to the best
  Ritz vectors and the iteration goes on from the last residual.
- :func:`~sharpkit.metrics.hessian_matrix`: the dense (P, P) Hessian column by column (small models only).
- :func:`~sharpkit.metrics.hessian_vector_product`: one :math:`Hv` as a ``{name: tensor}`` dict.

Random probes and start vectors come from ``generator``, by default a CPU generator seeded with
:data:`sharpkit.metrics.DEFAULT_SEED` (two calls give the same value). Every function takes the data
as ``loader`` (formerly ``batches``, still accepted with a DeprecationWarning) and a ``batch_fn``.

Units: those of the loss per squared parameter unit (nats for cross-entropy); the rescaled
Hessian is in nats (the scaling carries the parameter units).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.validation import check_positive
from ._common import BatchFn, Measurement, detail, eval_mode, mean_and_sem, renamed_argument, resolve_generator
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

    def __init__(self, model: nn.Module, loader: Iterable, params: Sequence[str] | None,
                 scaling: Scaling, loss_fn: LossFn, batch_fn: BatchFn | None = None) -> None:
        self.model, self.loss_fn = model, loss_fn
        self.data = _materialize(loader, model, batch_fn)
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
                dot = cast(torch.Tensor, sum((g * v).sum() for g, v in zip(grads, pieces)))
                if not dot.requires_grad:  # the loss is at most linear in these parameters
                    continue
                hv = torch.autograd.grad(dot, list(leaves.values()), allow_unused=True,
                                         materialize_grads=True)
                out += torch.cat([h.reshape(-1) for h in hv])
        if self.scale is not None:
            out = out * self.scale
        return out


class HessianTrace(Measurement):
    """Result of :func:`hessian_trace`: ``value`` is the Hutchinson estimate of
    :math:`\\mathrm{tr}\\,\\tilde H`, ``sem`` its standard error ``std(ddof=1) / sqrt(samples)`` (NaN for
    one sample). ``details`` (also attributes): ``values`` (the per-probe :math:`z_i^\\top \\tilde H z_i`)
    and ``num_params`` (P, the dimension of the Hessian).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import HessianTrace, hessian_trace
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> result = hessian_trace(model, loader, samples=4)
        >>> isinstance(result, HessianTrace), result.num_params, len(result.values)
        (True, 15, 4)
    """

    values = detail("values", "The per-probe quadratic forms.")
    num_params = detail("num_params", "P, the dimension of the Hessian.")


class HessianEigen(Measurement):
    """Result of :func:`hessian_top_eigenvalues`: ``value`` is the largest Ritz value, ``sem`` is NaN
    (deterministic given the start vector; ``residuals`` bound the error).

    ``details`` (also attributes):

    - ``values``: the k largest (algebraic) Ritz values, descending.
    - ``vectors``: the matching unit Ritz vectors as ``{name: tensor}`` dicts (Euclidean norm 1 over
      the selected parameters).
    - ``residuals``: Lanczos residual norms :math:`\\|\\tilde H x - \\lambda x\\|` of each pair (the
      standard bound :math:`\\beta_m |y_m|`; an eigenvalue is accurate to about residual^2 / gap, and
      exact when the residual is ~0).
    - ``iterations``: the number of Lanczos iterations (Hessian-vector products) done.
    - ``restarts``: the number of thick restarts (0 unless ``max_vectors`` bounded the basis).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import hessian_top_eigenvalues
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> top = hessian_top_eigenvalues(model, loader, k=2, iters=15)  # 15 = P: the exact spectrum
        >>> len(top.values), sorted(top.vectors[0]), top.restarts, max(top.residuals) < 1e-4
        (2, ['bias', 'weight'], 0, True)
    """

    values = detail("values", "The k largest Ritz values, descending.")
    vectors = detail("vectors", "Unit Ritz vectors as {name: tensor} dicts.")
    residuals = detail("residuals", "Residual norms of the Ritz pairs.")
    iterations = detail("iterations", "Number of Hessian-vector products.")
    restarts = detail("restarts", "Number of thick restarts.")


@renamed_argument("batches", "loader")
def hessian_vector_product(model: nn.Module, loader: Iterable, vector: Mapping[str, torch.Tensor],
                           params: Sequence[str] | None = None, scaling: Scaling = None,
                           loss_fn: LossFn = F.cross_entropy, *,
                           batch_fn: BatchFn | None = None) -> dict[str, torch.Tensor]:
    """:math:`\\tilde H v` for one direction ``vector`` = ``{name: tensor}`` over the selected params
    (module docstring); missing names count as zero. Other arguments as :func:`hessian_trace`.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import hessian_matrix, hessian_vector_product
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> hv = hessian_vector_product(model, loader, {"weight": torch.ones(3, 4)})  # the bias stays
        >>> sorted(hv), hv["weight"].shape
        (['bias', 'weight'], torch.Size([3, 4]))
        >>> v = torch.cat([torch.ones(12), torch.zeros(3)])  # the same direction, flattened
        >>> torch.allclose(hessian_matrix(model, loader) @ v, torch.cat([hv["weight"].flatten(), hv["bias"]]),
        ...                atol=1e-6)
        True
    """
    operator = _Operator(model, loader, params, scaling, loss_fn, batch_fn)
    unknown = [n for n in vector if n not in operator.base]
    if unknown:
        raise ValueError(f"`vector` names {unknown!r} that are not among the selected parameters "
                         f"{operator.names!r}.")
    full = {n: vector.get(n, torch.zeros_like(operator.base[n])) for n in operator.names}
    with eval_mode(model):
        return {n: t.clone() for n, t in operator.unflatten(operator(operator.flatten(full))).items()}


@renamed_argument("batches", "loader")
def hessian_trace(model: nn.Module, loader: Iterable, samples: int = 100,
                  generator: torch.Generator | None = None, params: Sequence[str] | None = None,
                  scaling: Scaling = None, loss_fn: LossFn = F.cross_entropy, *,
                  batch_fn: BatchFn | None = None) -> HessianTrace:
    """Hutchinson estimate of the trace of the (rescaled) Hessian with its standard error.

    Args:
        model: the network (eval mode during the call; not modified).
        loader: iterable of batches; materialised once on the model's device and reused for
            every probe (a fixed list of batches; pass a subset for large data).
        samples: number S of Rademacher probes (one Hessian-vector product each, i.e. one
            forward-backward-backward pass over ``loader``).
        generator: ``torch.Generator`` for the probes, drawn parameter by parameter as
            ``2 * torch.randint(0, 2, shape, generator=generator) - 1``; ``None``: a CPU generator
            seeded with :data:`sharpkit.metrics.DEFAULT_SEED`.
        params: names of the parameters of the Hessian (default: all floating parameters).
        scaling: ``None`` (plain Hessian), ``"adaptive"`` (:math:`\\mathbf c = |\\mathbf w|`) or a
            dict ``{name: c}`` (missing names: c = 1).
        loss_fn: ``loss_fn(output, y)`` returning the batch mean (default cross-entropy).
        batch_fn: maps a batch to ``(x, y)`` (default: ``(x, y, *rest)`` tuples and dicts).

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import hessian_trace
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3))
        >>> batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> result = hessian_trace(model, batches, samples=10)
        >>> result.value == hessian_trace(model, batches, samples=10).value
        True
    """
    check_positive("samples", samples, integer=True)
    generator = resolve_generator(generator)
    operator = _Operator(model, loader, params, scaling, loss_fn, batch_fn)
    values = []
    with eval_mode(model):
        for _ in range(samples):
            z = operator.probe(generator, "rademacher")
            values.append(float(torch.dot(z.double(), operator(z).double())))
    value, sem = mean_and_sem(values, ddof=1)
    return HessianTrace(value=value, sem=sem, details={"values": tuple(values), "num_params": operator.size})


def _restart(basis: torch.Tensor, t: torch.Tensor, count: int, keep: int, beta: float) -> int:
    """Thick restart: compress the basis to its ``keep`` best Ritz vectors. The projected matrix becomes
    ``diag(theta)`` bordered by the couplings ``beta * y_last`` of the Ritz vectors to the next basis vector
    (the normalised residual). Returns the new number of basis vectors."""
    evals, evecs = torch.linalg.eigh(t[:count, :count])
    top = torch.argsort(evals, descending=True)[:keep]
    y = evecs[:, top]
    basis[:keep] = y.T.to(basis.dtype) @ basis[:count]
    coupling = beta * y[count - 1]
    t.zero_()
    t[:keep, :keep] = torch.diag(evals[top])
    t[keep, :keep] = coupling
    t[:keep, keep] = coupling
    return keep


def _lanczos(operator: _Operator, k: int, steps: int, width: int,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float, int, int]:
    """Lanczos with full reorthogonalisation against a basis of at most ``width`` vectors (thick-restarted
    when full). Returns ``(basis, projected matrix, last beta, iterations, restarts)``."""
    basis = torch.zeros(width, operator.size, dtype=operator.dtype, device=operator.device)
    t = torch.zeros(width, width, dtype=torch.float64)
    keep = min(width - 1, max(k, width // 2))
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
    assert q is not None, "the first Lanczos probe is zero"
    count = restarts = done = 0
    last_beta = scale = 0.0
    for step in range(steps):
        basis[count] = q
        w = operator(q)
        alpha = float(torch.dot(w, q))
        w = orthogonalize(w, count + 1)  # removes alpha q and the couplings to the earlier vectors too
        beta = float(w.norm())
        t[count, count] = alpha
        count, done = count + 1, step + 1
        scale = max(scale, abs(alpha), beta)
        if step == steps - 1:
            last_beta = beta
            break
        if beta <= 1e3 * eps * max(scale, 1e-30) * math.sqrt(operator.size):
            # Invariant subspace: its eigenvalues are exact; continue in the orthogonal complement.
            q = fresh(count)
            if q is None:
                break
            beta = 0.0
        else:
            q = w / beta
        if count == width:
            count, restarts = _restart(basis, t, count, keep, beta), restarts + 1
        else:
            t[count, count - 1] = t[count - 1, count] = beta
    return basis[:count], t[:count, :count], last_beta, done, restarts


@renamed_argument("batches", "loader")
def hessian_top_eigenvalues(model: nn.Module, loader: Iterable, k: int = 1, iters: int = 50,
                            generator: torch.Generator | None = None, params: Sequence[str] | None = None,
                            scaling: Scaling = None, loss_fn: LossFn = F.cross_entropy, *,
                            max_vectors: int | None = None, batch_fn: BatchFn | None = None) -> HessianEigen:
    """The k largest eigenvalues of the (rescaled) Hessian by Lanczos (module docstring).

    Cost: ``m = min(iters, P)`` Hessian-vector products (``iters`` when restarted), each followed by a
    reorthogonalisation against the stored basis (O(width x P) flops). Memory: ``width = min(max_vectors, m)``
    parameter-sized basis vectors in the parameters' dtype (by default all m: for ResNet-18,
    P = 11.2M in float32, that is 45 MB per vector, 2.2 GB at the default 50), plus ``keep`` more
    for a moment at each restart. With ``iters >= P`` and no restart the result is the exact
    spectrum up to rounding; the extreme eigenvalues usually converge in a few dozen iterations
    (check ``residuals``).

    ``max_vectors`` bounds the memory: when the basis holds ``max_vectors`` vectors it is compressed
    to its ``keep = min(max_vectors - 1, max(k, max_vectors // 2))`` best Ritz vectors (a thick
    restart) and Lanczos goes on from the last residual, for ``iters`` Hessian-vector products in all
    (not capped at P). Each restart costs O(keep x max_vectors x P) flops; convergence per product is
    slower than with the full basis, so raise ``iters`` and check ``residuals``. ``None`` (default)
    keeps every vector and never restarts.

    Args:
        model, loader, params, scaling, loss_fn, batch_fn: as :func:`hessian_trace`.
        k: number of eigenvalues (largest algebraic first; ``k <= min(iters, P)``).
        iters: Lanczos iterations (Hessian-vector products), capped at P unless restarted.
        generator: ``torch.Generator`` for the start vector (and restarts); ``None``: a CPU generator
            seeded with :data:`sharpkit.metrics.DEFAULT_SEED`.
        max_vectors: most basis vectors kept (at least ``k + 1``), or None for all ``min(iters, P)``.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import hessian_top_eigenvalues
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3))
        >>> batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> top = hessian_top_eigenvalues(model, batches, k=2, iters=15, max_vectors=6)
        >>> len(top.values), top.value == top.values[0]
        (2, True)
    """
    check_positive("k", k, integer=True)
    check_positive("iters", iters, integer=True)
    if max_vectors is not None:
        check_positive("max_vectors", max_vectors, integer=True)
        if max_vectors < k + 1:
            raise ValueError(f"Expected `max_vectors` >= k + 1 = {k + 1} (the k Ritz vectors kept at a restart "
                             f"and one new one), but got {max_vectors}; raise it or pass None to keep all.")
    generator = resolve_generator(generator)
    operator = _Operator(model, loader, params, scaling, loss_fn, batch_fn)
    m = min(iters, operator.size)
    if k > m:
        raise ValueError(f"Expected `k` <= min(iters, number of parameters) = {m}, but got k={k}; raise "
                         "`iters` or ask for fewer eigenvalues.")
    width = m if max_vectors is None else min(max_vectors, m)
    steps = m if width == m else iters  # restarted: the Krylov space never fills, so iters may exceed P
    with eval_mode(model):
        basis, projected, last_beta, iterations, restarts = _lanczos(operator, k, steps, width, generator)
    evals, evecs = torch.linalg.eigh(projected)
    order = torch.argsort(evals, descending=True)[:k]
    values = tuple(float(evals[i]) for i in order)
    residuals = tuple(abs(last_beta * float(evecs[-1, i])) for i in order)
    ritz = evecs[:, order].to(dtype=operator.dtype, device=operator.device).T @ basis
    vectors = tuple({n: t.clone() for n, t in operator.unflatten(v / v.norm()).items()} for v in ritz)
    return HessianEigen(value=values[0], details={"values": values, "vectors": vectors, "residuals": residuals,
                                                  "iterations": iterations, "restarts": restarts})


@renamed_argument("batches", "loader")
def hessian_matrix(model: nn.Module, loader: Iterable, params: Sequence[str] | None = None,
                   scaling: Scaling = None, loss_fn: LossFn = F.cross_entropy, *,
                   batch_fn: BatchFn | None = None) -> torch.Tensor:
    """The dense (P, P) (rescaled) Hessian, built from P Hessian-vector products and symmetrised
    (:math:`(H + H^\\top)/2`, removing rounding asymmetry). Memory O(P^2): small models or a few named
    ``params`` only (e.g. the diagonal linear networks of Andriushchenko et al. sec. 5.2, or a head's
    bias). Rows/columns follow ``named_parameters()`` order of the selected parameters, each flattened
    row-major. Arguments as :func:`hessian_trace`.

    Examples:
        >>> import torch
        >>> from sharpkit.metrics import hessian_matrix, hessian_top_eigenvalues
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Linear(4, 3)
        >>> loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
        >>> hessian = hessian_matrix(model, loader)
        >>> hessian.shape, torch.equal(hessian, hessian.T)
        (torch.Size([15, 15]), True)
        >>> top = hessian_top_eigenvalues(model, loader, iters=15)
        >>> abs(top.value - float(torch.linalg.eigvalsh(hessian)[-1])) < 1e-5
        True
        >>> bias = hessian_matrix(model, loader, params=["bias"])  # one block: the bias
        >>> bias.shape
        torch.Size([3, 3])
    """
    operator = _Operator(model, loader, params, scaling, loss_fn, batch_fn)
    columns = []
    with eval_mode(model):
        for i in range(operator.size):
            unit = torch.zeros(operator.size, dtype=operator.dtype, device=operator.device)
            unit[i] = 1.0
            columns.append(operator(unit))
    hessian = torch.stack(columns, dim=1)
    return (hessian + hessian.T) / 2
