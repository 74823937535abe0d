"""Convergence: are the runs at a minimum of their training data?

- :func:`convergence`: per (arch, dataset, control), the eval-mode training accuracy over the whole clean training
  subset (mean and minimum over seeds of status ``"ok"``), the final training loss in eval mode, and how many runs
  are below :data:`MINIMUM_TARGET`; runs of another status are counted, never dropped.
- :func:`convergence_sentences`: one sentence per (arch, dataset) saying so, for the report page.

A run is "at a minimum" when its eval-mode training accuracy is >= ``target`` (:data:`MINIMUM_TARGET` = 0.99).
The augmentation controls are not expected to fit: their training images were never seen un-augmented.
pandas only: importable without torch.
"""
from __future__ import annotations

import math

import pandas as pd

from ..run.controls import CONTROLS
from .names import arch_name, dataset_name
from .stats import _require_columns
from .tables import _label

__all__ = [
    "MINIMUM_TARGET",
    "convergence",
    "convergence_sentences",
]

MINIMUM_TARGET = 0.99  # eval-mode training accuracy of a run "at a minimum" (issue: cifar10-minima)


def convergence(df: pd.DataFrame, target: float = MINIMUM_TARGET) -> pd.DataFrame:
    """How well the runs of ``df`` (:func:`sharpkit.experiments.store.load_results`) fit their training subsets, per
    (arch, dataset, control): eval-mode training accuracy over the whole clean training subset (``mean``,
    ``min`` over seeds of status "ok"), the final training loss in eval mode where recorded (``loss``),
    ``n`` runs, ``below`` how many are under ``target``, and ``augmented`` (augmentation controls are not
    expected to fit: their training images were never seen un-augmented). Runs of another status are
    counted in ``excluded``, never dropped silently.
    """
    _require_columns(df, ("arch", "dataset", "control", "status", "train_accuracy"), "convergence")
    rows = []
    for (arch, dataset, control), cell in df.groupby(["arch", "dataset", "control"], sort=False):
        ok = cell[cell["status"] == "ok"]
        accuracy = ok["train_accuracy"].astype(float)
        loss = ok["train_eval_loss"].astype(float) if "train_eval_loss" in ok else pd.Series(dtype=float)
        rows.append({"arch": arch, "dataset": dataset, "control": control,
                     "augmented": CONTROLS[control].augmentation if control in CONTROLS else False,
                     "mean": accuracy.mean(), "min": accuracy.min(),
                     "loss": loss.mean() if loss.notna().any() else math.nan,
                     "n": int(accuracy.notna().sum()), "below": int((accuracy < target).sum()),
                     "excluded": int(len(cell) - len(ok))})
    frame = pd.DataFrame(rows, columns=["arch", "dataset", "control", "augmented", "mean", "min", "loss", "n", "below",
                                        "excluded"])
    order = {c: i for i, c in enumerate(CONTROLS)}
    return frame.sort_values(["dataset", "arch", "control"], key=lambda col: col.map(order) if col.name == "control"
                             else col, kind="stable").reset_index(drop=True)


def convergence_sentences(df: pd.DataFrame, target: float = MINIMUM_TARGET) -> list[str]:
    """One sentence per (arch, dataset) of ``df``: whether its controls without augmentation sit at a
    minimum (every run at eval-mode training accuracy >= ``target``), with the numbers, and where the
    augmentation controls stand. Written from :func:`convergence`, for the report page."""
    table = convergence(df, target)
    sentences = []
    for (arch, dataset), cell in table.groupby(["arch", "dataset"], sort=False):
        plain, augmented = cell[~cell["augmented"]], cell[cell["augmented"]]
        name = f"{arch_name(arch)} on {dataset_name(dataset)}"
        missed = int(plain["below"].sum())
        runs = int(plain["n"].sum())
        worst = plain.loc[plain["min"].idxmin()] if len(plain) and plain["min"].notna().any() else None
        if worst is None:
            sentences.append(f"{name}: no finished run without augmentation.")
            continue
        verdict = ("at a minimum" if missed == 0 else f"not at a minimum: {missed} of {runs} runs below {target:.2f}")
        text = (f"{name}: the {runs} runs without augmentation are {verdict} (eval-mode training accuracy "
                f">= {float(plain['min'].min()):.3f}, lowest in {_label(worst['control'])})")
        if len(augmented):
            text += (f"; the augmentation controls fit their clean training images to "
                     f"{float(augmented['mean'].min()):.3f}-{float(augmented['mean'].max()):.3f} on average")
        excluded = int(cell["excluded"].sum())
        sentences.append(text + (f"; {excluded} runs excluded (not ok)." if excluded else "."))
    return sentences
