"""sharpkit.analysis.claims: the paper's findings on a constructed frame (scipy as the reference test) and from
the paper's printed means."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import scipy.stats

from sharpkit.analysis.claims import claims, paper_claims
from sharpkit.analysis.tables import (
    EVALUATION_METRICS,
)
from sharpkit.run.controls import PAPER_CONTROLS

from ._runs import SEEDS, make_runs


def _claim(table: pd.DataFrame, claim: str, metric: str, control: str | None = None,
           evaluation: str | None = None) -> pd.Series:
    rows = table[(table["claim"] == claim) & (table["metric"] == metric)]
    if control is not None:
        rows = rows[rows["control"] == control]
    if evaluation is not None:
        rows = rows[rows["evaluation"] == evaluation]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_claims_on_a_constructed_frame():
    df = make_runs()
    df.loc[(df["control"] == "weight_decay") & (df["seed"] == 0), "status"] = "diverged"
    found = claims(df)
    assert set(found["arch"]) == {"vgg19"} and (found["n_excluded"] == 1).all()
    # (1) Baseline is flattest on Fisher-Rao and relative flatness, not on SAM sharpness (B+SAM lower).
    assert _claim(found, "baseline_flattest", "fisher_rao_norm")["holds"]
    assert _claim(found, "baseline_flattest", "relative_flatness")["holds"]
    sam = _claim(found, "baseline_flattest", "sam_sharpness")
    assert not sam["holds"] and sam["reference"] == "baseline_sam"
    # (2) SAM raises every measure except SAM sharpness after Baseline and RF after Augmentation.
    failing = {("sam_sharpness", "baseline_sam"), ("relative_flatness", "augmentation_sam")}
    raises = found[found["claim"] == "sam_raises"]
    assert len(raises) == 9
    for _, row in raises.iterrows():
        assert row["holds"] == ((row["metric"], row["control"]) not in failing), row["description"]
    # (3) Best on accuracy/disagreement: Aug+SAM; on ECE: Weight Decay; on corruption: WD+SAM.
    best = found[found["claim"] == "best_is_sharper"]
    assert dict(zip(best["evaluation"], best["control"])) == {
        "test_accuracy": "augmentation_sam", "test_ece": "weight_decay",
        "corruption_accuracy": "weight_decay_sam", "prediction_disagreement": "augmentation_sam"}
    assert best["holds"].all()  # every best control is sharper than Baseline on every measure

    # p-values: the paired one-sided Wilcoxon over seeds, computed here directly.
    ok = df[df["status"] == "ok"]
    row = _claim(found, "sam_raises", "fisher_rao_norm", control="augmentation_sam")
    x = ok[ok["control"] == "augmentation_sam"].sort_values("seed")["fisher_rao_norm"]
    y = ok[ok["control"] == "augmentation"].sort_values("seed")["fisher_rao_norm"]
    assert row["p_value"] == pytest.approx(scipy.stats.wilcoxon(x.to_numpy(), y.to_numpy(),
                                                                alternative="greater").pvalue)
    assert row["effect_size"] == 1.0 and row["n"] == SEEDS
    assert row["value"] == pytest.approx(x.mean()) and row["reference_value"] == pytest.approx(y.mean())
    ece = _claim(found, "best_is_sharper", "sam_sharpness", evaluation="test_ece")
    assert ece["n"] == SEEDS - 1  # weight_decay seed 0 diverged
    assert ece["baseline_value"] == pytest.approx(ok[ok["control"] == "baseline"]["sam_sharpness"].mean())
    flat = _claim(found, "baseline_flattest", "fisher_rao_norm")
    base = ok[ok["control"] == "baseline"][["seed", "fisher_rao_norm"]]
    pairs = []
    for control in PAPER_CONTROLS:
        if control != "baseline":
            both = ok[ok["control"] == control][["seed", "fisher_rao_norm"]].merge(base, on="seed")
            both = both.sort_values("seed")
            pairs.append(scipy.stats.wilcoxon(both["fisher_rao_norm_x"], both["fisher_rao_norm_y"],
                                              alternative="greater").pvalue)
    assert flat["p_value"] == pytest.approx(max(pairs))  # intersection-union test


def test_claims_when_baseline_is_best():
    df = make_runs()
    df.loc[df["control"] == "baseline", "corruption_accuracy"] = 99.0
    row = _claim(claims(df), "best_is_sharper", "fisher_rao_norm", evaluation="corruption_accuracy")
    assert row["control"] == "baseline" and not row["holds"] and math.isnan(row["p_value"])


def test_paper_claims_from_printed_means():
    found = paper_claims()
    assert 6 not in set(found["table"])  # Table 6 repeats Table 3
    assert 6 in set(paper_claims(include_duplicates=True)["table"])
    assert found["p_value"].isna().all() and (found["n"] == 10).all()

    def one(table, claim, metric, **kw):
        return _claim(found[found["table"] == table], claim, metric, **kw)

    # Table 1: "SAM increases the sharpness values for all sharpness metrics in all conditions with the
    # only exception being Augmentation + SAM for SAM Sharpness".
    table1 = found[(found["table"] == 1) & (found["claim"] == "sam_raises")]
    assert {(r["metric"], r["control"]) for _, r in table1.iterrows() if not r["holds"]} == {
        ("sam_sharpness", "augmentation_sam")}
    # Table 2: Baseline + SAM (1.031E-03) is flatter than Baseline (1.762E-03) on SAM sharpness.
    assert not one(2, "baseline_flattest", "sam_sharpness")["holds"]
    assert one(1, "baseline_flattest", "fisher_rao_norm")["holds"]
    # Table 5: Weight Decay has the lowest ECE (0.138) and is sharper than Baseline.
    row = one(5, "best_is_sharper", "relative_flatness", evaluation="test_ece")
    assert row["control"] == "weight_decay" and row["holds"]
    assert (row["value"], row["reference_value"]) == (45.728, 8.384)
    # TinyImageNet (Table 3): no relative flatness, no corruption accuracy.
    table3 = found[found["table"] == 3]
    assert "relative_flatness" not in set(table3["metric"])
    assert "corruption_accuracy" not in set(table3["evaluation"].dropna())
    assert set(found["evaluation"].dropna()) <= set(EVALUATION_METRICS)
