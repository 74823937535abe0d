"""torchvision ResNet-18 / VGG-19-BN for TinyImageNet: structure, weights lookup, error message."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models import ResNet18_Weights, VGG19_BN_Weights

from sharpkit.models import build_model, count_parameters, pretrained_weights_path

from ._helpers import NUM_CLASSES, count_linear_conv

CASES = {  # arch -> (torchvision weights, feature width d, Linear/Conv modules)
    "resnet18_tin": (ResNet18_Weights.IMAGENET1K_V1, 512, 21),
    "vgg19bn_tin": (VGG19_BN_Weights.IMAGENET1K_V1, 4096, 19),
}


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub cache under tmp_path, found the way torchvision finds it ($TORCH_HOME)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    if torch.hub.get_dir() != str(tmp_path / "hub"):
        pytest.skip("torch.hub.set_dir() was called in this process; $TORCH_HOME is ignored")
    return tmp_path / "hub"


@pytest.mark.parametrize("arch", sorted(CASES))
def test_structure_against_torchvision_metadata(arch, small_model):
    weights, d, n_linear_conv = CASES[arch]
    model, _ = small_model(arch)
    # torchvision's published count for the 1000-class model, with the head swapped for C classes.
    expected = weights.meta["num_params"] - (d + 1) * 1000 + (d + 1) * NUM_CLASSES
    assert count_parameters(model) == expected
    assert count_linear_conv(model) == n_linear_conv
    assert model.classifier.in_features == d
    assert model.pretrained_weights is None


@pytest.mark.parametrize("arch", sorted(CASES))
def test_forward_is_torchvisions_own_forward(arch, small_model):
    model, _ = small_model(arch)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model.net(x))
    keys = list(model.state_dict())
    assert all(k.startswith("net.") for k in keys)


def test_vgg_keeps_adaptive_pool_and_dropout(small_model):
    model, _ = small_model("vgg19bn_tin")
    assert model.net.avgpool.output_size == (7, 7)
    assert [type(m).__name__ for m in model.net.classifier] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert model.classifier is model.net.classifier[6]


@pytest.mark.parametrize("arch", sorted(CASES))
def test_missing_weights_message_says_where_to_put_them(arch, empty_hub):
    weights = CASES[arch][0]
    expected = empty_hub / "checkpoints" / weights.url.rsplit("/", 1)[1]
    assert pretrained_weights_path(weights) == expected
    with pytest.raises(FileNotFoundError) as info:
        build_model(arch, 200)
    message = str(info.value)
    for needle in (str(expected), weights.url, "TORCH_HOME", "torch.hub.get_dir()", "pretrained=False"):
        assert needle in message, needle


def test_pretrained_weights_load_from_the_file_torchvision_uses(empty_hub):
    # Stand-in "ImageNet" weights: a seeded 1000-class resnet18 saved where torchvision caches them.
    torch.manual_seed(123)
    fake = torchvision.models.resnet18().state_dict()
    path = pretrained_weights_path(ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save(fake, path)

    torch.manual_seed(5)
    model = build_model("resnet18_tin", NUM_CLASSES)
    torch.manual_seed(5)
    scratch = build_model("resnet18_tin", NUM_CLASSES, pretrained=False)
    assert model.pretrained_weights == "ResNet18_Weights.IMAGENET1K_V1"
    # torchvision's own loader finds the same file (it exists, so nothing is downloaded).
    reference = torchvision.models.resnet18(weights=ResNet18_Weights.IMAGENET1K_V1).state_dict()
    ours = model.net.state_dict()
    for key, value in fake.items():
        if not key.startswith("fc."):
            assert torch.equal(ours[key], value), key
            assert torch.equal(reference[key], value), key
    # The new head is drawn the same way with or without pretrained weights.
    assert model.classifier.out_features == NUM_CLASSES
    assert torch.equal(model.classifier.weight, scratch.classifier.weight)
