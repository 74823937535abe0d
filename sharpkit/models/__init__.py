"""Model architectures of the paper, behind a timm-like registry.

>>> from sharpkit.models import build_model, list_models
>>> list_models()
['resnet18', 'resnet18_tin', 'vgg19', 'vgg19bn_tin', 'vit']
>>> model = build_model("resnet18", num_classes=10, width=8)  # CPU-scale; default width 64 = paper

Every model exposes ``model.classifier`` (the final ``nn.Linear``) and ``model.features(x)`` (its
input, shape (B, d)), with ``model(x) == model.classifier(model.features(x))``. The factories live in
the model files (``sharpkit.models.vit.vit``...); build through :func:`build_model`.
"""
from __future__ import annotations

# Importing the model files registers their architectures.
from . import resnet, torchvision_tin, vgg, vit  # noqa: F401
from .registry import build_model, count_parameters, list_models, model_knobs, register_model
from .resnet import ResNet
from .torchvision_tin import TorchvisionResNetTin, TorchvisionVGGTin, pretrained_weights_path
from .vgg import VGG
from .vit import ViT

__all__ = [
    "register_model", "build_model", "list_models", "model_knobs", "count_parameters",
    "ResNet", "VGG", "ViT", "TorchvisionResNetTin", "TorchvisionVGGTin", "pretrained_weights_path",
]
