"""VGG-19 with BatchNorm, CIFAR variant.

Architecture: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition" (ICLR 2015), configuration E, in the CIFAR form the authors of "Understanding Deep
Learning Requires Rethinking Sharpness" (2025) train (the book's page "The protocol and where we
depart from it", "Models"):

- 16 blocks conv3x3 (padding 1, **with** bias) -> BN -> ReLU, channels
  [64, 64, M, 128, 128, M, 256 x4, M, 512 x4, M, 512 x4, M], M = MaxPool(2, 2, ceil_mode=True);
- flatten -> Linear(512, 512) -> BatchNorm1d -> ReLU = 512-d ``features``;
- ``classifier = Linear(512, C)``.

16 convs + 2 Linear = 18 Linear/Conv modules (the L of the Fisher-Rao norm). Five poolings take a
32x32 input to 1x1, so the flattened vector has as many entries as the last conv has channels; the
model expects 32x32 inputs. Modules are created in the authors' order (convs, Linear-BN, classifier)
so one seed gives the same initial weights.

Size knobs (CPU-scale runs): ``width`` scales every conv proportionally (channels width/64 times the
list above, so the last conv has 8*width channels); ``hidden`` is the feature width and defaults to
``8 * width``, which is the paper's 512 at ``width=64`` and keeps the Linear square at every width.
"""
from __future__ import annotations

import torch
from torch import nn

from ..utils.validation import check_positive
from .registry import register_model

__all__ = ["VGG19_LAYOUT", "VGG", "vgg19"]

# Channels in units of `width` (= 64 at paper size); "M" = max-pool.
VGG19_LAYOUT: tuple[int | str, ...] = (
    1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M",
)


# --- blocks -----------------------------------------------------------------------------------------

def _conv_body(layout: tuple[int | str, ...], width: int) -> tuple[nn.Sequential, int, int]:
    """The conv stack, its number of output channels and its number of poolings."""
    layers: list[nn.Module] = []
    in_channels, n_pool = 3, 0
    for item in layout:
        if item == "M":
            # ceil_mode as in the authors' code: identical to floor for the even sizes 32x32 gives.
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            n_pool += 1
        else:
            out_channels = int(item) * width
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
    return nn.Sequential(*layers), in_channels, n_pool


# --- model ------------------------------------------------------------------------------------------

class VGG(nn.Module):
    """VGG conv stack (``body``) + Linear-BN-ReLU (``fc``) whose output is ``features(x)``, (B, hidden).

    The conv stack is called ``body`` (the authors' ``features``) because ``features`` is the
    method returning the classifier's input, common to all sharpkit models. Build it with
    ``build_model("vgg19", num_classes, width=..., hidden=...)``.

    Examples:
        >>> import torch
        >>> from sharpkit.models import VGG, build_model
        >>> model = build_model("vgg19", num_classes=10, width=4).eval()
        >>> isinstance(model, VGG), model.features(torch.randn(2, 3, 32, 32)).shape  # 32x32 inputs
        (True, torch.Size([2, 32]))
    """

    def __init__(self, layout: tuple[int | str, ...], num_classes: int, width: int = 64,
                 hidden: int = 512, image_size: int = 32) -> None:
        super().__init__()
        self.body, channels, n_pool = _conv_body(layout, width)
        side = image_size
        for _ in range(n_pool):
            side = -(-side // 2)  # ceil_mode pooling
        self.flat_dim = channels * side * side
        self.fc = nn.Sequential(
            nn.Linear(self.flat_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.flatten(self.body(x), 1)  # (B, 8w) for 32x32 inputs
        if out.shape[1] != self.flat_dim:
            raise ValueError(
                f"VGG expects inputs whose conv output flattens to {self.flat_dim} values (32x32 images), "
                f"but an input of shape {tuple(x.shape)} gives {out.shape[1]}. Resize the images to 32x32."
            )
        return self.fc(out)  # (B, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# --- factory and registration -----------------------------------------------------------------------

@register_model("vgg19")
def vgg19(num_classes: int, *, width: int = 64, hidden: int | None = None) -> VGG:
    """VGG-19 with BatchNorm (CIFAR variant, 32x32 inputs).

    Args:
        num_classes: outputs C of the classifier.
        width: channels of the first conv (paper: 64); all convs scale by width/64.
        hidden: width of the Linear-BN-ReLU feature layer; ``None`` (default) means ``8 * width``
            (paper: 512).
    """
    check_positive("width", width, integer=True)
    if hidden is None:
        hidden = 8 * width
    check_positive("hidden", hidden, integer=True)
    return VGG(VGG19_LAYOUT, num_classes, width=width, hidden=hidden)
