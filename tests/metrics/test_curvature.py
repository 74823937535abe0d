"""Hessian trace, eigenvalues and products against the exact Hessian of torch.autograd.functional.hessian
and against the closed form of a diagonal linear network (Andriushchenko et al. 2023, sec. 5.2)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sharpkit.metrics.curvature import (
    hessian_matrix,
    hessian_top_eigenvalues,
    hessian_trace,
    hessian_vector_product,
)

from ._helpers import assert_state_equal, make_data, make_net, state_copy


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _batches(seed=1):
    x, y = make_data(n=20, inputs=4, classes=3, seed=seed)
    return [(x[:12], y[:12]), (x[12:], y[12:])]


def _exact_hessian(model, batches, names=None):
    """Full Hessian of the per-sample mean cross-entropy by torch.autograd.functional.hessian."""
    named = dict(model.named_parameters())
    names = list(named) if names is None else names
    shapes = [named[n].shape for n in names]
    sizes = [named[n].numel() for n in names]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])

    def loss(flat):
        values = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        return F.cross_entropy(torch.func.functional_call(model, values, (x,)), y)

    flat = torch.cat([named[n].detach().reshape(-1) for n in names])
    return torch.autograd.functional.hessian(loss, flat), flat


def test_hutchinson_trace_is_within_three_standard_errors_of_the_exact_trace():
    model, batches = _mlp(), _batches()
    exact, _ = _exact_hessian(model, batches)
    result = hessian_trace(model, batches, samples=200, generator=torch.Generator().manual_seed(0))
    assert result.num_params == exact.shape[0] == 51
    assert result.sem > 0
    assert abs(result.value - float(torch.trace(exact))) < 3 * result.sem


def test_each_hutchinson_sample_is_the_quadratic_form_of_its_rademacher_probe():
    model, batches = _mlp(), _batches()
    exact, _ = _exact_hessian(model, batches)
    result = hessian_trace(model, batches, samples=5, generator=torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    for value in result.values:
        z = torch.cat([(2 * torch.randint(0, 2, p.shape, generator=generator) - 1).double().reshape(-1)
                       for p in model.parameters()])
        assert value == pytest.approx(float(z @ exact @ z), rel=1e-10)


def test_top_eigenvalues_match_eigvalsh():
    model, batches = _mlp(seed=2), _batches(seed=3)
    exact, _ = _exact_hessian(model, batches)
    reference = torch.linalg.eigvalsh(exact).flip(0)
    result = hessian_top_eigenvalues(model, batches, k=4, iters=exact.shape[0],
                                     generator=torch.Generator().manual_seed(0))
    assert torch.allclose(torch.tensor(result.values, dtype=torch.float64), reference[:4], atol=1e-4, rtol=0)
    # The Ritz vectors are eigenvectors: H x = lambda x.
    for value, vector in zip(result.values, result.vectors):
        flat = torch.cat([vector[n].reshape(-1) for n, _ in model.named_parameters()])
        assert float(flat.norm()) == pytest.approx(1.0)
        assert torch.allclose(exact @ flat, value * flat, atol=1e-6)
    # The largest eigenvalue converges long before the Krylov space is complete.
    short = hessian_top_eigenvalues(model, batches, k=1, iters=25, generator=torch.Generator().manual_seed(1))
    assert short.iterations == 25
    assert short.values[0] == pytest.approx(float(reference[0]), abs=1e-4)


def test_named_subset_and_adaptive_rescaling():
    model, batches = _mlp(seed=4), _batches(seed=5)
    names = ["2.weight", "0.bias"]
    exact, flat = _exact_hessian(model, batches, names)
    rescaled = flat.abs()[:, None] * exact * flat.abs()[None, :]
    generator = torch.Generator().manual_seed(0)
    assert torch.allclose(hessian_matrix(model, batches, params=names), exact, atol=1e-12)
    assert torch.allclose(hessian_matrix(model, batches, params=names, scaling="adaptive"), rescaled, atol=1e-12)
    eigen = hessian_top_eigenvalues(model, batches, k=2, iters=100, params=names, scaling="adaptive",
                                    generator=generator)
    assert eigen.iterations == flat.numel() == 24
    assert torch.allclose(torch.tensor(eigen.values, dtype=torch.float64),
                          torch.linalg.eigvalsh(rescaled).flip(0)[:2], atol=1e-10)
    trace = hessian_trace(model, batches, samples=400, params=names, scaling="adaptive",
                          generator=torch.Generator().manual_seed(0))
    assert abs(trace.value - float(torch.trace(rescaled))) < 3 * trace.sem
    vector = {"2.weight": torch.randn(3, 6, dtype=torch.float64)}
    product = hessian_vector_product(model, batches, vector, params=names)
    expected = exact @ torch.cat([vector["2.weight"].reshape(-1), torch.zeros(6, dtype=torch.float64)])
    assert torch.allclose(torch.cat([product["2.weight"].reshape(-1), product["0.bias"]]), expected, atol=1e-12)


class _Quadratic(nn.Module):
    """L(w) = 1/2 sum_i a_i w_i^2 through ``loss_fn``: Hessian diag(a), with repeated eigenvalues."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.3, -1.0, 2.0, 0.5, 1.5], dtype=torch.float64))

    def forward(self, x):
        return x * self.w


def test_repeated_eigenvalues_are_all_found():
    a = torch.tensor([3.0, 3.0, 1.0, 3.0, 0.5], dtype=torch.float64)

    def loss_fn(out, _):
        return 0.5 * (a * out ** 2).sum()

    batches = [(torch.ones(1, 5, dtype=torch.float64), torch.zeros(1))]
    result = hessian_top_eigenvalues(_Quadratic(), batches, k=4, iters=5, loss_fn=loss_fn,
                                     generator=torch.Generator().manual_seed(0))
    assert result.values == pytest.approx([3.0, 3.0, 3.0, 1.0], abs=1e-10)


class _DiagonalNet(nn.Module):
    """Diagonal linear network x -> <x, u * v> (001 sec. 5.2)."""

    def __init__(self, u: torch.Tensor, v: torch.Tensor) -> None:
        super().__init__()
        self.u, self.v = nn.Parameter(u.clone()), nn.Parameter(v.clone())

    def forward(self, x):
        return x @ (self.u * self.v)


def test_diagonal_linear_network_matches_the_closed_form_at_a_zero_residual_minimum():
    # Whitened data (X^T X = I) and y = X (u * v): the Hessian of 1/2 ||X(u*v) - y||^2 is
    # [[diag(v^2), diag(uv)], [diag(uv), diag(u^2)]], trace sum(u^2 + v^2), top eigenvalue max(u^2 + v^2).
    generator = torch.Generator().manual_seed(0)
    d = 6
    q, _ = torch.linalg.qr(torch.randn(10, d, generator=generator, dtype=torch.float64))
    u = torch.randn(d, generator=generator, dtype=torch.float64)
    v = torch.randn(d, generator=generator, dtype=torch.float64)
    net = _DiagonalNet(u, v)
    batches = [(q, q @ (u * v))]

    def loss_fn(out, target):
        return 0.5 * ((out - target) ** 2).sum()

    dense = hessian_matrix(net, batches, loss_fn=loss_fn)
    expected = torch.cat([torch.cat([torch.diag(v ** 2), torch.diag(u * v)], 1),
                          torch.cat([torch.diag(u * v), torch.diag(u ** 2)], 1)])
    assert torch.allclose(dense, expected, atol=1e-12)
    top = hessian_top_eigenvalues(net, batches, k=1, iters=2 * d, loss_fn=loss_fn, generator=generator)
    assert top.values[0] == pytest.approx(float((u ** 2 + v ** 2).max()), abs=1e-10)
    # With c = |w| (001: "c = w ... would lead to ||beta||_2^2 and ||beta||_inf^2"): each 2x2 block is
    # beta_i^2 [[1, s], [s, 1]], so trace 2 ||beta||_2^2 and top eigenvalue 2 ||beta||_inf^2.
    beta = u * v
    exact_rescaled = hessian_matrix(net, batches, loss_fn=loss_fn, scaling="adaptive")
    assert float(torch.trace(exact_rescaled)) == pytest.approx(2 * float((beta ** 2).sum()), rel=1e-12)
    top_rescaled = hessian_top_eigenvalues(net, batches, k=1, iters=2 * d, loss_fn=loss_fn, scaling="adaptive",
                                           generator=generator)
    assert top_rescaled.values[0] == pytest.approx(2 * float((beta ** 2).max()), abs=1e-10)
    trace = hessian_trace(net, batches, samples=300, loss_fn=loss_fn, scaling="adaptive", generator=generator)
    assert abs(trace.value - 2 * float((beta ** 2).sum())) < 3 * trace.sem


def test_model_is_not_modified_and_arguments_are_checked():
    net = make_net(seed=8)
    net.train()
    x, y = make_data(n=10, seed=9)
    before = state_copy(net)
    hessian_trace(net, [(x, y)], samples=2)
    hessian_top_eigenvalues(net, [(x, y)], k=1, iters=3)
    assert_state_equal(net, before)
    assert net.training
    with pytest.raises(ValueError, match="params"):
        hessian_trace(net, [(x, y)], params=["nope"])
    with pytest.raises(ValueError, match="k"):
        hessian_top_eigenvalues(net, [(x, y)], k=5, iters=3)
    with pytest.raises(ValueError, match="scaling"):
        hessian_trace(net, [(x, y)], scaling="relative")


def test_bounded_basis_lanczos_restarts_and_still_finds_the_top_eigenpairs():
    model, batches = _mlp(seed=2), _batches(seed=3)
    exact, _ = _exact_hessian(model, batches)
    reference = torch.linalg.eigvalsh(exact).flip(0)
    bounded = hessian_top_eigenvalues(model, batches, k=3, iters=60, max_vectors=8,
                                      generator=torch.Generator().manual_seed(0))
    assert bounded.restarts > 0 and bounded.iterations == 60
    assert torch.allclose(torch.tensor(bounded.values, dtype=torch.float64), reference[:3], atol=1e-8, rtol=0)
    for value, vector, residual in zip(bounded.values, bounded.vectors, bounded.residuals, strict=True):
        flat = torch.cat([vector[n].reshape(-1) for n, _ in model.named_parameters()])
        assert float(flat.norm()) == pytest.approx(1.0)
        assert float((exact @ flat - value * flat).norm()) < 1e-6
        assert residual < 1e-6
    # A basis as large as the Krylov space: no restart, the very numbers of the default.
    full = hessian_top_eigenvalues(model, batches, k=2, iters=12, generator=torch.Generator().manual_seed(1))
    same = hessian_top_eigenvalues(model, batches, k=2, iters=12, max_vectors=12,
                                   generator=torch.Generator().manual_seed(1))
    assert same.restarts == full.restarts == 0
    assert same.values == full.values and same.residuals == full.residuals
    with pytest.raises(ValueError, match=r"max_vectors` >= k \+ 1 = 3"):
        hessian_top_eigenvalues(model, batches, k=2, max_vectors=2)
