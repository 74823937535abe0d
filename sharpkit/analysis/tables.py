"""The paper-layout tables: their columns, their cells and the table of one (arch, dataset) of stored runs.

- The columns, derived from the metric registry (:mod:`sharpkit.metrics.registry`), never written here:
  :data:`TABLE_METRICS` (the order of Tables 1-8, the fit first), :data:`METRIC_TITLES`, :data:`BETTER`
  (the direction of "better" of the evaluation columns, the ones printed in bold), :data:`COLUMN_GROUPS`
  (the two tables a page shows: evaluations and sharpness), :data:`DISPLAY_LABELS` (what figures call the
  metrics, errors and controls) and the reader's names of architectures and datasets.
- :func:`format_cell`: ``"mean ± sem"`` as the paper prints it.
- :class:`ResultsTable`: one table in the paper's layout, rendered as HTML (:meth:`ResultsTable.to_html`, also
  Jupyter's ``_repr_html_``), plain text (:meth:`ResultsTable.to_text`, also ``str()``) and CSV.
- :func:`results_table`: one (arch, dataset) of a frame of runs in the layout of Tables 1-8 (rows = the six
  controls, columns = :data:`TABLE_METRICS`, mean ± SEM over seeds with ddof=0, the paper's convention, best
  evaluation in bold). Runs whose status is not ``"ok"`` are excluded from every number and counted in the
  table.

The paper's own printed tables, built as the same :class:`ResultsTable`, are in :mod:`sharpkit.analysis.paper`.
numpy and pandas only: importable without torch.
"""
from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..metrics.registry import (
    FIT_METRICS,
    REGISTRY,
    TABLE_EVALUATIONS,
    TABLE_METRICS,
    TABLE_SHARPNESS_METRICS,
    metric_info,
)
from ..run.controls import CONTROLS
from ..utils.validation import check_choice
from .names import ARCH_NAMES, DATASET_NAMES, arch_name, dataset_name
from .stats import control_order, mean_sem, ok_runs, select_cell

__all__ = [
    "ARCH_LABELS",
    "BETTER",
    "COLUMN_GROUPS",
    "DATASET_LABELS",
    "DISPLAY_LABELS",
    "EVALUATION_METRICS",
    "FIT_METRICS",
    "METRIC_TITLES",
    "ResultsTable",
    "SHARPNESS_METRICS",
    "TABLE_METRICS",
    "format_cell",
    "results_table",
]

# The columns of Tables 1-8, their titles, directions and formats come from the registry
# (sharpkit.metrics.registry). TABLE_METRICS: the paper's order, with the fit first (how well each run fits its
# training subset, eval mode, clean images: not a column of the paper, which is about minima and so takes it
# as given; shown first so that a table says whether its runs are at a minimum) and, after the paper's SAM
# sharpness, the same measure in the clean convention (fixed, un-augmented batches) where a profile measured it.
METRIC_TITLES: dict[str, str] = {m: metric_info(m).label for m in TABLE_METRICS}
# What figures and tables call the metrics, the errors, the measures beyond the paper and the controls.
DISPLAY_LABELS: dict[str, str] = {
    **{name: info.title for name, info in REGISTRY.items() if info.title is not None},
    **{name: control.label for name, control in CONTROLS.items()},
}
# Direction of "better" of the evaluation columns (the ones the paper prints in bold). Sharpness
# columns have none: lower means flatter, which is the question the paper studies, not a score; nor has
# the fit (1 = at a minimum of the training subset).
BETTER: dict[str, str | None] = {m: metric_info(m).better for m in TABLE_METRICS}
# The old names of the two column groups; sharpkit.run.evaluate's EVALUATION_METRICS and SHARPNESS_METRICS
# are other sets (the default evaluation of a run).
EVALUATION_METRICS: tuple[str, ...] = TABLE_EVALUATIONS
SHARPNESS_METRICS: tuple[str, ...] = TABLE_SHARPNESS_METRICS
# The two tables a page shows for one (arch, dataset): how good the models are, and how sharp.
COLUMN_GROUPS: dict[str, tuple[str, ...]] = {
    "evaluations": FIT_METRICS + TABLE_EVALUATIONS,
    "sharpness": TABLE_SHARPNESS_METRICS,
}

# The reader's names live in one place (sharpkit.analysis.names); these are the same mappings.
ARCH_LABELS: dict[str, str] = ARCH_NAMES
DATASET_LABELS: dict[str, str] = DATASET_NAMES
# "Mean and ±1 SEM over 10 models for each table": the footer of the paper's tables, and the n of their means
# (sharpkit.analysis.paper, sharpkit.analysis.claims).
_PAPER_MODELS_PER_CELL = 10


def _label(control: str) -> str:
    return CONTROLS[control].label if control in CONTROLS else control


def format_cell(metric: str, mean: float, sem: float) -> str:
    """``"mean ± sem"`` as the paper prints it: three decimals, SAM sharpness in scientific notation
    with four significant digits (``4.052E-06 ± 2.173E-07``). An empty string for a missing mean; the
    mean alone when the SEM is undefined (a single seed)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    spec = metric_info(metric).display_format if metric in REGISTRY else ".3f"
    if sem is None or (isinstance(sem, float) and math.isnan(sem)):
        return format(mean, spec)
    return f"{mean:{spec}} ± {sem:{spec}}"


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ResultsTable:
    """One table in the paper's layout.

    Attributes:
        title: caption, e.g. ``"Table 1: ResNet-18 trained on CIFAR-10"``.
        arch, dataset: sharpkit registry names (``resnet18_tin``/``vgg19bn_tin`` for TinyImageNet).
        cells: tidy frame, one row per (control, metric) shown: ``control, metric, mean, sem, n, bold``
            (``n``: seeds behind the cell; ``bold``: best of its evaluation column).
        controls: row order (control names).
        metrics: column order (metric names, a subset of :data:`TABLE_METRICS`).
        n_excluded: control -> runs left out because their status is not ``"ok"`` (diverged, failed).
        notes: remarks shown under the table (e.g. a duplicated table in the paper).
        source: ``"results"`` (computed from runs) or ``"paper"`` (as printed).
    """

    title: str
    arch: str
    dataset: str
    cells: pd.DataFrame
    controls: tuple[str, ...]
    metrics: tuple[str, ...]
    n_excluded: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    source: str = "results"

    def _cell(self, control: str, metric: str) -> pd.Series | None:
        rows = self.cells[(self.cells["control"] == control) & (self.cells["metric"] == metric)]
        return None if rows.empty else rows.iloc[0]

    def to_frame(self) -> pd.DataFrame:
        """Controls (paper labels) x metric titles, each cell a ``"mean ± sem"`` string
        (:func:`format_cell`); ``""`` where there is no value."""
        data = {}
        for metric in self.metrics:
            column = []
            for control in self.controls:
                cell = self._cell(control, metric)
                column.append("" if cell is None else format_cell(metric, cell["mean"], cell["sem"]))
            data[METRIC_TITLES.get(metric, metric)] = column
        frame = pd.DataFrame(data, index=pd.Index([_label(c) for c in self.controls], name="Control"))
        return frame

    def n_runs(self) -> pd.DataFrame:
        """Controls (paper labels) x metric titles: the number of seeds behind each cell."""
        data = {}
        for metric in self.metrics:
            column = []
            for control in self.controls:
                cell = self._cell(control, metric)
                column.append(0 if cell is None else int(cell["n"]))
            data[METRIC_TITLES.get(metric, metric)] = column
        return pd.DataFrame(data, index=pd.Index([_label(c) for c in self.controls], name="Control"))

    def _runs_label(self, control: str) -> str:
        counts = self.cells.loc[self.cells["control"] == control, "n"]
        low, high = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
        text = str(high) if low == high else f"{low}-{high}"
        excluded = int(self.n_excluded.get(control, 0))
        return f"{text} (+{excluded} excluded)" if excluded else text

    def _footer(self) -> list[str]:
        lines = []
        if self.source == "paper":
            lines.append(f"As printed in the paper: mean ± SEM over {_PAPER_MODELS_PER_CELL} models.")
        else:
            lines.append("Mean ± SEM (std with ddof=0 / sqrt(n), the paper's convention) over the seeds "
                         "of status 'ok'; Runs = seeds per cell.")
        if any(BETTER.get(m) for m in self.metrics):
            lines.append("Bold: best in the column.")
        if any(m in TABLE_SHARPNESS_METRICS for m in self.metrics):
            lines.append("Sharpness: higher = sharper, lower = flatter (never bold: not a score).")
        if "train_accuracy" in self.metrics:
            lines.append("Train Accuracy (eval): the final model in eval mode on its whole (clean) training subset; "
                         "1.000 = at a minimum of the training data.")
        excluded = {c: k for c, k in self.n_excluded.items() if k}
        if excluded:
            listed = ", ".join(f"{_label(c)}: {k}" for c, k in excluded.items())
            lines.append(f"Excluded runs (diverged or failed, status != 'ok'): {listed}.")
        lines.extend(self.notes)
        return lines

    def _rows(self) -> list[tuple[str, list[tuple[str, bool]], str]]:
        rows = []
        for control in self.controls:
            cells = []
            for metric in self.metrics:
                cell = self._cell(control, metric)
                if cell is None:
                    cells.append(("", False))
                else:
                    cells.append((format_cell(metric, cell["mean"], cell["sem"]), bool(cell["bold"])))
            rows.append((_label(control), cells, self._runs_label(control)))
        return rows

    def to_html(self) -> str:
        """A ``<table class="sharpkit-table">`` with the title as ``<caption>``, the best mean of each
        evaluation column in ``<b>`` (as the paper bolds the mean), and the footer lines in
        ``<tfoot>``."""
        show_runs = self.source == "results"
        head = "".join(f"<th>{html.escape(METRIC_TITLES.get(m, m))}</th>" for m in self.metrics)
        if show_runs:
            head += "<th>Runs</th>"
        body = []
        for label, cells, runs in self._rows():
            tds = []
            for text, bold in cells:
                # Mean and SEM in two spans: the stylesheet puts the SEM under the mean, so that a table of
                # "mean ± sem" cells fits a page column; the text stays "mean ± sem".
                mean, _, sem = html.escape(text).partition(" ± ")
                mean = f"<b>{mean}</b>" if bold and mean else mean
                sem = f' <span class="sk-sem">± {sem}</span>' if sem else ""
                tds.append(f'<td><span class="sk-mean">{mean}</span>{sem}</td>' if mean else "<td></td>")
            if show_runs:
                tds.append(f"<td>{html.escape(runs)}</td>")
            body.append(f'<tr><th scope="row">{html.escape(label)}</th>{"".join(tds)}</tr>')
        span = 1 + len(self.metrics) + int(show_runs)
        foot = "".join(f'<tr><td colspan="{span}">{html.escape(line)}</td></tr>' for line in self._footer())
        return (f'<table class="sharpkit-table">\n<caption>{html.escape(self.title)}</caption>\n'
                f"<thead><tr><th>Control</th>{head}</tr></thead>\n"
                f"<tbody>\n" + "\n".join(body) + "\n</tbody>\n"
                f"<tfoot>{foot}</tfoot>\n</table>")

    def to_text(self) -> str:
        """A plain-text table aligned for terminals; best evaluation cells marked with ``*``."""
        show_runs = self.source == "results"
        header = ["Control"] + [METRIC_TITLES.get(m, m) for m in self.metrics]
        header += ["Runs"] if show_runs else []
        lines = []
        for label, cells, runs in self._rows():
            # A two-character suffix on every cell keeps the columns aligned: " *" marks the best.
            row = [label] + [f"{text} *" if bold else f"{text or '-'}  " for text, bold in cells]
            lines.append(row + ([runs] if show_runs else []))
        widths = [max(len(str(r[i])) for r in [header] + lines) for i in range(len(header))]

        def render(row: list[str]) -> str:
            first = row[0].ljust(widths[0])
            rest = [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
            return "  ".join([first] + rest).rstrip()

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        out = [self.title, rule, render(header), rule] + [render(r) for r in lines] + [rule]
        out += [line.replace("Bold:", "*:") for line in self._footer()]
        return "\n".join(out)

    def part(self, which: str) -> ResultsTable:
        """The same table restricted to one group of columns: ``"evaluations"`` (the fit and the four
        evaluations) or ``"sharpness"`` (the sharpness measures), with the group named in the title. A page
        shows the two as separate tables, each narrow enough for a page column."""
        check_choice("which", which, COLUMN_GROUPS)
        keep = [m for m in self.metrics if m in COLUMN_GROUPS[which]]
        return dataclasses.replace(self, title=f"{self.title}: {which}", metrics=tuple(keep),
                                   cells=self.cells[self.cells["metric"].isin(keep)].reset_index(drop=True))

    def to_csv(self) -> str:
        """Every cell as CSV, one row per (control, metric): ``control, metric, mean, sem, n, bold`` with
        the full-precision numbers (what a reader downloads to reuse the table)."""
        frame = self.cells.assign(control=[_label(c) for c in self.cells["control"]],
                                  metric=[METRIC_TITLES.get(m, m) for m in self.cells["metric"]])
        return frame[["control", "metric", "mean", "sem", "n", "bold"]].to_csv(index=False)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:  # what Jupyter stores as the table's text/plain beside its HTML
        return self.to_text()

    def _repr_html_(self) -> str:
        return self.to_html()


def _bold(cells: pd.DataFrame) -> pd.Series:
    """Best of each evaluation column: the highest (or lowest) mean, every tied mean included (equal
    up to a relative 1e-12, i.e. floating-point noise). Sharpness columns are never bold."""
    bold = pd.Series(False, index=cells.index)
    for metric, part in cells.groupby("metric", sort=False):
        direction = BETTER.get(metric)
        means = part["mean"].to_numpy(np.float64)
        finite = ~np.isnan(means)
        if direction is None or not finite.any():
            continue
        best = np.nanmax(means) if direction == "higher" else np.nanmin(means)
        bold.loc[part.index] = finite & np.isclose(means, best, rtol=1e-12, atol=0.0)
    return bold


def _title(arch: str, dataset: str) -> str:
    return f"{arch_name(arch)} trained on {dataset_name(dataset)}"


def results_table(df: pd.DataFrame, arch: str, dataset: str, title: str | None = None) -> ResultsTable:
    """Table of one (arch, dataset) of a frame of runs, in the paper's layout.

    Rows: the controls in the paper's order (``sharpkit.run.controls.CONTROLS``). A control with no run in
    the frame is omitted; a control whose runs were all excluded (diverged) is shown with empty cells
    and its excluded count, so it never disappears silently. Columns: the :data:`TABLE_METRICS` that
    have at least one value in this (arch, dataset); like the paper's TinyImageNet tables, a metric
    that was not computed is omitted. Cells: :func:`sharpkit.analysis.stats.mean_sem` over the seeds of status
    ``"ok"`` with a value (ddof=0, the paper's convention). Bold: the best mean of each evaluation
    column (all tied means).

    For ``prediction_disagreement`` a run's value is its mean disagreement with the other seeds of its
    control, so the cell mean equals the paper's mean over ordered pairs, but the SEM is over seeds,
    not over the (dependent) pairs the authors used, and so is larger than theirs.
    """
    cell = select_cell(df, arch, dataset)
    ok, excluded = ok_runs(cell)
    controls = control_order(cell["control"])
    metrics = [m for m in TABLE_METRICS if m in ok.columns and ok[m].notna().any()]
    rows = []
    for control in controls:
        runs = ok[ok["control"] == control]
        for metric in metrics:
            stat = mean_sem(runs[metric])
            rows.append({"control": control, "metric": metric, "mean": stat.mean, "sem": stat.sem,
                         "n": stat.n})
    cells = pd.DataFrame(rows, columns=["control", "metric", "mean", "sem", "n"])
    cells["bold"] = _bold(cells)
    counts = excluded["control"].value_counts()
    return ResultsTable(
        title=title if title is not None else _title(arch, dataset), arch=arch, dataset=dataset,
        cells=cells, controls=tuple(controls), metrics=tuple(metrics),
        n_excluded={c: int(counts.get(c, 0)) for c in controls}, source="results")
