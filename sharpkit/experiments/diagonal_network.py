r"""Sharpness of diagonal linear networks on sparse regression (Andriushchenko et al. 2023, sec. 5.2).

Source: Andriushchenko, Croce, Müller, Hein and Flammarion, "A Modern Look at the Relationship between
Sharpness and Generalization" (ICML 2023; below "Andriushchenko et al."), section 5.2, appendix A.2 and
Figure 7. A small, exact setting in which the sharpness measure that tracks generalisation is known.

Model and loss. A diagonal linear network predicts :math:`\langle \mathbf x, \beta\rangle` with
:math:`\beta = \mathbf u \odot \mathbf v` and weights :math:`\mathbf w = (\mathbf u, \mathbf v) \in
\mathbb R^{2d}`; on data :math:`X \in \mathbb R^{n\times d}`, :math:`\mathbf y = X\beta^* + \varepsilon`
with a sparse :math:`\beta^*`,

.. math::
    L(\mathbf w) = \tfrac1n \|X(\mathbf u\odot\mathbf v) - \mathbf y\|_2^2

(Andriushchenko et al.'s eq. 6 without the :math:`1/n`; the factor only rescales every measure by the same
constant). With
:math:`\mathbf r = X\beta - \mathbf y`, :math:`U = \mathrm{diag}(\mathbf u)`, :math:`V = \mathrm{diag}(\mathbf v)`
the Hessian is exactly (Andriushchenko et al., eq. 7)

.. math::
    \nabla^2 L = \tfrac2n \begin{bmatrix} V X^\top X V & V X^\top X U + \mathrm{diag}(X^\top \mathbf r) \\
                 U X^\top X V + \mathrm{diag}(X^\top \mathbf r) & U X^\top X U \end{bmatrix}.

Measures (local, :math:`\rho \to 0`; Andriushchenko et al. sec. 5.2 and app. A.1): the average-case sharpness is
:math:`\mathrm{tr}\,\nabla^2 L`, the worst-case one :math:`\lambda_{\max}(\nabla^2 L)`. Their adaptive versions use the
*rescaled* Hessian :math:`\tilde\nabla^2 L = C\,\nabla^2 L\,C`, :math:`C = \mathrm{diag}(\mathbf c)`. Two
scalings:

- ``rescaled``: Andriushchenko et al.'s elementwise :math:`c_i = \sqrt{|u_i|/|v_i|}` on the u-block and
  :math:`\sqrt{|v_i|/|u_i|}` on the v-block, for which, at a global minimum with whitened data,
  :math:`\tfrac12\mathrm{tr}\,\tilde\nabla^2 L \propto \|\beta\|_1` and :math:`\lambda_{\max} \propto \|\beta\|_\infty`
  (their text writes the two blocks' ratios the other way round; this is the assignment for which the
  identity holds with their Hessian, eq. 8). Invariant under :math:`(\alpha\mathbf u, \mathbf v/\alpha)`.
- ``adaptive``: :math:`\mathbf c = |\mathbf w|`, the scaling of adaptive sharpness
  (:func:`sharpkit.metrics.adaptive_sharpness`), which gives :math:`\|\beta\|_2^2`-like quantities.

Test loss: for :math:`\mathbf x \sim \mathcal N(0, I_d)` the population risk is
:math:`\mathbb E(\langle\mathbf x,\beta\rangle - y)^2 = \|\beta - \beta^*\|_2^2 + \sigma^2`; we report the
excess risk :math:`\|\beta - \beta^*\|_2^2` (exact, no test sample).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from ..utils.validation import check_positive

__all__ = ["DiagonalNetworkSettings", "SparseRegression", "diagonal_network_experiment",
           "diagonal_network_hessian", "diagonal_network_loss", "diagonal_network_measures",
           "train_diagonal_networks", "MEASURES"]

# Sharpness measures (columns of the experiment's frame) and what they approximate at a minimum.
MEASURES = ("trace", "lambda_max", "rescaled_trace", "rescaled_lambda_max", "adaptive_trace",
            "adaptive_lambda_max")


@dataclass(frozen=True)
class SparseRegression:
    """An overparametrised sparse regression task (Andriushchenko et al. sec. 5.2: d = 200, 90 % sparsity).

    ``X`` has i.i.d. standard normal entries; :math:`\\beta^*` has ``round((1 - sparsity) d)`` non-zero
    coordinates at random positions, each :math:`\\pm 1` times a uniform magnitude in [0.5, 1.5];
    ``noise`` is the standard deviation of the label noise.
    """

    n: int = 100
    d: int = 200
    sparsity: float = 0.9
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive("n", self.n, integer=True)
        check_positive("d", self.d, integer=True)
        check_positive("noise", self.noise, allow_zero=True)
        if not 0 <= self.sparsity < 1:
            raise ValueError(f"Expected `sparsity` in [0, 1) (the fraction of zero coordinates of beta*), "
                             f"but got {self.sparsity!r}.")

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(X, y, beta_star)`` in float64, a deterministic function of the fields."""
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.n, self.d, generator=g, dtype=torch.float64)
        k = max(1, round((1 - self.sparsity) * self.d))
        beta = torch.zeros(self.d, dtype=torch.float64)
        support = torch.randperm(self.d, generator=g)[:k]
        signs = torch.randint(0, 2, (k,), generator=g).to(torch.float64) * 2 - 1
        beta[support] = signs * (0.5 + torch.rand(k, generator=g, dtype=torch.float64))
        y = x @ beta + self.noise * torch.randn(self.n, generator=g, dtype=torch.float64)
        return x, y, beta


def diagonal_network_loss(x: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """:math:`\\frac1n\\|X(u\\odot v) - y\\|^2`; ``u``, ``v`` of shape (d,) or (N, d) for N networks."""
    residual = (u * v) @ x.T - y
    return residual.pow(2).mean(dim=-1)


def train_diagonal_networks(x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor, u0: torch.Tensor,
                            v0: torch.Tensor, target_loss: float = 1e-5, max_steps: int = 200_000,
                            progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-batch gradient descent on N networks at once, each with its own step size, until its training
    loss is below ``target_loss`` (it then stops moving) or ``max_steps``.

    Returns ``(u, v, steps)``: final weights (N, d) and the step at which each network reached the target
    (``max_steps`` if it did not; NaN weights if it diverged).
    """
    check_positive("target_loss", target_loss)
    check_positive("max_steps", max_steps, integer=True)
    u, v = u0.clone(), v0.clone()
    n = x.shape[0]
    lr = lr.reshape(-1, 1).to(u)
    steps = torch.full((u.shape[0],), max_steps, dtype=torch.long)
    active = torch.ones(u.shape[0], dtype=torch.bool)
    bar = tqdm(range(max_steps), disable=not progress, desc="gradient descent", unit="step", mininterval=1.0)
    for step in bar:
        residual = (u * v) @ x.T - y                        # (N, n)
        loss = residual.pow(2).mean(dim=1)
        done = active & ((loss < target_loss) | ~torch.isfinite(loss))
        steps[done] = step
        active &= ~done
        if not active.any():
            break
        if step % 1000 == 0:
            bar.set_postfix(running=int(active.sum()))
        grad_beta = (2.0 / n) * residual @ x                # dL/dbeta, (N, d)
        move = active.reshape(-1, 1).to(u)
        u, v = u - move * lr * grad_beta * v, v - move * lr * grad_beta * u
    return u, v, steps


def diagonal_network_hessian(x: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The exact (2d, 2d) Hessian of :func:`diagonal_network_loss` at ``(u, v)`` (module docstring)."""
    n = x.shape[0]
    gram = x.T @ x
    residual_corr = torch.diag(x.T @ (x @ (u * v) - y))
    uu = v[:, None] * gram * v[None, :]
    uv = v[:, None] * gram * u[None, :] + residual_corr
    vv = u[:, None] * gram * u[None, :]
    return (2.0 / n) * torch.cat([torch.cat([uu, uv], dim=1), torch.cat([uv.T, vv], dim=1)], dim=0)


def _scaled(hessian: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return c[:, None] * hessian * c[None, :]


def diagonal_network_measures(x: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                              beta_star: torch.Tensor, eps: float = 1e-12) -> dict[str, float]:
    """Every measure of one network: the plain, ``rescaled`` and ``adaptive`` trace and top eigenvalue
    of the Hessian (module docstring), :math:`\\|\\beta\\|_1`, the training loss and the test loss."""
    hessian = diagonal_network_hessian(x, y, u, v)
    au, av = u.abs() + eps, v.abs() + eps
    scalings = {"": None, "rescaled_": torch.cat([(au / av).sqrt(), (av / au).sqrt()]),
                "adaptive_": torch.cat([u.abs(), v.abs()])}
    out: dict[str, float] = {}
    for prefix, c in scalings.items():
        h = hessian if c is None else _scaled(hessian, c)
        out[prefix + "trace"] = float(torch.diagonal(h).sum())
        out[prefix + "lambda_max"] = float(torch.linalg.eigvalsh(h)[-1])
    beta = u * v
    out["l1_norm"] = float(beta.abs().sum())
    out["train_loss"] = float(diagonal_network_loss(x, y, u, v))
    out["test_loss"] = float((beta - beta_star).pow(2).sum())
    return out


@dataclass(frozen=True)
class DiagonalNetworkSettings:
    """The grid of Andriushchenko et al. sec. 5.2: ``networks`` networks, each with a step size, an initialisation scale
    :math:`\\alpha` and a layer balance :math:`s` drawn log-uniformly from the ranges, initialised as
    :math:`u_0 = \\alpha s\\, z_u`, :math:`v_0 = (\\alpha / s)\\, z_v` (z standard normal), and trained by
    gradient descent to ``target_loss``. Step sizes are relative to :math:`1/\\lambda_{\\max}(X^\\top X/n)`
    so that the ranges mean the same thing for any data."""

    networks: int = 200
    lr_range: tuple[float, float] = (0.05, 0.5)
    init_scale_range: tuple[float, float] = (0.05, 1.0)
    balance_range: tuple[float, float] = (0.25, 4.0)
    target_loss: float = 1e-5
    max_steps: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive("networks", self.networks, integer=True)
        for name in ("lr_range", "init_scale_range", "balance_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"Expected `{name}` as (low, high) with 0 < low <= high, but got {(low, high)!r}.")


def _log_uniform(g: torch.Generator, size: int, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = math.log(bounds[0]), math.log(bounds[1])
    return torch.exp(low + (high - low) * torch.rand(size, generator=g, dtype=torch.float64))


def diagonal_network_experiment(task: SparseRegression = SparseRegression(),
                                settings: DiagonalNetworkSettings = DiagonalNetworkSettings(),
                                progress: bool = True) -> pd.DataFrame:
    """Train ``settings.networks`` diagonal networks on ``task`` and measure each (one row per network:
    its lr, init scale, balance, steps, ``converged`` and :func:`diagonal_network_measures`)."""
    x, y, beta_star = task.sample()
    g = torch.Generator().manual_seed(settings.seed)
    count = settings.networks
    smoothness = float(torch.linalg.eigvalsh(x.T @ x / x.shape[0])[-1])
    lr = _log_uniform(g, count, settings.lr_range) / smoothness
    scale = _log_uniform(g, count, settings.init_scale_range)
    balance = _log_uniform(g, count, settings.balance_range)
    u0 = (scale * balance)[:, None] * torch.randn(count, task.d, generator=g, dtype=torch.float64)
    v0 = (scale / balance)[:, None] * torch.randn(count, task.d, generator=g, dtype=torch.float64)
    u, v, steps = train_diagonal_networks(x, y, lr, u0, v0, settings.target_loss, settings.max_steps, progress)
    rows = []
    for i in range(count):
        row: dict[str, Any] = {"network": i, "lr": float(lr[i]), "lr_relative": float(lr[i]) * smoothness,
               "init_scale": float(scale[i]), "balance": float(balance[i]), "steps": int(steps[i])}
        train_loss = float(diagonal_network_loss(x, y, u[i], v[i]))
        # Only minima are measured: the measures' closed forms and the comparison are about them.
        row["converged"] = train_loss < settings.target_loss
        row["status"] = ("ok" if row["converged"] else "not_converged" if math.isfinite(train_loss)
                         else "diverged")
        if row["converged"]:
            row.update(diagonal_network_measures(x, y, u[i], v[i], beta_star))
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs.update(task=asdict(task), settings=asdict(settings))
    return frame
