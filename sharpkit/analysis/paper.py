"""The paper's own numbers: Tables 1-8 as printed, which of its datasets ours stand for, and where our accuracy
stands against its.

- :func:`paper_table`: Table ``n`` (1-8) as printed, a :class:`~sharpkit.analysis.tables.ResultsTable` read from
  ``resources/reported_tables.csv`` (package data, read through :mod:`importlib.resources` once per process;
  transcribed from "Understanding Deep Learning Requires Rethinking Sharpness"; see ``resources/README.md``).
  :func:`paper_tables_index` maps table numbers to (arch, dataset) in sharpkit's registry names,
  :func:`paper_table_for` finds the table of an (arch, dataset).
- :func:`paper_dataset`: the paper's dataset (:data:`PAPER_DATASETS`) a sharpkit dataset name stands for.
- :func:`accuracy_levels`: our Baseline's and best control's test accuracy next to the paper's, per
  (arch, dataset) (``relative_level`` = our Baseline accuracy / the paper's).

pandas only: importable without torch.
"""
from __future__ import annotations

import functools
import math
from importlib import resources

import pandas as pd

from ..data.dataset_names import parse_dataset_name  # pure Python: no torch
from ..metrics.registry import TABLE_METRICS
from ..utils.validation import check_choice
from .stats import _require_columns, control_order
from .tables import (
    _PAPER_MODELS_PER_CELL,
    ARCH_LABELS,
    DATASET_LABELS,
    METRIC_TITLES,
    ResultsTable,
    _bold,
)

__all__ = [
    "PAPER_DATASETS",
    "accuracy_levels",
    "paper_dataset",
    "paper_table",
    "paper_table_for",
    "paper_tables_index",
]

# The CSV names the TinyImageNet models as the paper does; sharpkit's registry names differ.
_CSV_TO_REGISTRY: dict[tuple[str, str], str] = {
    ("resnet18", "tinyimagenet"): "resnet18_tin",
    ("vgg19bn", "tinyimagenet"): "vgg19bn_tin",
}
_PAPER_CSV = "reported_tables.csv"


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
