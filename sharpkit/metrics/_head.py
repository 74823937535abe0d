"""The classifier head of any model, and its input features read by a forward pre-hook.

Relative flatness and the exact FAM penalty are properties of the final ``nn.Linear`` (the head)
and of its inputs. :func:`find_head` locates the head; :func:`head_forward` runs the model once and
returns the head's input (the penultimate features) and the model's output, which must be the
head's output (the logits).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["Head", "find_head", "head_forward"]

Head = str | nn.Linear | None

_ALLOWED = ("Pass head='<dotted name of an nn.Linear submodule>' (e.g. head='fc'), head=<the nn.Linear "
            "instance>, or head=None to find it: a `classifier` nn.Linear with a `features(x)` method "
            "(sharpkit's models), then `get_classifier()` (timm), then the last nn.Linear of model.modules().")
_FALLBACK = ("For a head that is not an nn.Linear, compute its input features yourself and call "
             "sharpkit.metrics.relative_flatness_from_features(features, weight, bias).")


def _name_of(model: nn.Module, module: nn.Module) -> str | None:
    return next((name for name, m in model.named_modules() if m is module), None)


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _not_linear(what: str, module: Any, model: nn.Module) -> ValueError:
    return ValueError(f"Expected the head ({what}) to be an nn.Linear, but it is a {type(module).__name__}. "
                      f"nn.Linear submodules of this {type(model).__name__}: {_linear_names(model) or 'none'}. "
                      f"{_ALLOWED} {_FALLBACK}")


def find_head(model: nn.Module, head: Head = None) -> nn.Linear:
    """The ``nn.Linear`` head of ``model``.

    Args:
        model: any ``nn.Module`` whose output is the logits of a final ``nn.Linear``.
        head: a dotted submodule name (``"fc"``, ``"classifier.6"``), an ``nn.Linear`` submodule of
            ``model``, or None to find it, in this order: ``model.classifier`` when it is an
            ``nn.Linear`` and ``model.features`` is callable (sharpkit's contract), then
            ``model.get_classifier()`` (timm's API; it must return an ``nn.Linear``), then the last
            ``nn.Linear`` in ``model.modules()`` order (torchvision's ``fc``, the last layer of an
            ``nn.Sequential``).

    Raises ``ValueError`` when no ``nn.Linear`` head is found or the one named is not an ``nn.Linear``.

    Examples:
        >>> import torch, torchvision
        >>> from sharpkit.metrics import find_head
        >>> find_head(torchvision.models.resnet18(num_classes=10))  # the last nn.Linear, ``fc``
        Linear(in_features=512, out_features=10, bias=True)
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> find_head(mlp) is mlp[2], find_head(mlp, head="0") is mlp[0]
        (True, True)
    """
    if isinstance(head, str):
        try:
            module = model.get_submodule(head)
        except AttributeError:
            raise ValueError(f"Expected `head` to name a submodule of {type(model).__name__}, but it has no "
                             f"{head!r}. Its nn.Linear submodules: {_linear_names(model) or 'none'}. "
                             f"{_ALLOWED}") from None
        if not isinstance(module, nn.Linear):
            raise _not_linear(f"head={head!r}", module, model)
        return module
    if isinstance(head, nn.Module):
        if not isinstance(head, nn.Linear):
            raise _not_linear("the module passed as `head`", head, model)
        if _name_of(model, head) is None:
            raise ValueError("Expected `head` to be a submodule of the model (its input is read by a hook during "
                             "the model's forward pass), but this nn.Linear is not one of its modules. "
                             f"{_ALLOWED}")
        return head
    if head is not None:
        raise ValueError(f"Expected `head` as a str, an nn.Linear or None, but got {type(head).__name__}. {_ALLOWED}")
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear) and callable(getattr(model, "features", None)):
        return classifier
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        found = get_classifier()
        if not isinstance(found, nn.Linear):
            raise _not_linear("the result of model.get_classifier()", found, model)
        return found
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        kinds = sorted({type(m).__name__ for m in model.modules() if m is not model})
        raise ValueError(f"Expected a model with an nn.Linear head, but {type(model).__name__} has no nn.Linear "
                         f"(its submodule types: {kinds or 'none'}). {_ALLOWED} {_FALLBACK}")
    return linears[-1]


def head_forward(model: nn.Module, head: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, logits)``: the input of ``head`` (read by a forward pre-hook) and ``model(x)``.

    Gradients flow as in ``model(x)`` (call it under ``torch.no_grad()`` when none are needed).
    Raises ``ValueError`` unless ``head`` runs exactly once and the model returns its output.
    """
    inputs: list[torch.Tensor] = []
    outputs: list[Any] = []
    handles = [head.register_forward_pre_hook(lambda module, args: inputs.append(args[0])),
               head.register_forward_hook(lambda module, args, out: outputs.append(out))]
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    name = _name_of(model, head) or "the head"
    if len(inputs) != 1:
        raise ValueError(f"Expected the head {name!r} to run once per forward pass, but it ran {len(inputs)} times; "
                         f"pass head= naming the final nn.Linear. {_FALLBACK}")
    if not (logits is outputs[0] or (torch.is_tensor(logits) and logits.shape == outputs[0].shape
                                     and torch.equal(logits, outputs[0]))):
        raise ValueError(f"Expected the model's output to be the output of its head {name!r} (the logits), but "
                         f"they differ (model output: {type(logits).__name__} "
                         f"{tuple(logits.shape) if torch.is_tensor(logits) else ''}); pass head= naming the "
                         f"nn.Linear that produces the logits. {_FALLBACK}")
    return inputs[0], logits
