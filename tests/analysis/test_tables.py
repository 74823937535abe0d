"""sharpkit.analysis.tables: the paper-layout tables from synthetic runs against an independent recomputation,
bold cells, excluded runs, formats and labels."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sharpkit.analysis.claims import claims
from sharpkit.analysis.measures import ERROR_EVALUATIONS, with_errors
from sharpkit.analysis.tables import (
    DISPLAY_LABELS,
    SHARPNESS_METRICS,
    TABLE_METRICS,
    format_cell,
    results_table,
)
from sharpkit.run.controls import CONTROLS, PAPER_CONTROLS

from ._runs import SEEDS, SHOWN, make_runs


def test_format_cell():
    assert format_cell("test_ece", 0.0141, 0.00049) == "0.014 ± 0.000"
    assert format_cell("sam_sharpness", 1.893, 0.07702) == "1.893E+00 ± 7.702E-02"
    assert format_cell("test_accuracy", 0.5, math.nan) == "0.500"
    assert format_cell("test_accuracy", math.nan, math.nan) == ""


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


def test_every_measure_error_and_control_has_a_display_label():
    from sharpkit.run.evaluate import BEYOND_METRICS

    assert set(TABLE_METRICS) | set(BEYOND_METRICS) | set(ERROR_EVALUATIONS) | set(CONTROLS) <= set(DISPLAY_LABELS)
    errors = with_errors(pd.DataFrame({"test_accuracy": [0.5], "corruption_accuracy": [50.0], "test_ece": [0.1],
                                       "prediction_disagreement": [0.2]}))
    assert set(ERROR_EVALUATIONS) <= set(errors.columns)  # the grids' evaluations all exist after with_errors
