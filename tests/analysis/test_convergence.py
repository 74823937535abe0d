"""sharpkit.analysis.convergence: which runs sit at a minimum of their training data."""
from __future__ import annotations

from sharpkit.analysis.convergence import convergence, convergence_sentences
from sharpkit.run.controls import PAPER_CONTROLS

from ._runs import SEEDS, make_runs


def test_convergence_counts_runs_below_the_target_and_never_drops_excluded_runs():

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
