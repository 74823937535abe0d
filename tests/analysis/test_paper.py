"""sharpkit.analysis.paper: the paper's tables from the shipped CSV, value for value, and our accuracy against
them."""
from __future__ import annotations

import pandas as pd
import pytest

from sharpkit.analysis.paper import accuracy_levels, paper_table, paper_table_for, paper_tables_index
from sharpkit.run.controls import PAPER_CONTROLS

from ._runs import read_csv_rows


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
