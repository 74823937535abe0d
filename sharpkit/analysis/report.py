"""The paper's tables and findings, computed from stored runs and read from the paper.

- :func:`results_table`: one (arch, dataset) of a frame of runs in the layout of Tables 1-8 (rows =
  the six controls, columns = :data:`TABLE_METRICS`, mean ± SEM over seeds, best evaluation in bold).
- :func:`paper_table`: Tables 1-8 as printed, from ``resources/reported_tables.csv`` (package data,
  transcribed from "Understanding Deep Learning Requires Rethinking Sharpness"; see
  ``resources/README.md``).
- :func:`claims` / :func:`paper_claims`: the paper's three findings (Sec. 3: "Regularisers can make
  geometric landscapes sharper", "SAM does not only promote flatness", "Important safety properties
  can exist at sharper minima") checked from numbers, not written by hand, so a book can show "holds in
  the paper" next to "holds here".

Every table renders as HTML (:meth:`ResultsTable.to_html`, also Jupyter's ``_repr_html_``) and as
plain text (:meth:`ResultsTable.to_text`, also ``str()``). Runs whose status is not ``"ok"`` are
excluded from every number and counted in the table.
"""
from __future__ import annotations

import dataclasses
import functools
import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dataset_names import parse_dataset_name  # pure Python: no torch
from ..metrics.registry import (
    FIT_METRICS,
    REGISTRY,
    TABLE_EVALUATIONS,
    TABLE_METRICS,
    TABLE_SHARPNESS_METRICS,
    error_columns,
    error_name,
    metric_info,
)
from ..run.controls import CONTROLS
from ..utils.validation import check_choice
from .names import ARCH_NAMES, DATASET_NAMES, arch_name, dataset_name
from .stats import (
    PairedTest,
    _require_columns,
    control_order,
    mean_sem,
    ok_runs,
    paired_wilcoxon,
    select_cell,
)

__all__ = [
    "ARCH_LABELS",
    "DISPLAY_LABELS",
    "ERROR_EVALUATIONS",
    "BETTER",
    "COLUMN_GROUPS",
    "FIT_METRICS",
    "DATASET_LABELS",
    "EVALUATION_METRICS",
    "METRIC_TITLES",
    "ResultsTable",
    "SHARPNESS_METRICS",
    "TABLE_METRICS",
    "accuracy_levels",
    "claims",
    "convergence",
    "convergence_sentences",
    "format_cell",
    "paper_claims",
    "paper_table",
    "paper_table_for",
    "paper_tables_index",
    "results_table",
]

# The columns of Tables 1-8, their titles, directions and formats come from the registry
# (sharpkit.metrics.registry). TABLE_METRICS: the paper's order, with the fit first (how well each run fits its
# training subset, eval mode, clean images: not a column of the paper, which is about minima and so takes it
# as given; shown first so that a table says whether its runs are at a minimum) and, after the paper's SAM
# sharpness, the same measure in the clean convention (fixed, un-augmented batches) where a profile measured it.
METRIC_TITLES: dict[str, str] = {m: metric_info(m).label for m in TABLE_METRICS}
# Each evaluation written as an error (see with_errors), in the column order of the Kendall-tau grids.
ERROR_EVALUATIONS: tuple[str, ...] = tuple(error_name(m) for m in TABLE_EVALUATIONS)
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
# The CSV names the TinyImageNet models as the paper does; sharpkit's registry names differ.
_CSV_TO_REGISTRY: dict[tuple[str, str], str] = {
    ("resnet18", "tinyimagenet"): "resnet18_tin",
    ("vgg19bn", "tinyimagenet"): "vgg19bn_tin",
}
_PAPER_MODELS_PER_CELL = 10  # "Mean and ±1 SEM over 10 models for each table"
_PAPER_CSV = "reported_tables.csv"


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


# --------------------------------------------------------------------------------------------------
# The paper's tables
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _paper_rows() -> pd.DataFrame:
    with resources.files("sharpkit").joinpath("resources", _PAPER_CSV).open("r", encoding="utf-8") as handle:
        rows = pd.read_csv(handle)
    rows["bold"] = rows["bold"].astype(bool)
    return rows


def _registry_arch(csv_arch: str, dataset: str) -> str:
    return _CSV_TO_REGISTRY.get((csv_arch, dataset), csv_arch)


def paper_tables_index() -> dict[int, tuple[str, str]]:
    """Table number -> (arch, dataset) in sharpkit's registry names (the TinyImageNet tables are
    ``resnet18_tin`` and ``vgg19bn_tin``)."""
    first = _paper_rows().groupby("table", sort=True).first()
    return {int(n): (_registry_arch(r["arch"], r["dataset"]), r["dataset"]) for n, r in first.iterrows()}


def _duplicate_of(n: int) -> int | None:
    """The earlier table whose every (control, metric, mean, sem) equals table ``n``'s, if any."""
    rows = _paper_rows()
    key = ["control", "metric", "mean", "sem"]
    mine = rows[rows["table"] == n][key].reset_index(drop=True)
    for other in sorted(rows["table"].unique()):
        if other >= n:
            break
        theirs = rows[rows["table"] == other][key].reset_index(drop=True)
        if len(theirs) == len(mine) and theirs.equals(mine):
            return int(other)
    return None


def paper_table(n: int) -> ResultsTable:
    """Table ``n`` (1-8) of the paper as printed, from the shipped ``reported_tables.csv``.

    Means, SEMs and bold cells are the paper's (the CSV's ``bold`` column). A table that repeats an
    earlier one number for number (Table 6 repeats Table 3, an error in the paper) is kept as printed
    and flagged in ``notes``; so is any bold cell that differs from the best printed mean.
    """
    index = paper_tables_index()
    check_choice("n", n, sorted(index), hint="The paper has Tables 1-8.")
    rows = _paper_rows()
    table = rows[rows["table"] == n]
    csv_arch, dataset = table["arch"].iloc[0], table["dataset"].iloc[0]
    controls = control_order(table["control"])
    metrics = [m for m in TABLE_METRICS if m in set(table["metric"])]
    cells = table[["control", "metric", "mean", "sem", "bold"]].copy()
    cells["n"] = _PAPER_MODELS_PER_CELL
    order = {(c, m): i for i, (c, m) in enumerate((c, m) for c in controls for m in metrics)}
    cells = cells.assign(_order=[order[(c, m)] for c, m in zip(cells["control"], cells["metric"])])
    cells = cells.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    cells = cells[["control", "metric", "mean", "sem", "n", "bold"]]

    notes = []
    duplicate = _duplicate_of(n)
    if duplicate is not None:
        notes.append(f"Note: Table {n} repeats Table {duplicate} number for number (an error in the "
                     f"paper); kept as printed.")
    disagree = cells[cells["bold"] != _bold(cells)]
    for metric in dict.fromkeys(disagree["metric"]):
        notes.append(f"Note: the bold cells of {METRIC_TITLES.get(metric, metric)} are not the best "
                     f"printed means.")
    arch = _registry_arch(csv_arch, dataset)
    return ResultsTable(
        title=f"Table {n}: {ARCH_LABELS.get(csv_arch, csv_arch)} trained on {DATASET_LABELS[dataset]}",
        arch=arch, dataset=dataset, cells=cells, controls=tuple(controls), metrics=tuple(metrics),
        n_excluded={}, notes=tuple(notes), source="paper")


def paper_table_for(arch: str, dataset: str) -> ResultsTable | None:
    """The paper's table of (arch, dataset), or None when the paper has none (e.g. ``digits``).

    ``arch`` may be a registry name (``resnet18_tin``, ``vgg19bn_tin``) or the paper's name
    (``resnet18``/``vgg19bn`` on ``tinyimagenet``).
    """
    wanted = (_registry_arch(arch, dataset), dataset)
    for n, key in paper_tables_index().items():
        if key == wanted:
            return paper_table(n)
    return None


# --------------------------------------------------------------------------------------------------
# The paper's findings
# --------------------------------------------------------------------------------------------------
_CLAIM_COLUMNS = ["arch", "dataset", "claim", "description", "metric", "evaluation", "control",
                  "reference", "holds", "value", "reference_value", "baseline_value", "p_value",
                  "effect_size", "n"]


def _sam_pairs() -> list[tuple[str, str]]:
    """(control without SAM, the same control with SAM), from the control registry."""
    pairs = []
    paper = [c for c in CONTROLS.values() if c.in_paper]
    for sam in paper:
        if sam.sam:
            for plain in paper:
                if (not plain.sam and plain.augmentation == sam.augmentation
                        and plain.weight_decay == sam.weight_decay):
                    pairs.append((plain.name, sam.name))
    return pairs


@dataclass(frozen=True)
class _Cell:
    """What the claims need from one (arch, dataset): control means and a paired test."""

    arch: str
    dataset: str
    controls: tuple[str, ...]
    mean: Callable[[str, str], float]
    test: Callable[[str, str, str], PairedTest]  # (control, reference, metric), alternative "greater"


def _finite(value: float) -> bool:
    return value is not None and not math.isnan(value)


def _cell_claims(cell: _Cell) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    base = "baseline"

    def row(claim, description, metric, control, reference, holds, value, reference_value, test,
            evaluation=None):
        rows.append({
            "arch": cell.arch, "dataset": cell.dataset, "claim": claim, "description": description,
            "metric": metric, "evaluation": evaluation, "control": control, "reference": reference,
            "holds": bool(holds), "value": value, "reference_value": reference_value,
            "baseline_value": cell.mean(base, metric) if base in cell.controls else math.nan,
            "p_value": test.p_value, "effect_size": test.rank_biserial, "n": test.n,
        })

    for measure in TABLE_SHARPNESS_METRICS:
        title = METRIC_TITLES[measure]
        have = [c for c in cell.controls if _finite(cell.mean(c, measure))]
        # (1) Baseline is the flattest control on this measure.
        others = [c for c in have if c != base]
        if base in have and others:
            flattest = min(others, key=lambda c: cell.mean(c, measure))
            value, closest = cell.mean(base, measure), cell.mean(flattest, measure)
            tests = [cell.test(c, base, measure) for c in others]
            # Intersection-union test of "every other control is sharper than Baseline": it holds at
            # level alpha iff each one-sided test does, so its p-value is the largest of them.
            ps = [t.p_value for t in tests]
            joint = PairedTest(
                statistic=math.nan,
                p_value=max(ps) if all(_finite(p) for p in ps) else math.nan,
                rank_biserial=min((t.rank_biserial for t in tests), default=math.nan),
                n=min(t.n for t in tests))
            row("baseline_flattest",
                f"Baseline has the lowest {title} of the {len(have)} controls (next lowest: "
                f"{_label(flattest)})", measure, base, flattest, value < closest, value, closest, joint)
        # (2) Adding SAM raises the measure.
        for plain, sam in _sam_pairs():
            if plain in have and sam in have:
                value, reference = cell.mean(sam, measure), cell.mean(plain, measure)
                row("sam_raises", f"Adding SAM to {_label(plain)} raises {title}", measure, sam, plain,
                    value > reference, value, reference, cell.test(sam, plain, measure))
    # (3) The control best on each evaluation is sharper than Baseline on each measure.
    for evaluation in TABLE_EVALUATIONS:
        scored = [c for c in cell.controls if _finite(cell.mean(c, evaluation))]
        if not scored or base not in cell.controls:
            continue
        sign = 1.0 if BETTER[evaluation] == "higher" else -1.0
        best = max(scored, key=lambda c: sign * cell.mean(c, evaluation))  # first in paper order on ties
        for measure in TABLE_SHARPNESS_METRICS:
            value, reference = cell.mean(best, measure), cell.mean(base, measure)
            if not (_finite(value) and _finite(reference)):
                continue
            if best == base:
                test = PairedTest(math.nan, math.nan, math.nan, 0)
            else:
                test = cell.test(best, base, measure)
            row("best_is_sharper",
                f"{_label(best)}, best on {METRIC_TITLES[evaluation]}, has a higher "
                f"{METRIC_TITLES[measure]} than Baseline", measure, best, base,
                best != base and value > reference, value, reference, test, evaluation=evaluation)
    return rows


def claims(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's findings checked on a frame of runs, per (arch, dataset) present in it.

    For each sharpness measure (:data:`SHARPNESS_METRICS`) with values:

    1. ``baseline_flattest``: Baseline's mean is strictly the lowest of all controls. ``reference`` is
       the next-flattest control; ``p_value`` is the largest of the one-sided paired Wilcoxon
       p-values "control > Baseline" over the other controls (intersection-union test of "every other
       control is sharper"), ``effect_size`` the smallest rank-biserial correlation, ``n`` the
       smallest number of seed pairs.
    2. ``sam_raises``: for each SAM pair (Baseline -> Baseline + SAM, Augmentation -> Augmentation +
       SAM, Weight Decay -> Weight Decay + SAM), the SAM control's mean is higher; paired Wilcoxon
       "SAM > without SAM" over seeds.
    3. ``best_is_sharper``: for each evaluation (:data:`EVALUATION_METRICS`) the control with the best
       mean (first in the paper's order on ties) has a higher mean than Baseline; paired Wilcoxon
       "best > Baseline". Does not hold when Baseline itself is the best.

    ``holds`` compares means, as the paper's text does; ``p_value`` (uncorrected, one-sided, over
    seeds of status ``"ok"`` paired by seed, :func:`sharpkit.analysis.stats.paired_wilcoxon`) and
    ``effect_size`` (rank-biserial) say how sure that is. ``value`` is the mean of ``control``,
    ``reference_value`` the mean of ``reference``, ``baseline_value`` Baseline's mean of ``metric``;
    ``evaluation`` names the evaluation of claim 3. ``n_excluded``: runs of the (arch, dataset) left out
    because their status is not ``"ok"``.
    """
    _require_columns(df, ("arch", "dataset", "control", "seed", "status"), "claims")
    rows: list[dict[str, object]] = []
    for arch, dataset in sorted({(a, d) for a, d in zip(df["arch"], df["dataset"])}):
        runs = select_cell(df, arch, dataset)
        ok, excluded = ok_runs(runs)
        by_control = {c: part for c, part in ok.groupby("control")}
        empty = ok.iloc[0:0]

        def mean(control: str, metric: str, by_control=by_control, empty=empty) -> float:
            part = by_control.get(control, empty)
            return mean_sem(part[metric]).mean if metric in part.columns else math.nan

        by_seed = {c: part.drop_duplicates("seed").set_index("seed") for c, part in by_control.items()}

        @functools.cache  # the best control is often the same for several evaluations
        def test(control: str, reference: str, metric: str, by_seed=by_seed, columns=tuple(ok.columns)) -> PairedTest:
            if control not in by_seed or reference not in by_seed or metric not in columns:
                return paired_wilcoxon([], [], "greater")
            a, b = by_seed[control][metric], by_seed[reference][metric]
            seeds = a.index.intersection(b.index).sort_values()
            return paired_wilcoxon(a.loc[seeds].to_numpy(float), b.loc[seeds].to_numpy(float), "greater")

        cell = _Cell(arch, dataset, tuple(control_order(ok["control"])), mean, test)
        for item in _cell_claims(cell):
            item["n_excluded"] = int(len(excluded))
            rows.append(item)
    return pd.DataFrame(rows, columns=_CLAIM_COLUMNS + ["n_excluded"])


def paper_claims(include_duplicates: bool = False) -> pd.DataFrame:
    """The checks of :func:`claims` on the paper's printed means (Tables 1-8), one block per table.

    No p-value (the paper prints no per-seed values): ``p_value`` and ``effect_size`` are NaN and
    ``n`` is the paper's 10 models per mean. A column ``table`` names the table. Tables that repeat an
    earlier one (Table 6 = Table 3, an error in the paper) are left out unless ``include_duplicates``,
    since their "findings" would be another table's numbers under the wrong model name.
    """
    rows = _paper_rows()
    out: list[dict[str, object]] = []
    for n, (arch, dataset) in paper_tables_index().items():
        if not include_duplicates and _duplicate_of(n) is not None:
            continue
        table = rows[rows["table"] == n]
        means = {(c, m): v for c, m, v in zip(table["control"], table["metric"], table["mean"])}
        no_test = PairedTest(math.nan, math.nan, math.nan, _PAPER_MODELS_PER_CELL)

        def mean(c: str, m: str, means=means) -> float:
            return float(means.get((c, m), math.nan))

        def test(c: str, r: str, m: str, no_test=no_test) -> PairedTest:
            return no_test

        cell = _Cell(arch, dataset, tuple(control_order(table["control"])), mean, test)
        for item in _cell_claims(cell):
            out.append({"table": n, **item})
    return pd.DataFrame(out, columns=["table"] + _CLAIM_COLUMNS)


# --------------------------------------------------------------------------------------------------
# Our datasets and the paper's
# --------------------------------------------------------------------------------------------------
PAPER_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "tinyimagenet")


def paper_dataset(dataset: str) -> str:
    """The paper's dataset (``cifar10``, ``cifar100`` or ``tinyimagenet``) that a sharpkit dataset name
    stands for, so that a table of our runs can be shown next to the matching table of the paper.

    The paper's names (and their ``-c`` corrupted sets) map to themselves; an ``npz:`` file whose name
    starts with one of them to that dataset (``npz:../shared/data/cifar10-jpeg-20k.npz`` -> ``cifar10``);
    every other dataset (``digits``, other files) to ``cifar10``, the closest of the paper's datasets,
    as :func:`sharpkit.run.controls.recipe_for` does for the training recipe. The result differs from
    ``dataset`` exactly when the data are a stand-in, which a page should say.
    """
    name = parse_dataset_name(dataset)  # ValueError for a non-name ("" or not a string)
    # Names spelt otherwise than registered ("CIFAR100") are stand-ins here, as for the recipe.
    if name.exact_base and name.family in PAPER_DATASETS:
        return name.family
    if name.exact_base == "npz" and name.stem is not None:
        stem = name.stem.lower()
        # Longest name first: "cifar100..." also starts with "cifar10".
        for paper in sorted(PAPER_DATASETS, key=len, reverse=True):
            if stem.startswith(paper):
                return paper
    return "cifar10"


def accuracy_levels(df: pd.DataFrame) -> pd.DataFrame:
    """Where our accuracy stands against the paper's, per (arch, dataset) of ``df`` (runs of status "ok"
    from :func:`sharpkit.experiments.store.load_results`): the Baseline's and the best control's mean test accuracy,
    theirs from the paper's table for the same arch and the dataset our data stands for
    (:func:`paper_dataset`), and the gain of the best control over Baseline on both sides.

    Returns one row per (arch, dataset) with columns ``arch, dataset, paper_dataset, baseline, best_control,
    best, gain, paper_baseline, paper_best_control, paper_best, paper_gain, relative_level``
    (``relative_level`` = our Baseline accuracy / the paper's). The paper's columns are NaN/None when the
    paper has no table for that pair.
    """
    _require_columns(df, ("arch", "dataset", "control", "status", "test_accuracy"), "accuracy_levels")
    runs = df[df["status"] == "ok"]
    rows = []
    for (arch, dataset), cell in runs.groupby(["arch", "dataset"], sort=True):
        means = cell.groupby("control")["test_accuracy"].mean()
        if "baseline" not in means.index:
            continue
        best_control = means.idxmax()
        row = {"arch": arch, "dataset": dataset, "paper_dataset": paper_dataset(dataset),
               "baseline": float(means["baseline"]), "best_control": best_control, "best": float(means.max()),
               "paper_baseline": math.nan, "paper_best_control": None, "paper_best": math.nan}
        paper = paper_table_for(arch, row["paper_dataset"])
        if paper is not None:
            theirs = paper.cells[paper.cells["metric"] == "test_accuracy"].set_index("control")["mean"]
            row.update(paper_baseline=float(theirs["baseline"]), paper_best_control=theirs.idxmax(),
                       paper_best=float(theirs.max()))
        row["gain"] = row["best"] - row["baseline"]
        row["paper_gain"] = row["paper_best"] - row["paper_baseline"]
        row["relative_level"] = row["baseline"] / row["paper_baseline"]
        rows.append(row)
    columns = ["arch", "dataset", "paper_dataset", "baseline", "best_control", "best", "gain", "paper_baseline",
               "paper_best_control", "paper_best", "paper_gain", "relative_level"]
    return pd.DataFrame(rows, columns=columns)


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


# --------------------------------------------------------------------------------------------------
# Convergence: are the runs at a minimum?
# --------------------------------------------------------------------------------------------------
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
