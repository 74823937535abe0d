"""Figures of the book, as functions over the frames of :mod:`sharpkit.experiments.store` and :mod:`sharpkit.analysis.stats`
(matplotlib, imported lazily so the package does not need it)."""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["loss_curves", "sharpness_scatter", "tau_heatmap"]


def tau_heatmap(taus: pd.DataFrame, labels: Mapping[str, str] | None = None, title: str = "", ax: Any = None):
    """Heatmap of Kendall's tau (rows: measures, columns: evaluations, in the order they first appear in
    ``taus``, the frame of :func:`sharpkit.analysis.stats.kendall_tau_grid`), each cell annotated with tau and its
    bootstrap interval, on a diverging scale from -1 to 1. Returns the axes."""
    import matplotlib.pyplot as plt

    labels = dict(labels or {})
    measures = list(dict.fromkeys(taus["measure"]))
    evaluations = list(dict.fromkeys(taus["evaluation"]))
    cells = taus.set_index(["measure", "evaluation"])
    grid = cells["tau"].unstack().reindex(index=measures, columns=evaluations).to_numpy(dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.9 * len(evaluations) + 2.5, 0.55 * len(measures) + 1.2))
    image = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for i, measure in enumerate(measures):
        for j, evaluation in enumerate(evaluations):
            if (measure, evaluation) not in cells.index or np.isnan(grid[i, j]):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=7)
                continue
            row = cells.loc[(measure, evaluation)]
            ax.text(j, i, f"{row['tau']:+.2f}\n[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]", ha="center",
                    va="center", fontsize=7, color="white" if abs(row["tau"]) > 0.6 else "black")
    # Column labels wrap so that neighbouring ones do not run into each other.
    ax.set_xticks(range(len(evaluations)), [textwrap.fill(labels.get(e, e), 14) for e in evaluations], fontsize=8)
    ax.set_yticks(range(len(measures)), [labels.get(m, m) for m in measures], fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, label="Kendall's tau")
    return ax


def sharpness_scatter(runs: pd.DataFrame, measures: Sequence[str], evaluation: str,
                      colors: Mapping[str, Any], labels: Mapping[str, str] | None = None, columns: int = 4,
                      log: bool = True, title: str = ""):
    """One panel per measure: each model (row of ``runs``) as a point (measure, evaluation) coloured by its
    ``control``. With ``log``, a measure's axis is logarithmic where its values are positive and span at
    least a decade (within one decade a log axis only adds clutter). Returns the figure."""
    import matplotlib.pyplot as plt

    labels = dict(labels or {})
    measures = [m for m in measures if m in runs.columns and runs[m].notna().any()]
    rows = max(1, -(-len(measures) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.9 * rows), squeeze=False)
    for ax, measure in zip(axes.flat, measures):
        for control, part in runs.groupby("control", sort=False):
            ax.scatter(part[measure], part[evaluation], s=18, color=colors.get(control),
                       label=labels.get(control, control))
        values = runs[measure].dropna()
        if log and (values > 0).all() and values.max() >= 10 * values.min():
            ax.set_xscale("log")
            # Such a span holds a power of ten; labelled minor ticks (2x10^-1, 3x10^-1, ...) overlap.
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel(labels.get(measure, measure), fontsize=8)
        ax.set_ylabel(labels.get(evaluation, evaluation), fontsize=8)
    for ax in list(axes.flat)[len(measures):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def loss_curves(curves: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]],
                colors: Mapping[str, Any], labels: Mapping[str, str] | None = None, xlabel: str = "alpha",
                ax: Any = None):
    """Loss along a direction, one thin line per model and one colour per group (``{group: [(alphas,
    losses), ...]}``), each curve shifted so that it is 0 at alpha = 0 (the minimum's own loss).
    Returns the axes."""
    import matplotlib.pyplot as plt

    labels = dict(labels or {})
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for group, items in curves.items():
        for k, (alphas, losses) in enumerate(items):
            alphas, losses = np.asarray(alphas, float), np.asarray(losses, float)
            base = np.interp(0.0, alphas, losses)
            ax.plot(alphas, losses - base, color=colors.get(group), lw=1, alpha=0.8,
                    label=labels.get(group, group) if k == 0 else None)
    ax.axvline(0.0, color="grey", lw=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss increase (nats)")
    ax.legend(fontsize=7)
    return ax
