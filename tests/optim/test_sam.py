"""SAM against an independent two-pass computation written out by hand."""
import copy

import pytest
import torch
import torch.nn.functional as F

from sharpkit.optim import SAM


def _problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    x = torch.randn(16, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    return model, x, y


def _sam_update(model, optimizer, x, y):
    F.cross_entropy(model(x), y).backward()
    optimizer.first_step(zero_grad=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.second_step(zero_grad=True)


def _reference_update(params, bufs, x, y, forward, rho, lr, momentum, weight_decay, adaptive=False):
    """Perturb by rho*g/||g|| (or the ASAM ellipsoid), take the gradient there, step from the original
    point with heavy-ball momentum and coupled L2, all with plain tensor arithmetic."""
    w = [p.detach().clone().requires_grad_(True) for p in params]
    g = torch.autograd.grad(F.cross_entropy(forward(w, x), y), w)
    t = [wi.detach().abs() if adaptive else torch.ones_like(wi) for wi in w]
    norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
    e = [rho * ti ** 2 * gi / norm for ti, gi in zip(t, g)]
    w_adv = [(wi.detach() + ei).requires_grad_(True) for wi, ei in zip(w, e)]
    g_adv = torch.autograd.grad(F.cross_entropy(forward(w_adv, x), y), w_adv)
    new_w, new_bufs = [], []
    for wi, gi, buf in zip(w, g_adv, bufs):
        d = gi + weight_decay * wi.detach()
        buf = d.clone() if buf is None else momentum * buf + d
        new_w.append(wi.detach() - lr * buf)
        new_bufs.append(buf)
    return new_w, new_bufs


def _forward(w, x):
    return torch.tanh(x @ w[0].T + w[1]) @ w[2].T + w[3]


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_sam_matches_independent_two_pass_computation(adaptive, weight_decay):
    model, x, y = _problem()
    rho, lr, momentum = 0.05, 0.1, 0.9
    optimizer = SAM(model.parameters(), torch.optim.SGD, rho=rho, adaptive=adaptive, lr=lr, momentum=momentum,
                    weight_decay=weight_decay)
    ref = [p.detach().clone() for p in model.parameters()]
    bufs = [None] * len(ref)
    for _ in range(4):  # several steps so momentum matters
        _sam_update(model, optimizer, x, y)
        ref, bufs = _reference_update(ref, bufs, x, y, _forward, rho, lr, momentum, weight_decay, adaptive)
        for p, r in zip(model.parameters(), ref):
            torch.testing.assert_close(p.detach(), r, atol=1e-6, rtol=0)


def test_step_with_closure_equals_first_and_second_step():
    model_a, x, y = _problem()
    model_b = copy.deepcopy(model_a)
    opt_a = SAM(model_a.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    opt_b = SAM(model_b.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    for _ in range(3):
        _sam_update(model_a, opt_a, x, y)
        F.cross_entropy(model_b(x), y).backward()

        def closure():
            loss = F.cross_entropy(model_b(x), y)
            loss.backward()
            return loss

        opt_b.step(closure)
        opt_b.zero_grad()
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)


def test_state_dict_carries_momentum_so_resume_is_exact():
    model, x, y = _problem()
    optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    for _ in range(3):
        _sam_update(model, optimizer, x, y)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    assert saved_opt["base_optimizer"]["state"], "momentum buffers missing from SAM.state_dict()"
    for _ in range(2):
        _sam_update(model, optimizer, x, y)

    resumed, _, _ = _problem(seed=1)  # different weights, overwritten by the checkpoint
    resumed.load_state_dict(saved_model)
    opt2 = SAM(resumed.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    opt2.load_state_dict(saved_opt)
    for _ in range(2):
        _sam_update(resumed, opt2, x, y)
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_state_dict_without_base_state_is_refused():
    model, _, _ = _problem()
    optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    state = optimizer.state_dict()
    del state["base_optimizer"]
    with pytest.raises(ValueError, match="base_optimizer"):
        optimizer.load_state_dict(state)


def test_lr_scheduler_drives_the_base_optimizer():
    model, x, y = _problem()
    optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
    for _ in range(2):
        _sam_update(model, optimizer, x, y)
        scheduler.step()
    expected = 0.1 * (1 + torch.cos(torch.tensor(torch.pi * 2 / 4)).item()) / 2
    assert optimizer.base_optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    assert optimizer.param_groups is optimizer.base_optimizer.param_groups


def test_weights_are_restored_between_the_two_passes():
    model, x, y = _problem()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.0, momentum=0.0)
    F.cross_entropy(model(x), y).backward()
    optimizer.first_step(zero_grad=True)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert moved.item() == pytest.approx(0.05, rel=1e-9)  # the perturbation has norm rho
    F.cross_entropy(model(x), y).backward()
    optimizer.second_step(zero_grad=True)
    for p, b in zip(model.parameters(), before):
        torch.testing.assert_close(p.detach(), b, atol=1e-15, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(base_optimizer=torch.optim.SGD, rho=-1.0, lr=0.1), "rho"),
    (dict(base_optimizer="sgd", lr=0.1), "base_optimizer"),
])
def test_bad_arguments_raise_with_a_message(kwargs, match):
    model, _, _ = _problem()
    with pytest.raises((ValueError, TypeError), match=match):
        SAM(model.parameters(), **kwargs)


def test_step_without_closure_explains_how_to_call_it():
    model, _, _ = _problem()
    optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        optimizer.step()
