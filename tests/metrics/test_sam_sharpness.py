"""SAM sharpness against an independent copy-the-state-dict recomputation (the authors' procedure)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from sharpkit.metrics import DEFAULT_SEED, PAPER_CONVENTIONS, sam_sharpness

from ._helpers import ShuffleLoader, assert_state_equal, make_data, make_net, state_copy


def _reference(model, loader, rho, samples, generator, convention):
    """Deep-copy the state dict, perturb the copy, load it into a copy of the model (eval mode)."""
    model = copy.deepcopy(model).eval()
    num_params = sum(p.numel() for p in model.parameters())
    if convention == "paper":
        keys = [k for k, v in model.state_dict().items() if v.dtype != torch.int64]

        def loss(m):
            values = [F.cross_entropy(m(x), y).item() for x, y in loader]
            return sum(values) / len(values)
    else:
        keys = [k for k, _ in model.named_parameters()]
        batches = list(loader)

        def loss(m):
            total = sum(F.cross_entropy(m(x), y, reduction="sum").item() for x, y in batches)
            return total / sum(len(y) for _, y in batches)

    with torch.no_grad():
        base = loss(model)
        out = []
        for _ in range(samples):
            state = copy.deepcopy(model.state_dict())
            for key in keys:
                noise = torch.randn(state[key].shape, generator=generator, dtype=state[key].dtype)
                state[key] += noise / num_params ** 0.5 * rho
            perturbed = copy.deepcopy(model)
            perturbed.load_state_dict(state)
            out.append(abs(loss(perturbed) - base) / rho)
    return out


@pytest.mark.parametrize("convention", ["paper", "clean"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equals_copy_the_state_dict_procedure(convention, dtype):
    net = make_net(dtype=dtype)
    net.train()  # the metric must switch to eval mode itself and switch back
    x, y = make_data(n=29, dtype=dtype)
    before = state_copy(net)
    ours = sam_sharpness(net, ShuffleLoader(x, y, 8, seed=5, augment=0.1), rho=0.05, samples=6,
                         generator=torch.Generator().manual_seed(11), convention=convention)
    assert_state_equal(net, before)
    assert net.training
    expected = _reference(net, ShuffleLoader(x, y, 8, seed=5, augment=0.1), 0.05, 6,
                          torch.Generator().manual_seed(11), convention)
    # Same noise, same arithmetic: equal up to the order of the final float64 averages.
    assert ours.values == pytest.approx(expected, rel=1e-9)
    assert ours.value == pytest.approx(sum(expected) / 6, rel=1e-9)
    assert ours.sem == pytest.approx(float(torch.tensor(expected).std() / 6 ** 0.5), rel=1e-6)
    assert ours.convention == convention and ours.rho == 0.05


def test_conventions_agree_on_the_base_loss_and_differ_in_what_they_perturb():
    net = make_net()
    x, y = make_data()
    one_batch = ShuffleLoader(x, y, 23, shuffle=False)  # a single batch: both losses are the dataset mean
    paper = sam_sharpness(net, one_batch, samples=3, generator=torch.Generator().manual_seed(0), convention="paper")
    clean = sam_sharpness(net, one_batch, samples=3, generator=torch.Generator().manual_seed(0),
                          convention="clean")
    assert paper.base_loss == pytest.approx(clean.base_loss, rel=1e-12)
    assert paper.values != pytest.approx(clean.values, rel=1e-3)  # BatchNorm buffers perturbed or not


def test_state_restored_when_the_loader_fails():
    net = make_net()
    x, y = make_data()
    before = state_copy(net)

    class Failing:
        calls = 0

        def __iter__(self):
            Failing.calls += 1
            if Failing.calls == 3:
                raise RuntimeError("disk gone")
            yield x, y

    with pytest.raises(RuntimeError, match="disk gone"):
        sam_sharpness(net, Failing(), samples=5, convention="paper")
    assert_state_equal(net, before)


@pytest.mark.parametrize("convention", ["paper", "clean"])
def test_without_generator_the_default_seed_is_used_and_the_global_rng_is_untouched(convention):
    net = make_net()
    loader = [make_data()]
    torch.manual_seed(3)
    first = sam_sharpness(net, loader, samples=4, convention=convention)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    second = sam_sharpness(net, loader, samples=4, convention=convention)
    assert torch.equal(torch.get_rng_state(), state)
    assert second == first
    seeded = sam_sharpness(net, loader, samples=4, convention=convention,
                           generator=torch.Generator().manual_seed(DEFAULT_SEED))
    assert seeded == first
    assert sam_sharpness(net, loader, samples=4, convention=convention,
                         generator=torch.Generator().manual_seed(DEFAULT_SEED + 1)).values != first.values


def test_default_convention_is_clean_and_independent_of_shuffling():
    net = make_net()
    x, y = make_data(n=23)  # batches of 8, 8 and 7 points: the mean of batch means depends on the order
    shuffled = [sam_sharpness(net, ShuffleLoader(x, y, 8, seed=s), samples=3).value for s in (0, 1)]
    assert shuffled[0] == pytest.approx(shuffled[1], rel=1e-10)
    assert sam_sharpness(net, ShuffleLoader(x, y, 8), samples=3).convention == "clean"
    paper = [sam_sharpness(net, ShuffleLoader(x, y, 8, seed=s), samples=3, **PAPER_CONVENTIONS["sam_sharpness"]).value
             for s in (0, 1)]
    assert paper[0] != pytest.approx(paper[1], rel=1e-6)  # the paper's convention depends on the order


def test_paper_convention_refuses_a_one_shot_loader():
    net = make_net()
    x, y = make_data()
    with pytest.raises(ValueError, match="iterates the loader 3 times.*one-shot generator.*re-iterable"):
        sam_sharpness(net, ((x, y) for _ in range(2)), samples=2, convention="paper")
    # the clean convention reads the loader once, so a generator is fine
    assert sam_sharpness(net, ((x, y) for _ in range(2)), samples=2).value > 0


def test_errors():
    net, loader = make_net(), [make_data()]
    with pytest.raises(ValueError, match="rho"):
        sam_sharpness(net, loader, rho=0.0)
    with pytest.raises(ValueError, match="samples"):
        sam_sharpness(net, loader, samples=0)
    with pytest.raises(ValueError, match="convention"):
        sam_sharpness(net, loader, convention="authors")
