"""How SAM, ASAM and AverageSAM return to w: exactly (the default), or by subtraction as sharpkit did
before ("subtract", which its stored runs need); the two steps called out of turn; resume in both modes;
the BatchNorm helper."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sharpkit.optim import ASAM, SAM, AverageSAM, frozen_batchnorm_stats, kwon_param_groups

KINDS = ["sam", "adaptive_sam", "asam", "average_sam"]


def _problem(seed=0):
    """A float32 MLP (rounding in w + e(w) - e(w) is visible in float32) and one batch."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    x = torch.randn(32, 6)
    y = torch.randint(0, 4, (32,))
    return model, x, y


def _build(kind, model, restore, lr=0.1, momentum=0.9, weight_decay=5e-4):
    kwargs = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, restore=restore)
    if kind == "sam":
        return SAM(model.parameters(), torch.optim.SGD, rho=0.05, **kwargs)
    if kind == "adaptive_sam":
        return SAM(model.parameters(), torch.optim.SGD, rho=0.5, adaptive=True, **kwargs)
    if kind == "asam":
        return ASAM(kwon_param_groups(model), torch.optim.SGD, rho=0.5, eta=0.01, **kwargs)
    return AverageSAM(model.parameters(), torch.optim.SGD, rho=0.5, generator=torch.Generator().manual_seed(7),
                      **kwargs)


def _two_pass(model, optimizer, x, y):
    F.cross_entropy(model(x), y).backward()
    optimizer.first_step(zero_grad=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.second_step(zero_grad=True)


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def _max_distance(model, reference):
    return max((p.detach() - r).abs().max().item() for p, r in zip(model.parameters(), reference))


@pytest.mark.parametrize("kind", KINDS)
def test_with_lr_zero_exact_restore_keeps_the_weights_bit_for_bit_and_subtraction_drifts(kind):
    drift = {}
    for restore in ("exact", "subtract"):
        model, x, y = _problem()
        start = _weights(model)
        optimizer = _build(kind, model, restore, lr=0.0)
        for _ in range(20):
            _two_pass(model, optimizer, x, y)
        drift[restore] = _max_distance(model, start)
    assert drift["exact"] == 0.0
    # (w + e) - e rounds in float32: the old arithmetic does not come back to w (1e-8 to 1e-7 here).
    assert 0.0 < drift["subtract"] < 1e-5, drift


def _old_first_step(kind, optimizer, generator):
    """The first_step of the stored runs, written out from sharpkit/optim/sam.py and variants.py as of
    commit 8a7ed51 (every stored run was trained with them): e(w) of each parameter, to add now and subtract
    after the second backward."""
    groups = optimizer.param_groups
    if kind == "average_sam":
        draws = [(g, p, torch.randn(p.shape, dtype=p.dtype, generator=generator)) for g in groups for p in g["params"]]
        norm = torch.stack([z.norm(p=2) for _, _, z in draws]).norm(p=2)
        return [(p, z * (g["rho"] / norm).to(p)) for g, p, z in draws]
    if kind == "asam":
        def operator(p, g):
            return p.abs() + g["eta"] if g["adaptive"] else 1.0
    else:
        def operator(p, g):
            return torch.abs(p) if g["adaptive"] else 1.0
    grad_norm = torch.stack([(operator(p, g) * p.grad).norm(p=2) for g in groups for p in g["params"]]).norm(p=2)
    perturbations = []
    for g in groups:
        scale = g["rho"] / (grad_norm + 1e-12)
        for p in g["params"]:
            if kind == "asam":
                perturbations.append((p, operator(p, g) * operator(p, g) * p.grad * scale.to(p)))
            else:
                perturbations.append((p, (torch.pow(p, 2) if g["adaptive"] else 1.0) * p.grad * scale.to(p)))
    return perturbations


def _old_update(kind, model, reference_optimizer, base, generator, x, y):
    """One step as the stored runs took it: climb by e(w), gradient there, subtract e(w), base SGD step."""
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        perturbations = _old_first_step(kind, reference_optimizer, generator)
        for p, e_w in perturbations:
            p.add_(e_w)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        for p, e_w in perturbations:
            p.sub_(e_w)
    base.step()
    model.zero_grad()


@pytest.mark.parametrize("kind", KINDS)
def test_subtract_mode_reproduces_the_old_arithmetic_bit_for_bit(kind):
    model, x, y = _problem(seed=1)
    old_model = copy.deepcopy(model)
    exact_model = copy.deepcopy(model)
    optimizer = _build(kind, model, "subtract")
    exact = _build(kind, exact_model, "exact")
    # The reference reads rho/eta/adaptive from an optimizer's groups and steps a plain SGD on the same groups.
    reference = _build(kind, old_model, "subtract")
    base = torch.optim.SGD(reference.param_groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(7)
    for _ in range(6):
        _two_pass(model, optimizer, x, y)
        _two_pass(exact_model, exact, x, y)
        _old_update(kind, old_model, reference, base, generator, x, y)
    for p, q in zip(model.parameters(), old_model.parameters()):
        assert torch.equal(p, q)
    # The comparison can fail: the exact restore, one rounding away, already ends elsewhere.
    assert _max_distance(exact_model, _weights(old_model)) > 0.0


@pytest.mark.parametrize("restore", ["exact", "subtract"])
@pytest.mark.parametrize("kind", KINDS)
def test_resume_through_state_dict_is_exact(kind, restore):
    model, x, y = _problem(seed=2)
    optimizer = _build(kind, model, restore)
    for _ in range(3):
        _two_pass(model, optimizer, x, y)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    assert saved_optimizer["restore"] == restore
    for _ in range(3):
        _two_pass(model, optimizer, x, y)

    resumed, _, _ = _problem(seed=9)  # other weights, overwritten by the checkpoint
    resumed.load_state_dict(saved_model)
    other = _build(kind, resumed, restore)
    other.load_state_dict(saved_optimizer)
    for _ in range(3):
        _two_pass(resumed, other, x, y)
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("restore", ["exact", "subtract"])
def test_a_checkpoint_taken_between_the_two_steps_resumes_exactly(restore):
    model, x, y = _problem(seed=3)
    optimizer = _build("sam", model, restore)
    _two_pass(model, optimizer, x, y)
    F.cross_entropy(model(x), y).backward()
    optimizer.first_step(zero_grad=True)  # the weights are at w + e(w); the state holds w or e(w)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    F.cross_entropy(model(x), y).backward()
    optimizer.second_step(zero_grad=True)

    resumed, _, _ = _problem(seed=9)
    resumed.load_state_dict(saved_model)
    other = _build("sam", resumed, restore)
    other.load_state_dict(saved_optimizer)
    F.cross_entropy(resumed(x), y).backward()
    other.second_step(zero_grad=True)
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_a_state_dict_of_the_other_mode_is_refused_and_one_without_a_mode_loads():
    model, x, y = _problem()
    subtracting = _build("sam", model, "subtract")
    _two_pass(model, subtracting, x, y)
    state = subtracting.state_dict()
    with pytest.raises(ValueError, match=r"restore='subtract'.*restore='exact'.*Construct the optimizer"):
        _build("sam", model, "exact").load_state_dict(state)
    del state["restore"]  # as the stored runs' checkpoints have it
    _build("sam", model, "subtract").load_state_dict(state)


@pytest.mark.parametrize("kind", KINDS)
def test_first_step_twice_raises_and_leaves_the_weights_where_they_were(kind):
    model, x, y = _problem()
    start = _weights(model)
    optimizer = _build(kind, model, "exact")
    F.cross_entropy(model(x), y).backward()
    optimizer.first_step()
    perturbed = _weights(model)
    with pytest.raises(RuntimeError, match=r"first_step was called again before second_step.*Call second_step"):
        optimizer.first_step()
    assert _max_distance(model, perturbed) == 0.0
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    optimizer.second_step(zero_grad=True)
    assert _max_distance(model, start) == 0.0


@pytest.mark.parametrize("restore", ["exact", "subtract"])
@pytest.mark.parametrize("kind", KINDS)
def test_second_step_without_first_step_raises_and_takes_no_step(kind, restore):
    model, x, y = _problem()
    start = _weights(model)
    optimizer = _build(kind, model, restore)
    F.cross_entropy(model(x), y).backward()
    with pytest.raises(RuntimeError, match=r"second_step was called without first_step.*first_step\(\)"):
        optimizer.second_step()
    assert _max_distance(model, start) == 0.0
    _two_pass(model, optimizer, x, y)
    with pytest.raises(RuntimeError, match="without first_step"):  # a second one after a complete step
        optimizer.second_step()


def test_the_closure_of_the_docstring_and_a_closure_that_raises():
    model, x, y = _problem()
    optimizer = _build("sam", model, "exact")

    def closure():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    F.cross_entropy(model(x), y).backward()
    assert torch.is_tensor(optimizer.step(closure))
    optimizer.zero_grad()

    start = _weights(model)

    def failing():
        raise KeyError("data")

    F.cross_entropy(model(x), y).backward()
    with pytest.raises(KeyError):
        optimizer.step(failing)
    assert _max_distance(model, start) == 0.0  # back at w, no step taken
    _two_pass(model, optimizer, x, y)  # and the next step is accepted


def test_restore_mode_is_checked():
    model, _, _ = _problem()
    with pytest.raises(ValueError, match=r"`restore` to be one of 'exact', 'subtract', but got 'copy'"):
        SAM(model.parameters(), torch.optim.SGD, lr=0.1, restore="copy")


def test_bfloat16_autocast_keeps_float32_weights_and_the_exact_restore():
    model, x, y = _problem()
    start = _weights(model)
    optimizer = _build("sam", model, "exact", lr=0.0)
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.first_step(zero_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.second_step(zero_grad=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert _max_distance(model, start) == 0.0


def _bn_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3), torch.nn.BatchNorm1d(3))


def test_frozen_batchnorm_stats_normalises_as_in_training_and_updates_no_buffer():
    model, x = _bn_model(), torch.randn(8, 3, 8, 8)
    model(x)  # one ordinary training-mode pass: the running statistics move
    buffers = copy.deepcopy(dict(model.named_buffers()))
    expected = copy.deepcopy(model)(x)  # what a second ordinary pass outputs (batch statistics)
    with frozen_batchnorm_stats(model):
        out = model(x)
    assert torch.equal(out, expected)
    for name, value in model.named_buffers():
        assert torch.equal(value, buffers[name]), name  # running mean/var and num_batches_tracked
    model(x)
    assert not torch.equal(model[1].running_mean, buffers["1.running_mean"])  # tracking is back on


def test_frozen_batchnorm_stats_restores_the_flags_when_the_block_raises():
    model = _bn_model()
    model[5].track_running_stats = False  # a layer that tracked nothing before stays so
    with pytest.raises(ZeroDivisionError):
        with frozen_batchnorm_stats(model):
            assert not model[1].track_running_stats
            1 / 0  # noqa: B018 - the ZeroDivisionError raised inside the block is the point
    assert model[1].track_running_stats and not model[5].track_running_stats


def test_frozen_batchnorm_stats_in_a_sam_step():
    model, x = _bn_model(), torch.randn(8, 3, 8, 8)
    y = torch.randint(0, 3, (8,))
    optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    F.cross_entropy(model(x), y).backward()
    after_first_pass = copy.deepcopy(dict(model.named_buffers()))
    optimizer.first_step(zero_grad=True)
    with frozen_batchnorm_stats(model):
        F.cross_entropy(model(x), y).backward()
    optimizer.second_step(zero_grad=True)
    for name, value in model.named_buffers():
        assert torch.equal(value, after_first_pass[name]), name
