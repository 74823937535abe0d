"""Every public measure on models without sharpkit's contract: torchvision's ``resnet18`` (head ``fc``),
an ``nn.Sequential`` MLP (head: its last layer) and a module whose head is called ``head`` (registered
first, found through a timm-style ``get_classifier()``). Relative flatness is checked against the exact
Hessian of each model's own loss w.r.t. its head weight (``torch.autograd.functional.hessian`` through
the whole model); on sharpkit's models the hooked features are bit-identical to ``model.features(x)``."""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import sharpkit.metrics as M
from sharpkit.data.base import CorruptedImageDataset
from sharpkit.models import build_model

from ._helpers import assert_state_equal, state_copy

CLASSES = 10


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small tensors on a shared machine: one thread is several times faster than two competing ones.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class HeadNet(nn.Module):
    """A module whose head is called ``head`` and registered *before* the body (so the last nn.Linear of
    ``modules()`` is the body's), found by its timm-style ``get_classifier()``."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, CLASSES)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten(), nn.Linear(16, 6), nn.Tanh())

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _resnet_features(m: torchvision.models.ResNet, x: torch.Tensor) -> torch.Tensor:
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    return torch.flatten(m.avgpool(m.layer4(m.layer3(m.layer2(m.layer1(x))))), 1)


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(),
                         nn.Linear(12, CLASSES))


@dataclass(frozen=True)
class Case:
    build: Callable[[], nn.Module]
    head: str                                                   # the head's dotted name
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # its input, computed by hand


CASES = {
    "resnet18": Case(lambda: torchvision.models.resnet18(num_classes=CLASSES), "fc", _resnet_features),
    "mlp": Case(_mlp, "5", lambda m, x: m[:-1](x)),
    "head_module": Case(HeadNet, "head", lambda m, x: m.body(x)),
}


def _model(name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    model = CASES[name].build().to(dtype)
    with torch.no_grad():  # non-trivial BatchNorm statistics, used in eval mode
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


def _loader(dtype: torch.dtype = torch.float32, n: int = 8, batch: int = 4) -> list:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 32, 32, generator=generator, dtype=dtype)
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


# ---------------------------------------------------------------------------------------------
# Relative flatness against the exact Hessian of the model's loss
# ---------------------------------------------------------------------------------------------

def _trace_blocks(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``T[s, s', t] = d^2 L / dW[s, t] dW[s', t]`` of the batch-mean cross-entropy of the whole model."""
    weight = model.get_submodule(name).weight.detach()

    def loss(w: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(model, {f"{name}.weight": w}, (x,)), y)

    hessian = torch.autograd.functional.hessian(loss, weight, vectorize=True)  # (C, d, C, d)
    return torch.einsum("itjt->ijt", hessian)


def _reference(weight: torch.Tensor, blocks: list[torch.Tensor], counts: list[int], features: torch.Tensor,
               normalize: bool, reduction: str) -> float:
    """kappa = sum_{s,s'} <V_s, V_s'> Tr d^2 L / dV_s dV_s' for V = W diag(sigma), i.e.
    sum_{s,s'} (sum_t W_st W_s't sigma_t^2) (sum_t' T[s,s',t'] / sigma_t'^2), constant features dropped."""
    if normalize:
        sigma = features.std(dim=0, unbiased=False)
        kept = sigma > 1e-12 * features.mean(dim=0).abs()
        sigma = torch.where(kept, sigma, torch.ones_like(sigma))
    else:
        sigma, kept = torch.ones(weight.shape[1], dtype=weight.dtype), torch.ones(weight.shape[1], dtype=torch.bool)
    w = weight[:, kept] * sigma[kept]
    total = 0.0
    for block, n in zip(blocks, counts, strict=True):
        kappa = float(((w @ w.T) * (block[:, :, kept] / sigma[kept] ** 2).sum(dim=2)).sum())
        total += kappa if reduction == "sum_batches" else kappa * n / sum(counts)
    return total


@pytest.mark.parametrize("name", list(CASES))
def test_relative_flatness_equals_the_exact_hessian_of_the_models_loss(name):
    model = _model(name, torch.float64).eval()
    loader = _loader(torch.float64)
    case = CASES[name]
    head = model.get_submodule(case.head)
    with torch.no_grad():
        features = torch.cat([case.features(model, x) for x, _ in loader])
        assert torch.equal(head(features), model(torch.cat([x for x, _ in loader])))  # it is the head
    blocks = [_trace_blocks(model, case.head, x, y) for x, y in loader]
    counts = [len(y) for _, y in loader]
    for normalize in (True, False):
        for reduction in ("mean", "sum_batches"):
            expected = _reference(head.weight.detach(), blocks, counts, features, normalize, reduction)
            value = M.relative_flatness(model, loader, normalize, reduction)
            assert value == pytest.approx(expected, rel=1e-9), (normalize, reduction)
            assert value > 0
    exact = M.relative_flatness_exact(model, loader)
    assert exact == pytest.approx(_reference(head.weight.detach(), blocks, counts, features, True, "mean"), rel=1e-9)
    # The head found automatically, by name and by instance: one and the same.
    assert M.relative_flatness(model, loader, head=case.head) == M.relative_flatness(model, loader)
    assert M.relative_flatness(model, loader, head=head) == M.relative_flatness(model, loader)


@pytest.mark.parametrize("name", list(CASES))
def test_the_head_is_found(name):
    model = _model(name)
    head = model.get_submodule(CASES[name].head)
    assert M.find_head(model) is head
    assert M.find_head(model, CASES[name].head) is head
    assert M.find_head(model, head) is head


def _sharpkit_models():
    small = {"resnet18": {"width": 4}, "vgg19": {"width": 4, "hidden": 8},
             "vit": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "mlp_dim": 16, "patch_size": 8}}
    for arch, size in small.items():
        torch.manual_seed(0)
        yield arch, build_model(arch, num_classes=CLASSES, **size)


def test_sharpkit_models_give_bit_identical_values_to_the_features_path():
    # The stored results were computed from model.features(x); the hook must read exactly that tensor.
    loader = _loader(n=6, batch=3)
    for arch, model in _sharpkit_models():
        model.eval()
        with torch.no_grad():
            features = [model.features(x) for x, _ in loader]
        weight, bias = model.classifier.weight, model.classifier.bias
        for normalize in (True, False):
            for reduction in ("mean", "sum_batches"):
                via_hook = M.relative_flatness(model, loader, normalize, reduction)
                direct = M.relative_flatness_from_features(features, weight, bias, normalize, reduction)
                assert via_hook == direct, (arch, normalize, reduction)
        pairs = [(phi, y) for phi, (_, y) in zip(features, loader, strict=True)]
        assert M.relative_flatness_exact(model, loader, reduction="sum_batches") == \
            M.relative_flatness_exact_from_features(pairs, weight, bias, reduction="sum_batches"), arch


# ---------------------------------------------------------------------------------------------
# Every public function on every model
# ---------------------------------------------------------------------------------------------

def _corrupted() -> CorruptedImageDataset:
    generator = torch.Generator().manual_seed(3)
    images = {"noise": torch.randint(0, 256, (1, 4, 3, 32, 32), generator=generator, dtype=torch.uint8)}
    labels = torch.randint(0, CLASSES, (4,), generator=generator)
    return CorruptedImageDataset(name="tiny-c", images=images, labels=labels, classes=tuple("abcdefghij"),
                                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), severities=(1,))


def _measures(model: nn.Module, loader: list, head: str) -> dict[str, Callable[[], object]]:
    """One call of every public function of sharpkit.metrics on ``model``."""
    head_params = [f"{head}.weight", f"{head}.bias"]
    layer = M.find_head(model)
    features: list[torch.Tensor] = []  # the head's inputs, read here by a hook of our own
    hook = layer.register_forward_pre_hook(lambda module, args: features.append(args[0]))
    with torch.no_grad():
        try:
            logits = [model.eval()(x) for x, _ in loader][0]
        finally:
            hook.remove()
    labels = loader[0][1]
    direction = M.random_direction(model, generator=torch.Generator().manual_seed(0))
    return {
        "find_head": lambda: M.find_head(model),
        "default_batch_fn": lambda: M.default_batch_fn(loader[0]),
        "predict": lambda: M.predict(model, loader),
        "accuracy": lambda: M.accuracy(logits, labels),
        "ece": lambda: M.ece(logits, labels),
        "generalization_gap": lambda: M.generalization_gap(logits, labels, logits, labels, measure="loss"),
        "prediction_disagreement": lambda: M.prediction_disagreement([logits, logits.flip(1)]),
        "corruption_accuracy": lambda: M.corruption_accuracy(model, _corrupted(), batch_size=2),
        "count_layers": lambda: M.count_layers(model),
        "fisher_rao_terms": lambda: M.fisher_rao_terms(logits, labels),
        "fisher_rao_norm_from_logits": lambda: M.fisher_rao_norm_from_logits(logits, labels, 3),
        "fisher_rao_norm": lambda: M.fisher_rao_norm(model, loader),
        "sam_sharpness": lambda: (M.sam_sharpness(model, loader, samples=2),
                                  M.sam_sharpness(model, loader, samples=2, convention="paper")),
        "relative_flatness": lambda: M.relative_flatness(model, loader),
        "relative_flatness_exact": lambda: M.relative_flatness_exact(model, loader),
        "relative_flatness_from_features": lambda: M.relative_flatness_from_features(features, layer.weight,
                                                                                     layer.bias),
        "relative_flatness_exact_from_features": lambda: M.relative_flatness_exact_from_features(
            [(features[0], labels)], layer.weight, layer.bias),
        "normalize_logits": lambda: M.normalize_logits(logits),
        "apgd_checkpoints": lambda: M.apgd_checkpoints(3),
        "adaptive_sharpness": lambda: (M.adaptive_sharpness(model, loader[:1], 0.01, samples=2, batch_size=None),
                                       M.adaptive_sharpness(model, loader[:1], 0.01, kind="worst", norm="linf",
                                                            steps=2, batch_size=4)),
        "hessian_trace": lambda: M.hessian_trace(model, loader[:1], samples=1),
        "hessian_top_eigenvalues": lambda: M.hessian_top_eigenvalues(model, loader, k=2, iters=4, params=head_params,
                                                                     max_vectors=3),
        "hessian_matrix": lambda: M.hessian_matrix(model, loader, params=[f"{head}.bias"]),
        "hessian_vector_product": lambda: M.hessian_vector_product(
            model, loader, {f"{head}.bias": torch.ones(CLASSES)}, params=[f"{head}.bias"]),
        "random_direction": lambda: direction,
        "loss_along_direction": lambda: M.loss_along_direction(model, loader, direction, [-0.1, 0.0, 0.1]),
        "asymmetry_factor": lambda: M.asymmetry_factor(model, loader, 0.1, directions=2),
    }


def _public_functions() -> set[str]:
    return {name for name in M.__all__ if inspect.isfunction(getattr(M, name))}


def test_the_list_of_measures_covers_every_public_function():
    covered = set(_measures(_model("mlp"), _loader(), "5"))
    assert covered == _public_functions()


def _floats(result: object) -> list[float]:
    if isinstance(result, (tuple, list)):
        return [v for item in result for v in _floats(item)]
    if isinstance(result, M.Measurement):
        return [result.value]
    if isinstance(result, (int, float)):
        return [float(result)]
    if torch.is_tensor(result):
        return [float(result.double().sum())]
    return []


@pytest.mark.parametrize("name", list(CASES))
def test_every_public_measure_runs_and_leaves_the_model_as_it_was(name):
    model = _model(name)
    model.train()
    loader = _loader()
    before = state_copy(model)
    for measure, call in _measures(model, loader, CASES[name].head).items():
        model.train()
        result = call()
        assert all(math.isfinite(v) for v in _floats(result)), measure
        assert_state_equal(model, before)
        assert model.training and all(m.training for m in model.modules()), measure


@pytest.mark.parametrize("name", list(CASES))
def test_head_curvature_against_autograd_on_every_model(name):
    # An independent reference for the Hessian routes on any model: d^2 L / d bias^2 through the whole network.
    model = _model(name, torch.float64).eval()
    loader = _loader(torch.float64)
    bias_name = f"{CASES[name].head}.bias"
    x, y = torch.cat([b[0] for b in loader]), torch.cat([b[1] for b in loader])

    def loss(b: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(model, {bias_name: b}, (x,)), y)

    exact = torch.autograd.functional.hessian(loss, model.get_submodule(CASES[name].head).bias.detach())
    assert torch.allclose(M.hessian_matrix(model, loader, params=[bias_name]), exact, atol=1e-12)
    top = M.hessian_top_eigenvalues(model, loader, k=3, iters=CLASSES, params=[bias_name])
    assert top.values == pytest.approx(torch.linalg.eigvalsh(exact).flip(0)[:3].tolist(), abs=1e-10)
    vector = torch.randn(CLASSES, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    product = M.hessian_vector_product(model, loader, {bias_name: vector}, params=[bias_name])
    assert torch.allclose(product[bias_name], exact @ vector, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Errors that say what was found, what is allowed and where to go
# ---------------------------------------------------------------------------------------------

class HeadFirstNet(HeadNet):
    """As HeadNet but without ``get_classifier``: the last nn.Linear found is the body's."""

    get_classifier = None


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.fc(x))


def test_head_errors_are_clear():
    x = torch.randn(4, 3, 32, 32)
    batches = [(x, torch.randint(0, CLASSES, (4,)))]
    resnet = _model("resnet18")
    with pytest.raises(ValueError, match=r"head='layer4'\) to be an nn.Linear, but it is a Sequential.*'fc'.*"
                                         r"relative_flatness_from_features"):
        M.relative_flatness(resnet, batches, head="layer4")
    with pytest.raises(ValueError, match=r"has no 'fc2'.*\['fc'\]"):
        M.relative_flatness(resnet, batches, head="fc2")
    with pytest.raises(ValueError, match="not one of its modules"):
        M.relative_flatness(resnet, batches, head=nn.Linear(512, CLASSES))
    with pytest.raises(ValueError, match="no nn.Linear.*Conv2d.*relative_flatness_from_features"):
        M.relative_flatness(nn.Sequential(nn.Conv2d(3, CLASSES, 32), nn.Flatten()), batches)
    with pytest.raises(ValueError, match=r"get_classifier\(\)\) to be an nn.Linear, but it is a Identity"):
        net = HeadNet()
        net.get_classifier = lambda: nn.Identity()
        M.find_head(net)
    with pytest.raises(ValueError, match="model's output to be the output of its head 'body.5'.*pass head="):
        M.relative_flatness(HeadFirstNet(), batches)
    assert M.relative_flatness(HeadFirstNet(), batches, head="head") > 0
    with pytest.raises(ValueError, match="ran 2 times"):
        M.relative_flatness(Twice(), [(torch.randn(3, 4), torch.tensor([0, 1, 2]))])
