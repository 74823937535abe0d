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
"""
from __future__ import annotations

from types import MappingProxyType

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

# The three sharpness measures of the paper's tables, by the metric names of reported_tables.csv;
# each is called as f(model, train_loader, **PAPER_CONVENTIONS.get(name, {}), **options).
SHARPNESS_METRICS = {
    "fisher_rao_norm": fisher_rao_norm,
    "sam_sharpness": sam_sharpness,
    "relative_flatness": relative_flatness,
}

#: The conventions of the paper's code where they differ from the library defaults, as keyword
#: arguments by function name: ``sam_sharpness(model, loader, **PAPER_CONVENTIONS["sam_sharpness"])``.
#: These are what the paper profiles use (``EvalSettings.sam_convention="paper"``,
#: ``rf_reduction="sum_batches"``). They depend on the loader: ``"sum_batches"`` grows with the number
#: of batches, and ``"paper"`` SAM sharpness re-draws shuffling and augmentation between the losses it
#: compares. Read-only.
PAPER_CONVENTIONS = MappingProxyType({
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
