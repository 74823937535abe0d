"""Adaptive sharpness against independent computations: the first-order value of the worst case,
random points of the same ball, the average case drawn by hand, and function-preserving rescalings."""
from __future__ import annotations

import copy
import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sharpkit.metrics.adaptive_sharpness import adaptive_sharpness, apgd_checkpoints, normalize_logits

from ._helpers import ShuffleLoader, assert_state_equal, make_data, make_net, state_copy


def _trained_net(seed: int = 0, steps: int = 150):
    """A TinyNet fitted (in eval mode, so BatchNorm keeps its running statistics) close to a minimum."""
    net = make_net(seed=seed).eval()
    x, y = make_data(n=48, seed=seed + 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    for p in net.parameters():
        p.grad = None
    return net, x, y


def _loss_at(model, delta, x, y):
    """Batch cross-entropy of a copy of ``model`` with ``delta`` (per-parameter list) added."""
    other = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p, d in zip(other.parameters(), delta):
            p.add_(d)
        return float(F.cross_entropy(other(x), y))


def test_checkpoints_follow_the_recurrence_in_exact_arithmetic():
    for steps in (1, 3, 20, 50, 100, 200):
        fractions = [Fraction(0), Fraction(22, 100)]
        while fractions[-1] < 1:
            fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - Fraction(3, 100),
                                                 Fraction(6, 100)))
        expected = sorted({math.ceil(p * steps) for p in fractions if math.ceil(p * steps) <= steps})
        assert apgd_checkpoints(steps) == tuple(expected)
    assert apgd_checkpoints(20) == (0, 5, 9, 12, 14, 16, 18, 19, 20)


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("adaptive", [True, False])
def test_worst_case_matches_the_dual_norm_of_the_gradient_for_a_small_radius(norm, adaptive):
    # For rho -> 0, max_{||u||_p <= rho} L(w + c u) - L(w) = rho ||c * grad||_q (q dual to p) + O(rho^2):
    # an upper bound (feasibility) and a target (optimality) computed without any search.
    net = make_net(seed=3).eval()
    x, y = make_data(n=32, seed=4)
    rho = 1e-5
    loss = F.cross_entropy(net(x), y)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    c = [p.detach().abs() if adaptive else torch.ones_like(p) for p in net.parameters()]
    scaled = torch.cat([(ci * g).reshape(-1) for ci, g in zip(c, grads)])
    first_order = rho * float(scaled.norm(p=2 if norm == "l2" else 1))
    result = adaptive_sharpness(net, [(x, y)], rho, kind="worst", norm=norm, adaptive=adaptive, steps=20,
                                batch_size=None, generator=torch.Generator().manual_seed(0))
    assert result.value == pytest.approx(first_order, rel=2e-3)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_worst_case_beats_100_random_points_of_the_ball_near_a_minimum(norm):
    net, x, y = _trained_net()
    rho = 0.05
    result = adaptive_sharpness(net, ShuffleLoader(x, y, 16, shuffle=False), rho, kind="worst", norm=norm,
                                batch_size=16, generator=torch.Generator().manual_seed(1))
    assert len(result.values) == 3
    generator = torch.Generator().manual_seed(2)
    for b, value in enumerate(result.values):
        xb, yb = x[16 * b:16 * (b + 1)], y[16 * b:16 * (b + 1)]
        base = _loss_at(net, [torch.zeros_like(p) for p in net.parameters()], xb, yb)
        assert base == pytest.approx(result.base_losses[b], rel=1e-12)
        increases = []
        for _ in range(100):
            if norm == "linf":
                u = [rho * (2 * torch.rand(p.shape, generator=generator, dtype=p.dtype) - 1) for p in net.parameters()]
            else:  # uniform in the ball: Gaussian direction, radius rho * U^(1/P)
                g = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in net.parameters()]
                size = sum(t.numel() for t in g)
                radius = rho * float(torch.rand((), generator=generator, dtype=torch.float64)) ** (1 / size)
                length = math.sqrt(sum(float((t ** 2).sum()) for t in g))
                u = [t * radius / length for t in g]
            delta = [p.detach().abs() * ui for p, ui in zip(net.parameters(), u)]
            increases.append(_loss_at(net, delta, xb, yb) - base)
        assert max(increases) > 0
        assert value >= max(increases)


def test_worst_case_is_above_the_average_case_of_the_same_linf_ball():
    net, x, y = _trained_net(seed=1)
    loader = ShuffleLoader(x, y, 16, shuffle=False)
    for rho in (0.02, 0.1):
        worst = adaptive_sharpness(net, loader, rho, kind="worst", norm="linf", batch_size=16,
                                   generator=torch.Generator().manual_seed(0))
        average = adaptive_sharpness(net, loader, rho, kind="average", norm="linf", batch_size=16, samples=50,
                                     generator=torch.Generator().manual_seed(0))
        assert average.value > 0
        assert all(w >= a for w, a in zip(worst.values, average.values))


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_average_case_equals_noise_drawn_by_hand(norm):
    net = make_net(seed=5).eval()
    x, y = make_data(n=20, seed=6)
    rho, samples = 0.1, 7
    result = adaptive_sharpness(net, [(x[:10], y[:10]), (x[10:], y[10:])], rho, kind="average", norm=norm,
                                batch_size=None, samples=samples, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    expected = []
    for xb, yb in ((x[:10], y[:10]), (x[10:], y[10:])):
        base = _loss_at(net, [torch.zeros_like(p) for p in net.parameters()], xb, yb)
        total = 0.0
        for _ in range(samples):
            noise = [torch.randn(p.shape, generator=generator, dtype=p.dtype) if norm == "l2"
                     else 2 * torch.rand(p.shape, generator=generator, dtype=p.dtype) - 1 for p in net.parameters()]
            total += _loss_at(net, [rho * p.detach().abs() * n for p, n in zip(net.parameters(), noise)], xb, yb)
        expected.append(total / samples - base)
    assert result.values == pytest.approx(expected, rel=1e-10, abs=1e-14)
    assert result.value == pytest.approx(sum(expected) / 2, rel=1e-10, abs=1e-14)


def test_batches_are_cut_to_batch_size_and_the_remainder_dropped():
    net = make_net(seed=7)
    x, y = make_data(n=64, seed=8)
    common = dict(rho=0.05, kind="average", norm="l2", samples=3)
    regrouped = adaptive_sharpness(net, ShuffleLoader(x, y, 10, shuffle=False), batch_size=16,
                                   generator=torch.Generator().manual_seed(0), **common)
    native = adaptive_sharpness(net, ShuffleLoader(x, y, 16, shuffle=False), batch_size=None,
                                generator=torch.Generator().manual_seed(0), **common)
    assert regrouped.num_points == native.num_points == 64
    assert regrouped.values == pytest.approx(native.values, rel=1e-12)
    partial = adaptive_sharpness(net, ShuffleLoader(x, y, 10, shuffle=False), batch_size=30, **common)
    assert partial.num_points == 60 and len(partial.values) == 2
    with pytest.raises(ValueError, match="batch_size"):
        adaptive_sharpness(net, ShuffleLoader(x, y, 10, shuffle=False), batch_size=65, **common)


def _rescaled_mlp(net, factors):
    """c * (W1, b1) before a ReLU and W2 / c after it: the same function."""
    other = copy.deepcopy(net)
    with torch.no_grad():
        first, second = other.features[3], other.classifier  # Linear -> ReLU -> classifier
        first.weight.mul_(factors[:, None])
        first.bias.mul_(factors)
        second.weight.div_(factors[None, :])
    return other


class ConvBN(nn.Module):
    """conv -> BatchNorm -> ReLU -> conv -> pool -> linear, for the BatchNorm / next-conv rescaling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)
        self.head = nn.Linear(3, 3)

    def forward(self, x):
        h = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return self.head(h.mean(dim=(2, 3)))


def _conv_net():
    torch.manual_seed(11)
    net = ConvBN().double().eval()
    with torch.no_grad():
        net.bn.running_mean.normal_(0, 0.2)
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.normal_(0, 0.3)
    return net


def _rescaled_bn(net, factors):
    """BatchNorm scale and shift times c (per channel), the next conv's input channels divided by c."""
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.bn.weight.mul_(factors)
        other.bn.bias.mul_(factors)
        other.conv2.weight.div_(factors[None, :, None, None])
    return other


@pytest.mark.parametrize("architecture", ["mlp", "batchnorm"])
@pytest.mark.parametrize("kind,norm", [("average", "l2"), ("average", "linf"), ("worst", "l2"), ("worst", "linf")])
def test_adaptive_sharpness_is_invariant_to_rescaling_and_standard_sharpness_is_not(architecture, kind, norm):
    if architecture == "mlp":
        net = make_net(seed=12).eval()
        other = _rescaled_mlp(net, torch.tensor([0.2, 0.5, 3.0, 4.0, 8.0], dtype=torch.float64))
        x, y = make_data(n=24, seed=13)
    else:
        net = _conv_net()
        other = _rescaled_bn(net, torch.tensor([0.1, 0.5, 4.0, 10.0], dtype=torch.float64))
        generator = torch.Generator().manual_seed(14)
        x = torch.randn(24, 2, 5, 5, generator=generator, dtype=torch.float64)
        y = torch.randint(0, 3, (24,), generator=generator)
    with torch.no_grad():
        assert torch.allclose(net(x), other(x), rtol=1e-12, atol=1e-12)
    rho = 0.05 if kind == "worst" else 0.2

    def measure(model, adaptive):
        return adaptive_sharpness(model, [(x[:12], y[:12]), (x[12:], y[12:])], rho if adaptive else rho / 5,
                                  kind=kind, norm=norm, adaptive=adaptive, batch_size=None, samples=10,
                                  generator=torch.Generator().manual_seed(0)).value

    first, second = measure(net, True), measure(other, True)
    assert abs(first) > 1e-4  # not trivially zero (the average case may be negative away from a minimum)
    assert second == pytest.approx(first, rel=1e-8)
    plain, plain_other = measure(net, False), measure(other, False)
    assert abs(plain_other - plain) > 0.05 * abs(plain)


def test_logit_normalization_removes_the_classifier_scale():
    net = make_net(seed=15).eval()
    x, y = make_data(n=16, seed=16)
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        scaled.classifier.weight.mul_(3.0)
        scaled.classifier.bias.mul_(3.0)
    logits = net(x).detach()
    std = ((logits - logits.mean(1, keepdim=True)) ** 2).mean(1, keepdim=True).sqrt()
    assert torch.allclose(normalize_logits(logits), logits / std)

    def measure(model, normalized):
        return adaptive_sharpness(model, [(x, y)], 0.05, kind="worst", norm="linf", logit_normalization=normalized,
                                  batch_size=None, generator=torch.Generator().manual_seed(0)).value

    assert measure(scaled, True) == pytest.approx(measure(net, True), rel=1e-8)
    assert abs(measure(scaled, False) - measure(net, False)) > 0.05 * measure(net, False)


def test_model_state_gradients_and_mode_are_untouched():
    net = make_net(seed=17)
    net.train()
    x, y = make_data(n=16, seed=18)
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = state_copy(net)
    for kind in ("average", "worst"):
        adaptive_sharpness(net, [(x, y)], 0.1, kind=kind, norm="linf", batch_size=None, samples=3, steps=4)
    assert_state_equal(net, before)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in net.parameters())


def test_arguments_are_checked():
    net = make_net()
    x, y = make_data(n=8)
    with pytest.raises(ValueError, match="kind"):
        adaptive_sharpness(net, [(x, y)], 0.1, kind="max")
    with pytest.raises(ValueError, match="norm"):
        adaptive_sharpness(net, [(x, y)], 0.1, norm="l1")
    with pytest.raises(ValueError, match="rho"):
        adaptive_sharpness(net, [(x, y)], 0.0)
    with pytest.raises(ValueError, match="steps"):
        adaptive_sharpness(net, [(x, y)], 0.1, kind="worst", steps=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_gives_the_cpu_values_with_a_cpu_generator():
    net = make_net(seed=19).eval()
    x, y = make_data(n=16, seed=20)
    kwargs = dict(rho=0.05, kind="worst", norm="linf", batch_size=None)
    cpu = adaptive_sharpness(net, [(x, y)], generator=torch.Generator().manual_seed(0), **kwargs)
    gpu = adaptive_sharpness(net.cuda(), [(x.cuda(), y.cuda())], generator=torch.Generator().manual_seed(0), **kwargs)
    assert gpu.value == pytest.approx(cpu.value, rel=1e-6)
