"""The cross-seed metrics of a cell: disagreement from the definition (numpy), diverged runs left out, and
the cell files the repository stores rewritten byte for byte."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sharpkit.experiments.cells import cell_metrics, update_cells
from sharpkit.experiments.profiles import get_profile
from sharpkit.experiments.store import ResultStore
from sharpkit.run.evaluate import encode_predictions

REPO = Path(__file__).resolve().parents[2]


def record(run_id, seed, labels, status="ok"):
    return {"run_id": run_id, "status": status, "config": {"seed": seed},
            "evaluation": {"details": {"test_predictions": encode_predictions(torch.as_tensor(labels))}}}


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_disagreement_is_the_definition(seeds):
    rng = np.random.default_rng(seeds)
    labels = rng.integers(0, 4, size=(seeds, 50))
    cell = cell_metrics([record(f"r{s}", s, labels[s]) for s in range(seeds)])
    # Reference: d_ij = mean(l_i != l_j) over ordered pairs; per run, the mean over the others.
    d = (labels[:, None, :] != labels[None, :, :]).mean(axis=2)
    off = ~np.eye(seeds, dtype=bool)
    pairs = d[off]
    assert cell["prediction_disagreement"]["n_pairs"] == seeds * (seeds - 1)
    assert cell["prediction_disagreement"]["mean"] == pytest.approx(pairs.mean(), abs=1e-15)
    assert cell["prediction_disagreement"]["sem"] == pytest.approx(pairs.std() / np.sqrt(pairs.size), abs=1e-15)
    expected = {f"r{s}": d[s][off[s]].mean() for s in range(seeds)}
    assert cell["per_run"] == pytest.approx(expected, abs=1e-15)
    assert np.mean(list(cell["per_run"].values())) == pytest.approx(pairs.mean(), abs=1e-15)


def test_diverged_runs_are_left_out_and_one_run_has_no_cell_metrics():
    runs = [record("a", 0, [0, 1, 1]), record("b", 1, [0, 1, 0]), record("c", 2, [9, 9, 9], status="diverged")]
    assert set(cell_metrics(runs)["per_run"]) == {"a", "b"}
    assert cell_metrics(runs[:1]) == {} and cell_metrics([runs[0], runs[2]]) == {}


@pytest.mark.parametrize("profile", ["digits-mini", "cifar10-minima"])
def test_the_stored_cell_files_are_rewritten_byte_for_byte(profile, tmp_path):
    """Differential against the files earlier sharpkit versions wrote: recomputed from the stored runs alone
    (no training), every cell file comes out identical, and a cell with a run missing is not written."""
    results = tmp_path / "results"
    shutil.copytree(REPO / "results" / profile, results / profile)
    store = ResultStore(results, get_profile(profile), cache_dir=tmp_path / "cache")
    stored = {p.name: p.read_bytes() for p in store.layout.cell_files()}
    for path in store.layout.cell_files():
        path.unlink()
    first = next(iter(store.profile.runs()))
    shutil.rmtree(store.result_path(first).parent)  # its cell is now incomplete
    written = update_cells(store)
    rewritten = {p.name: p.read_bytes() for p in store.layout.cell_files()}
    incomplete = store.cell_path(*first.cell).name
    assert incomplete not in rewritten and len(written) == len(stored) - 1
    assert rewritten == {name: data for name, data in stored.items() if name != incomplete}
