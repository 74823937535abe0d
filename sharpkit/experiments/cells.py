"""The cross-seed metrics of a cell (one dataset, architecture and control; every seed): what a single run
cannot measure. Today one: prediction disagreement between the seeds' test predictions
(:func:`sharpkit.metrics.prediction_disagreement`, the paper's ordered-pairs convention).

The sweep calls :func:`update_cells` after its runs; the store only says which cells are complete and
where their files go (:meth:`sharpkit.experiments.store.ResultStore.complete_cells`,
:meth:`~sharpkit.experiments.store.ResultStore.write_cell`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..metrics import prediction_disagreement
from ..run.evaluate import decode_predictions
from .layout import cell_name

if TYPE_CHECKING:
    from .store import ResultStore


def cell_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The cross-seed metrics of the stored run ``records`` of one cell (status ``ok`` ones only; fewer than
    two: none): ``prediction_disagreement`` (mean, SEM and number of ordered seed pairs) and ``per_run``
    (run id -> its mean disagreement with the other seeds; the mean of these is the mean over ordered pairs).

    Examples:
        >>> from sharpkit.experiments.cells import cell_metrics
        >>> from sharpkit.run.evaluate import encode_predictions
        >>> import torch
        >>> def run(run_id, seed, labels):
        ...     return {"run_id": run_id, "status": "ok", "config": {"seed": seed},
        ...             "evaluation": {"details": {"test_predictions": encode_predictions(torch.tensor(labels))}}}
        >>> cell = cell_metrics([run("a", 0, [0, 1, 1, 0]), run("b", 1, [0, 1, 0, 0])])
        >>> cell["prediction_disagreement"], cell["per_run"]
        ({'mean': 0.25, 'sem': 0.0, 'n_pairs': 2}, {'a': 0.25, 'b': 0.25})
    """
    ok = [r for r in records if r["status"] == "ok"]
    if len(ok) < 2:
        return {}
    predictions = {r["config"]["seed"]: decode_predictions(r["evaluation"]["details"]["test_predictions"])
                   for r in ok}
    overall = prediction_disagreement(predictions, ordered=True)
    return {"prediction_disagreement": {"mean": overall.mean, "sem": overall.sem, "n_pairs": overall.n_pairs},
            "per_run": {r["run_id"]: value for r, value in zip(ok, overall.per_model)}}


def update_cells(store: ResultStore) -> list[str]:
    """Write the cell file of every cell of ``store`` whose runs are all stored (an unchanged cell is
    rewritten byte for byte); returns the names of the cells written. Diverged runs are left out of the
    metrics and counted."""
    written = []
    for (dataset, arch, control), records in store.complete_cells():
        store.write_cell(dataset, arch, control, records, cell_metrics(records))
        written.append(cell_name(dataset, arch, control))
    return written
