"""Relative flatness: closed form against the full autograd Hessian, and the Hessian route against
the definition evaluated entry by entry."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sharpkit.metrics import (
    relative_flatness,
    relative_flatness_exact,
    relative_flatness_exact_from_features,
    relative_flatness_from_features,
)

from ._helpers import ShuffleLoader, TinyNet, assert_state_equal, make_data, make_net, state_copy


@pytest.mark.parametrize("classes,width", [(2, 1), (3, 4), (10, 9), (5, 16)])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("reduction", ["sum_batches", "mean"])
def test_closed_form_equals_full_hessian(classes, width, normalize, reduction):
    net = make_net(seed=classes + width, width=width, classes=classes)
    x, y = make_data(n=27, classes=classes, seed=width)
    # Identically seeded shuffling loaders: both functions see the same batches (8, 8, 8, 3).
    closed = relative_flatness(net, ShuffleLoader(x, y, 8, seed=2), normalize, reduction)
    exact = relative_flatness_exact(net, ShuffleLoader(x, y, 8, seed=2), normalize, reduction)
    assert closed == pytest.approx(exact, rel=1e-5)
    assert closed > 0


def test_float32_model_matches_too():
    net = make_net(dtype=torch.float32, width=7, classes=6)
    x, y = make_data(n=40, classes=6, dtype=torch.float32)
    loader = ShuffleLoader(x, y, 16, shuffle=False)
    assert relative_flatness(net, loader) == pytest.approx(relative_flatness_exact(net, loader), rel=1e-5)


def test_full_hessian_route_equals_the_definition_entry_by_entry():
    # kappa = sum_{s,s'} <W_s, W_s'> Tr H_{s,s'}, H_{s,s'}[t,t'] = d^2 E / dW[s,t] dW[s',t'] (W_s: rows),
    # every second derivative taken by a separate autograd.grad call, as Petzka et al.'s code does.
    generator = torch.Generator().manual_seed(0)
    classes, width, n = 3, 4, 6
    weight = torch.randn(classes, width, generator=generator, dtype=torch.float64)
    bias = torch.randn(classes, generator=generator, dtype=torch.float64)
    phi = torch.randn(n, width, generator=generator, dtype=torch.float64).abs()
    y = torch.randint(0, classes, (n,), generator=generator)
    w = weight.clone().requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(phi @ w.T + bias, y), w, create_graph=True)[0]
    kappa = 0.0
    for s in range(classes):
        for s2 in range(classes):
            trace = sum(torch.autograd.grad(grad[s, t], w, retain_graph=True)[0][s2, t].item()
                        for t in range(width))
            kappa += float(weight[s] @ weight[s2]) * trace
    via_hessian = relative_flatness_exact_from_features([(phi, y)], weight, bias, normalize_features=False)
    closed = relative_flatness_from_features([phi], weight, bias, normalize_features=False)
    assert via_hessian == pytest.approx(kappa, rel=1e-10)
    assert closed == pytest.approx(kappa, rel=1e-10)


@pytest.mark.parametrize("constant", [0.0, 0.7])
def test_constant_feature_is_folded_into_the_bias(constant):
    # Feature 2 is ReLU(0 * h + c) = c for every input: sigma_2 = 0. Its column times c is a bias,
    # so the value must equal that of the head without feature 2 and with bias b + c W[:, 2].
    net = make_net(width=4, classes=3)
    with torch.no_grad():
        net.features[3].weight[2].zero_()
        net.features[3].bias[2] = constant
    x, y = make_data(n=20)
    loader = ShuffleLoader(x, y, 7, shuffle=False)
    value = relative_flatness(net, loader)
    assert value == pytest.approx(relative_flatness_exact(net, loader), rel=1e-5)
    with torch.no_grad():
        net.eval()
        features = [net.features(xb)[:, [0, 1, 3]] for xb, _ in loader]
        weight = net.classifier.weight
        folded = relative_flatness_from_features(features, weight[:, [0, 1, 3]],
                                                 net.classifier.bias + constant * weight[:, 2])
    assert value == pytest.approx(folded, rel=1e-10)


def test_mean_reduction_does_not_depend_on_the_batch_size_but_the_sum_does():
    net = make_net(width=6, classes=4)
    x, y = make_data(n=24, classes=4)
    by_4 = ShuffleLoader(x, y, 4, shuffle=False)
    by_24 = ShuffleLoader(x, y, 24, shuffle=False)
    assert relative_flatness(net, by_4, reduction="mean") == pytest.approx(
        relative_flatness(net, by_24, reduction="mean"), rel=1e-12)
    assert relative_flatness(net, by_24, reduction="sum_batches") == pytest.approx(relative_flatness(net, by_24))
    # sum over 6 batches of per-batch kappas: about 6 times the single-batch value
    assert relative_flatness(net, by_4, reduction="sum_batches") > 3 * relative_flatness(net, by_24)
    # the default is the batch-size independent "mean"
    assert relative_flatness(net, by_4) == relative_flatness(net, by_4, reduction="mean")


def test_model_is_untouched():
    net = make_net()
    net.train()
    before = state_copy(net)
    x, y = make_data()
    relative_flatness(net, ShuffleLoader(x, y, 5))
    relative_flatness_exact(net, ShuffleLoader(x, y, 5))
    assert_state_equal(net, before)
    assert net.training and all(m.training for m in net.modules())


def test_errors():
    x, y = make_data()
    net = make_net()
    with pytest.raises(ValueError, match="reduction"):
        relative_flatness(net, [(x, y)], reduction="sum")
    with pytest.raises(ValueError, match="no nn.Linear.*relative_flatness_from_features"):
        relative_flatness(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Identity()).double(), [(x, y)])
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        relative_flatness_from_features([torch.zeros(4, 6)], torch.zeros(3, 5))
    with pytest.raises(ValueError, match="at least one"):
        relative_flatness(TinyNet().double(), [])
