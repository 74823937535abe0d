"""Every evaluation and sharpness measure of the paper, as documented functions, on any ``nn.Module``.

Evaluation (test set): :func:`accuracy`, :func:`ece`, :func:`generalization_gap`,
:func:`prediction_disagreement`, :func:`corruption_accuracy`, with :func:`predict` to get logits.

Sharpness (training loader, as the caller passes it: augmented for augmentation controls):
:func:`fisher_rao_norm`, :func:`sam_sharpness`, :func:`relative_flatness` (closed form) and
:func:`relative_flatness_exact` (full Hessian, the reference); beyond the paper: adaptive sharpness,
Hessian trace and top eigenvalues, loss curves and the asymmetry factor.

One API for all of them:

- the data argument is ``loader``: any iterable of batches (a list, a ``DataLoader``); ``batch_fn``
  maps a batch to ``(x, y)`` (default :func:`default_batch_fn`: ``(x, y)``, ``(x, y, *rest)`` and
  dicts); integer labels of any width are cast to int64;
- ``loss_fn(output, y)`` (batch mean, default cross-entropy) wherever a loss is evaluated;
- measures that return more than a float return a :class:`Measurement` (``value``, ``sem``,
  ``details``);
- random measures draw from ``generator``, by default a generator seeded with :data:`DEFAULT_SEED`,
  so two calls give the same value;
- defaults do not depend on the batch size or on shuffling; the conventions of the paper's code,
  which do, are named in :data:`PAPER_CONVENTIONS`;
- the head of a model (for relative flatness) is found by :func:`find_head` or named with ``head=``.

What each metric of a run record is (its title, direction, test, unit, format, group): :mod:`sharpkit.metrics.registry`,
which imports without torch; the measures here are bound on first use.

Examples:
    >>> from sharpkit.metrics import DEFAULT_SEED, PAPER_CONVENTIONS, SHARPNESS_METRICS
    >>> DEFAULT_SEED
    0
    >>> dict(PAPER_CONVENTIONS["relative_flatness"])  # sam_sharpness(m, loader, **PAPER_CONVENTIONS[...])
    {'reduction': 'sum_batches', 'normalize_features': True}
    >>> sorted(SHARPNESS_METRICS)  # the paper's three measures, by the names of its tables
    ['fisher_rao_norm', 'relative_flatness', 'sam_sharpness']
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

# The measures import torch, so they are bound on first use (PEP 562 __getattr__ below): importing this package
# for its registry (sharpkit.metrics.registry, which the torch-free analysis layer reads) does not import torch.
if TYPE_CHECKING:  # what type checkers see; _bind_measures binds the same names at run time
    from collections.abc import Callable

    from ._common import DEFAULT_SEED, Measurement, default_batch_fn
    from ._head import find_head
    from .adaptive_sharpness import AdaptiveSharpness, adaptive_sharpness, apgd_checkpoints, normalize_logits
    from .curvature import (
        HessianEigen,
        HessianTrace,
        hessian_matrix,
        hessian_top_eigenvalues,
        hessian_trace,
        hessian_vector_product,
    )
    from .evaluation import (
        CorruptionAccuracy,
        Disagreement,
        Predictions,
        accuracy,
        corruption_accuracy,
        ece,
        generalization_gap,
        predict,
        prediction_disagreement,
    )
    from .fisher_rao import count_layers, fisher_rao_norm, fisher_rao_norm_from_logits, fisher_rao_terms
    from .landscape import Asymmetry, LossCurve, asymmetry_factor, loss_along_direction, random_direction
    from .relative_flatness import (
        relative_flatness,
        relative_flatness_exact,
        relative_flatness_exact_from_features,
        relative_flatness_from_features,
    )
    from .sam_sharpness import SamSharpness, sam_sharpness

    #: The three sharpness measures of the paper's tables, by their metric names in those tables (and in
    #: sharpkit's copy of them, ``reported_tables.csv``); each is called as
    #: ``f(model, train_loader, **PAPER_CONVENTIONS.get(name, {}), **options)``. Derived from
    #: :data:`sharpkit.metrics.registry.PAPER_SHARPNESS_METRICS` and each record's ``function``.
    SHARPNESS_METRICS: dict[str, Callable[..., Any]]

#: The conventions of the paper's code where they differ from the library defaults, as keyword
#: arguments by function name: ``sam_sharpness(model, loader, **PAPER_CONVENTIONS["sam_sharpness"])``.
#: These are what the paper profiles use (``EvalSettings.sam_convention="paper"``,
#: ``rf_reduction="sum_batches"``). They depend on the loader: ``"sum_batches"`` grows with the number
#: of batches, and ``"paper"`` SAM sharpness re-draws shuffling and augmentation between the losses it
#: compares. Read-only.
PAPER_CONVENTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "sam_sharpness": MappingProxyType({"convention": "paper"}),
    "relative_flatness": MappingProxyType({"reduction": "sum_batches", "normalize_features": True}),
    "relative_flatness_exact": MappingProxyType({"reduction": "sum_batches", "normalize_features": True}),
})

__all__ = [
    "DEFAULT_SEED",
    "PAPER_CONVENTIONS",
    "SHARPNESS_METRICS",
    "Measurement",
    "default_batch_fn",
    "find_head",
    "AdaptiveSharpness", "adaptive_sharpness", "apgd_checkpoints", "normalize_logits",
    "HessianEigen", "HessianTrace", "hessian_matrix", "hessian_top_eigenvalues", "hessian_trace",
    "hessian_vector_product",
    "Asymmetry", "LossCurve", "asymmetry_factor", "loss_along_direction", "random_direction",
    "CorruptionAccuracy",
    "Disagreement",
    "Predictions",
    "SamSharpness",
    "accuracy",
    "corruption_accuracy",
    "count_layers",
    "ece",
    "fisher_rao_norm",
    "fisher_rao_norm_from_logits",
    "fisher_rao_terms",
    "generalization_gap",
    "predict",
    "prediction_disagreement",
    "relative_flatness",
    "relative_flatness_exact",
    "relative_flatness_exact_from_features",
    "relative_flatness_from_features",
    "sam_sharpness",
]


# The modules that define the names of __all__ (those the TYPE_CHECKING block imports from), relative to this package.
_MODULES = ("._common", "._head", ".adaptive_sharpness", ".curvature", ".evaluation", ".fisher_rao", ".landscape",
            ".relative_flatness", ".sam_sharpness")


def _bind_measures() -> None:
    """Imports the measures (and torch with them) and binds each name of ``__all__`` in this package."""
    from .registry import PAPER_SHARPNESS_METRICS, metric_info

    modules = [importlib.import_module(name, __name__) for name in _MODULES]
    namespace = globals()
    for name in __all__:
        if name in namespace or name == "SHARPNESS_METRICS":
            continue
        found = [vars(m)[name] for m in modules if name in vars(m) and not isinstance(vars(m)[name], ModuleType)]
        if not found:
            raise ImportError(f"sharpkit.metrics exports {name!r}, but none of its modules {', '.join(_MODULES)} "
                              "defines it; add the module that does to _MODULES.")
        namespace[name] = found[0]
    namespace["SHARPNESS_METRICS"] = {m: namespace[metric_info(m).function or m] for m in PAPER_SHARPNESS_METRICS}


def __getattr__(name: str) -> Any:
    if name in __all__:
        _bind_measures()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(ModuleType):
    """This package's module type: a submodule never hides the function it shares a name with."""

    def __setattr__(self, name: str, value: object) -> None:
        # Importing a submodule binds it as an attribute of the package (``import sharpkit.metrics.sam_sharpness``
        # sets ``sharpkit.metrics.sam_sharpness``). Three submodules are named after the function they define,
        # which is what the package exports under that name: binding the module would hide the function from
        # __getattr__.
        if name in __all__ and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
