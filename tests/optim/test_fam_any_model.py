"""FAM on any model: the exact head penalty of fam_loss reads the head's input with a hook, on torchvision's
resnet18, an nn.Sequential MLP and a module whose head is called ``head``; on sharpkit's models it is
bit-identical to the former ``model.features(x)`` path (loss, penalty and gradients)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from sharpkit.metrics import relative_flatness
from sharpkit.models import build_model
from sharpkit.optim import classifier_relative_flatness, fam_loss, fam_penalty

CLASSES = 10


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class HeadNet(nn.Module):
    """Head called ``head``, registered before the body; found through ``get_classifier()`` (timm's API)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, CLASSES)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                  nn.Flatten(), nn.Linear(16, 6), nn.Tanh())

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x):
        return self.head(self.body(x))


def _resnet_features(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    return torch.flatten(m.avgpool(m.layer4(m.layer3(m.layer2(m.layer1(x))))), 1)


CASES = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=CLASSES), "fc", _resnet_features),
    "mlp": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.ReLU(), nn.Linear(16, CLASSES)), "3",
            lambda m, x: m[:-1](x)),
    "head_module": (HeadNet, "head", lambda m, x: m.body(x)),
}


def _batch(seed=1, n=4):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=generator), torch.randint(0, CLASSES, (n,), generator=generator)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_exact_penalty_on_any_model_equals_the_penalty_of_the_features_computed_by_hand(name, normalize):
    build, head_name, features_of = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    head = model.get_submodule(head_name)
    x, y = _batch()
    result = fam_loss(model, x, y, strength=0.1, normalize_features=normalize)
    result.total.backward()
    hooked = _grads(model)
    model.zero_grad()
    features = features_of(model, x)
    loss = F.cross_entropy(head(features), y)
    penalty = classifier_relative_flatness(features, head.weight, head.bias, normalize)
    (loss + 0.1 * penalty).backward()
    assert torch.equal(result.loss.detach(), loss.detach())
    assert torch.equal(result.penalty.detach(), penalty.detach())
    assert hooked.keys() == _grads(model).keys()
    for key, grad in _grads(model).items():
        assert torch.allclose(hooked[key], grad, rtol=1e-5, atol=1e-7), key
    # It is the relative flatness of the batch, and the gradient reaches the first layer.
    with torch.no_grad():
        assert float(penalty) == pytest.approx(relative_flatness(model, [(x, y)], normalize_features=normalize),
                                               rel=1e-4)
    first = next(p for p in model.parameters() if p.ndim > 1)
    assert float(hooked[next(n for n, p in model.named_parameters() if p is first)].abs().sum()) > 0
    assert torch.equal(fam_penalty(model, features.detach(), normalize, head=head_name),
                       fam_penalty(model, features.detach(), normalize))


def test_sharpkit_models_are_bit_identical_to_the_features_path():
    small = {"resnet18": {"width": 4}, "vgg19": {"width": 4, "hidden": 8},
             "vit": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "mlp_dim": 16, "patch_size": 8}}
    x, y = _batch(n=3)
    for arch, size in small.items():
        torch.manual_seed(0)
        model = build_model(arch, num_classes=CLASSES, **size).train()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        new = fam_loss(model, x, y, strength=0.1, normalize_features=True)
        new.total.backward()
        hooked = _grads(model)
        model.zero_grad()
        model.load_state_dict(state)  # BatchNorm statistics moved in train mode: start from the same ones
        features = model.features(x)  # the former implementation of fam_loss
        loss = F.cross_entropy(model.classifier(features), y)
        penalty = classifier_relative_flatness(features, model.classifier.weight, model.classifier.bias, True)
        (loss + 0.1 * penalty).backward()
        assert torch.equal(new.loss, loss) and torch.equal(new.penalty, penalty), arch
        for key, grad in _grads(model).items():
            assert torch.equal(hooked[key], grad), (arch, key)


def test_layer_names_and_errors():
    torch.manual_seed(0)
    model = CASES["mlp"][0]()
    x, y = _batch()
    default = fam_loss(model, x, y, 0.1)
    assert torch.equal(fam_loss(model, x, y, 0.1, layer="classifier").total, default.total)  # its former name
    assert torch.equal(fam_loss(model, x, y, 0.1, head="3").total, default.total)
    simplified = fam_loss(model, x, y, 0.1, layer="1.weight", generator=torch.Generator().manual_seed(0))
    assert torch.equal(simplified.loss, default.loss)
    convolutional = nn.Sequential(nn.Conv2d(3, CLASSES, 32), nn.Flatten())
    with pytest.raises(ValueError, match="no nn.Linear.*relative_flatness_from_features"):
        fam_loss(convolutional, x, y, 0.1)
    assert fam_loss(convolutional, x, y, 0.1, layer="0.weight").penalty.requires_grad  # no head needed
    with pytest.raises(ValueError, match=r"head='2'\) to be an nn.Linear, but it is a ReLU.*\['1', '3'\]"):
        fam_penalty(model, torch.zeros(2, 16), head="2")
