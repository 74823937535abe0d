"""Kendall's tau between each sharpness measure of the diagonal-network experiment
(:mod:`sharpkit.experiments.diagonal_network`) and the networks' test loss, and the experiment's stored
record: what ``sharpkit diagonal-network --out`` writes (:func:`diagonal_record`) and the book reads
(:func:`read_diagonal_record`), one format in one place."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .stats import kendall_tau

__all__ = ["diagonal_record", "diagonal_summary", "measure_taus", "read_diagonal_record"]


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


def diagonal_summary(frame: pd.DataFrame, taus: pd.DataFrame, seconds: float) -> list[str]:
    """What ``sharpkit diagonal-network`` prints: how many networks reached a minimum, then each measure's tau
    with the test loss and its bootstrap interval (``taus``: :func:`measure_taus`)."""
    counts = frame["status"].value_counts().to_dict()
    lines = [f"{len(frame)} networks ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}) in {seconds:.0f} s; "
             f"Kendall tau with the test loss over the {counts.get('ok', 0)} minima:"]
    lines += [f"  {measure:20s} tau = {row['tau']:+.3f}  [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
              for measure, row in taus.iterrows()]
    return lines


def diagonal_record(frame: pd.DataFrame, taus: pd.DataFrame, seconds: float,
                    provenance: dict[str, Any]) -> dict[str, Any]:
    """The stored record of one diagonal-network experiment: its task and settings (``frame.attrs``, as
    :func:`sharpkit.experiments.diagonal_network.diagonal_network_experiment` sets them), wall time, every
    network (one record per row of ``frame``), the taus (:func:`measure_taus`) and ``provenance``."""
    return {"experiment": "diagonal-network", "task": frame.attrs["task"], "settings": frame.attrs["settings"],
            "wall_time_s": seconds, "networks": frame.to_dict(orient="records"),
            "taus": taus.reset_index().to_dict(orient="records"), "provenance": provenance}


def read_diagonal_record(path: str | Path) -> dict[str, Any] | None:
    """A stored :func:`diagonal_record` read back: ``networks`` (a frame, one row per network), ``minima`` (the
    converged ones), ``taus`` (indexed by measure), ``task``, ``wall_time_s``; None when the file is absent.

    Examples:
        >>> import json, tempfile
        >>> import pandas as pd
        >>> from pathlib import Path
        >>> from sharpkit.analysis.diagonal_network import diagonal_record, read_diagonal_record
        >>> frame = pd.DataFrame({"status": ["ok", "diverged"], "test_loss": [0.1, float("nan")]})
        >>> frame.attrs.update(task={"n": 40}, settings={"networks": 2})
        >>> taus = pd.DataFrame({"tau": [0.5], "ci_low": [0.1], "ci_high": [0.8]},
        ...                     index=pd.Index(["trace"], name="measure"))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "result.json"
        ...     _ = path.write_text(json.dumps(diagonal_record(frame, taus, 3.0, {"host": "x"})))
        ...     stored = read_diagonal_record(path)
        >>> len(stored["networks"]), len(stored["minima"]), float(stored["taus"].loc["trace", "tau"])
        (2, 1, 0.5)
    """
    path = Path(path)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    networks = pd.DataFrame(record["networks"])
    return {"networks": networks, "minima": networks[networks["status"] == "ok"],
            "taus": pd.DataFrame(record["taus"]).set_index("measure"), "task": record["task"],
            "wall_time_s": record["wall_time_s"]}
