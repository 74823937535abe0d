"""Neuronwise reparametrisation: features scaled by a positive diagonal D, classifier columns by D^-1.

The function is unchanged, so the Fisher-Rao norm (a function of the logits) and the normalised
relative flatness must not move; SAM sharpness (isotropic noise in parameter space) must.
"""
from __future__ import annotations

import copy

import pytest
import torch

from sharpkit.metrics import fisher_rao_norm, relative_flatness, sam_sharpness

from ._helpers import ShuffleLoader, make_data, make_net


def _rescaled(net, factors):
    other = copy.deepcopy(net)
    with torch.no_grad():
        last = other.features[3]  # Linear before the final ReLU: ReLU(D z) = D ReLU(z) for D > 0
        last.weight.mul_(factors[:, None])
        last.bias.mul_(factors)
        other.classifier.weight.div_(factors[None, :])
    return other


def test_reparametrisation_invariance():
    net = make_net(width=5, classes=4).eval()
    factors = torch.tensor([0.1, 0.5, 2.0, 5.0, 10.0], dtype=torch.float64)
    other = _rescaled(net, factors)
    x, y = make_data(n=30, classes=4)
    with torch.no_grad():
        assert torch.allclose(net(x), other(x), rtol=1e-12, atol=1e-12)
        assert not torch.allclose(net.features(x), other.features(x))

    def loader():
        return ShuffleLoader(x, y, 8, seed=4)

    assert fisher_rao_norm(other, loader()) == pytest.approx(fisher_rao_norm(net, loader()), rel=1e-10)
    assert relative_flatness(other, loader()) == pytest.approx(relative_flatness(net, loader()), rel=1e-10)
    # without the normalisation the measure is not invariant
    raw, raw_other = (relative_flatness(m, loader(), normalize_features=False) for m in (net, other))
    assert abs(raw_other - raw) > 0.05 * raw
    for convention in ("paper", "clean"):
        first, second = (sam_sharpness(m, loader(), rho=0.05, samples=8, convention=convention,
                                       generator=torch.Generator().manual_seed(0)).value
                         for m in (net, other))
        assert abs(second - first) > 0.05 * first, convention
