"""The stored measures in the shapes the Kendall-tau and beyond-the-paper pages use.

- :func:`with_errors`: each evaluation also written as an error, so that larger is worse in every column (the
  orientation of the Kendall-tau analysis, tau > 0 = "sharper is worse"): ``test_error = 1 - test_accuracy``
  and ``corruption_error = 100 - corruption_accuracy`` (:func:`sharpkit.metrics.registry.error_columns`).
  :data:`ERROR_EVALUATIONS`: those evaluations, in the column order of the Kendall-tau grids.
- :func:`asymmetry_curves`: the 1-D loss curves stored with each run's asymmetry factor, grouped by control,
  read through :mod:`sharpkit.experiments.store` (imported inside the function: the store pulls in torch).

pandas only: importable without torch.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..metrics.registry import TABLE_EVALUATIONS, error_columns, error_name
from .stats import _require_columns

__all__ = [
    "ERROR_EVALUATIONS",
    "asymmetry_curves",
    "with_errors",
]

# Each evaluation written as an error (see with_errors), in the column order of the Kendall-tau grids.
ERROR_EVALUATIONS: tuple[str, ...] = tuple(error_name(m) for m in TABLE_EVALUATIONS)


def with_errors(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each evaluation also written as an error, so that for every column larger is worse
    (the orientation of the Kendall-tau analysis, where tau > 0 means "sharper is worse"):
    ``test_error = 1 - test_accuracy`` (a fraction) and ``corruption_error = 100 - corruption_accuracy``
    (percent, like corruption accuracy). Columns that are missing stay missing."""
    out = df.copy()
    for error, (evaluation, full_scale) in error_columns().items():
        if evaluation in out.columns:
            out[error] = full_scale - out[evaluation]
    return out


def asymmetry_curves(results_dir: str | Path, profile: str,
                     runs: pd.DataFrame) -> dict[str, list[tuple[list[float], list[float]]]]:
    """The 1-D loss curves stored with the asymmetry factor of each run in ``runs`` (rows with ``run_id``
    and ``control``), grouped by control: ``{control: [(alphas, loss increases), ...]}`` in the order of
    ``runs``. Runs measured without ``asymmetry_factor`` are skipped."""
    from ..experiments.store import load_run_record  # the store pulls in torch; the tables need neither

    _require_columns(runs, ("run_id", "control"), "asymmetry_curves")
    curves: dict[str, list[tuple[list[float], list[float]]]] = {}
    for run_id, control in zip(runs["run_id"], runs["control"]):
        record = load_run_record(results_dir, profile, run_id)
        detail = record.get("evaluation", {}).get("details", {}).get("asymmetry_factor")
        if detail is not None:
            curves.setdefault(control, []).append((detail["curve_alphas"], detail["curve_losses"]))
    return curves
