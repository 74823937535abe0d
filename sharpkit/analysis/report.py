"""The paper's tables and findings, from stored runs and from the paper: a compatibility module.

This module once did every job of the paper-layout analysis; each job now has its own module, and this one
re-exports their names, so that ``from sharpkit.analysis.report import X`` and ``report.X`` keep working (the
book's notebooks, the CLI, users' code). New code imports from where a name lives:

- :mod:`sharpkit.analysis.tables`: the columns of Tables 1-8 derived from the metric registry
  (:data:`TABLE_METRICS`, :data:`METRIC_TITLES`, :data:`BETTER`, :data:`COLUMN_GROUPS`, :data:`DISPLAY_LABELS`,
  ...), :func:`format_cell`, :class:`ResultsTable` and :func:`results_table` (one (arch, dataset) of stored runs
  in the paper's layout).
- :mod:`sharpkit.analysis.paper`: the paper's printed Tables 1-8 (:func:`paper_table`, :func:`paper_table_for`,
  :func:`paper_tables_index`, from ``resources/reported_tables.csv``), :func:`paper_dataset` and
  :func:`accuracy_levels` (our accuracy against the paper's).
- :mod:`sharpkit.analysis.claims`: the paper's three findings checked on stored runs (:func:`claims`) and on its
  printed means (:func:`paper_claims`).
- :mod:`sharpkit.analysis.convergence`: whether the runs sit at a minimum (:func:`convergence`,
  :func:`convergence_sentences`, :data:`MINIMUM_TARGET`).
- :mod:`sharpkit.analysis.measures`: the evaluations as errors for the Kendall-tau grids (:func:`with_errors`,
  :data:`ERROR_EVALUATIONS`) and the stored asymmetry curves (:func:`asymmetry_curves`).

Every name here is the object of the module that defines it (``report.METRIC_TITLES is tables.METRIC_TITLES``;
one cache of the paper's CSV), so nothing is computed twice; to patch a name in a test, patch it in the module
that uses it. None of those modules imports this one. ``__all__`` is what it always was.
"""
from __future__ import annotations

# Each import re-exports (F401): first what report.py imported from below and so also offered as report.X
# (report.CONTROLS, report.REGISTRY, ...), then the five modules' names, public and private, as report.py
# held them.
from ..data.dataset_names import parse_dataset_name  # noqa: F401
from ..metrics.registry import (  # noqa: F401
    REGISTRY,
    TABLE_EVALUATIONS,
    TABLE_SHARPNESS_METRICS,
    error_columns,
    error_name,
    metric_info,
)
from ..run.controls import CONTROLS  # noqa: F401
from ..utils.validation import check_choice  # noqa: F401
from .claims import (  # noqa: F401
    _CLAIM_COLUMNS,
    _Cell,
    _cell_claims,
    _finite,
    _sam_pairs,
    claims,
    paper_claims,
)
from .convergence import MINIMUM_TARGET, convergence, convergence_sentences  # noqa: F401
from .measures import ERROR_EVALUATIONS, asymmetry_curves, with_errors  # noqa: F401
from .names import ARCH_NAMES, DATASET_NAMES, arch_name, dataset_name  # noqa: F401
from .paper import (  # noqa: F401
    _CSV_TO_REGISTRY,
    _PAPER_CSV,
    PAPER_DATASETS,
    _duplicate_of,
    _paper_rows,
    _registry_arch,
    accuracy_levels,
    paper_dataset,
    paper_table,
    paper_table_for,
    paper_tables_index,
)
from .stats import (  # noqa: F401
    PairedTest,
    _require_columns,
    control_order,
    mean_sem,
    ok_runs,
    paired_wilcoxon,
    select_cell,
)
from .tables import (  # noqa: F401
    _PAPER_MODELS_PER_CELL,
    ARCH_LABELS,
    BETTER,
    COLUMN_GROUPS,
    DATASET_LABELS,
    DISPLAY_LABELS,
    EVALUATION_METRICS,
    FIT_METRICS,
    METRIC_TITLES,
    SHARPNESS_METRICS,
    TABLE_METRICS,
    ResultsTable,
    _bold,
    _label,
    _title,
    format_cell,
    results_table,
)

__all__ = [
    "ARCH_LABELS",
    "DISPLAY_LABELS",
    "ERROR_EVALUATIONS",
    "BETTER",
    "COLUMN_GROUPS",
    "FIT_METRICS",
    "DATASET_LABELS",
    "EVALUATION_METRICS",
    "METRIC_TITLES",
    "ResultsTable",
    "SHARPNESS_METRICS",
    "TABLE_METRICS",
    "accuracy_levels",
    "claims",
    "convergence",
    "convergence_sentences",
    "format_cell",
    "paper_claims",
    "paper_table",
    "paper_table_for",
    "paper_tables_index",
    "results_table",
]
