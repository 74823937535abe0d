"""sharpkit.analysis.stats against direct formulas and direct scipy computations on synthetic frames of runs."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from sharpkit.analysis.stats import (
    ALTERNATIVES,
    control_tests,
    kendall_tau,
    kendall_tau_grid,
    mean_sem,
    paired_wilcoxon,
    rank_biserial,
)
from sharpkit.run.controls import PAPER_CONTROLS

METRICS = ("test_accuracy", "test_ece", "corruption_accuracy", "prediction_disagreement",
           "fisher_rao_norm", "sam_sharpness", "relative_flatness", "generalization_gap")


def make_runs(seeds: int = 8, seed: int = 0) -> pd.DataFrame:
    """One row per (control, seed) of resnet18/digits, metrics shifted per control plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, control in enumerate(PAPER_CONTROLS):
        for s in range(seeds):
            row = {"run_id": f"{control}-{s}", "profile": "test", "arch": "resnet18", "dataset": "digits",
                   "control": control, "seed": s, "status": "ok", "lr": 0.001}
            for j, metric in enumerate(METRICS):
                row[metric] = 1.0 + 0.1 * k * (-1) ** j + rng.normal(0.0, 0.05)
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# mean_sem
# --------------------------------------------------------------------------------------------------
def test_mean_sem_hand_example():
    # mean 2.5; population variance ((1.5)^2 + (0.5)^2) * 2 / 4 = 1.25; SEM = sqrt(1.25) / 2
    result = mean_sem([1.0, 2.0, 3.0, 4.0])
    assert result.mean == pytest.approx(2.5)
    assert result.sem == pytest.approx(math.sqrt(1.25) / 2)
    assert result.n == 4
    # unbiased variance 5/3
    assert mean_sem([1.0, 2.0, 3.0, 4.0], ddof=1).sem == pytest.approx(math.sqrt(5 / 3) / 2)


def test_mean_sem_equals_the_authors_formula_and_drops_nan():
    values = np.random.default_rng(1).normal(size=10)
    result = mean_sem(values)
    assert result.mean == pytest.approx(np.mean(values))
    assert result.sem == pytest.approx(np.std(values) / math.sqrt(values.size))
    with_nan = mean_sem([1.0, math.nan, 3.0])
    assert (with_nan.mean, with_nan.n) == (2.0, 2)
    assert with_nan.sem == pytest.approx(1.0 / math.sqrt(2))


def test_mean_sem_degenerate_inputs():
    assert mean_sem([]).n == 0 and math.isnan(mean_sem([]).mean)
    single = mean_sem([0.7])
    assert single.mean == 0.7 and single.n == 1 and math.isnan(single.sem)
    assert mean_sem(v for v in (1.0, 3.0)).mean == 2.0  # generators accepted
    with pytest.raises(ValueError, match="ddof"):
        mean_sem([1.0, 2.0], ddof=-1)


# --------------------------------------------------------------------------------------------------
# rank-biserial and the paired Wilcoxon test
# --------------------------------------------------------------------------------------------------
def test_rank_biserial_hand_examples():
    # non-zero differences 1, -2, 3, 4 -> ranks 1, 2, 3, 4; W+ = 8, W- = 2; r = 6 / 10
    assert rank_biserial([1.0, -2.0, 3.0, 0.0, 4.0]) == pytest.approx(0.6)
    # tied |d|: ranks 1.5, 1.5, 3; W+ = 4.5, W- = 1.5; r = 3 / 6
    assert rank_biserial([1.0, -1.0, 2.0]) == pytest.approx(0.5)
    assert rank_biserial([2.0, 5.0]) == 1.0
    assert rank_biserial([-2.0, -5.0]) == -1.0
    assert math.isnan(rank_biserial([0.0, 0.0]))


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_paired_wilcoxon_equals_scipy(alternative):
    rng = np.random.default_rng(2)
    baseline = rng.normal(size=12)
    treatment = baseline + rng.normal(0.3, 0.5, size=12)
    result = paired_wilcoxon(treatment, baseline, alternative)
    reference = scipy.stats.wilcoxon(treatment, baseline, alternative=alternative)
    assert result.statistic == pytest.approx(float(reference.statistic))
    assert result.p_value == pytest.approx(float(reference.pvalue))
    d = treatment - baseline
    ranks = scipy.stats.rankdata(np.abs(d))
    assert result.rank_biserial == pytest.approx((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())
    assert result.n == 12


def test_paired_wilcoxon_drops_nan_pairs_and_handles_ties_at_zero():
    treatment = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.5])
    baseline = np.array([0.5, 2.0, 1.0, 3.0, np.nan, 5.0])
    result = paired_wilcoxon(treatment, baseline, "greater")
    keep = ~(np.isnan(treatment) | np.isnan(baseline))
    reference = scipy.stats.wilcoxon(treatment[keep], baseline[keep], alternative="greater")
    assert result.n == 4  # the zero difference counts as a pair; scipy discards it
    assert result.p_value == pytest.approx(float(reference.pvalue))
    assert result.rank_biserial == 1.0

    same = paired_wilcoxon([1.0, 2.0], [1.0, 2.0], "greater")
    assert same.p_value == 1.0 and math.isnan(same.rank_biserial)


def test_paired_wilcoxon_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        paired_wilcoxon([1.0, 2.0], [1.0], "greater")
    with pytest.raises(ValueError, match="alternative"):
        paired_wilcoxon([1.0, 2.0], [1.0, 3.0], "bigger")


# --------------------------------------------------------------------------------------------------
# control_tests
# --------------------------------------------------------------------------------------------------
def test_control_tests_equal_direct_scipy_with_by_correction():
    df = make_runs()
    # A diverged run with absurd values: it must be left out and counted, not tested.
    df.loc[(df["control"] == "baseline_sam") & (df["seed"] == 3), ["status", "test_ece"]] = ["diverged", 1e9]
    table = control_tests(df, "resnet18", "digits")
    assert table.attrs["n_excluded"] == 1
    assert list(table["control"].unique()) == [c for c in PAPER_CONTROLS if c != "baseline"]
    assert set(table["metric"]) == set(METRICS)

    ok = df[df["status"] == "ok"]
    base = ok[ok["control"] == "baseline"].set_index("seed")
    families = {"safety": ["test_ece", "corruption_accuracy", "prediction_disagreement"],
                "sharpness": ["fisher_rao_norm", "sam_sharpness", "relative_flatness"]}
    for control in PAPER_CONTROLS:
        if control == "baseline":
            continue
        treated = ok[ok["control"] == control].set_index("seed")
        seeds = sorted(set(treated.index) & set(base.index))
        rows = table[table["control"] == control].set_index("metric")
        expected_p = {}
        for metric in METRICS:
            x, y = treated.loc[seeds, metric].to_numpy(), base.loc[seeds, metric].to_numpy()
            reference = scipy.stats.wilcoxon(x, y, alternative=ALTERNATIVES[metric])
            expected_p[metric] = float(reference.pvalue)
            assert rows.loc[metric, "p_value"] == pytest.approx(expected_p[metric])
            assert rows.loc[metric, "statistic"] == pytest.approx(float(reference.statistic))
            assert rows.loc[metric, "n"] == len(seeds)
            assert rows.loc[metric, "alternative"] == ALTERNATIVES[metric]
        for members in families.values():
            adjusted = scipy.stats.false_discovery_control([expected_p[m] for m in members], method="by")
            for metric, p in zip(members, adjusted):
                assert rows.loc[metric, "p_adjusted"] == pytest.approx(p)
        for metric in ("test_accuracy", "generalization_gap"):  # uncorrected, as the authors did
            assert rows.loc[metric, "p_adjusted"] == rows.loc[metric, "p_value"]
        assert (rows["n_excluded"] == (1 if control == "baseline_sam" else 0)).all()
    assert (table.loc[table["control"] == "baseline_sam", "n"] == 7).all()


def test_control_tests_selected_metrics_and_bad_input():
    df = make_runs(seeds=6)
    table = control_tests(df, "resnet18", "digits", metrics=["sam_sharpness", "test_accuracy"])
    assert set(table["metric"]) == {"sam_sharpness", "test_accuracy"}
    # A family of one: BY leaves a single p-value unchanged.
    sharp = table[table["metric"] == "sam_sharpness"]
    assert np.allclose(sharp["p_adjusted"], sharp["p_value"])
    with pytest.raises(ValueError, match="available"):
        control_tests(df, "vgg19", "digits")
    with pytest.raises(ValueError, match="metrics"):
        control_tests(df, "resnet18", "digits", metrics=["loss"])
    twice = pd.concat([df, df.assign(profile="other")])
    with pytest.raises(ValueError, match="several runs"):
        control_tests(twice, "resnet18", "digits")
    with pytest.raises(ValueError, match="status"):
        control_tests(df.drop(columns="status"), "resnet18", "digits")


# --------------------------------------------------------------------------------------------------
# kendall_tau
# --------------------------------------------------------------------------------------------------
def test_kendall_tau_equals_scipy_overall_and_within_groups():
    df = make_runs(seeds=6, seed=3)
    df.loc[0, "sam_sharpness"] = np.nan  # dropped
    df.loc[1, "status"] = "diverged"  # excluded
    table = kendall_tau(df, "sam_sharpness", "test_ece", groups="control", n_boot=50)
    assert table.attrs["n_excluded"] == 1
    ok = df[df["status"] == "ok"].dropna(subset=["sam_sharpness", "test_ece"])
    overall = table.iloc[0]
    assert overall["group"] == "all" and overall["n"] == len(ok) and overall["n_dropped"] == 1
    reference = scipy.stats.kendalltau(ok["sam_sharpness"], ok["test_ece"])
    assert overall["tau"] == pytest.approx(float(reference.statistic))
    assert overall["p_value"] == pytest.approx(float(reference.pvalue))
    groups = table.iloc[1:].set_index("control")
    assert sorted(groups.index) == sorted(PAPER_CONTROLS)
    for control, part in ok.groupby("control"):
        expected = scipy.stats.kendalltau(part["sam_sharpness"], part["test_ece"]).statistic
        assert groups.loc[control, "tau"] == pytest.approx(float(expected))
        assert groups.loc[control, "n"] == len(part)


def test_kendall_tau_bootstrap_is_the_documented_percentile_bootstrap():
    rng = np.random.default_rng(4)
    x = rng.normal(size=15)
    frame = pd.DataFrame({"measure": x, "evaluation": x + rng.normal(0, 0.5, size=15)})
    table = kendall_tau(frame, "measure", "evaluation", n_boot=200, seed=7)
    boot = np.random.default_rng(7)
    taus = []
    for _ in range(200):
        idx = boot.integers(0, 15, size=15)
        taus.append(scipy.stats.kendalltau(frame["measure"].to_numpy()[idx],
                                           frame["evaluation"].to_numpy()[idx]).statistic)
    low, high = np.percentile(np.array(taus)[~np.isnan(taus)], [2.5, 97.5])
    assert table.loc[0, "ci_low"] == pytest.approx(low)
    assert table.loc[0, "ci_high"] == pytest.approx(high)


def test_kendall_tau_bootstrap_is_deterministic_and_covers_a_clear_trend():
    rng = np.random.default_rng(5)
    x = np.arange(30, dtype=float)
    frame = pd.DataFrame({"arch": ["a"] * 15 + ["b"] * 15, "dataset": "digits",
                          "m": x, "e": 2 * x + rng.normal(0, 3, size=30)})
    first = kendall_tau(frame, "m", "e", groups=["arch", "dataset"], n_boot=300, seed=11)
    again = kendall_tau(frame, "m", "e", groups=["arch", "dataset"], n_boot=300, seed=11)
    other = kendall_tau(frame, "m", "e", groups=["arch", "dataset"], n_boot=300, seed=12)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["ci_low"], other["ci_low"])
    assert list(first["group"]) == ["all", "arch=a, dataset=digits", "arch=b, dataset=digits"]
    for _, row in first.iterrows():
        assert row["tau"] > 0.5
        assert row["ci_low"] <= row["tau"] <= row["ci_high"]
        assert row["ci_high"] <= 1.0


def test_kendall_tau_bad_input():
    frame = pd.DataFrame({"m": [1.0, 2.0, 3.0], "e": [3.0, 1.0, 2.0]})
    with pytest.raises(ValueError, match="measure"):
        kendall_tau(frame, "sharpness", "e")
    with pytest.raises(ValueError, match="groups"):
        kendall_tau(frame, "m", "e", groups="control")
    with pytest.raises(ValueError, match="n_boot"):
        kendall_tau(frame, "m", "e", n_boot=-1)
    tiny = kendall_tau(frame.iloc[:1], "m", "e", n_boot=10)
    assert tiny.loc[0, "n"] == 1 and math.isnan(tiny.loc[0, "tau"]) and math.isnan(tiny.loc[0, "ci_low"])


def test_kendall_tau_grid_equals_scipy_for_every_pair_and_skips_missing_columns():
    import scipy.stats

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=12), "b": rng.normal(size=12), "e": rng.normal(size=12),
                          "status": ["ok"] * 11 + ["diverged"]})
    frame.loc[0, "b"] = np.nan
    grid = kendall_tau_grid(frame, ["a", "b", "missing"], ["e"], n_boot=50)
    assert list(grid["measure"]) == ["a", "b"]
    ok = frame[frame["status"] == "ok"]
    for _, row in grid.iterrows():
        part = ok[[row["measure"], "e"]].dropna()
        expected = scipy.stats.kendalltau(part[row["measure"]], part["e"])
        assert row["tau"] == pytest.approx(expected.statistic, abs=1e-12) and row["n"] == len(part)
        assert row["ci_low"] <= row["tau"] <= row["ci_high"]
