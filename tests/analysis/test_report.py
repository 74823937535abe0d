"""sharpkit.analysis.report: the paper's tables from the shipped CSV, tables from synthetic runs against an
independent recomputation, bold cells, excluded runs, and the paper's findings."""
from __future__ import annotations

import csv
import math
from importlib import resources

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from sharpkit.analysis.report import (
    EVALUATION_METRICS,
    SHARPNESS_METRICS,
    TABLE_METRICS,
    accuracy_levels,
    asymmetry_curves,
    claims,
    format_cell,
    paper_claims,
    paper_table,
    paper_table_for,
    paper_tables_index,
    results_table,
    with_errors,
)
from sharpkit.run.controls import CONTROLS, PAPER_CONTROLS

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


# --------------------------------------------------------------------------------------------------
# The paper's tables
# --------------------------------------------------------------------------------------------------
def read_csv_rows() -> list[dict[str, str]]:
    with resources.files("sharpkit").joinpath("resources", "reported_tables.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("n", range(1, 9))
def test_paper_table_reproduces_every_csv_value(n):
    rows = [r for r in read_csv_rows() if int(r["table"]) == n]
    table = paper_table(n)
    assert len(table.cells) == len(rows)
    cells = table.cells.set_index(["control", "metric"])
    for r in rows:
        cell = cells.loc[(r["control"], r["metric"])]
        assert cell["mean"] == float(r["mean"])
        assert cell["sem"] == float(r["sem"])
        assert bool(cell["bold"]) == (r["bold"] == "1")
    assert table.controls == PAPER_CONTROLS
    assert table.title.startswith(f"Table {n}: ")
    # The printed bold cells are the best printed means, so no table carries a "bold" note.
    assert not any("bold" in note for note in table.notes)


def test_paper_table_titles_formatting_and_duplicate_flag():
    one = paper_table(1)
    assert one.title == "Table 1: ResNet-18 trained on CIFAR-10"
    frame = one.to_frame()
    # Strings as printed in the paper's Table 1.
    assert frame.loc["Baseline", "Test Accuracy"] == "0.720 ± 0.002"
    assert frame.loc["Baseline", "SAM Sharpness"] == "4.052E-06 ± 2.173E-07"
    assert frame.loc["Augmentation", "Relative Flatness"] == "2903.220 ± 89.243"
    assert frame.loc["Augmentation + SAM", "Fisher Rao Norm"] == "1.529 ± 0.009"
    assert paper_table(6).title == "Table 6: VGG-19BN trained on TinyImageNet"
    assert any("repeats Table 3" in note for note in paper_table(6).notes)
    assert all(not paper_table(n).notes for n in (1, 2, 3, 4, 5, 7, 8))
    # TinyImageNet tables print no corruption accuracy and no relative flatness.
    assert paper_table(3).metrics == ("test_accuracy", "test_ece", "prediction_disagreement",
                                      "fisher_rao_norm", "sam_sharpness")
    with pytest.raises(ValueError, match="Tables 1-8"):
        paper_table(9)


def test_paper_tables_index_and_lookup_by_registry_name():
    index = paper_tables_index()
    assert index == {1: ("resnet18", "cifar10"), 2: ("resnet18", "cifar100"),
                     3: ("resnet18_tin", "tinyimagenet"), 4: ("vgg19", "cifar10"),
                     5: ("vgg19", "cifar100"), 6: ("vgg19bn_tin", "tinyimagenet"),
                     7: ("vit", "cifar10"), 8: ("vit", "cifar100")}
    assert paper_table_for("vgg19bn_tin", "tinyimagenet").title.startswith("Table 6")
    assert paper_table_for("vgg19bn", "tinyimagenet").title.startswith("Table 6")  # the paper's name
    assert paper_table_for("resnet18", "tinyimagenet").title.startswith("Table 3")
    assert paper_table_for("vit", "cifar100").title.startswith("Table 8")
    assert paper_table_for("resnet18", "digits") is None
    assert paper_table_for("vgg19", "tinyimagenet") is None


def test_format_cell():
    assert format_cell("test_ece", 0.0141, 0.00049) == "0.014 ± 0.000"
    assert format_cell("sam_sharpness", 1.893, 0.07702) == "1.893E+00 ± 7.702E-02"
    assert format_cell("test_accuracy", 0.5, math.nan) == "0.500"
    assert format_cell("test_accuracy", math.nan, math.nan) == ""


# --------------------------------------------------------------------------------------------------
# Tables from runs
# --------------------------------------------------------------------------------------------------
def test_results_table_equals_independent_recomputation_and_excludes_diverged_runs():
    df = make_runs(noise=0.05)
    diverged = (df["control"] == "augmentation") & (df["seed"] == 2)
    df.loc[diverged, "status"] = "diverged"
    df.loc[diverged, list(SHOWN)] = 1e6  # would wreck every mean if it were averaged
    df.loc[(df["control"] == "baseline") & (df["seed"] == 4), "sam_sharpness"] = np.nan
    table = results_table(df, "vgg19", "digits")

    assert table.controls == PAPER_CONTROLS and table.metrics == SHOWN
    assert set(SHOWN) < set(TABLE_METRICS) and TABLE_METRICS[0] == "train_accuracy"
    assert table.n_excluded["augmentation"] == 1 and sum(table.n_excluded.values()) == 1
    cells = table.cells.set_index(["control", "metric"])
    for control in PAPER_CONTROLS:
        for metric in SHOWN:
            values = [row[metric] for _, row in df.iterrows()
                      if row["control"] == control and row["status"] == "ok" and not np.isnan(row[metric])]
            cell = cells.loc[(control, metric)]
            assert cell["n"] == len(values)
            assert cell["mean"] == pytest.approx(np.mean(values), rel=1e-12)
            assert cell["sem"] == pytest.approx(np.std(values) / math.sqrt(len(values)), rel=1e-12)
    assert cells.loc[("augmentation", "test_accuracy"), "n"] == SEEDS - 1
    assert cells.loc[("baseline", "sam_sharpness"), "n"] == SEEDS - 1
    runs = table.n_runs()
    assert runs.loc["Augmentation", "Test Accuracy"] == SEEDS - 1
    assert runs.loc["Baseline + SAM", "SAM Sharpness"] == SEEDS

    text = table.to_text()
    assert "(+1 excluded)" in text and "Excluded runs" in text and "Augmentation: 1" in text
    assert "5-6" in text  # Baseline: 6 seeds for most metrics, 5 for SAM sharpness


def test_results_table_bold_marks_the_best_evaluation_cells():
    table = results_table(make_runs(), "vgg19", "digits")
    bold = table.cells[table.cells["bold"]]
    assert set(zip(bold["metric"], bold["control"])) == {
        ("test_accuracy", "augmentation_sam"),  # highest
        ("test_ece", "weight_decay"),  # lowest
        ("corruption_accuracy", "weight_decay_sam"),  # highest
        ("prediction_disagreement", "augmentation_sam"),  # lowest
    }
    assert not table.cells.loc[table.cells["metric"].isin(SHARPNESS_METRICS), "bold"].any()


def test_results_table_bolds_every_tied_best():
    df = make_runs()
    for control in ("baseline", "weight_decay"):
        df.loc[df["control"] == control, "test_ece"] = 0.01 * (1 + df.loc[df["control"] == control, "seed"])
    table = results_table(df, "vgg19", "digits")
    ece = table.cells[table.cells["metric"] == "test_ece"]
    assert set(ece.loc[ece["bold"], "control"]) == {"baseline", "weight_decay"}


def test_results_table_omits_missing_controls_and_metrics_but_shows_all_diverged_controls():
    df = make_runs()
    df = df[df["control"] != "weight_decay_sam"].copy()
    df["relative_flatness"] = np.nan
    df.loc[df["control"] == "baseline_sam", "status"] = "diverged"
    table = results_table(df, "vgg19", "digits", title="Smoke")
    assert table.title == "Smoke"
    assert "weight_decay_sam" not in table.controls
    assert "relative_flatness" not in table.metrics
    assert "baseline_sam" in table.controls and table.n_excluded["baseline_sam"] == SEEDS
    frame = table.to_frame()
    assert (frame.loc["Baseline + SAM"] == "").all()
    assert list(frame.index) == ["Baseline", "Baseline + SAM", "Augmentation", "Augmentation + SAM",
                                 "Weight Decay"]


def test_results_table_renders_html_and_text():
    table = results_table(make_runs(), "vgg19", "digits")
    assert table.title == "VGG-19 trained on Digits"
    page = table.to_html()
    assert page.startswith('<table class="sharpkit-table">') and page.endswith("</table>")
    assert "<caption>VGG-19 trained on Digits</caption>" in page
    assert page.count("<b>") == int(table.cells["bold"].sum()) == 4
    assert page.count("<tr><th scope=\"row\">") == 6
    assert table._repr_html_() == page
    text = table.to_text()
    for control in (CONTROLS[c] for c in PAPER_CONTROLS):
        assert control.label in text
    for metric in ("Test Accuracy", "Test ECE", "Relative Flatness", "Runs"):
        assert metric in text
    assert text.count(" *") == 4 and str(table) == text
    assert len({len(line) for line in text.splitlines()[1:4]}) <= 2  # rule and header aligned


def test_results_table_bad_input():
    df = make_runs()
    with pytest.raises(ValueError, match="available"):
        results_table(df, "vit", "digits")
    with pytest.raises(ValueError, match="several runs"):
        results_table(pd.concat([df, df]), "vgg19", "digits")
    with pytest.raises(ValueError, match="empty"):
        results_table(pd.DataFrame(), "vgg19", "digits")
    with pytest.raises(ValueError, match="empty"):
        claims(pd.DataFrame())


# --------------------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------------------
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


def test_accuracy_levels_against_the_papers_table():
    rows = []
    for seed in (0, 1):
        for control, acc in (("baseline", 0.30), ("augmentation", 0.40), ("baseline_sam", 0.35)):
            rows.append({"arch": "resnet18", "dataset": "npz:../shared/data/cifar10-jpeg-20k.npz", "control": control,
                         "seed": seed, "status": "ok", "test_accuracy": acc + 0.02 * seed})
    rows.append({"arch": "resnet18", "dataset": "npz:../shared/data/cifar10-jpeg-20k.npz", "control": "augmentation",
                 "seed": 2, "status": "diverged", "test_accuracy": 0.99})  # excluded
    rows.append({"arch": "vit", "dataset": "digits", "control": "augmentation", "seed": 0, "status": "ok",
                 "test_accuracy": 0.5})  # no baseline: no row
    levels = accuracy_levels(pd.DataFrame(rows))
    assert len(levels) == 1
    row = levels.iloc[0]
    paper = {r["control"]: float(r["mean"]) for r in read_csv_rows()
             if r["table"] == "1" and r["metric"] == "test_accuracy"}
    assert row["paper_dataset"] == "cifar10" and row["best_control"] == "augmentation"
    assert row["baseline"] == pytest.approx(0.31) and row["best"] == pytest.approx(0.41)
    assert row["paper_baseline"] == paper["baseline"] and row["paper_best"] == max(paper.values())
    assert row["paper_best_control"] == max(paper, key=paper.get)
    assert row["relative_level"] == pytest.approx(0.31 / paper["baseline"])
    with pytest.raises(ValueError, match="test_accuracy"):
        accuracy_levels(pd.DataFrame(rows).drop(columns="test_accuracy"))


def test_with_errors_orients_every_evaluation_as_lower_is_better():
    frame = pd.DataFrame({"test_accuracy": [0.9, 0.5], "corruption_accuracy": [70.0, 40.0]})
    out = with_errors(frame)
    np.testing.assert_allclose(out["test_error"], [0.1, 0.5])
    np.testing.assert_allclose(out["corruption_error"], [30.0, 60.0])
    assert "test_accuracy" in out and "test_error" not in frame  # the input is left alone
    assert "corruption_error" not in with_errors(pd.DataFrame({"test_accuracy": [0.5]}))


def test_asymmetry_curves_groups_the_stored_curves_by_control(tmp_path):
    import json

    stored = {"r1": ("baseline", [-1.0, 0.0, 1.0], [0.3, 0.0, 0.1]), "r2": ("fam", [-1.0, 0.0, 1.0], [0.2, 0.0, 0.2]),
              "r3": ("baseline", [-1.0, 0.0, 1.0], [0.5, 0.0, 0.4]), "r4": ("fam", None, None)}
    for run_id, (_control, alphas, losses) in stored.items():
        details = {} if alphas is None else {"asymmetry_factor": {"curve_alphas": alphas, "curve_losses": losses}}
        folder = tmp_path / "prof" / "runs" / run_id
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"evaluation": {"details": details}}))
    runs = pd.DataFrame({"run_id": list(stored), "control": [v[0] for v in stored.values()]})
    curves = asymmetry_curves(tmp_path, "prof", runs)
    assert curves == {"baseline": [(stored["r1"][1], stored["r1"][2]), (stored["r3"][1], stored["r3"][2])],
                      "fam": [(stored["r2"][1], stored["r2"][2])]}  # r4 was measured without it
    with pytest.raises(ValueError, match="run_id"):
        asymmetry_curves(tmp_path, "prof", pd.DataFrame({"control": ["fam"]}))


def test_every_measure_error_and_control_has_a_display_label():
    from sharpkit.analysis.report import DISPLAY_LABELS, ERROR_EVALUATIONS
    from sharpkit.run.evaluate import BEYOND_METRICS

    assert set(TABLE_METRICS) | set(BEYOND_METRICS) | set(ERROR_EVALUATIONS) | set(CONTROLS) <= set(DISPLAY_LABELS)
    errors = with_errors(pd.DataFrame({"test_accuracy": [0.5], "corruption_accuracy": [50.0], "test_ece": [0.1],
                                       "prediction_disagreement": [0.2]}))
    assert set(ERROR_EVALUATIONS) <= set(errors.columns)  # the grids' evaluations all exist after with_errors


def test_convergence_counts_runs_below_the_target_and_never_drops_excluded_runs():
    from sharpkit.analysis.report import convergence, convergence_sentences

    df = make_runs()
    df["train_accuracy"] = 1.0
    df.loc[(df["control"] == "weight_decay_sam") & (df["seed"] == 3), "train_accuracy"] = 0.95
    df.loc[df["control"].str.startswith("augmentation"), "train_accuracy"] = 0.7
    df.loc[(df["control"] == "baseline") & (df["seed"] == 0), "status"] = "diverged"
    table = convergence(df).set_index("control")
    assert list(table.index) == list(PAPER_CONTROLS)
    assert table.loc["weight_decay_sam", "below"] == 1 and table.loc["weight_decay_sam", "min"] == 0.95
    assert table.loc["baseline", "n"] == SEEDS - 1 and table.loc["baseline", "excluded"] == 1
    assert table.loc["augmentation", "augmented"] and table.loc["augmentation", "below"] == SEEDS
    (sentence,) = convergence_sentences(df)
    assert "not at a minimum: 1 of 23 runs below 0.99" in sentence and "Weight Decay + SAM" in sentence
    assert "0.700-0.700" in sentence and "1 runs excluded" in sentence
    df.loc[df["train_accuracy"] == 0.95, "train_accuracy"] = 0.999
    (sentence,) = convergence_sentences(df)
    assert "are at a minimum (eval-mode training accuracy >= 0.999" in sentence
