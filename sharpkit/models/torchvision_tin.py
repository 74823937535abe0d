"""ImageNet-pretrained torchvision ResNet-18 and VGG-19-BN with a new head, for TinyImageNet.

Protocol ("Understanding Deep Learning Requires Rethinking Sharpness", 2025, appendix C; the book's
page "The protocol and where we depart from it", "Models"): for TinyImageNet the authors fine-tune
torchvision's ``resnet18`` and ``vgg19_bn`` with the ImageNet weights of ``pretrained=True``
(``IMAGENET1K_V1``), replacing the last Linear by a fresh ``Linear(d, 200)`` (PyTorch's default
initialisation). torchvision's structure is kept as is, including VGG's adaptive average pool to
7x7 (a 64x64 input reaches it as 2x2 maps, which the pool repeats to 7x7) and its two Dropout(0.5)
layers.

Design: each model is a thin wrapper holding the untouched torchvision network as ``net`` (so the
state-dict keys are torchvision's prefixed with ``net.``, and a torchvision checkpoint loads with
``model.net.load_state_dict(sd)``). ``classifier`` is a read-only property returning the last Linear
inside ``net``, so it is registered once and not duplicated in the state dict; ``features(x)`` runs
``net`` up to that Linear:

- ``resnet18_tin``: features = flattened global average pool, 512-d; classifier = ``net.fc``.
  Linear/Conv modules: 20 convs + fc = 21.
- ``vgg19bn_tin``: features = output of ``net.classifier[:6]`` (Linear-ReLU-Dropout twice), 4096-d;
  classifier = ``net.classifier[6]``. Linear/Conv modules: 16 convs + 3 Linear = 19.

Weights are never downloaded. With ``pretrained=True`` the file torchvision would download must
already be in the torch hub cache, ``torch.hub.get_dir()/checkpoints/`` (default
``~/.cache/torch/hub/checkpoints``, moved by ``$TORCH_HOME``), otherwise ``FileNotFoundError`` says
which file to put where. The random initialisation is drawn (and the torch RNG advanced) exactly the
same way with and without ``pretrained``, so under one seed the new head is identical in both cases.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet18_Weights, VGG19_BN_Weights, WeightsEnum

from .registry import register_model

__all__ = ["TorchvisionResNetTin", "TorchvisionVGGTin", "pretrained_weights_path", "resnet18_tin",
           "vgg19bn_tin"]


# --- weights ----------------------------------------------------------------------------------------

def pretrained_weights_path(weights: WeightsEnum) -> Path:
    """Where torchvision's loader (``torch.hub.load_state_dict_from_url``) caches ``weights``.

    Examples:
        >>> from torchvision.models import ResNet18_Weights
        >>> from sharpkit.models import pretrained_weights_path
        >>> pretrained_weights_path(ResNet18_Weights.IMAGENET1K_V1).name  # under torch.hub.get_dir()
        'resnet18-f37072fd.pth'
    """
    filename = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _require_weights_file(arch: str, builder: str, weights: WeightsEnum) -> Path:
    path = pretrained_weights_path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"Pretrained ImageNet weights for `{arch}` (torchvision {weights}) are not in the torch hub "
            f"cache: expected the file {path}. sharpkit never downloads weights. torchvision looks for "
            f"them in `torch.hub.get_dir()/checkpoints/` ($TORCH_HOME/hub/checkpoints, by default "
            f"~/.cache/torch/hub/checkpoints). To fix: on a machine with internet access download "
            f"{weights.url} (or run `torchvision.models.{builder}(weights=\"{weights}\")` there, which "
            f"saves it to that folder) and copy the file to {path}; or set $TORCH_HOME to a folder "
            f"whose hub/checkpoints/ holds it. Or pass pretrained=False for randomly initialised weights."
        )
    return path


def _load_weights(net: nn.Module, path: Path) -> None:
    # torchvision would call load_state_dict_from_url, which downloads when the file is missing; we
    # checked it is there and load it directly, so no code path can reach the network.
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def _check_bool(argument: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"Expected argument `{argument}` to be True or False, but got {value!r}.")


# --- models -----------------------------------------------------------------------------------------

class TorchvisionResNetTin(nn.Module):
    """torchvision ResNet as ``net``; ``features`` = pooled (B, 512), ``classifier`` = ``net.fc``.

    Examples:
        >>> import torch
        >>> from sharpkit.models import TorchvisionResNetTin, build_model
        >>> model = build_model("resnet18_tin", num_classes=200, pretrained=False)  # True: ImageNet weights
        >>> isinstance(model, TorchvisionResNetTin), model.classifier is model.net.fc
        (True, True)
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 200])
    """

    def __init__(self, net: torchvision.models.ResNet, pretrained_weights: str | None) -> None:
        super().__init__()
        self.net = net
        self.pretrained_weights = pretrained_weights  # provenance, e.g. "ResNet18_Weights.IMAGENET1K_V1"

    @property
    def classifier(self) -> nn.Linear:
        return self.net.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net  # the steps of torchvision's ResNet._forward_impl before `fc`
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))  # (B, 64, H/4, W/4)
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))  # (B, 512, H/32, W/32)
        return torch.flatten(n.avgpool(x), 1)  # (B, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TorchvisionVGGTin(nn.Module):
    """torchvision VGG as ``net``; ``features`` = ``net.classifier[:6]`` output (B, 4096),
    ``classifier`` = ``net.classifier[6]``.

    Examples:
        >>> import torch
        >>> from sharpkit.models import TorchvisionVGGTin, build_model
        >>> with torch.device("meta"):  # shapes only: the 139M parameters take no memory
        ...     model = build_model("vgg19bn_tin", num_classes=200, pretrained=False)
        >>> isinstance(model, TorchvisionVGGTin), model.classifier is model.net.classifier[6]
        (True, True)
        >>> model.features(torch.empty(2, 3, 64, 64, device="meta")).shape
        torch.Size([2, 4096])
    """

    def __init__(self, net: torchvision.models.VGG, pretrained_weights: str | None) -> None:
        super().__init__()
        self.net = net
        self.pretrained_weights = pretrained_weights

    @property
    def classifier(self) -> nn.Linear:
        return self.net.classifier[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net  # the steps of torchvision's VGG.forward before the last Linear
        x = torch.flatten(n.avgpool(n.features(x)), 1)  # (B, 512*7*7)
        for layer in list(n.classifier)[:-1]:
            x = layer(x)
        return x  # (B, 4096)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# --- factories and registration ---------------------------------------------------------------------

@register_model("resnet18_tin")
def resnet18_tin(num_classes: int, *, pretrained: bool = True) -> TorchvisionResNetTin:
    """torchvision ResNet-18 (ImageNet ``IMAGENET1K_V1`` weights if ``pretrained``) with a new
    ``Linear(512, num_classes)`` head (200 for TinyImageNet)."""
    _check_bool("pretrained", pretrained)
    weights = ResNet18_Weights.IMAGENET1K_V1
    path = _require_weights_file("resnet18_tin", "resnet18", weights) if pretrained else None
    net = torchvision.models.resnet18(weights=None)
    if path is not None:
        _load_weights(net, path)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return TorchvisionResNetTin(net, str(weights) if pretrained else None)


@register_model("vgg19bn_tin")
def vgg19bn_tin(num_classes: int, *, pretrained: bool = True) -> TorchvisionVGGTin:
    """torchvision VGG-19-BN (ImageNet ``IMAGENET1K_V1`` weights if ``pretrained``) with a new
    ``Linear(4096, num_classes)`` head (200 for TinyImageNet)."""
    _check_bool("pretrained", pretrained)
    weights = VGG19_BN_Weights.IMAGENET1K_V1
    path = _require_weights_file("vgg19bn_tin", "vgg19_bn", weights) if pretrained else None
    net = torchvision.models.vgg19_bn(weights=None)
    if path is not None:
        _load_weights(net, path)
    net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)
    return TorchvisionVGGTin(net, str(weights) if pretrained else None)
