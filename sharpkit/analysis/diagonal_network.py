"""Kendall's tau between each sharpness measure of the diagonal-network experiment
(:mod:`sharpkit.experiments.diagonal_network`) and the networks' test loss."""
from __future__ import annotations

import pandas as pd

from .stats import kendall_tau

__all__ = ["measure_taus"]


def measure_taus(frame: pd.DataFrame, evaluation: str = "test_loss", n_boot: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """Kendall's tau (with bootstrap interval, :func:`sharpkit.analysis.stats.kendall_tau`) between each measure
    (and :math:`\\|\\beta\\|_1`) and ``evaluation`` over the converged networks, one row per measure."""
    from ..experiments.diagonal_network import MEASURES  # the experiment imports torch; this module does not

    rows = []
    for measure in (*MEASURES, "l1_norm"):
        tau = kendall_tau(frame, measure, evaluation, n_boot=n_boot, seed=seed)
        record = tau.iloc[0].to_dict()
        record["measure"] = measure
        rows.append(record)
    return pd.DataFrame(rows).set_index("measure")
