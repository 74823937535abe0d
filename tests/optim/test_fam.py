"""FAM penalties: the exact classifier penalty equals relative_flatness (closed form and full Hessian),
the simplified one equals ||W||^2 z^T H z with the exact Hessian, and both gradients pass gradcheck."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sharpkit.metrics import relative_flatness, relative_flatness_exact_from_features
from sharpkit.optim.fam import classifier_relative_flatness, fam_loss, fam_penalty, simplified_fam_penalty


class _Net(nn.Module):
    """sharpkit's model contract: ``features(x)`` feeds the ``classifier`` Linear."""

    def __init__(self, inputs=4, width=5, classes=3):
        super().__init__()
        self.body = nn.Linear(inputs, width)
        self.classifier = nn.Linear(width, classes)

    def features(self, x):
        return torch.tanh(self.body(x))

    def forward(self, x):
        return self.classifier(self.features(x))


def _setup(seed=0, n=12, dead_feature=False):
    torch.manual_seed(seed)
    net = _Net().double()
    if dead_feature:  # a constant feature, as a dead ReLU unit: dropped by the normalisation
        with torch.no_grad():
            net.body.weight[2].zero_()
            net.body.bias[2] = 0.0
    x = torch.randn(n, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (n,))
    return net, x, y


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("dead_feature", [False, True])
def test_exact_penalty_equals_relative_flatness_of_the_batch(normalize, dead_feature):
    net, x, y = _setup(dead_feature=dead_feature)
    penalty = fam_penalty(net, net.features(x), normalize_features=normalize)
    assert penalty.requires_grad and penalty.ndim == 0
    closed = relative_flatness(net, [(x, y)], normalize_features=normalize)
    with torch.no_grad():
        exact = relative_flatness_exact_from_features([(net.features(x), y)], net.classifier.weight,
                                                      net.classifier.bias, normalize_features=normalize)
    assert float(penalty.detach()) == pytest.approx(closed, rel=1e-10)
    assert float(penalty.detach()) == pytest.approx(exact, rel=1e-8)


@pytest.mark.parametrize("normalize", [False, True])
def test_exact_penalty_gradient_passes_gradcheck(normalize):
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(7, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=generator, dtype=torch.float64, requires_grad=True)

    def penalty(f, w, b):
        return classifier_relative_flatness(f, w, b, normalize_features=normalize)

    assert torch.autograd.gradcheck(penalty, (features, weight, bias))
    assert torch.autograd.gradgradcheck(penalty, (features, weight, bias))


def test_exact_penalty_gradient_reaches_earlier_layers_and_passes_gradcheck():
    net, x, _ = _setup(seed=2)

    def penalty(body_weight):
        features = torch.tanh(F.linear(x, body_weight, net.body.bias))
        return classifier_relative_flatness(features, net.classifier.weight, net.classifier.bias, True)

    weight = net.body.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(penalty, (weight,))
    (grad,) = torch.autograd.grad(penalty(weight), weight)
    assert float(grad.abs().sum()) > 0


def _probes(shape, seed, samples):
    generator = torch.Generator().manual_seed(seed)
    return [(2 * torch.randint(0, 2, shape, generator=generator) - 1).double() for _ in range(samples)]


def test_simplified_penalty_equals_the_weight_norm_times_the_probe_quadratic_forms():
    net, x, y = _setup(seed=3)
    weight = net.body.weight
    penalty = simplified_fam_penalty(F.cross_entropy(net(x), y), weight, samples=4,
                                     generator=torch.Generator().manual_seed(9))

    def loss(flat):
        w = flat.view_as(weight)
        features = torch.tanh(F.linear(x, w, net.body.bias))
        return F.cross_entropy(net.classifier(features), y)

    hessian = torch.autograd.functional.hessian(loss, weight.detach().reshape(-1))
    quadratic = sum(float(z.reshape(-1) @ hessian @ z.reshape(-1)) for z in _probes(weight.shape, 9, 4)) / 4
    assert float(penalty.detach()) == pytest.approx(float((weight.detach() ** 2).sum()) * quadratic, rel=1e-10)


def test_simplified_penalty_gradient_passes_gradcheck():
    net, x, y = _setup(seed=4)

    def penalty(body_weight, classifier_weight):
        features = torch.tanh(F.linear(x, body_weight, net.body.bias))
        loss = F.cross_entropy(F.linear(features, classifier_weight, net.classifier.bias), y)
        return simplified_fam_penalty(loss, body_weight, samples=2, generator=torch.Generator().manual_seed(0))

    inputs = (net.body.weight.detach().clone().requires_grad_(True),
              net.classifier.weight.detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(penalty, inputs)


def test_fam_loss_combines_loss_and_penalty():
    net, x, y = _setup(seed=5)
    exact = fam_loss(net, x, y, strength=0.1)
    assert float(exact.loss.detach()) == pytest.approx(float(F.cross_entropy(net(x), y).detach()), rel=1e-12)
    assert float(exact.penalty.detach()) == pytest.approx(float(fam_penalty(net, net.features(x)).detach()), rel=1e-12)
    assert float(exact.total.detach()) == pytest.approx(float((exact.loss + 0.1 * exact.penalty).detach()), rel=1e-12)
    exact.total.backward()
    with_penalty = net.body.weight.grad.clone()
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    assert not torch.allclose(with_penalty, net.body.weight.grad)  # the penalty reaches the body

    simplified = fam_loss(net, x, y, strength=0.5, layer="body.weight", samples=3,
                          generator=torch.Generator().manual_seed(2))
    expected = simplified_fam_penalty(F.cross_entropy(net(x), y), net.body.weight, samples=3,
                                      generator=torch.Generator().manual_seed(2))
    assert float(simplified.penalty.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    with pytest.raises(ValueError, match="layer"):
        fam_loss(net, x, y, 0.1, layer="body.nope")
    with pytest.raises(ValueError, match="cross-entropy"):
        fam_loss(net, x, y, 0.1, loss_fn=F.multi_margin_loss)
    with pytest.raises(ValueError, match="strength"):
        fam_loss(net, x, y, -1.0)
