"""Figures of the book, as functions over the frames of :mod:`sharpkit.experiments.store`,
:mod:`sharpkit.analysis.stats` and :mod:`sharpkit.analysis.verdict` (matplotlib, imported lazily so the
package does not need it).

Every figure is at most :data:`WIDTH` inches wide (the book's page column at 96 px per inch) with fonts of at
least 10 pt (:data:`STYLE`), so that shown at its natural size (:func:`sharpkit.analysis.display.figure_html`)
its text reads at 10 pt; each control and its +SAM twin share a hue (:data:`CONTROL_COLORS`: the twin is the
darker shade).
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CONTROL_COLORS", "STYLE", "WIDTH", "control_ratios", "diagonal_scatter", "findings_matrix",
           "loss_curve_grid", "loss_curves", "sharpness_scatter", "tau_heatmap"]

WIDTH = 7.4  # inches: the page column at 1280 px (about 740 px) at 96 px per inch
MIN_FONT = 10.0
STYLE: dict[str, Any] = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 10,
                         "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 11,
                         "legend.title_fontsize": 10, "svg.fonttype": "path"}
# Paired hues (ColorBrewer "Paired"): a control light, its +SAM twin dark; the extra controls their own hue.
CONTROL_COLORS: dict[str, str] = {
    "baseline": "#a6cee3", "baseline_sam": "#1f78b4",
    "augmentation": "#b2df8a", "augmentation_sam": "#33a02c",
    "weight_decay": "#fb9a99", "weight_decay_sam": "#e31a1c",
    "asam": "#ff7f00", "average_sam": "#6a3d9a", "fam": "#b15928",
}
# The findings matrix: one colour per category of sharpkit.analysis.verdict.CATEGORIES.
CATEGORY_COLORS: dict[str, str] = {
    "holds, significant": "#2166ac", "holds": "#92c5de", "mixed": "#e0e0e0", "reversed": "#f4a582",
    "reversed, significant": "#b2182b", "untestable": "#ffffff",
}


def _style():
    import matplotlib.pyplot as plt

    return plt.rc_context(STYLE)


def _label(labels: Mapping[str, str], key: str) -> str:
    return labels.get(key, key)


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
    with _style():
        if ax is None:
            _, ax = plt.subplots(figsize=(WIDTH, 0.62 * len(measures) + 1.6))
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        for i, measure in enumerate(measures):
            for j, evaluation in enumerate(evaluations):
                if (measure, evaluation) not in cells.index or np.isnan(grid[i, j]):
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=MIN_FONT)
                    continue
                row = cells.loc[(measure, evaluation)]
                ax.text(j, i, f"{row['tau']:+.2f}\n[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]", ha="center",
                        va="center", fontsize=MIN_FONT, color="white" if abs(row["tau"]) > 0.6 else "black")
        # Column labels wrap so that neighbouring ones do not run into each other.
        ax.set_xticks(range(len(evaluations)), [textwrap.fill(_label(labels, e), 12) for e in evaluations])
        ax.set_yticks(range(len(measures)), [_label(labels, m) for m in measures])
        ax.set_title(title)
        ax.figure.colorbar(image, ax=ax, label="Kendall's tau")
    return ax


def sharpness_scatter(runs: pd.DataFrame, measures: Sequence[str], evaluation: str,
                      colors: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None,
                      columns: int = 3, log: bool = True, title: str = ""):
    """One panel per measure (small multiples, ``columns`` per row, the page's width): each model (row of
    ``runs``) as a point (measure, evaluation) coloured by its ``control`` (paired hues by default). With
    ``log``, a measure's axis is logarithmic where its values are positive and span at least a decade (within
    one decade a log axis only adds clutter). One legend for the figure. Returns the figure."""
    import matplotlib.pyplot as plt

    labels = dict(labels or {})
    colors = dict(CONTROL_COLORS if colors is None else colors)
    measures = [m for m in measures if m in runs.columns and runs[m].notna().any()]
    rows = max(1, -(-len(measures) // columns))
    with _style():
        fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, 2.3 * rows + 0.9), squeeze=False, sharey=True)
        for ax, measure in zip(axes.flat, measures):
            for control, part in runs.groupby("control", sort=False):
                ax.scatter(part[measure], part[evaluation], s=22, color=colors.get(control), edgecolor="black",
                           linewidth=0.3, label=_label(labels, control))
            values = runs[measure].dropna()
            if log and (values > 0).all() and values.max() >= 10 * values.min():
                ax.set_xscale("log")
                # Such a span holds a power of ten; labelled minor ticks (2x10^-1, 3x10^-1, ...) overlap.
                ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_xlabel(textwrap.fill(_label(labels, measure), 24))
            ax.locator_params(axis="x", nbins=4) if ax.get_xscale() == "linear" else None
        for ax in axes[:, 0]:
            ax.set_ylabel(_label(labels, evaluation))
        for ax in list(axes.flat)[len(measures):]:
            ax.axis("off")
        handles, names = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=min(3, len(names)), frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.06 + 0.04 * math.ceil(len(names) / 3), 1, 1))
    return fig


def loss_curves(curves: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]],
                colors: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None,
                xlabel: str = "alpha", ax: Any = None):
    """Loss along a direction, one thin line per model and one colour per group (``{group: [(alphas,
    losses), ...]}``), each curve shifted so that it is 0 at alpha = 0 (the minimum's own loss).
    Returns the axes."""
    import matplotlib.pyplot as plt

    labels = dict(labels or {})
    colors = dict(CONTROL_COLORS if colors is None else colors)
    with _style():
        if ax is None:
            _, ax = plt.subplots(figsize=(WIDTH / 2, 3.0))
        for group, items in curves.items():
            for k, (alpha_list, loss_list) in enumerate(items):
                alphas, losses = np.asarray(alpha_list, float), np.asarray(loss_list, float)
                base = np.interp(0.0, alphas, losses)
                ax.plot(alphas, losses - base, color=colors.get(group), lw=1.2, alpha=0.9,
                        label=_label(labels, group) if k == 0 else None)
        ax.axvline(0.0, color="grey", lw=0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss increase (nats)")
        ax.legend()
    return ax


def loss_curve_grid(curves: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]],
                    labels: Mapping[str, str] | None = None, xlabel: str = "alpha", columns: int = 3,
                    title: str = ""):
    """Small multiples of :func:`loss_curves`: one panel per group (control), one line per model, shared
    axes, so that the shapes of the minima compare at a glance. Returns the figure."""
    import matplotlib.pyplot as plt

    labels = dict(labels or {})
    groups = list(curves)
    rows = max(1, -(-len(groups) // columns))
    with _style():
        fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, 1.9 * rows + 0.6), squeeze=False, sharex=True,
                                 sharey=True)
        for ax, group in zip(axes.flat, groups):
            for alpha_list, loss_list in curves[group]:
                alphas, losses = np.asarray(alpha_list, float), np.asarray(loss_list, float)
                ax.plot(alphas, losses - np.interp(0.0, alphas, losses), color=CONTROL_COLORS.get(group, "black"),
                        lw=1.2)
            ax.axvline(0.0, color="grey", lw=0.5)
            ax.set_title(_label(labels, group))
        for ax in list(axes.flat)[len(groups):]:
            ax.axis("off")
        for ax in axes[-1]:
            ax.set_xlabel(xlabel)
        for ax in axes[:, 0]:
            ax.set_ylabel("loss increase")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


def control_ratios(ours: Any, paper: Any | None, runs: pd.DataFrame | None = None,
                   labels: Mapping[str, str] | None = None, metrics: Sequence[str] | None = None):
    """Control by control against Baseline: for each metric a panel with one row per control, our mean divided
    by our Baseline's mean (filled circle, with the SEM scaled the same way as an interval and each seed as a
    small dot) and the paper's (open diamond), on a logarithmic axis centred at 1 (= as Baseline), symmetric
    so that a doubling and a halving look alike. ``ours``/``paper``: :class:`sharpkit.analysis.report.ResultsTable`.
    Returns the figure."""
    import matplotlib.pyplot as plt

    labels = dict(labels or {})
    if metrics is None:
        metrics = [m for m in ours.metrics if m != "train_accuracy" and (paper is None or m in paper.metrics)]
    controls = [c for c in ours.controls if c != "baseline"]

    def relative(table: Any) -> pd.DataFrame:
        cells = table.cells.set_index(["control", "metric"])
        base = cells.xs("baseline", level="control")["mean"]
        out = cells.join(base.rename("base"), on="metric")
        return out.assign(ratio=out["mean"] / out["base"], low=(out["mean"] - out["sem"].fillna(0)) / out["base"],
                          high=(out["mean"] + out["sem"].fillna(0)) / out["base"])

    mine = relative(ours)
    theirs = relative(paper) if paper is not None else None
    columns = 2
    rows = max(1, -(-len(metrics) // columns))
    with _style():
        fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, 0.32 * len(controls) * rows + 0.75 * rows + 0.6),
                                 squeeze=False)
        for ax, metric in zip(axes.flat, metrics):
            extent = 1.05
            for y, control in enumerate(controls):
                color = CONTROL_COLORS.get(control, "black")
                if (control, metric) in mine.index:
                    row = mine.loc[(control, metric)]
                    if np.isfinite(row["ratio"]) and row["ratio"] > 0:
                        low, high = max(row["low"], 1e-12), max(row["high"], 1e-12)
                        ax.plot([low, high], [y, y], color="black", lw=1.2)
                        ax.plot(row["ratio"], y, "o", color=color, markeredgecolor="black", ms=7)
                        extent = max(extent, row["ratio"], 1 / row["ratio"], high, 1 / low)
                    if runs is not None and metric in runs.columns:
                        seeds = runs.loc[(runs["control"] == control) & (runs["status"] == "ok"), metric].dropna()
                        dots = seeds.to_numpy(float) / row["base"]
                        dots = dots[np.isfinite(dots) & (dots > 0)]
                        ax.plot(dots, np.full(len(dots), y - 0.22), ".", color=color, ms=3.5, alpha=0.9)
                        if len(dots):
                            extent = max(extent, dots.max(), 1 / dots.min())
                if theirs is not None and (control, metric) in theirs.index:
                    ratio = theirs.loc[(control, metric), "ratio"]
                    if np.isfinite(ratio) and ratio > 0:
                        ax.plot(ratio, y + 0.25, "D", markerfacecolor="white", markeredgecolor=color, mew=1.6, ms=6)
                        extent = max(extent, ratio, 1 / ratio)
            ax.set_xscale("log")
            extent = min(extent * 1.25, 1e6)
            ax.set_xlim(1 / extent, extent)
            if extent < 8:  # within a decade a log axis has no labelled tick but 1: label plain ratios
                ticks = [t for t in (0.25, 0.5, 0.8, 1.0, 1.25, 2.0, 4.0) if 1 / extent <= t <= extent]
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.axvline(1.0, color="grey", lw=1)
            ax.set_yticks(range(len(controls)), [_label(labels, c) for c in controls])
            ax.set_ylim(len(controls) - 0.5, -0.5)
            ax.set_title(_label(labels, metric))
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        for ax in axes[:, 1:].flat:
            ax.set_yticklabels([])
        for ax in axes[-1]:
            ax.set_xlabel("relative to Baseline (log)")
        handles = [plt.Line2D([], [], marker="o", ls="", color="grey", markeredgecolor="black",
                              label="ours: mean ± SEM"),
                   plt.Line2D([], [], marker=".", ls="", color="grey", label="ours: one seed")]
        if paper is not None:
            handles.append(plt.Line2D([], [], marker="D", ls="", markerfacecolor="white", markeredgecolor="grey",
                                      label="the paper"))
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
        fig.tight_layout(rect=(0, 0.5 / (fig.get_figheight()), 1, 1))
    return fig


def findings_matrix(summary: pd.DataFrame, labels: Mapping[str, str] | None = None,
                    scale_labels: Mapping[str, str] | None = None):
    """The findings matrix: rows = finding x measure, columns = the paper and each of our scales (in the order
    of ``summary``, the frame of :func:`sharpkit.analysis.verdict.summarise`), colour = its category (holds /
    reversed, significantly or not, mixed, untestable), each cell annotated ``holds/cases``. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .verdict import CATEGORIES

    labels = dict(labels or {})
    scale_labels = dict(scale_labels or {})
    claims = list(dict.fromkeys(summary["claim"]))
    metrics = list(dict.fromkeys(summary["metric"]))
    rows = sorted(dict.fromkeys(zip(summary["claim"], summary["metric"])),
                  key=lambda key: (claims.index(key[0]), metrics.index(key[1])))  # finding by finding
    scales = list(dict.fromkeys(summary["scale"]))
    cells = summary.set_index(["claim", "metric", "scale"])
    with _style():
        fig, ax = plt.subplots(figsize=(WIDTH, 0.36 * len(rows) + 1.9))
        for i, (claim, metric) in enumerate(rows):
            for j, scale in enumerate(scales):
                row = cells.loc[(claim, metric, scale)]
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=CATEGORY_COLORS[row["category"]],
                                           edgecolor="white", lw=2))
                text = "-" if row["cases"] == 0 else f"{row['holds']}/{row['cases']}"
                dark = row["category"] in ("holds, significant", "reversed, significant")
                ax.text(j, i, text, ha="center", va="center", color="white" if dark else "black")
        ax.set_xlim(-0.5, len(scales) - 0.5)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xticks(range(len(scales)), [textwrap.fill(scale_labels.get(s, s), 14) for s in scales])
        ax.xaxis.tick_top()
        ax.set_yticks(range(len(rows)), [f"{_label(labels, c)}: {_label(labels, m)}" for c, m in rows])
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        used = [c for c in CATEGORIES if c in set(summary["category"])]
        fig.legend(handles=[Patch(facecolor=CATEGORY_COLORS[c], edgecolor="grey", label=c) for c in used],
                   loc="lower center", ncol=3, frameon=False)
        fig.tight_layout(rect=(0, 0.55 / fig.get_figheight() * math.ceil(len(used) / 3), 1, 1))
    return fig


def diagonal_scatter(minima: pd.DataFrame, taus: pd.DataFrame,
                     measures: Sequence[str] = ("trace", "rescaled_trace", "lambda_max", "rescaled_lambda_max")):
    """The diagonal linear networks: test loss against each measure (log-log), coloured by layer balance,
    each panel titled with its Kendall tau; a 2 x 2 grid at the page's width. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    with _style():
        fig, axes = plt.subplots(2, 2, figsize=(WIDTH, 5.6), sharey=True)
        image = None
        for ax, measure in zip(axes.flat, measures):
            image = ax.scatter(minima[measure], minima["test_loss"], c=minima["balance"], cmap="viridis", s=12,
                               norm=LogNorm())
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(measure.replace("_", " "))
            ax.set_title(f"tau = {taus.loc[measure, 'tau']:+.2f}")
        for ax in axes[:, 0]:
            ax.set_ylabel("test loss")
        fig.tight_layout()
        assert image is not None, "no measure to plot"
        fig.colorbar(image, ax=axes, label="layer balance s")
    return fig
