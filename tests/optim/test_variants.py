"""ASAM and AverageSAM against independent computations of their update rules written out by hand."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sharpkit.optim.sam import SAM
from sharpkit.optim.variants import ASAM, AverageSAM, kwon_param_groups


def _problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    x = torch.randn(16, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    return model, x, y


def _forward(w, x):
    return torch.tanh(x @ w[0].T + w[1]) @ w[2].T + w[3]


def _grad(w, x, y):
    w = [wi.detach().requires_grad_(True) for wi in w]
    return torch.autograd.grad(F.cross_entropy(_forward(w, x), y), w)


def _sgd(w, g, bufs, lr, momentum):
    new_w, new_bufs = [], []
    for wi, gi, buf in zip(w, g, bufs):
        buf = gi.clone() if buf is None else momentum * buf + gi
        new_w.append(wi - lr * buf)
        new_bufs.append(buf)
    return new_w, new_bufs


def _two_pass(model, optimizer, x, y):
    F.cross_entropy(model(x), y).backward()
    optimizer.first_step(zero_grad=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.second_step(zero_grad=True)


def test_asam_step_equals_the_kwon_update_by_hand():
    model, x, y = _problem()
    rho, eta, lr, momentum = 0.5, 0.01, 0.1, 0.9
    optimizer = ASAM(kwon_param_groups(model), torch.optim.SGD, rho=rho, eta=eta, lr=lr, momentum=momentum)
    w = [p.detach().clone() for p in model.parameters()]
    is_weight = [name.endswith("weight") for name, _ in model.named_parameters()]
    bufs = [None] * len(w)
    for _ in range(4):
        _two_pass(model, optimizer, x, y)
        g = _grad(w, x, y)
        t = [wi.abs() + eta if weight else torch.ones_like(wi) for wi, weight in zip(w, is_weight)]
        norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
        e = [rho * ti ** 2 * gi / norm for ti, gi in zip(t, g)]
        g_adv = _grad([wi + ei for wi, ei in zip(w, e)], x, y)
        w, bufs = _sgd(w, g_adv, bufs, lr, momentum)
        for p, wi in zip(model.parameters(), w):
            assert torch.allclose(p, wi, rtol=1e-10, atol=1e-12)


def test_asam_without_eta_on_every_parameter_is_adaptive_sam():
    model, x, y = _problem(seed=1)
    twin = copy.deepcopy(model)
    asam = ASAM(model.parameters(), torch.optim.SGD, rho=0.3, eta=0.0, lr=0.05)
    sam = SAM(twin.parameters(), torch.optim.SGD, rho=0.3, adaptive=True, lr=0.05)
    for _ in range(3):
        _two_pass(model, asam, x, y)
        _two_pass(twin, sam, x, y)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, rtol=1e-12, atol=1e-14)


def test_average_sam_step_equals_a_random_perturbation_of_norm_rho_by_hand():
    model, x, y = _problem(seed=2)
    rho, lr, momentum = 0.2, 0.1, 0.9
    optimizer = AverageSAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr, momentum=momentum,
                           generator=torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    w = [p.detach().clone() for p in model.parameters()]
    bufs = [None] * len(w)
    for step in range(4):
        if step % 2:  # the SAM-style loop (an unused first backward) ...
            _two_pass(model, optimizer, x, y)
        else:  # ... or one forward-backward at the perturbed point
            optimizer.first_step()
            F.cross_entropy(model(x), y).backward()
            optimizer.second_step(zero_grad=True)
        z = [torch.randn(wi.shape, generator=generator, dtype=wi.dtype) for wi in w]
        norm = torch.sqrt(sum((zi ** 2).sum() for zi in z))
        g_adv = _grad([wi + rho * zi / norm for wi, zi in zip(w, z)], x, y)
        w, bufs = _sgd(w, g_adv, bufs, lr, momentum)
        for p, wi in zip(model.parameters(), w):
            assert torch.allclose(p, wi, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["asam", "average_sam"])
def test_resume_from_state_dict_continues_exactly(kind):
    def build(model):
        if kind == "asam":
            return ASAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1, momentum=0.9)
        return AverageSAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1, momentum=0.9,
                          generator=torch.Generator().manual_seed(0))

    model, x, y = _problem(seed=3)
    optimizer = build(model)
    for _ in range(2):
        _two_pass(model, optimizer, x, y)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    assert saved_optimizer["base_optimizer"]["state"]  # the momentum buffers travel with it
    for _ in range(2):
        _two_pass(model, optimizer, x, y)

    resumed, _, _ = _problem(seed=3)
    resumed.load_state_dict(saved_model)
    other = build(resumed)
    if kind == "average_sam":
        other.generator.manual_seed(123)  # must be overwritten by the saved generator state
    other.load_state_dict(saved_optimizer)
    for _ in range(2):
        _two_pass(resumed, other, x, y)
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_step_with_closure_and_arguments():
    model, x, y = _problem(seed=4)
    optimizer = ASAM(model.parameters(), torch.optim.SGD, lr=0.1)

    def closure():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    closure()
    loss = optimizer.step(closure)
    assert torch.is_tensor(loss)
    with pytest.raises(ValueError, match="eta"):
        ASAM(model.parameters(), torch.optim.SGD, eta=-0.1, lr=0.1)
    with pytest.raises(TypeError, match="generator"):
        AverageSAM(model.parameters(), torch.optim.SGD, lr=0.1, generator=0)
    fresh, _, _ = _problem(seed=5)
    with pytest.raises(RuntimeError, match="no gradients"):
        ASAM(fresh.parameters(), torch.optim.SGD, lr=0.1).first_step()
