"""Statistics of the paper's tables: mean and SEM over seeds, paired Wilcoxon tests of each control
against Baseline with rank-biserial correlation and Benjamini-Yekutieli correction, and Kendall's tau
between a sharpness measure and an evaluation with a bootstrap confidence interval.

Sources: "Understanding Deep Learning Requires Rethinking Sharpness" (Tables 1-8: "Mean and +-1 SEM
over 10 models"), and the authors' significance script (GitHub
``IFMW01/a_function-centric_perspective_on_flat_and_sharp_minima``, commit 20e3acc,
``high_dimensional/significance.py``), summarised on the book's protocol page
("Statistics"). That script computes ``np.std(x) / sqrt(n)`` (ddof=0) for *every* cell, per-seed
metrics included; tests each control against Baseline with pingouin's ``wilcoxon`` (scipy's
``wilcoxon`` with its defaults, plus the matched-pairs rank-biserial correlation of Kerby 2014); and
applies ``scipy.stats.false_discovery_control(method="by")`` separately to {ECE, corruption accuracy,
disagreement} and to {Fisher-Rao, SAM sharpness, relative flatness} of one control-vs-Baseline
comparison, leaving test accuracy and generalisation gap uncorrected. Kendall's tau over models is
eq. 4 of Andriushchenko et al. (2023), "A modern look at the relationship between sharpness and
generalization".

All functions here are pure: they read the tidy frame of runs returned by
``sharpkit.experiments.store.load_results`` (one row per run, columns ``arch``, ``dataset``, ``control``,
``seed``, ``status`` and one float column per metric, NaN when missing) and never modify it.
Runs whose ``status`` is not ``"ok"`` (diverged, failed) are excluded from every statistic and
counted in the output, never silently averaged.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats

from ..metrics.registry import REGISTRY, correction_families
from ..run.controls import CONTROLS
from ..utils.validation import check_choice, check_positive

__all__ = [
    "ALTERNATIVES",
    "CORRECTION_FAMILIES",
    "MeanSEM",
    "PairedTest",
    "control_tests",
    "kendall_tau",
    "kendall_tau_grid",
    "mean_sem",
    "ok_runs",
    "paired_wilcoxon",
    "rank_biserial",
    "select_cell",
    "control_order",
]

# One-sided alternative of "control vs Baseline" per metric, as in the authors' significance script:
# "greater" where a larger value is the direction of interest (better accuracy, sharper model),
# "less" where a smaller value is better. From the registry (sharpkit.metrics.registry), in its order.
ALTERNATIVES: dict[str, str] = {name: info.alternative for name, info in REGISTRY.items()
                                if info.alternative is not None}

# Benjamini-Yekutieli families of one control-vs-Baseline comparison (the authors' grouping), from the
# registry. Metrics in no family (test accuracy, generalisation gap) are reported uncorrected, as the
# authors did; the clean-convention SAM sharpness is its own family.
CORRECTION_FAMILIES: dict[str, tuple[str, ...]] = correction_families()

_RUN_KEYS = ("arch", "dataset", "control", "seed", "status")
_WILCOXON_ALTERNATIVES = ("two-sided", "greater", "less")


# --------------------------------------------------------------------------------------------------
# Mean and SEM
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeanSEM:
    """Mean, standard error of the mean and number of values behind them."""

    mean: float
    sem: float
    n: int


def mean_sem(values: Iterable[float], ddof: int = 0) -> MeanSEM:
    r"""Mean and standard error of the mean, the paper's convention by default.

    .. math::
        \bar x = \frac1n\sum_i x_i, \qquad
        \mathrm{SEM} = \frac{1}{\sqrt n}\sqrt{\frac{1}{n - \mathrm{ddof}}\sum_i (x_i - \bar x)^2}

    ``ddof=0`` is what the authors' script computes for every table cell (``np.std(x) / sqrt(n)``),
    per-seed metrics included; ``ddof=1`` gives the textbook unbiased-variance SEM, larger by a factor
    :math:`\sqrt{n/(n-1)}` (5.4% for 10 seeds).

    NaN values (missing metrics) are dropped and not counted in ``n``. With no value the mean and SEM
    are NaN; with fewer than ``ddof + 2`` values the SEM is NaN, since the spread of a single value is
    not an estimate of anything (the formula would print a misleading ``± 0``).
    """
    check_positive("ddof", ddof, allow_zero=True, integer=True)
    if not hasattr(values, "__len__"):  # a generator or iterator
        values = list(values)
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[~np.isnan(data)]
    n = int(data.size)
    if n == 0:
        return MeanSEM(math.nan, math.nan, 0)
    mean = float(data.mean())
    if n < ddof + 2:
        return MeanSEM(mean, math.nan, n)
    return MeanSEM(mean, float(data.std(ddof=ddof) / math.sqrt(n)), n)


# --------------------------------------------------------------------------------------------------
# Paired Wilcoxon signed-rank test
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedTest:
    """Result of :func:`paired_wilcoxon`.

    Attributes:
        statistic: scipy's Wilcoxon statistic: ``min(W+, W-)`` for ``"two-sided"``, ``W+`` for the
            one-sided alternatives (sums of ranks of the positive / negative differences).
        p_value: scipy's p-value (exact for small samples without ties or zeros, else normal
            approximation, as ``method="auto"`` decides).
        rank_biserial: matched-pairs rank-biserial correlation in [-1, 1] (:func:`rank_biserial`).
        n: number of pairs used (pairs with a NaN on either side are dropped; zero differences are
            counted here although the test discards them).
    """

    statistic: float
    p_value: float
    rank_biserial: float
    n: int


def rank_biserial(differences: Sequence[float] | np.ndarray) -> float:
    r"""Matched-pairs rank-biserial correlation (Kerby 2014, "The simple difference formula").

    Zero differences are discarded first (scipy's ``zero_method="wilcox"``, also pingouin's choice);
    the absolute values of the remaining differences :math:`d_i` are ranked with average ranks for
    ties, :math:`R_i = \mathrm{rank}(|d_i|)`, and

    .. math::
        W^+ = \sum_{d_i > 0} R_i, \qquad W^- = \sum_{d_i < 0} R_i, \qquad
        r = \frac{W^+ - W^-}{W^+ + W^-}.

    ``r = 1`` when every non-zero difference is positive, ``-1`` when every one is negative. NaN when
    no difference is non-zero (or non-NaN).
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    d = d[~np.isnan(d) & (d != 0)]
    if d.size == 0:
        return math.nan
    ranks = scipy.stats.rankdata(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    w_minus = float(ranks[d < 0].sum())
    return (w_plus - w_minus) / (w_plus + w_minus)


def paired_wilcoxon(treatment: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray,
                    alternative: str = "two-sided") -> PairedTest:
    """Wilcoxon signed-rank test on the paired differences ``treatment - baseline``.

    ``alternative="greater"`` tests whether the treatment tends to be larger than the baseline,
    ``"less"`` smaller. The test is ``scipy.stats.wilcoxon(treatment, baseline, alternative=...)``
    with scipy's defaults (``zero_method="wilcox"``: zero differences are discarded;
    ``correction=False``; ``method="auto"``), which is what pingouin's ``wilcoxon`` (used by the
    authors) runs; the effect size is :func:`rank_biserial` of the same differences.

    Pairs with a NaN on either side are dropped. With no pair left every number is NaN. When every
    difference is zero scipy reports ``p = 1`` and the rank-biserial correlation is NaN.
    """
    check_choice("alternative", alternative, _WILCOXON_ALTERNATIVES)
    x = np.asarray(treatment, dtype=np.float64).ravel()
    y = np.asarray(baseline, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(
            f"Expected `treatment` and `baseline` to be paired (the same length), but got {x.size} and "
            f"{y.size} values. Pair the runs (e.g. by seed) before testing.")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n == 0:
        return PairedTest(math.nan, math.nan, math.nan, 0)
    with warnings.catch_warnings():
        # All-zero differences make scipy divide 0/0 in its normal approximation; it still returns
        # p = 1, which is the right answer, so the warning carries no information.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        result = scipy.stats.wilcoxon(x, y, alternative=alternative)
    return PairedTest(float(result.statistic), float(result.pvalue), rank_biserial(x - y), n)


# --------------------------------------------------------------------------------------------------
# Selecting runs
# --------------------------------------------------------------------------------------------------
def _require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"Expected `df` to be a pandas DataFrame of runs (sharpkit.experiments.store.load_results), "
                        f"but got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing and df.empty:
        raise ValueError(f"{what} got an empty frame of runs: no result is stored yet. Run "
                         f"`sharpkit sweep --profile P` first, or check the results folder.")
    if missing:
        raise ValueError(
            f"{what} needs the column(s) {', '.join(map(repr, missing))} in the frame of runs, but it "
            f"only has {', '.join(map(repr, df.columns))}. Pass the frame returned by "
            f"sharpkit.experiments.store.load_results(DIR).")


def _check_metric_columns(df: pd.DataFrame, metrics: Iterable[str], what: str) -> None:
    for metric in metrics:
        if metric not in df.columns:
            numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and c != "seed"]
            raise ValueError(
                f"Expected `{what}` to be a metric column of the frame of runs, but got {metric!r}; "
                f"numeric columns are {', '.join(map(repr, numeric))}.")


def select_cell(df: pd.DataFrame, arch: str, dataset: str) -> pd.DataFrame:
    """All runs (any status) of one (arch, dataset), with a clear error when there is none, and
    after checking that no (control, seed) appears twice (e.g. two profiles loaded together)."""
    _require_columns(df, _RUN_KEYS, "This statistic")
    cell = df[(df["arch"] == arch) & (df["dataset"] == dataset)]
    if cell.empty:
        pairs = sorted({(a, d) for a, d in zip(df["arch"], df["dataset"])})
        available = ", ".join(f"({a!r}, {d!r})" for a, d in pairs) or "none (the frame is empty)"
        raise ValueError(
            f"No run of arch={arch!r} on dataset={dataset!r} in the frame of runs; available (arch, "
            f"dataset) pairs: {available}.")
    duplicated = cell.duplicated(subset=["control", "seed"], keep=False)
    if duplicated.any():
        first = cell[duplicated].iloc[0]
        hint = " (several profiles?)" if "profile" in cell.columns and cell["profile"].nunique() > 1 else ""
        raise ValueError(
            f"The frame holds several runs of arch={arch!r}, dataset={dataset!r}, "
            f"control={first['control']!r}, seed={first['seed']!r}{hint}; each seed must appear once "
            f"per control. Filter the frame first, e.g. df[df['profile'] == 'smoke'].")
    return cell


def ok_runs(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split runs into ``(ok, excluded)``: ``status == "ok"`` versus every other status (diverged,
    failed, missing)."""
    _require_columns(df, ("status",), "Selecting runs")
    ok = df["status"] == "ok"
    return df[ok], df[~ok]


def control_order(controls: Iterable[str]) -> list[str]:
    """Controls in the paper's order (``sharpkit.run.controls.CONTROLS``), unknown names after, sorted."""
    present = set(controls)
    known = [c for c in CONTROLS if c in present]
    return known + sorted(present - set(CONTROLS))


# --------------------------------------------------------------------------------------------------
# Each control against Baseline
# --------------------------------------------------------------------------------------------------
def _family_of(metric: str) -> str:
    for family, members in CORRECTION_FAMILIES.items():
        if metric in members:
            return family
    return "none"


def _paired_by_seed(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    merged = a[["seed", metric]].merge(b[["seed", metric]], on="seed", suffixes=("_a", "_b"))
    merged = merged.sort_values("seed")
    return merged[f"{metric}_a"].to_numpy(np.float64), merged[f"{metric}_b"].to_numpy(np.float64)


def control_tests(df: pd.DataFrame, arch: str, dataset: str, metrics: Sequence[str] | None = None,
                  baseline: str = "baseline") -> pd.DataFrame:
    """Each control against ``baseline`` on one (arch, dataset), paired by seed: the authors' tests.

    For every control other than ``baseline`` and every metric, :func:`paired_wilcoxon` of the
    control's per-seed values against the baseline's, over the seeds both have (status ``"ok"`` and a
    non-NaN value), with the one-sided alternative of :data:`ALTERNATIVES`. Within one control's
    comparison the p-values of each family of :data:`CORRECTION_FAMILIES` are adjusted with
    Benjamini-Yekutieli (``scipy.stats.false_discovery_control(method="by")``) over the family
    members that have a p-value; metrics in no family (test accuracy, generalisation gap) are left
    uncorrected (``p_adjusted == p_value``), as in the authors' script.

    Note: the authors paired the 90 ordered-pair disagreements of each control by position; a run's
    ``prediction_disagreement`` here is its mean over the other seeds, so that test has one pair per
    seed instead.

    Args:
        df: runs, as returned by ``sharpkit.experiments.store.load_results``.
        arch, dataset: the cell to test.
        metrics: metric columns (keys of :data:`ALTERNATIVES`). Default: every metric of
            :data:`ALTERNATIVES` that is a column of ``df`` with at least one value in this cell.
        baseline: the reference control.

    Returns:
        One row per (control, metric), controls in the paper's order, columns ``control, metric,
        family, alternative, n, statistic, p_value, p_adjusted, rank_biserial, control_mean,
        baseline_mean, n_excluded``; ``n`` is the number of seed pairs tested and ``n_excluded`` the
        number of runs of the control or the baseline dropped because their status is not ``"ok"``.
        ``attrs["n_excluded"]`` holds the number of excluded runs of the whole cell.
    """
    cell = select_cell(df, arch, dataset)
    if metrics is None:
        metrics = [m for m in ALTERNATIVES if m in cell.columns and cell[m].notna().any()]
    else:
        metrics = list(metrics)
        for metric in metrics:
            check_choice("metrics", metric, ALTERNATIVES,
                         hint="Only metrics with a known direction of improvement can be tested.")
        _check_metric_columns(cell, metrics, "metrics")
    ok, excluded = ok_runs(cell)
    controls = control_order(cell["control"])
    if baseline not in controls:
        raise ValueError(
            f"Expected the reference control {baseline!r} among the runs of ({arch!r}, {dataset!r}), "
            f"but only {', '.join(map(repr, controls))} are present. Run the baseline control or pass "
            f"another `baseline`.")
    base = ok[ok["control"] == baseline]
    excluded_counts = excluded["control"].value_counts()

    rows = []
    for control in controls:
        if control == baseline:
            continue
        treated = ok[ok["control"] == control]
        n_excluded = int(excluded_counts.get(control, 0) + excluded_counts.get(baseline, 0))
        for metric in metrics:
            x, y = _paired_by_seed(treated, base, metric)
            test = paired_wilcoxon(x, y, ALTERNATIVES[metric])
            rows.append({
                "control": control, "metric": metric, "family": _family_of(metric),
                "alternative": ALTERNATIVES[metric], "n": test.n, "statistic": test.statistic,
                "p_value": test.p_value, "p_adjusted": test.p_value, "rank_biserial": test.rank_biserial,
                "control_mean": mean_sem(treated[metric]).mean, "baseline_mean": mean_sem(base[metric]).mean,
                "n_excluded": n_excluded,
            })
    columns = ["control", "metric", "family", "alternative", "n", "statistic", "p_value", "p_adjusted",
               "rank_biserial", "control_mean", "baseline_mean", "n_excluded"]
    out = pd.DataFrame(rows, columns=columns)
    for control in out["control"].unique():
        for family in CORRECTION_FAMILIES:
            rows_ = (out["control"] == control) & (out["family"] == family) & out["p_value"].notna()
            if rows_.any():
                out.loc[rows_, "p_adjusted"] = scipy.stats.false_discovery_control(
                    out.loc[rows_, "p_value"].to_numpy(np.float64), method="by")
        out.loc[(out["control"] == control) & (out["family"] != "none") & out["p_value"].isna(),
                "p_adjusted"] = math.nan
    out.attrs["n_excluded"] = int(len(excluded))
    return out


# --------------------------------------------------------------------------------------------------
# Kendall's tau over models
# --------------------------------------------------------------------------------------------------
def _tau(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if x.size < 2:
        return math.nan, math.nan
    result = scipy.stats.kendalltau(x, y)
    return float(result.statistic), float(result.pvalue)


def _bootstrap_tau(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int,
                   confidence: float) -> tuple[float, float]:
    if x.size < 2 or n_boot == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    taus = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, x.size, size=x.size)
        taus[b] = scipy.stats.kendalltau(x[idx], y[idx]).statistic
    # A resample that repeats one model only has an undefined tau (NaN); it carries no ranking
    # information and is left out of the percentiles.
    taus = taus[~np.isnan(taus)]
    if taus.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(taus, [tail, 100 - tail])
    return float(low), float(high)


def kendall_tau(df: pd.DataFrame, measure: str, evaluation: str, groups: str | Sequence[str] | None = None,
                n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    r"""Kendall's rank correlation over models between a sharpness ``measure`` and an ``evaluation``.

    .. math::
        \tau = \frac{n_c - n_d}{\sqrt{(n_0 - n_1)(n_0 - n_2)}}

    over the :math:`n` models (rows), with :math:`n_c, n_d` the concordant and discordant pairs,
    :math:`n_0 = n(n-1)/2` and :math:`n_1, n_2` the pairs tied in the measure or the evaluation
    (scipy's tau-b, equal to eq. 4 of Andriushchenko et al. 2023 when there are no ties). The p-value
    is scipy's (two-sided, exact for small tie-free samples).

    The confidence interval is a percentile bootstrap over models: ``n_boot`` resamples of the rows
    with replacement drawn by ``numpy.random.default_rng(seed)``, tau of each, and the
    ``(1 - confidence)/2`` and ``(1 + confidence)/2`` percentiles. Every group starts from a fresh
    generator seeded with ``seed``, so a group's interval does not depend on which other groups are
    computed. Resamples whose tau is undefined (one distinct model) are left out.

    Rows whose ``status`` (when the column exists) is not ``"ok"`` are excluded and counted in
    ``attrs["n_excluded"]``; rows with NaN in either column are dropped (counted in ``n_dropped``).

    Args:
        df: one row per model (e.g. ``sharpkit.experiments.store.load_results``).
        measure, evaluation: numeric columns of ``df``.
        groups: None, a column name or a list of column names (e.g. ``"control"`` or
            ``["arch", "dataset"]``); tau is then also computed within each group.
        n_boot: bootstrap resamples (0 for no interval).
        seed: seed of the bootstrap generator.
        confidence: level of the interval, in (0, 1).

    Returns:
        One row for all models (``group == "all"``) then one per group (sorted), columns ``group``,
        the group columns (None on the "all" row), ``n, tau, p_value, ci_low, ci_high, n_boot,
        n_dropped``.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"Expected `df` to be a pandas DataFrame, but got {type(df).__name__}.")
    _check_metric_columns(df, [measure], "measure")
    _check_metric_columns(df, [evaluation], "evaluation")
    check_positive("n_boot", n_boot, allow_zero=True, integer=True)
    if not (isinstance(confidence, float) and 0.0 < confidence < 1.0):
        raise ValueError(f"Expected argument `confidence` to be a float in (0, 1), but got {confidence!r}.")
    group_columns = [] if groups is None else [groups] if isinstance(groups, str) else list(groups)
    for column in group_columns:
        if column not in df.columns:
            raise ValueError(f"Expected `groups` to name columns of the frame, but got {column!r}; columns "
                             f"are {', '.join(map(repr, df.columns))}.")

    if "status" in df.columns:
        runs, excluded = ok_runs(df)
    else:
        runs, excluded = df, df.iloc[0:0]

    def summarise(label: str, keys: dict[str, object], part: pd.DataFrame) -> dict[str, object]:
        values = part[[measure, evaluation]].to_numpy(np.float64)
        finite = ~np.isnan(values).any(axis=1)
        x, y = values[finite, 0], values[finite, 1]
        tau, p_value = _tau(x, y)
        low, high = _bootstrap_tau(x, y, n_boot, seed, confidence)
        return {"group": label, **keys, "n": int(x.size), "tau": tau, "p_value": p_value,
                "ci_low": low, "ci_high": high, "n_boot": n_boot, "n_dropped": int((~finite).sum())}

    rows = [summarise("all", {c: None for c in group_columns}, runs)]
    if group_columns:
        for key, part in runs.groupby(group_columns, sort=True, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{c}={v}" for c, v in zip(group_columns, key))
            rows.append(summarise(label, dict(zip(group_columns, key)), part))
    out = pd.DataFrame(rows)
    out.attrs["n_excluded"] = int(len(excluded))
    out.attrs["measure"] = measure
    out.attrs["evaluation"] = evaluation
    return out


def kendall_tau_grid(df: pd.DataFrame, measures: Sequence[str], evaluations: Sequence[str], n_boot: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """:func:`kendall_tau` over all models for every (measure, evaluation) pair that has at least two
    models with both values; one row per pair with columns ``measure, evaluation, n, tau, p_value,
    ci_low, ci_high``. Pairs whose columns are missing from ``df`` are skipped."""
    rows = []
    for measure in measures:
        for evaluation in evaluations:
            if measure not in df.columns or evaluation not in df.columns:
                continue
            if df[[measure, evaluation]].notna().all(axis=1).sum() < 2:
                continue
            row = kendall_tau(df, measure, evaluation, n_boot=n_boot, seed=seed).iloc[0]
            rows.append({"measure": measure, "evaluation": evaluation,
                         **{k: row[k] for k in ("n", "tau", "p_value", "ci_low", "ci_high")}})
    return pd.DataFrame(rows, columns=["measure", "evaluation", "n", "tau", "p_value", "ci_low", "ci_high"])
