"""ResNet-18, CIFAR variant.

Architecture: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), in the
CIFAR form the authors of "Understanding Deep Learning Requires Rethinking Sharpness" (2025) train
(the book's page "The protocol and where we depart from it", "Models"):

- stem: 3x3 conv (stride 1, no bias) -> BN -> ReLU, **no** max-pool;
- four stages of two BasicBlocks at widths w*[1, 2, 4, 8] (w = 64), strides 1, 2, 2, 2;
- a block whose shape changes gets a 1x1 conv (stride s, no bias) + BN shortcut, otherwise identity;
- global average pool -> 8w-d ``features`` -> ``classifier = Linear(8w, C)``.

At paper size with C = 10: 11,173,962 parameters and 21 Linear/Conv modules (20 convs + classifier),
the L of the Fisher-Rao norm. The authors pool with ``avg_pool2d(out, 4)``; for the 4x4 maps that
32x32 inputs give this is exactly the global average pool used here, which also accepts other input
sizes. Modules are created in the authors' order and under the usual names (``conv1``, ``bn1``,
``layer1..4``, ``shortcut``, ``classifier``) so one seed gives the same initial weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.validation import check_positive
from .registry import register_model

__all__ = ["BasicBlock", "ResNet", "resnet18"]


# --- blocks -----------------------------------------------------------------------------------------

class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution with stride s, computed as a stride-1 1x1 convolution of ``x[..., ::s, ::s]``.

    The same function and the same parameters as ``nn.Conv2d(c_in, c_out, 1, stride=s)``. The detour
    exists because torch 2.14.1's CPU (oneDNN) kernel for strided 1x1 convolutions corrupts the heap in
    the backward pass for channels-last inputs with an odd batch size (a crash, reproduced with a bare
    ``Conv2d(8, 16, 1, stride=2)``); subsampling first avoids that kernel on every device.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.stride
        # A strided view would send conv2d down a slow generic path: copy it in the input's layout.
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        return F.conv2d(x[..., ::sh, ::sw].contiguous(memory_format=layout), self.weight, self.bias)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), two 3x3 convs."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # Empty Sequential (not Identity) keeps the state-dict keys `shortcut.0/1` of the projection.
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                PointwiseConv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


# --- model ------------------------------------------------------------------------------------------

class ResNet(nn.Module):
    """CIFAR ResNet with BasicBlocks; ``features(x)`` is the pooled ``(B, 8 * width)`` vector.

    Build it with ``build_model("resnet18", num_classes, width=...)``.

    Examples:
        >>> import torch
        >>> from sharpkit.models import ResNet, build_model
        >>> model = build_model("resnet18", num_classes=10, width=4)
        >>> isinstance(model, ResNet), model.classifier
        (True, Linear(in_features=32, out_features=10, bias=True))
        >>> model.features(torch.randn(2, 3, 16, 16)).shape  # any input size (global average pool)
        torch.Size([2, 32])
    """

    def __init__(self, num_blocks: tuple[int, ...], num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        in_channels = width
        stages = []
        for i, n in enumerate(num_blocks):
            out_channels = width * 2**i
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            blocks = []
            for stride in strides:
                blocks.append(BasicBlock(in_channels, out_channels, stride))
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.classifier = nn.Linear(in_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, w, H, W)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))  # (B, 8w, H/8, W/8)
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)  # (B, 8w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# --- factory and registration -----------------------------------------------------------------------

@register_model("resnet18")
def resnet18(num_classes: int, *, width: int = 64) -> ResNet:
    """ResNet-18 (CIFAR variant), blocks [2, 2, 2, 2].

    Args:
        num_classes: outputs C of the classifier.
        width: channels of the stem and first stage (paper: 64); stages use width*[1, 2, 4, 8] and
            the feature vector has 8*width entries.
    """
    check_positive("width", width, integer=True)
    return ResNet((2, 2, 2, 2), num_classes, width=width)
