"""sharpkit.analysis.book: store discovery from the layout, the banners and boxes of the pages, the report's
and overview's tables, and the computed readings, on constructed frames and folders."""
from __future__ import annotations

import json
import re
import urllib.parse

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sharpkit.analysis import book  # noqa: E402
from sharpkit.analysis.report import paper_table_for  # noqa: E402

CONTROLS = ("baseline", "baseline_sam", "augmentation", "augmentation_sam", "weight_decay", "weight_decay_sam")


def write_store(root, profile, controls=CONTROLS, runs=2, seeds=(0, 1)):
    folder = root / profile
    (folder / "runs").mkdir(parents=True)
    definition = {"name": profile, "controls": list(controls), "seeds": list(seeds),
                  "experiments": [{"arch": "vgg19", "dataset": "digits", "evaluation": {"beyond_points": 64}}]}
    (folder / "sweep.json").write_text(json.dumps({"profile": definition, "sweeps": []}))
    for k in range(runs):
        (folder / "runs" / f"run{k}").mkdir()
        (folder / "runs" / f"run{k}" / "result.json").write_text("{}")


def test_store_discovery_reads_the_layout(tmp_path):
    write_store(tmp_path, "b-profile")
    write_store(tmp_path, "a-profile")
    write_store(tmp_path, "extra", controls=CONTROLS + ("fam",))
    write_store(tmp_path, "empty", runs=0)
    assert book.has_runs(tmp_path, "a-profile") and not book.has_runs(tmp_path, "empty")
    assert not book.has_runs(tmp_path, "absent")
    assert book.stored_profiles(tmp_path) == ["a-profile", "b-profile"]
    assert book.stored_profiles(tmp_path, first="b-profile") == ["b-profile", "a-profile"]
    assert book.stored_profiles(tmp_path, paper_design=False) == ["a-profile", "b-profile", "extra"]
    assert book.planned_runs(tmp_path, "a-profile") == 1 * 6 * 2 and book.planned_runs(tmp_path, "absent") is None
    assert book.beyond_settings(tmp_path, "extra") == {"beyond_points": 64}
    empty = book.load_runs(tmp_path, "absent")
    assert empty.empty and {"arch", "dataset", "control", "seed", "status"} <= set(empty.columns)
    assert book.load_sweep(tmp_path, "absent")["sweeps"] == []


def make_runs(arch="resnet18", dataset="npz:../shared/data/cifar10-jpeg-20k.npz", seeds=3, fit=0.4):
    rng = np.random.default_rng(0)
    rows = []
    for control in CONTROLS:
        for s in range(seeds):
            rows.append({"run_id": f"{control}{s}", "arch": arch, "dataset": dataset, "control": control, "seed": s,
                         "status": "ok", "epochs": 10, "train_subset": 2500, "model_size": '{"width": 8}',
                         "train_accuracy": fit if "augmentation" not in control else 0.3,
                         "test_accuracy": 0.3 + 0.01 * rng.standard_normal() + 0.05 * ("augmentation" in control),
                         "test_ece": 0.1, "fisher_rao_norm": 1 + rng.random(),
                         "sam_sharpness": 1e-5 * (1 + rng.random()),
                         "relative_flatness": 10 + rng.random()})
    return pd.DataFrame(rows)


def test_scale_banner_states_size_seeds_accuracy_against_the_paper_and_the_fit():
    text = str(book.scale_banner(make_runs(), "cifar10-mini", planned=90))
    assert "Scale: CIFAR-10, early training (profile cifar10-mini, 18 of 90 planned runs)" in text
    assert "ResNet-18 on CIFAR-10 (20k JPEG copy): 2500 training images, 10 epochs, width 8, 3 seeds, 18 runs" in text
    paper = paper_table_for("resnet18", "cifar10").cells
    theirs = paper[(paper["control"] == "baseline") & (paper["metric"] == "test_accuracy")]["mean"].iloc[0]
    assert f"(the paper's ResNet-18 on CIFAR-10: {theirs:.3f})" in text
    assert "training accuracy 0.400-0.400 without augmentation: early training" in text
    assert "No stored runs" in str(book.scale_banner(make_runs().iloc[0:0], "x"))


def test_no_data_box_explains_why_and_offers_only_the_tables_block():
    box = book.no_data_box("resnet18", "cifar100", "results", "cifar10-mini")
    text = str(box)
    assert "cannot be downloaded" in text and "CIFAR-100" in text
    assert "sharpkit sweep --profile-file paper-table-2.json --results results --data-root DATA" in text
    assert "60 runs" in text
    href = re.search(r'href="data:application/json;charset=utf-8,([^"]+)"', box._repr_html_()).group(1)
    block = json.loads(urllib.parse.unquote(href))
    assert block["name"] == "paper" and [(e["arch"], e["dataset"]) for e in block["experiments"]] == [
        ("resnet18", "cifar100")]


def test_table_parts_split_evaluations_and_sharpness_each_with_a_csv():
    runs = make_runs()
    ours = book.our_table(runs, "resnet18", runs["dataset"].iloc[0], "cifar10-mini")
    parts = book.table_parts(ours, "table-1-ours")
    assert [type(p).__name__ for p in parts] == ["ResultsTable", "Html", "ResultsTable", "Html"]
    assert parts[0].metrics == ("train_accuracy", "test_accuracy", "test_ece")
    assert parts[2].metrics == ("fisher_rao_norm", "sam_sharpness", "relative_flatness")
    assert parts[0].title.endswith(": evaluations") and 'download="table-1-ours-sharpness.csv"' in parts[3].html
    assert ours.title == "Ours (CIFAR-10, early training): ResNet-18 on CIFAR-10 (20k JPEG copy)"
    assert "stands in" in book.stand_in_note("digits") and book.stand_in_note("cifar10") is None


def test_tau_reading_counts_intervals_and_names_the_strongest():
    grid = pd.DataFrame({"measure": ["sam_sharpness", "fisher_rao_norm"], "evaluation": ["test_error"] * 2,
                         "n": [30, 30], "tau": [-0.5, 0.1], "ci_low": [-0.7, -0.1], "ci_high": [-0.3, 0.3],
                         "p_value": [0.01, 0.5]})
    reading = book.tau_reading(grid)
    assert reading.startswith("Of 2 pairs, 0 have an interval above 0 (sharper models worse) and 1 below 0")
    assert "SAM Sharpness with Test error, tau = -0.50 [-0.70, -0.30] over 30 models" in reading


def test_failed_controls_and_summaries():
    runs = make_runs()
    runs.loc[runs["control"] == "weight_decay", "test_accuracy"] = 0.1
    assert book.failed_controls(runs, "beyond-cifar10", ["weight_decay", "augmentation"]) == [
        "Weight Decay fails to train in Beyond the paper, CIFAR-10: test accuracy 0.10 against Baseline's 0.30 "
        "(its authors' default strength, not tuned here)."]
    summary = book.measure_summary(runs, ["test_accuracy", "absent"])
    assert list(summary.columns) == ["Test Accuracy"] and summary.index[0] == "Baseline"
    assert " ± " in summary.iloc[0, 0]


def test_sweep_history_and_versions():
    info = {"sweeps": [{"started": "t", "ran": 3, "skipped": 0, "diverged": 0, "wall_time_s": 120.0, "workers": 2,
                        "provenance": {"hardware": {"device": "cpu", "cpu_count": 2, "cpu": "Xeon"},
                                       "git": {"commit": "0123456789abcdef"}, "versions": {"torch": "2"}}}],
            "wall_time_s": 120.0}
    history = book.sweep_history(info)
    assert history.iloc[0]["minutes"] == 2.0 and history.iloc[0]["commit"] == "0123456789"
    assert book.sweep_versions(info).loc["torch", "version"] == "2"
    assert book.sweep_sentence(info, "p") == ("1 invocations of `sharpkit sweep`, 2.0 minutes of wall time in all, "
                                              "on Xeon (2 cores, cpu).")


@pytest.mark.parametrize("n, arch, dataset", [(1, "resnet18", "digits"), (6, "vgg19bn_tin", "tinyimagenet"),
                                              (None, "vgg19", "cifar10-nothing")])
def test_table_number(n, arch, dataset):
    expected = n if dataset != "cifar10-nothing" else 4  # an unknown name stands for CIFAR-10
    assert book.table_number(arch, dataset) == expected
