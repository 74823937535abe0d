"""ResNet-18 (CIFAR variant) against the protocol's numbers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sharpkit.models import build_model, count_parameters
from sharpkit.models.resnet import BasicBlock

from ._helpers import count_linear_conv


def _paper_resnet18_parameters(num_classes: int) -> int:
    """Direct count for widths 64/128/256/512: 3x3 convs without bias, BN (2 per channel), three 1x1
    projection shortcuts, Linear(512, C)."""
    stem = 3 * 64 * 9 + 2 * 64
    total = stem
    in_ch = 64
    for out_ch in (64, 128, 256, 512):
        for _block in range(2):
            total += in_ch * out_ch * 9 + 2 * out_ch + out_ch * out_ch * 9 + 2 * out_ch
            if in_ch != out_ch:
                total += in_ch * out_ch + 2 * out_ch
            in_ch = out_ch
    return total + 512 * num_classes + num_classes


def test_paper_size_has_exactly_11173962_parameters():
    model = build_model("resnet18", 10)
    assert count_parameters(model) == 11_173_962
    assert _paper_resnet18_parameters(10) == 11_173_962


def test_parameter_count_follows_the_class_count():
    assert count_parameters(build_model("resnet18", 100)) == _paper_resnet18_parameters(100)


@pytest.mark.parametrize("width", [64, 4])
def test_21_linear_conv_modules_at_every_width(width):
    # 1 stem + 16 block convs + 3 projection shortcuts + classifier: the L of the Fisher-Rao norm.
    model = build_model("resnet18", 10, width=width)
    assert count_linear_conv(model) == 21
    shortcuts = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(shortcuts) == 3 and all(m.stride == (2, 2) for m in shortcuts)


def test_cifar_stem_no_maxpool_and_stage_widths():
    model = build_model("resnet18", 10, width=8)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    stages = (model.layer1, model.layer2, model.layer3, model.layer4)
    widths = [stage[-1].conv2.out_channels for stage in stages]
    assert widths == [8, 16, 32, 64]
    assert model.classifier.in_features == 64
    assert model.features(torch.randn(2, 3, 32, 32)).shape == (2, 64)


def test_block_is_relu_of_residual_sum():
    torch.manual_seed(0)
    block = BasicBlock(4, 4).eval()
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        inner = torch.relu(block.bn1(block.conv1(x)))
        expected = torch.relu(block.bn2(block.conv2(inner)) + x)  # identity shortcut
        assert torch.allclose(block(x), expected)


def test_pointwise_shortcut_equals_a_strided_1x1_convolution():
    from sharpkit.models.resnet import PointwiseConv2d

    torch.manual_seed(0)
    ours = PointwiseConv2d(8, 16, 1, stride=2, bias=False)
    reference = torch.nn.Conv2d(8, 16, 1, stride=2, bias=False)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(5, 8, 9, 9)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-6, atol=1e-6)
    assert ours(x).shape == (5, 16, 5, 5)


def test_channels_last_training_with_an_odd_batch_does_not_crash():
    # torch 2.14.1's strided 1x1 CPU kernel crashes here (heap corruption); run in a child process so a
    # regression fails this test instead of killing the test session.
    import subprocess
    import sys

    code = (
        "import torch, torch.nn.functional as F\n"
        "from sharpkit.models import build_model\n"
        "m = build_model('resnet18', num_classes=10, width=8).to(memory_format=torch.channels_last)\n"
        "for n in (64, 33, 17, 33):\n"
        "    x = torch.randn(n, 3, 32, 32).contiguous(memory_format=torch.channels_last)\n"
        "    F.cross_entropy(m(x), torch.randint(0, 10, (n,))).backward()\n"
        "print('survived')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "survived" in result.stdout, result.stderr[-2000:]
