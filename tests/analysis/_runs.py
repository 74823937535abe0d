"""Synthetic runs of one cell (six controls x six seeds) with chosen per-control means, and the paper's
table CSV as shipped: the fixtures of the table, claim and convergence tests."""
from __future__ import annotations

import csv
from importlib import resources

import numpy as np
import pandas as pd

SEEDS = 6
# The paper's seven columns, in its order (sharpkit's tables add the fit first and the clean SAM sharpness
# where measured; the synthetic runs below have a fit column and no clean SAM sharpness).
PAPER_COLUMNS = ("test_accuracy", "test_ece", "corruption_accuracy", "prediction_disagreement",
                 "fisher_rao_norm", "sam_sharpness", "relative_flatness")
SHOWN = ("train_accuracy",) + PAPER_COLUMNS
# Per-control means of the synthetic cell: chosen so that some of the paper's findings hold and
# others fail (see test_claims_on_a_constructed_frame).
MEANS = {
    #                   acc   ece   corr  dis   FR    SAM    RF
    "baseline":         (0.60, 0.20, 50.0, 0.30, 1.0, 0.050, 10.0),
    "baseline_sam":     (0.65, 0.15, 55.0, 0.25, 2.0, 0.010, 20.0),
    "augmentation":     (0.80, 0.10, 45.0, 0.20, 3.0, 0.200, 40.0),
    "augmentation_sam": (0.90, 0.08, 49.0, 0.10, 4.0, 0.300, 30.0),
    "weight_decay":     (0.61, 0.05, 48.0, 0.29, 1.5, 0.060, 15.0),
    "weight_decay_sam": (0.66, 0.12, 60.0, 0.24, 2.5, 0.070, 25.0),
}


def make_runs(noise: float = 0.01, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for control, means in MEANS.items():
        for s in range(SEEDS):
            row = {"run_id": f"{control}-{s}", "profile": "test", "arch": "vgg19", "dataset": "digits",
                   "control": control, "seed": s, "status": "ok",
                   "train_accuracy": min(1.0, 0.99 + 0.005 * rng.standard_normal())}
            for metric, mean in zip(PAPER_COLUMNS, means):
                row[metric] = mean * (1 + noise * rng.standard_normal())
            rows.append(row)
    return pd.DataFrame(rows)


def read_csv_rows() -> list[dict[str, str]]:
    with resources.files("sharpkit").joinpath("resources", "reported_tables.csv").open() as handle:
        return list(csv.DictReader(handle))
