"""VGG-19 (CIFAR variant) against the protocol's layer list."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sharpkit.models import build_model, count_parameters

from ._helpers import count_linear_conv

# The protocol's channel list, written out independently of sharpkit.models.vgg.VGG19_LAYOUT.
PAPER_CHANNELS = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                  512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _paper_vgg19_parameters(num_classes: int) -> int:
    """conv3x3 with bias + BN (2 per channel) per entry, Linear(512, 512) + BN1d(512), Linear(512, C)."""
    total, in_ch = 0, 3
    for item in PAPER_CHANNELS:
        if item != "M":
            total += in_ch * item * 9 + item + 2 * item
            in_ch = item
    return total + 512 * 512 + 512 + 2 * 512 + 512 * num_classes + num_classes


@pytest.mark.parametrize("num_classes", [10, 100])
def test_paper_size_parameter_count(num_classes):
    assert count_parameters(build_model("vgg19", num_classes)) == _paper_vgg19_parameters(num_classes)


def test_layer_sequence_matches_the_protocol():
    model = build_model("vgg19", 10)
    expected: list[tuple] = []
    for item in PAPER_CHANNELS:
        if item == "M":
            expected.append(("pool",))
        else:
            expected += [("conv", item), ("bn", item), ("relu",)]
    got = []
    for m in model.body:
        if isinstance(m, nn.Conv2d):
            assert m.kernel_size == (3, 3) and m.padding == (1, 1) and m.bias is not None
            got.append(("conv", m.out_channels))
        elif isinstance(m, nn.BatchNorm2d):
            got.append(("bn", m.num_features))
        elif isinstance(m, nn.ReLU):
            got.append(("relu",))
        elif isinstance(m, nn.MaxPool2d):
            assert m.kernel_size == 2 and m.stride == 2 and m.ceil_mode
            got.append(("pool",))
    assert got == expected
    assert [type(m) for m in model.fc] == [nn.Linear, nn.BatchNorm1d, nn.ReLU]
    assert (model.fc[0].in_features, model.fc[0].out_features) == (512, 512)
    assert (model.classifier.in_features, model.classifier.out_features) == (512, 10)


@pytest.mark.parametrize("width", [64, 4])
def test_18_linear_conv_modules_at_every_width(width):
    assert count_linear_conv(build_model("vgg19", 10, width=width)) == 18


def test_width_scales_channels_and_hidden_defaults_to_8_width():
    model = build_model("vgg19", 10, width=4)
    convs = [m.out_channels for m in model.body if isinstance(m, nn.Conv2d)]
    paper = [c for c in PAPER_CHANNELS if c != "M"]
    assert convs == [c * 4 // 64 for c in paper]
    assert model.classifier.in_features == 32
    custom = build_model("vgg19", 10, width=4, hidden=20)
    assert (custom.fc[0].in_features, custom.classifier.in_features) == (32, 20)
    assert custom.features(torch.randn(2, 3, 32, 32)).shape == (2, 20)


def test_features_are_the_relu_of_batchnormed_linear():
    torch.manual_seed(0)
    model = build_model("vgg19", 10, width=2).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        flat = torch.flatten(model.body(x), 1)
        expected = torch.relu(model.fc[1](model.fc[0](flat)))
        assert torch.allclose(model.features(x), expected)
        assert (model.features(x) >= 0).all()


def test_wrong_input_size_raises_a_clear_error():
    model = build_model("vgg19", 10, width=2).eval()
    with pytest.raises(ValueError, match="32x32"):
        model(torch.randn(1, 3, 64, 64))
