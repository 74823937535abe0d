"""A small model registry in the style of timm's ``_registry.py``.

A model file registers a *factory* ``fn(num_classes, *, knob=default, ...) -> nn.Module`` under a
name; :func:`~sharpkit.models.build_model` looks it up and checks the size knobs before calling it. The
knobs are the factory's keyword-only arguments, so the signature is the single source of truth for what
an architecture accepts and what its paper-size defaults are (:func:`~sharpkit.models.model_knobs`).

Every registered model follows one contract, which the metrics rely on and the tests check for
every name in the registry:

- ``model.classifier`` is the final ``nn.Linear`` (C x d);
- ``model.features(x)`` returns the classifier's input, shape (B, d);
- ``model(x)`` is computed as ``model.classifier(model.features(x))``.
"""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..utils.validation import check_positive

__all__ = ["register_model", "unregister_model", "build_model", "list_models", "model_knobs", "count_parameters"]

ModelFactory = Callable[..., nn.Module]
_F = TypeVar("_F", bound=ModelFactory)

_MODELS: dict[str, ModelFactory] = {}


def _knobs_of(factory: ModelFactory) -> dict[str, Any]:
    """Keyword-only arguments of ``factory`` with their defaults (the size knobs)."""
    return {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _check_factory_signature(name: str, factory: ModelFactory) -> None:
    # Caught at import time so that a badly written factory never reaches a user.
    params = list(inspect.signature(factory).parameters.values())
    if not params or params[0].name != "num_classes" or params[0].kind not in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.POSITIONAL_ONLY,
    ):
        raise TypeError(
            f"Model factory for {name!r} must take `num_classes` as its first argument, "
            f"but its signature is {inspect.signature(factory)}."
        )
    for p in params[1:]:
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is inspect.Parameter.empty:
            raise TypeError(
                f"Model factory for {name!r} must take its size knobs as keyword-only arguments with "
                f"defaults (`def f(num_classes, *, width=64)`), but `{p.name}` is not; "
                f"signature: {inspect.signature(factory)}."
            )


def register_model(name: str) -> Callable[[_F], _F]:
    """Decorator registering a model factory under ``name``; re-registering a name warns and overwrites.

    The factory must have the signature ``fn(num_classes, *, knob=default, ...)``; the keyword-only
    arguments are the architecture's size knobs and their defaults are the paper's sizes. On the command
    line, register in a module passed with ``--import MODULE``.

    Examples:
        >>> import torch
        >>> from sharpkit.models import build_model, list_models, register_model
        >>> from sharpkit.models.registry import unregister_model
        >>> class TinyMLP(torch.nn.Module):  # the contract: ``classifier`` and ``features(x)``
        ...     def __init__(self, num_classes, width):
        ...         super().__init__()
        ...         self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, width), torch.nn.ReLU())
        ...         self.classifier = torch.nn.Linear(width, num_classes)
        ...     def features(self, x):
        ...         return self.body(x)
        ...     def forward(self, x):
        ...         return self.classifier(self.features(x))
        >>> @register_model("tiny_mlp")
        ... def tiny_mlp(num_classes, *, width=16):
        ...     return TinyMLP(num_classes, width)
        >>> "tiny_mlp" in list_models()
        True
        >>> build_model("tiny_mlp", num_classes=10, width=8).classifier
        Linear(in_features=8, out_features=10, bias=True)
        >>> unregister_model("tiny_mlp")  # the example leaves the registry as it found it
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Expected argument `name` to be a non-empty string, but got {name!r}.")

    def decorator(factory: _F) -> _F:
        _check_factory_signature(name, factory)
        if name in _MODELS:
            warnings.warn(
                f"Overwriting model {name!r} in the registry (was {_MODELS[name].__module__}."
                f"{_MODELS[name].__qualname__}, now {factory.__module__}.{factory.__qualname__}).",
                UserWarning,
                stacklevel=2,
            )
        _MODELS[name] = factory
        return factory

    return decorator


def unregister_model(name: str) -> None:
    """Remove ``name`` from the registry (a test's or a notebook's temporary model); unknown names raise."""
    _get_factory(name)
    del _MODELS[name]


def list_models() -> list[str]:
    """Names of all registered architectures, sorted.

    Examples:
        >>> from sharpkit.models import list_models
        >>> {"resnet18", "vgg19", "vit", "resnet18_tin", "vgg19bn_tin"} <= set(list_models())  # built in
        True
    """
    return sorted(_MODELS)


def _get_factory(arch: str) -> ModelFactory:
    if arch not in _MODELS:
        raise ValueError(
            f"Unknown model architecture {arch!r}. Registered architectures: "
            f"{', '.join(list_models())}. Pick one of those, or register a new one with "
            f"`@sharpkit.models.register_model(name)` (on the command line: in a module passed with "
            f"--import MODULE)."
        )
    return _MODELS[arch]


def model_knobs(arch: str) -> dict[str, Any]:
    """The size knobs ``arch`` accepts, mapped to their (paper-size) defaults.

    Examples:
        >>> from sharpkit.models import model_knobs
        >>> model_knobs("vgg19")
        {'width': 64, 'hidden': None}
    """
    return _knobs_of(_get_factory(arch))


def build_model(arch: str, num_classes: int, **size: Any) -> nn.Module:
    """Build a freshly initialised registered model.

    Args:
        arch: a name from :func:`list_models`.
        num_classes: number of outputs C of the final ``classifier`` Linear.
        **size: size knobs of ``arch`` (see :func:`model_knobs`); omitted knobs take the paper's size.

    All randomness comes from torch's global generator, so ``torch.manual_seed(s)`` before the call
    makes the initial weights reproducible.

    Examples:
        >>> import torch
        >>> from sharpkit.models import build_model
        >>> _ = torch.manual_seed(0)  # the initial weights
        >>> model = build_model("resnet18", num_classes=10, width=4).eval()  # CPU-scale; the paper: 64
        >>> x = torch.randn(2, 3, 32, 32)
        >>> model(x).shape, model.features(x).shape
        (torch.Size([2, 10]), torch.Size([2, 32]))
        >>> torch.equal(model(x), model.classifier(model.features(x)))  # the contract of every model
        True
    """
    factory = _get_factory(arch)
    check_positive("num_classes", num_classes, integer=True)
    knobs = _knobs_of(factory)
    unknown = sorted(set(size) - set(knobs))
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in knobs.items()) or "none"
        raise ValueError(
            f"Unknown size argument(s) {', '.join(map(repr, unknown))} for model {arch!r}. "
            f"It accepts (with defaults): {accepted}."
        )
    return factory(num_classes, **size)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (each shared tensor once; buffers such as BatchNorm
    running statistics excluded). This is the P of the protocol's SAM-sharpness noise scale.

    Examples:
        >>> import torch
        >>> from sharpkit.models import build_model, count_parameters
        >>> count_parameters(build_model("resnet18", num_classes=10))  # the paper's size
        11173962
        >>> count_parameters(torch.nn.Linear(4, 3))
        15
    """
    return sum(p.numel() for p in model.parameters())
