"""Loss curves, filter-normalised directions and the asymmetry factor of Boca et al. against direct
formulas on hand-made losses."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sharpkit.metrics.landscape import asymmetry_factor, loss_along_direction, random_direction

from ._helpers import assert_state_equal, make_data, make_net, state_copy


class _Point(nn.Module):
    """A free parameter vector w; ``forward`` hands it to ``loss_fn``, which defines L(w) by hand."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float64).clone())

    def forward(self, x):
        return self.w.expand(x.shape[0], -1)


_ONE_BATCH = [(torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1))]


def test_filter_normalised_direction_has_the_filter_norms_of_the_weights():
    net = make_net(seed=0)
    direction = random_direction(net, generator=torch.Generator().manual_seed(0))
    assert direction.keys() == dict(net.named_parameters()).keys()
    for name, p in net.named_parameters():
        d = direction[name]
        if p.ndim <= 1:
            assert torch.count_nonzero(d) == 0, name  # biases and BatchNorm: zero (Li et al. --xignore biasbn)
        else:
            assert torch.allclose(d.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1)), name
            assert not torch.allclose(d, p.detach())
    kept = random_direction(net, generator=torch.Generator().manual_seed(0), ignore_1d=False)
    bias = net.classifier.bias.detach()
    assert torch.allclose(kept["classifier.bias"].abs(), bias.abs())
    # Same generator, same draws: reproducible.
    again = random_direction(net, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(direction[n], again[n]) for n in direction)


def test_plain_directions_have_unit_norm_and_boca_directions_are_positive():
    net = make_net(seed=1)
    for distribution in ("normal", "uniform"):
        d = random_direction(net, filter_normalized=False, distribution=distribution,
                             generator=torch.Generator().manual_seed(1),
                             params=["classifier.weight", "features.0.bias"])
        assert sorted(d) == ["classifier.weight", "features.0.bias"]
        assert math.sqrt(sum(float((t ** 2).sum()) for t in d.values())) == pytest.approx(1.0)
        if distribution == "uniform":
            assert all(bool((t > 0).all()) for t in d.values())
    with pytest.raises(ValueError, match="distribution"):
        random_direction(net, distribution="cauchy")


def test_loss_along_direction_equals_moving_the_weights_by_hand():
    net = make_net(seed=2)
    net.train()
    x, y = make_data(n=18, seed=3)
    direction = random_direction(net, generator=torch.Generator().manual_seed(2))
    before = state_copy(net)
    alphas = [-1.0, -0.25, 0.0, 0.5, 1.0]
    curve = loss_along_direction(net, [(x[:10], y[:10]), (x[10:], y[10:])], direction, alphas)
    assert_state_equal(net, before)
    assert net.training
    for alpha, loss in zip(alphas, curve.losses):
        moved = copy.deepcopy(net).eval()
        with torch.no_grad():
            for name, p in moved.named_parameters():
                p.add_(alpha * direction[name])
            expected = float(F.cross_entropy(moved(x), y))  # per-sample mean over the 18 points
        assert loss == pytest.approx(expected, rel=1e-12)
    assert curve.losses[2] == curve.base_loss
    assert curve.alphas == tuple(alphas)


@pytest.mark.parametrize("a,b", [(1.0, 4.0), (2.5, 0.5), (3.0, 3.0)])
def test_asymmetry_of_a_hand_made_1d_loss_equals_the_formula(a, b):
    # L(w) = a (w - w0)^2 on the right, b (w - w0)^2 on the left; a U(0,1) direction in 1-D is +1, so
    # l+ = a mu^2, l- = b mu^2 and Omega = min(a, b) / max(a, b).
    w0 = 0.7

    def loss_fn(out, _):
        t = out[0, 0] - w0
        return torch.where(t > 0, a * t ** 2, b * t ** 2)

    mu = 0.3
    result = asymmetry_factor(_Point([w0]), _ONE_BATCH, mu, directions=3, loss_fn=loss_fn,
                              generator=torch.Generator().manual_seed(0))
    assert result.base_loss == 0.0
    assert result.increases_plus == pytest.approx([a * mu ** 2] * 3, rel=1e-12)
    assert result.increases_minus == pytest.approx([b * mu ** 2] * 3, rel=1e-12)
    assert result.value == pytest.approx(min(a, b) / max(a, b), rel=1e-12)


def test_asymmetry_factor_of_a_symmetric_quadratic_is_one():
    generator = torch.Generator().manual_seed(1)
    m = torch.randn(4, 4, generator=generator, dtype=torch.float64)
    matrix = m @ m.T + torch.eye(4, dtype=torch.float64)
    centre = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)

    def loss_fn(out, _):
        t = out[0] - centre
        return t @ matrix @ t

    result = asymmetry_factor(_Point(centre), _ONE_BATCH, mu=2.0, directions=10, loss_fn=loss_fn,
                              generator=generator)
    assert result.value == pytest.approx(1.0, rel=1e-12)
    assert all(r == pytest.approx(1.0, rel=1e-12) for r in result.ratios)


def test_asymmetry_with_explicit_directions_and_away_from_a_minimum():
    def linear(out, _):  # l+ = -l-: the ratio is -1
        return out[0] @ torch.tensor([1.0, 2.0], dtype=torch.float64)

    def concave(out, _):  # a maximum: no side increases, the ratio is undefined
        return -(out[0] ** 2).sum()

    directions = [{"w": torch.tensor([0.6, 0.8], dtype=torch.float64)}]
    assert asymmetry_factor(_Point([0.0, 0.0]), _ONE_BATCH, 1.0, directions, loss_fn=linear).value == -1.0
    assert math.isnan(asymmetry_factor(_Point([0.0, 0.0]), _ONE_BATCH, 1.0, directions, loss_fn=concave).value)
    with pytest.raises(ValueError, match="shape"):
        asymmetry_factor(_Point([0.0, 0.0]), _ONE_BATCH, 1.0, [{"w": torch.zeros(3)}], loss_fn=linear)
    with pytest.raises(ValueError, match="mu"):
        asymmetry_factor(_Point([0.0, 0.0]), _ONE_BATCH, 0.0, directions, loss_fn=linear)


def test_random_asymmetry_directions_are_boca_directions_drawn_in_order():
    net = make_net(seed=4)
    x, y = make_data(n=12, seed=5)
    result = asymmetry_factor(net, [(x, y)], mu=0.5, directions=2, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    for plus, minus in zip(result.increases_plus, result.increases_minus):
        d = random_direction(net, filter_normalized=False, distribution="uniform", generator=generator)
        curve = loss_along_direction(net, [(x, y)], d, [0.5, -0.5])
        assert plus == pytest.approx(curve.losses[0] - curve.base_loss, rel=1e-12)
        assert minus == pytest.approx(curve.losses[1] - curve.base_loss, rel=1e-12)
