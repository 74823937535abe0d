"""Every evaluation and sharpness measure of the paper, as documented functions.

Evaluation (test set): :func:`accuracy`, :func:`ece`, :func:`generalization_gap`,
:func:`prediction_disagreement`, :func:`corruption_accuracy`, with :func:`predict` to get logits.

Sharpness (training loader, as the caller passes it: augmented for augmentation controls):
:func:`fisher_rao_norm`, :func:`sam_sharpness`, :func:`relative_flatness` (closed form) and
:func:`relative_flatness_exact` (full Hessian, the reference).

Exact conventions: ``../shared/docs/paper-protocol.md``, "Metrics, exactly as their code computes them".
"""
from __future__ import annotations

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
# each is called as f(model, train_loader, **options).
SHARPNESS_METRICS = {
    "fisher_rao_norm": fisher_rao_norm,
    "sam_sharpness": sam_sharpness,
    "relative_flatness": relative_flatness,
}

__all__ = [
    "SHARPNESS_METRICS",
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
