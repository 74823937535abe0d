"""The paper's three findings (Sec. 3), checked from numbers, not written by hand, so that a book can show
"holds in the paper" next to "holds here".

The findings: "Regularisers can make geometric landscapes sharper", "SAM does not only promote flatness",
"Important safety properties can exist at sharper minima". Each is checked per (arch, dataset) and
sharpness measure as three claims (``baseline_flattest``, ``sam_raises``, ``best_is_sharper``; see
:func:`claims`):

- :func:`claims`: on a frame of stored runs, with one-sided paired Wilcoxon tests over seeds
  (:func:`sharpkit.analysis.stats.paired_wilcoxon`); runs whose status is not ``"ok"`` are excluded and counted.
- :func:`paper_claims`: on the paper's printed means (:mod:`sharpkit.analysis.paper`), without p-values.

Both apply the same rules (:func:`_cell_claims`) to a :class:`_Cell`: a control's mean and a paired test.
pandas only: importable without torch.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ..metrics.registry import TABLE_EVALUATIONS, TABLE_SHARPNESS_METRICS
from ..run.controls import CONTROLS
from .paper import _duplicate_of, _paper_rows, paper_tables_index
from .stats import (
    PairedTest,
    _require_columns,
    control_order,
    mean_sem,
    ok_runs,
    paired_wilcoxon,
    select_cell,
)
from .tables import _PAPER_MODELS_PER_CELL, BETTER, METRIC_TITLES, _label

__all__ = [
    "claims",
    "paper_claims",
]

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
