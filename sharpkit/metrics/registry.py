"""The metric registry: one record (:class:`MetricInfo`) per metric a stored run can hold, with every
attribute of it: its title, its direction of "better", the one-sided alternative of its control-vs-Baseline
test, its Benjamini-Yekutieli family, its unit, its display format, its verify tolerance and its group.

Every table of metric attributes in sharpkit is derived from :data:`REGISTRY`: the paper-layout tables'
columns, titles, bold directions and formats (:mod:`sharpkit.analysis.report`), the tests' alternatives and
correction families (:mod:`sharpkit.analysis.stats`), the metrics a run can be evaluated on and their
defaults (:mod:`sharpkit.run.evaluate`, the ``sharpkit evaluate`` choices), the verify tolerances
(:mod:`sharpkit.experiments.sweep`) and the book's groups of measures (:mod:`sharpkit.analysis.book`).
A new measure is its own file in ``sharpkit/metrics/`` and one entry here.

Pure Python: the torch-free analysis layer imports it (``sharpkit.metrics`` binds its torch measures only
on first use).

Groups (``MetricInfo.group``, :data:`GROUPS`):

- ``"training"``: how well a run fits its training data (the trainer's record, and the evaluation's eval-mode
  training accuracy);
- ``"evaluation"``: the test-set evaluations (accuracy, calibration, corruptions, disagreement, the gap);
- ``"sharpness"``: the paper's sharpness measures, and SAM sharpness in the clean convention;
- ``"beyond"``: the measures beyond the paper (the book's "Beyond the paper" chapter);
- ``"derived"``: columns the analysis computes from stored ones (an evaluation written as an error).

Examples:
    >>> from sharpkit.metrics.registry import metric_info, metric_names, metrics_in
    >>> info = metric_info("fisher_rao_norm")
    >>> info.title, info.group, info.alternative, info.family, info.better
    ('Fisher Rao Norm', 'sharpness', 'greater', 'sharpness', None)
    >>> metric_info("corruption_accuracy").unit, metric_info("test_accuracy").unit
    ('percent', 'fraction')
    >>> metrics_in("sharpness")
    ('fisher_rao_norm', 'sam_sharpness', 'sam_sharpness_clean', 'relative_flatness')
    >>> metric_names(group="sharpness", paper_column=True)
    ('fisher_rao_norm', 'sam_sharpness', 'relative_flatness')
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

from ..utils.validation import check_choice

__all__ = [
    "BEYOND_METRICS",
    "COLUMN_SOURCES",
    "DEFAULT_EVALUATED",
    "DEFAULT_EVALUATIONS",
    "EVALUATION_CHOICES",
    "FIT_METRICS",
    "GROUPS",
    "MetricInfo",
    "PAPER_SHARPNESS_METRICS",
    "REGISTRY",
    "TABLE_EVALUATIONS",
    "TABLE_METRICS",
    "TABLE_SHARPNESS_METRICS",
    "UNITS",
    "correction_families",
    "error_columns",
    "error_name",
    "metric_info",
    "metric_names",
    "metrics_in",
]

GROUPS: tuple[str, ...] = ("training", "evaluation", "sharpness", "beyond", "derived")
# What a stored value counts. Corruption accuracy is a percentage, as the authors' code stores it, while every
# other accuracy is a fraction: the registry records the difference instead of changing stored values.
UNITS: tuple[str, ...] = ("fraction", "percent", "nats")
_FULL_SCALE = {"fraction": 1.0, "percent": 100.0}
#: Where a run's value of a metric is stored (:attr:`MetricInfo.column_source`).
COLUMN_SOURCES: tuple[str, ...] = ("trainer", "evaluation", "cell")
_DIRECTIONS = {"higher": "greater", "lower": "less"}  # the test alternative that agrees with "better"


@dataclass(frozen=True)
class MetricInfo:
    """What one metric is.

    Attributes:
        name: the metric's key in a run record and its column in ``load_results``' frame.
        group: one of :data:`GROUPS`.
        description: one line: what is measured, on which data.
        title: what a reader sees (the paper's column headers, figure labels); None: shown by its name.
        better: ``"higher"`` or ``"lower"`` for a score (the paper-layout tables bold the best); None for a
            sharpness measure (lower = flatter is the question studied, not a score) or a fit statistic.
        alternative: the one-sided alternative (``"greater"`` or ``"less"``) of the paired Wilcoxon test of a
            control against Baseline, as in the authors' significance script; None: not tested.
        family: the Benjamini-Yekutieli family of that test within one comparison; None: uncorrected.
        unit: one of :data:`UNITS` (``"fraction"`` in [0, 1], ``"percent"`` in [0, 100], ``"nats"`` for a
            cross-entropy); None for a measure without a unit of its own.
        display_format: the format spec of a table cell (``format(value, spec)``).
        verify_tolerance: the relative difference ``sharpkit sweep --verify`` allows between a stored value and
            a bitwise re-run (0: exact).
        table_column: a column of the paper-layout tables (:func:`sharpkit.analysis.report.results_table`).
        paper_column: a column of the paper's printed Tables 1-8.
        requestable: a name :class:`sharpkit.run.evaluate.EvalSettings` ``metrics`` (and ``sharpkit evaluate
            --metrics``) accepts.
        function: the :mod:`sharpkit.metrics` function that computes it; None where the trainer, the sweep or
            the analysis computes it inline.
        kind: for a ``"beyond"`` measure, ``"perturbation"`` or ``"curvature"`` (the beyond chapter's tables).
        error_of: for a ``"derived"`` error column, the evaluation it writes as an error (full scale minus it).
        column_source: where :func:`sharpkit.experiments.store.load_results` reads a stored run's value of it, one
            of :data:`COLUMN_SOURCES`: ``"trainer"`` (the trainer's final metrics), ``"evaluation"`` (the
            evaluation's metrics), ``"cell"`` (the cell file of the run's cross-seed metrics); None: no column of
            that frame (the analysis derives it, or nothing reads it).
    """

    name: str
    group: str
    description: str
    title: str | None = None
    better: str | None = None
    alternative: str | None = None
    family: str | None = None
    unit: str | None = None
    display_format: str = ".3f"
    verify_tolerance: float = 0.0
    table_column: bool = False
    paper_column: bool = False
    requestable: bool = False
    function: str | None = None
    kind: str | None = None
    error_of: str | None = None
    column_source: str | None = "evaluation"

    def __post_init__(self) -> None:
        where = f"metric {self.name!r}"
        check_choice(f"{where}: group", self.group, GROUPS)
        check_choice(f"{where}: better", self.better, (*_DIRECTIONS, None))
        check_choice(f"{where}: alternative", self.alternative, (*_DIRECTIONS.values(), None))
        check_choice(f"{where}: unit", self.unit, (*UNITS, None))
        check_choice(f"{where}: kind", self.kind, ("perturbation", "curvature", None))
        check_choice(f"{where}: column_source", self.column_source, (*COLUMN_SOURCES, None))
        if self.better is not None and self.alternative not in (None, _DIRECTIONS[self.better]):
            raise ValueError(f"Expected {where} with better={self.better!r} to be tested with alternative="
                             f"{_DIRECTIONS[self.better]!r} (or None), but got {self.alternative!r}.")
        if (self.kind is not None) != (self.group == "beyond"):
            raise ValueError(f"Expected {where} to have a kind exactly when its group is 'beyond', but got "
                             f"group={self.group!r}, kind={self.kind!r}.")
        if self.group == "derived" and self.column_source is not None:
            raise ValueError(f"Expected {where} (group 'derived': computed by the analysis) to have column_source "
                             f"None, but got {self.column_source!r}.")
        if (self.error_of is not None) != (self.group == "derived"):
            raise ValueError(f"Expected {where} to name the evaluation it writes as an error (error_of) exactly "
                             f"when its group is 'derived', but got group={self.group!r}, error_of={self.error_of!r}.")
        if not self.verify_tolerance >= 0:
            raise ValueError(f"Expected {where}: verify_tolerance >= 0, but got {self.verify_tolerance!r}.")
        format(1.0, self.display_format)  # a wrong spec fails here, not when a table is printed

    @property
    def label(self) -> str:
        """The title, or the name where the metric has none."""
        return self.title if self.title is not None else self.name

    @property
    def full_scale(self) -> float | None:
        """The value of a perfect score in this unit (1 for a fraction, 100 for a percentage); None otherwise."""
        return _FULL_SCALE.get(self.unit) if self.unit is not None else None


def _beyond(name: str, description: str, title: str, function: str, kind: str) -> MetricInfo:
    """A measure beyond the paper: requestable, its own BY family, "greater" = sharper."""
    return MetricInfo(name, "beyond", description, title=title, alternative="greater", family="beyond",
                      requestable=True, function=function, kind=kind)


def _register(*records: MetricInfo) -> Mapping[str, MetricInfo]:
    registry: dict[str, MetricInfo] = {}
    for record in records:
        if record.name in registry:
            raise ValueError(f"Metric {record.name!r} is registered twice; each metric has one record.")
        registry[record.name] = record
    for record in records:
        if record.error_of is not None:
            check_choice(f"metric {record.name!r}: error_of", record.error_of, registry)
    return MappingProxyType(registry)


# The order is the paper's table order, then the rest; every tuple or mapping derived below keeps it (the
# order of the test rows of control_tests and of the tables' columns). Titles are the strings the book has
# always shown; do not change one without its pages.
REGISTRY: Mapping[str, MetricInfo] = _register(
    MetricInfo("train_accuracy", "training", "Accuracy of the final model in eval mode on its whole clean training "
               "(sub)set, measured with the generalisation gap (the trainer's record holds, under the same name, the "
               "running train-mode accuracy of the last epoch).", title="Train Accuracy (eval)", unit="fraction",
               table_column=True, function="accuracy"),
    MetricInfo("test_accuracy", "evaluation", "Accuracy on the clean test (sub)set.", title="Test Accuracy",
               better="higher", alternative="greater", unit="fraction", table_column=True, paper_column=True,
               requestable=True, function="accuracy"),
    MetricInfo("test_ece", "evaluation", "Expected calibration error on the clean test (sub)set.", title="Test ECE",
               better="lower", alternative="less", family="safety", unit="fraction", table_column=True,
               paper_column=True, requestable=True, function="ece"),
    MetricInfo("corruption_accuracy", "evaluation", "Mean accuracy over the corruptions and severities of a "
               "CIFAR-10-C style test set, in percent.", title="Corruption Accuracy", better="higher",
               alternative="greater", family="safety", unit="percent", table_column=True, paper_column=True,
               requestable=True, function="corruption_accuracy"),
    MetricInfo("prediction_disagreement", "evaluation", "Fraction of test points on which the run's predictions "
               "differ from another seed's of its cell, averaged over the other seeds (computed per cell by the "
               "sweep).", title="Prediction Disagreement", better="lower", alternative="less", family="safety",
               unit="fraction", table_column=True, paper_column=True, function="prediction_disagreement",
               column_source="cell"),
    MetricInfo("fisher_rao_norm", "sharpness", "The Fisher-Rao norm, on the training (sub)set.",
               title="Fisher Rao Norm", alternative="greater", family="sharpness", table_column=True,
               paper_column=True, requestable=True, function="fisher_rao_norm"),
    MetricInfo("sam_sharpness", "sharpness", "Random-perturbation SAM sharpness in the profile's convention (the "
               "paper's: augmentations re-drawn between the losses it compares), on the training (sub)set.",
               title="SAM Sharpness", alternative="greater", family="sharpness", display_format=".3E",
               # A Monte-Carlo estimate: sums over 10^4-10^6 perturbed entries are the first to move when thread
               # counts or kernels differ, so a bitwise re-run may differ in the last digits.
               verify_tolerance=1e-6, table_column=True, paper_column=True, requestable=True,
               function="sam_sharpness"),
    MetricInfo("sam_sharpness_clean", "sharpness", "SAM sharpness in the clean convention: the same clean batches "
               "for the loss and every perturbed loss.", title="SAM Sharpness (clean)", alternative="greater",
               # Its own family: adding it to "sharpness" would change the paper's correction of its three measures.
               family="sharpness_clean", display_format=".3E", table_column=True, requestable=True,
               function="sam_sharpness"),
    MetricInfo("relative_flatness", "sharpness", "Relative flatness of the classifier layer, on the training "
               "(sub)set.", title="Relative Flatness", alternative="greater", family="sharpness", table_column=True,
               paper_column=True, requestable=True, function="relative_flatness"),
    MetricInfo("generalization_gap", "evaluation", "Train accuracy (eval) minus test accuracy.", better="lower",
               alternative="less", unit="fraction", requestable=True, function="generalization_gap"),
    # Beyond the paper, "greater" = sharper (more symmetric, for the asymmetry factor): the direction the paper's
    # claim is about.
    _beyond("adaptive_average_sharpness", "Adaptive average-case m-sharpness (Andriushchenko et al. 2023).",
            "Adaptive avg. sharpness", "adaptive_sharpness", "perturbation"),
    _beyond("adaptive_worst_sharpness", "Adaptive worst-case m-sharpness (Auto-PGD in an adaptive linf ball).",
            "Adaptive worst sharpness", "adaptive_sharpness", "perturbation"),
    _beyond("worst_sharpness", "Standard (non-adaptive) worst-case m-sharpness.", "Worst-case sharpness",
            "adaptive_sharpness", "perturbation"),
    _beyond("hessian_trace", "Hutchinson estimate of the trace of the loss Hessian.", "Hessian trace",
            "hessian_trace", "curvature"),
    _beyond("adaptive_hessian_trace", "Hessian trace with the adaptive scaling of the weights.",
            "Adaptive Hessian trace", "hessian_trace", "curvature"),
    _beyond("hessian_top_eigenvalue", "The largest eigenvalue of the loss Hessian (Lanczos).",
            "Top Hessian eigenvalue", "hessian_top_eigenvalues", "curvature"),
    _beyond("asymmetry_factor", "Asymmetry factor of the loss along filter-normalised directions (Boca et al.).",
            "Asymmetry factor", "asymmetry_factor", "perturbation"),
    # In the trainer's record but no column: the evaluation's test accuracy is the run's test score.
    MetricInfo("test_loss", "evaluation", "Cross-entropy on the test (sub)set at the trainer's last test pass.",
               better="lower", unit="nats", column_source=None),
    MetricInfo("train_loss", "training", "Mean cross-entropy of the last epoch's batches, train mode (augmented, "
               "weights still moving).", unit="nats", column_source="trainer"),
    MetricInfo("train_eval_loss", "training", "Cross-entropy of the final model in eval mode on its whole clean "
               "training subset.", unit="nats", column_source="trainer"),
    MetricInfo("train_eval_accuracy", "training", "Accuracy of the final model in eval mode on its whole clean "
               "training subset (the trainer's record).", unit="fraction", column_source="trainer"),
    MetricInfo("test_error", "derived", "1 - test accuracy.", title="Test error", better="lower", unit="fraction",
               error_of="test_accuracy", column_source=None),
    MetricInfo("corruption_error", "derived", "100 - corruption accuracy (percent, like corruption accuracy).",
               title="Corruption error (%)", better="lower", unit="percent", error_of="corruption_accuracy",
               column_source=None),
)


def metric_info(name: str) -> MetricInfo:
    """The record of metric ``name``; ``ValueError`` naming the registered metrics when there is none."""
    check_choice("name", name, REGISTRY, hint="Register a new metric in sharpkit/metrics/registry.py.")
    return REGISTRY[name]


_FIELDS = tuple(f.name for f in fields(MetricInfo))


def metric_names(**attributes: object) -> tuple[str, ...]:
    """The registered metrics whose records have the given attribute values, in registry order, e.g.
    ``metric_names(group="sharpness", paper_column=True)``; every metric without arguments."""
    for attribute in attributes:
        check_choice("attribute", attribute, _FIELDS)
    return tuple(name for name, info in REGISTRY.items()
                 if all(getattr(info, attribute) == value for attribute, value in attributes.items()))


def metrics_in(group: str) -> tuple[str, ...]:
    """The metrics of one of :data:`GROUPS`, in registry order."""
    check_choice("group", group, GROUPS)
    return metric_names(group=group)


def correction_families() -> dict[str, tuple[str, ...]]:
    """Each Benjamini-Yekutieli family (in the order of first appearance) -> its metrics, in registry order."""
    families: dict[str, tuple[str, ...]] = {}
    for name, info in REGISTRY.items():
        if info.family is not None:
            families[info.family] = (*families.get(info.family, ()), name)
    return families


def error_columns() -> dict[str, tuple[str, float]]:
    """Each ``"derived"`` error column -> (the evaluation it writes as an error, the full scale of that
    evaluation's unit, which the error is the evaluation subtracted from)."""
    columns = {}
    for name, info in REGISTRY.items():
        if info.error_of is not None:
            full_scale = REGISTRY[info.error_of].full_scale
            if full_scale is None:
                raise ValueError(f"Expected the evaluation {info.error_of!r} of error column {name!r} to be a "
                                 f"fraction or a percentage, but its unit is {REGISTRY[info.error_of].unit!r}.")
            columns[name] = (info.error_of, full_scale)
    return columns


def error_name(name: str) -> str:
    """The column that writes evaluation ``name`` as an error (larger = worse): its ``"derived"`` error column,
    or ``name`` itself where lower is already better."""
    info = metric_info(name)
    for other in REGISTRY.values():
        if other.error_of == name:
            return other.name
    if info.better == "lower":
        return name
    raise ValueError(f"Expected an evaluation with an error form (better='lower', or a 'derived' metric with "
                     f"error_of={name!r}), but {name!r} has better={info.better!r} and no error column.")


def _requestable(*names: str) -> tuple[str, ...]:
    for name in names:
        if not metric_info(name).requestable:
            raise ValueError(f"Expected metrics that EvalSettings can evaluate, but {name!r} has requestable=False.")
    return names


# What EvalSettings.metrics defaults to (the paper's measures), in the order stored run ids hash it: it cannot be
# derived from the registry order, which follows the paper's tables (and changing it would change every run id).
DEFAULT_EVALUATED: tuple[str, ...] = _requestable(
    "test_accuracy", "test_ece", "generalization_gap", "corruption_accuracy",
    "fisher_rao_norm", "sam_sharpness", "relative_flatness",
)
#: The evaluations of :data:`DEFAULT_EVALUATED` (``sharpkit.run.evaluate.EVALUATION_METRICS``).
DEFAULT_EVALUATIONS: tuple[str, ...] = tuple(m for m in DEFAULT_EVALUATED if REGISTRY[m].group == "evaluation")
#: The paper's three sharpness measures (``sharpkit.run.evaluate.SHARPNESS_METRICS``,
#: ``sharpkit.metrics.SHARPNESS_METRICS``).
PAPER_SHARPNESS_METRICS: tuple[str, ...] = metric_names(group="sharpness", paper_column=True)
#: Every metric EvalSettings accepts: the defaults first, then the others in registry order
#: (``sharpkit.run.evaluate.ALL_METRICS``, the choices of ``sharpkit evaluate --metrics``).
EVALUATION_CHOICES: tuple[str, ...] = DEFAULT_EVALUATED + tuple(
    m for m in metric_names(requestable=True) if m not in DEFAULT_EVALUATED)
#: The measures beyond the paper (``sharpkit.run.evaluate.BEYOND_METRICS``).
BEYOND_METRICS: tuple[str, ...] = metrics_in("beyond")
#: The columns of the paper-layout tables, in their order (``sharpkit.analysis.report.TABLE_METRICS``).
TABLE_METRICS: tuple[str, ...] = metric_names(table_column=True)
#: The fit columns of those tables (``sharpkit.analysis.report.FIT_METRICS``).
FIT_METRICS: tuple[str, ...] = metric_names(group="training", table_column=True)
#: The scored evaluation columns of those tables (``sharpkit.analysis.report.EVALUATION_METRICS``).
TABLE_EVALUATIONS: tuple[str, ...] = metric_names(group="evaluation", table_column=True)
#: The sharpness columns of those tables, the clean SAM sharpness included
#: (``sharpkit.analysis.report.SHARPNESS_METRICS``).
TABLE_SHARPNESS_METRICS: tuple[str, ...] = metric_names(group="sharpness", table_column=True)
