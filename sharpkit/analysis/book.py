"""Everything the book's pages compute, as functions: finding stored results, the scale banner, the
no-data box, the tables of the overview, report, table and Kendall pages, and the readings under figures.
A notebook of the book calls these and displays what they return (``notebooks/``; a test keeps its cells
free of logic).

Store discovery goes through the store's layout (:mod:`sharpkit.experiments.layout`, pure paths); records are
read through :mod:`sharpkit.experiments.store`, imported inside the functions (it imports torch; this module
does not).
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..experiments.layout import StoreLayout
from ..metrics.registry import PAPER_SHARPNESS_METRICS, TABLE_EVALUATIONS, metric_names
from .claims import paper_claims
from .convergence import convergence, convergence_sentences
from .display import Box, Html, csv_download, styled
from .names import arch_name, claim_name, dataset_name, profile_name
from .paper import accuracy_levels, paper_dataset, paper_tables_index
from .stats import control_tests, kendall_tau_grid, mean_sem
from .tables import DISPLAY_LABELS, METRIC_TITLES, ResultsTable, results_table
from .verdict import ALPHA, regime, tested_claims

__all__ = [
    "accuracy_sentences",
    "accuracy_table",
    "beyond_settings",
    "cells_of",
    "claims_table",
    "control_tests_table",
    "convergence_list",
    "effect_sizes",
    "experiment_runs",
    "extra_controls",
    "failed_controls",
    "has_runs",
    "kendall_grids",
    "load_diagonal",
    "load_runs",
    "load_sweeps",
    "measure_summary",
    "no_data_box",
    "paper_findings",
    "planned_runs",
    "profile_settings",
    "runs_per_experiment",
    "scale_banner",
    "side_by_side",
    "stored_profiles",
    "summary_table",
    "sweep_history",
    "sweep_versions",
    "table_number",
    "tau_reading",
]

_EMPTY_COLUMNS = ["run_id", "arch", "dataset", "control", "seed", "status"]
# Why the CIFAR-100 and TinyImageNet pages have no runs of ours (see the protocol's departures).
_OFFLINE = ("CIFAR-100, TinyImageNet and the ImageNet weights of the pretrained TinyImageNet models cannot be "
            "downloaded on the machines that build this book, so no profile stored here trains on them.")


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------
def _sweep_file(results_dir: str | Path, profile: str) -> Path:
    return StoreLayout.of(results_dir, profile).sweep_file


def has_runs(results_dir: str | Path, profile: str) -> bool:
    """Whether ``RESULTS/<profile>`` holds a sweep.json and at least one finished run."""
    return StoreLayout.of(results_dir, profile).has_runs()


def sweep_profile(results_dir: str | Path, profile: str) -> dict[str, Any] | None:
    """The profile definition stored in a results folder's sweep.json (None without one)."""
    path = _sweep_file(results_dir, profile)
    return json.loads(path.read_text()).get("profile") if path.is_file() else None


def planned_runs(results_dir: str | Path, profile: str) -> int | None:
    """How many runs the stored profile plans: experiments x controls x seeds (None without a sweep.json)."""
    definition = sweep_profile(results_dir, profile)
    if definition is None:
        return None
    return len(definition["experiments"]) * len(definition["controls"]) * len(definition["seeds"])


def stored_profiles(results_dir: str | Path, first: str | None = None, paper_design: bool = True) -> list[str]:
    """The profiles with at least one finished run under ``results_dir``, ``first`` (the build's profile)
    first, the others by name; with ``paper_design`` only those with exactly the paper's six controls."""
    from ..run.controls import PAPER_CONTROLS

    root = Path(results_dir)
    names = [name for name in StoreLayout.profiles_under(root) if has_runs(root, name)]
    if paper_design:
        names = [n for n in names if set((sweep_profile(root, n) or {}).get("controls", ())) == set(PAPER_CONTROLS)]
    return ([first] if first is not None and first in names else []) + [n for n in names if n != first]


def load_runs(results_dir: str | Path, profile: str, arch: str | None = None, dataset: str | None = None,
              ok_only: bool = False) -> pd.DataFrame:
    """The stored runs of ``profile`` (:func:`sharpkit.experiments.store.load_results`), optionally of one
    ``arch`` and ``dataset`` and of status "ok" only; an empty frame (with the key columns) when there are
    none, so that a page without results still runs."""
    if not has_runs(results_dir, profile):
        return pd.DataFrame(columns=_EMPTY_COLUMNS)
    from ..experiments.store import load_results

    runs = load_results(results_dir, profile)
    if arch is not None:
        runs = runs[runs["arch"] == arch]
    if dataset is not None:
        runs = runs[runs["dataset"] == dataset]
    if ok_only:
        runs = runs[runs["status"] == "ok"]
    return runs.reset_index(drop=True)


def load_scales(results_dir: str | Path, profile: str) -> dict[str, pd.DataFrame]:
    """Every stored profile of the paper's design (:func:`stored_profiles`), the build's first, read once."""
    return {p: load_runs(results_dir, p) for p in stored_profiles(results_dir, first=profile)}


def load_sweep(results_dir: str | Path, profile: str) -> dict[str, Any]:
    """sweep.json with its total wall time (:func:`sharpkit.experiments.store.load_sweep_info`); an empty
    history without one."""
    if not _sweep_file(results_dir, profile).is_file():
        return {"sweeps": [], "wall_time_s": 0.0, "profile": None}
    from ..experiments.store import load_sweep_info

    return load_sweep_info(results_dir, profile)


# --------------------------------------------------------------------------------------------------
# Banners and boxes
# --------------------------------------------------------------------------------------------------
def _size(model_size: str | Mapping[str, Any]) -> str:
    size = json.loads(model_size) if isinstance(model_size, str) else dict(model_size)
    return ", ".join(f"{k} {v}" for k, v in size.items()) or "the paper's size"


def scale_banner(runs: pd.DataFrame, profile: str, arch: str | None = None, dataset: str | None = None,
                 planned: int | None = None) -> Box:
    """The "Scale of these runs" box of a result page: dataset, training images, epochs, network size, seeds,
    runs, our Baseline test accuracy next to the paper's for the same architecture, and the training accuracy
    that says whether the models sit at a minimum. ``runs``: the runs behind the page (one arch and dataset
    for a table page, a whole profile otherwise)."""
    if arch is not None:
        runs = runs[runs["arch"] == arch]
    if dataset is not None:
        runs = runs[runs["dataset"] == dataset]
    if runs.empty:
        return Box(f"Scale: {profile_name(profile)}", (f"No stored runs of the profile `{profile}`: `sharpkit sweep "
                                                       f"--profile {profile}` produces them (see *How to re-run*).",),
                   css="sk-banner note")
    lines = []
    for (a, d), cell in runs.groupby(["arch", "dataset"], sort=False):
        ok = cell[cell["status"] == "ok"]
        epochs = sorted({int(e) for e in cell["epochs"].dropna()})
        images = sorted({int(n) for n in cell["train_subset"].dropna()}) if "train_subset" in cell else []
        text = (f"**{arch_name(a)} on {dataset_name(d)}**: {', '.join(map(str, images)) or 'all'} training images, "
                f"{'/'.join(map(str, epochs))} epochs, {_size(cell['model_size'].iloc[0])}, "
                f"{ok['seed'].nunique()} seeds, {len(cell)} runs")
        levels = accuracy_levels(cell)
        if len(levels):
            level = levels.iloc[0]
            paper = (f" (the paper's {arch_name(a)} on {dataset_name(level['paper_dataset'])}: "
                     f"{level['paper_baseline']:.3f})" if not math.isnan(level["paper_baseline"]) else "")
            text += f"; Baseline test accuracy {level['baseline']:.3f}{paper}"
        if "train_accuracy" in cell and cell["train_accuracy"].notna().any():
            fit = convergence(cell)
            plain = fit[~fit["augmented"]]
            if len(plain):
                text += (f"; training accuracy {plain['mean'].min():.3f}-{plain['mean'].max():.3f} without "
                         f"augmentation: {regime(cell)}")
        lines.append(text + ".")
    stored = f"{len(runs)} of {planned} planned runs" if planned else f"{len(runs)} runs"
    title = f"Scale: {profile_name(profile)} (profile {profile}, {stored})"
    return Box(title, tuple(lines), css="sk-banner note")


def _code(command: str) -> str:
    return f'<div class="highlight"><pre>{html.escape(command)}</pre></div>'


def table_number(arch: str, dataset: str) -> int | None:
    """The number of the paper's table of ``arch`` on the paper's dataset that ``dataset`` stands for."""
    wanted = (arch, paper_dataset(dataset))
    return next((n for n, cell in paper_tables_index().items() if cell == wanted), None)


def _block_profile(arch: str, dataset: str) -> dict[str, Any] | None:
    from ..experiments.profiles import get_profile

    paper = get_profile("paper").to_dict()
    block = [e for e in paper["experiments"] if e["arch"] == arch and e["dataset"] == dataset]
    return {**paper, "experiments": block} if block else None


def no_data_box(arch: str, dataset: str, results_dir: str | Path, profile: str) -> Box:
    """What a table page without runs says: why there are none, and the exact commands that produce them
    for a reader who has the data: only this table's block of the ``paper`` profile (a profile file that the
    box offers for download, whose runs have the ``paper`` profile's run ids), not all of its 480 runs."""
    n = table_number(arch, dataset)
    name = f"paper-table-{n}" if n else "paper-block"
    block = _block_profile(arch, paper_dataset(dataset))
    why = (_OFFLINE if paper_dataset(dataset) in ("cifar100", "tinyimagenet")
           else f"The profile {profile} trains no {arch_name(arch)} on {dataset_name(dataset)}.")
    lines = [f"**No stored runs of {arch_name(arch)} on {dataset_name(dataset)}** in `{Path(results_dir) / profile}`. "
             + why]
    extra_html = extra_text = ""
    if block is not None:
        block["name"] = "paper"  # the paper profile's store and run ids: a later full sweep reuses these runs
        runs = len(block["experiments"]) * len(block["controls"]) * len(block["seeds"])
        command = (f"sharpkit sweep --profile-file {name}.json --results {results_dir} --data-root DATA\n"
                   f"python scripts/build_book.py --profile paper --no-sweep")
        lines.append(f"With the dataset under a data root `DATA` (its standard layout: see *How to re-run*), "
                     f"these commands train and measure only this table's {runs} runs (the `paper` profile's "
                     f"{arch_name(arch)} on {dataset_name(paper_dataset(dataset))} block, 6 controls x 10 seeds, "
                     f"100 epochs: GPU hours), then build the book from them:")
        download = csv_download(json.dumps(block, indent=2), f"{name}.json", f"Download {name}.json")
        download = Html(download.html.replace("data:text/csv", "data:application/json"), download.text)
        extra_html, extra_text = _code(command) + download.html, command
    return Box("No runs of ours for this table", tuple(lines), css="sk-nodata warning", extra_html=extra_html,
               extra_text=extra_text)


# --------------------------------------------------------------------------------------------------
# Table pages
# --------------------------------------------------------------------------------------------------
def our_table(runs: pd.DataFrame, arch: str, dataset: str, profile: str) -> ResultsTable:
    """Our runs of one arch and dataset in the paper's layout, titled with the reader's names."""
    return results_table(runs, arch, dataset,
                         title=f"Ours ({profile_name(profile)}): {arch_name(arch)} on {dataset_name(dataset)}")


def table_parts(table: ResultsTable, stem: str) -> list[Any]:
    """A table as its two parts (evaluations, sharpness), each followed by its CSV download: what a page
    displays, in order."""
    out: list[Any] = []
    for which in ("evaluations", "sharpness"):
        part = table.part(which)
        if part.metrics:
            out += [part, csv_download(part.to_csv(), f"{stem}-{which}.csv")]
    return out


def runs_behind(table: ResultsTable) -> Any:
    """The seeds behind each cell of our table: one sentence when every cell has the same number, else the
    counts as two narrow tables (evaluations, sharpness)."""
    counts = table.n_runs()
    values = set(counts.to_numpy().ravel().tolist())
    if len(values) == 1:
        sentence = f"Every cell of the table is the mean over {values.pop()} seeds."
        return Html(f"<p>{sentence}</p>", sentence)
    return [styled(table.part(which).n_runs(), index=True) for which in ("evaluations", "sharpness")
            if table.part(which).metrics]


def stand_in_note(dataset: str) -> str | None:
    """A sentence when our dataset only stands in for the paper's (compare patterns, not values)."""
    theirs = paper_dataset(dataset)
    if dataset_name(dataset) == dataset_name(theirs):
        return None
    return (f"Our dataset, {dataset_name(dataset)}, stands in for the paper's {dataset_name(theirs)}: compare the "
            "pattern across controls, not the values.")


def _findings_frame(found: pd.DataFrame, tested: bool) -> pd.DataFrame:
    columns = {"description": "finding, case", "holds": "holds"}
    if tested:
        columns |= {"p_value": "p", "p_adjusted": "p (BY)", "effect_size": "effect", "n": "seeds"}
    frame = found[list(columns)].rename(columns=columns)
    return frame.assign(holds=frame["holds"].map({True: "yes", False: "no"}))


def claims_table(runs: pd.DataFrame, arch: str, dataset: str, alpha: float = ALPHA) -> Any:
    """The paper's findings tested on one arch and dataset of ours (:func:`sharpkit.analysis.verdict.tested_claims`),
    next to whether each holds in the paper's printed table, as a styled table."""
    found = tested_claims(runs[(runs["arch"] == arch) & (runs["dataset"] == dataset)], alpha)
    n = table_number(arch, dataset)
    printed = paper_claims()
    printed = printed[printed["table"] == n] if n else printed.iloc[0:0]
    key = ["claim", "metric", "evaluation", "pair"]

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(pair=frame["reference"].where(frame["claim"] == "sam_raises"))

    merged = keyed(found).merge(keyed(printed)[key + ["holds"]].rename(columns={"holds": "paper"}), how="left", on=key)
    frame = _findings_frame(merged, tested=True).assign(
        paper=merged["paper"].map({True: "yes", False: "no"}).fillna("-"))
    return styled(frame, {"p": "{:.3g}", "p (BY)": "{:.3g}", "effect": "{:+.2f}"})


def claims_text(runs: pd.DataFrame, arch: str, dataset: str) -> str:
    """The checked text of :func:`claims_table` (claim, metric, control, holds, BY-adjusted p)."""
    found = tested_claims(runs[(runs["arch"] == arch) & (runs["dataset"] == dataset)])
    if found.empty:
        return "no findings"
    return found[["claim", "metric", "control", "holds", "p_adjusted"]].round(4).to_string(index=False)


def paper_findings(n: int | None) -> Any:
    """The paper's own findings on its printed Table ``n`` (no test: the paper prints no per-seed values)."""
    printed = paper_claims(include_duplicates=True)
    printed = printed[printed["table"] == n] if n else printed.iloc[0:0]
    return styled(_findings_frame(printed, tested=False))


def control_tests_table(runs: pd.DataFrame, arch: str, dataset: str) -> Any:
    """Every control against Baseline on every metric (the authors' tests), styled, with the reader's names."""
    tests = control_tests(runs, arch, dataset).drop(columns=["family", "statistic"])
    tests = tests.assign(control=tests["control"].map(DISPLAY_LABELS), metric=tests["metric"].map(METRIC_TITLES))
    return styled(tests, {"p_value": "{:.3g}", "p_adjusted": "{:.3g}", "rank_biserial": "{:+.2f}",
                          "control_mean": "{:.4g}", "baseline_mean": "{:.4g}"})


# --------------------------------------------------------------------------------------------------
# Overview
# --------------------------------------------------------------------------------------------------
def _short(value: Any) -> Any:
    return f"{value:g}" if isinstance(value, float) else value


def sweep_history(info: Mapping[str, Any]) -> pd.DataFrame:
    """One row per invocation of ``sharpkit sweep`` recorded in sweep.json (``info``: :func:`load_sweep`)."""
    rows = []
    for s in info.get("sweeps", []):
        hardware = {"cpu": "?", "cpu_count": "?", "device": "?", **s.get("provenance", {}).get("hardware", {})}
        rows.append({"started": s.get("started"), "ran": s.get("ran"), "skipped": s.get("skipped"),
                     "diverged": s.get("diverged"), "minutes": round(s.get("wall_time_s", 0.0) / 60, 1),
                     "workers": s.get("workers"), "hardware": f"{hardware['device']}, {hardware['cpu_count']} cores",
                     "commit": (s.get("provenance", {}).get("git", {}).get("commit") or "?")[:10]})
    return pd.DataFrame(rows, columns=["started", "ran", "skipped", "diverged", "minutes", "workers", "hardware",
                                       "commit"])


def sweep_versions(info: Mapping[str, Any]) -> pd.DataFrame:
    """The package versions of the last sweep, one row each."""
    sweeps = info.get("sweeps", [])
    versions = sweeps[-1].get("provenance", {}).get("versions", {}) if sweeps else {}
    return pd.Series(versions, name="version", dtype=object).rename_axis("package").to_frame()


def sweep_sentence(info: Mapping[str, Any], profile: str) -> str:
    """Total wall time and hardware of a profile's sweeps, in one sentence."""
    sweeps = info.get("sweeps", [])
    if not sweeps:
        return f"No sweep of {profile} is stored."
    hardware = sweeps[-1].get("provenance", {}).get("hardware", {})
    return (f"{len(sweeps)} invocations of `sharpkit sweep`, {info.get('wall_time_s', 0.0) / 60:.1f} minutes of wall "
            f"time in all, on {hardware.get('cpu', '?')} ({hardware.get('cpu_count', '?')} cores, "
            f"{hardware.get('device', '?')}).")


def runs_per_experiment(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs per dataset and architecture, by status (the reader's names)."""
    if runs.empty:
        return pd.DataFrame()
    counts = runs.assign(dataset=runs["dataset"].map(dataset_name), arch=runs["arch"].map(arch_name))
    return counts.groupby(["dataset", "arch", "status"]).size().unstack("status", fill_value=0).reset_index()


def profile_settings(profile: str, part: str = "training") -> pd.DataFrame:
    """The settings of every experiment of a built-in profile, in two narrow tables: ``part="training"``
    (dataset, network, epochs, images, batch, lr, seeds) or ``"measurement"`` (SAM samples, corruptions,
    the training fraction of the sharpness measures)."""
    from ..experiments.profiles import get_profile

    p = get_profile(profile)
    rows = []
    for e in p.experiments:
        config = e.config("baseline", 0)
        if part == "training":
            rows.append({"dataset": dataset_name(e.dataset), "network": f"{arch_name(e.arch)} ({_size(e.model_size)})",
                         "epochs": config.epochs, "train images": config.train_subset or "all",
                         "test images": config.test_subset or "all", "batch": config.batch_size,
                         "lr": _short(config.lr), "seeds": len(p.seeds)})
        else:
            corrupted = (e.evaluation.corrupted or f"generated from {e.evaluation.corruption_subset} test images"
                         ) if "corruption_accuracy" in e.evaluation.metrics else "-"
            rows.append({"dataset": dataset_name(e.dataset), "network": arch_name(e.arch),
                         "SAM samples": e.evaluation.sam_samples, "corruptions": corrupted,
                         "train fraction": _short(e.evaluation.train_fraction),
                         "metrics": len(e.evaluation.metrics)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
def convergence_list(runs_by_scale: Mapping[str, pd.DataFrame], planned: Mapping[str, int | None]) -> Box:
    """Per scale: how many of its planned runs are stored, and whether its runs fit their training subsets
    (:func:`sharpkit.analysis.report.convergence_sentences`)."""
    lines = []
    for scale, runs in runs_by_scale.items():
        sentences = (convergence_sentences(runs) if "train_accuracy" in runs and runs["train_accuracy"].notna().any()
                     else ["no training accuracy recorded."])
        count = f"{len(runs)} of {planned.get(scale)} planned runs" if planned.get(scale) else f"{len(runs)} runs"
        lines.append((f"**{profile_name(scale)}** (`{scale}`, {count} stored): {regime(runs)}", tuple(sentences)))
    return Box("Are the models at a minimum?", tuple(lines), css="sk-banner note")


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`sharpkit.analysis.verdict.summarise` as a table: finding and measure by scale, each cell
    ``holds/cases`` and, for our scales, the significant ones after BY (``+s``) and the significantly reversed
    (``-r``)."""
    def cell(row: pd.Series) -> str:
        if row["cases"] == 0:
            return "-"
        text = f"{row['holds']}/{row['cases']}"
        if row["scale"] != "paper":
            text += f" (+{row['holds_significant']}, -{row['reversed_significant']})"
        return text

    cells = summary.assign(text=summary.apply(cell, axis=1),
                           finding=summary["claim"].map(claim_name), measure=summary["metric"].map(METRIC_TITLES))
    table = cells.pivot_table(index=["finding", "measure"], columns="scale", values="text", aggfunc="first", sort=False)
    table = table.reindex(columns=list(dict.fromkeys(summary["scale"])))
    table.columns = [profile_name(c) if c != "paper" else "paper" for c in table.columns]
    return table.reset_index()


def accuracy_table(runs_by_scale: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per scale, arch and dataset: our Baseline's and best control's test accuracy next to the paper's."""
    frames = [accuracy_levels(r).assign(scale=profile_name(p)) for p, r in runs_by_scale.items() if len(r)]
    levels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if levels.empty:
        return levels
    return pd.DataFrame({
        "scale": levels["scale"], "model": [f"{arch_name(a)}, {dataset_name(d)}" for a, d in
                                            zip(levels["arch"], levels["dataset"])],
        "Baseline": levels["baseline"], "best": [f"{b:.3f} ({DISPLAY_LABELS.get(c, c)})" for b, c in
                                                 zip(levels["best"], levels["best_control"])],
        "paper Baseline": levels["paper_baseline"],
        "paper best": [f"{b:.3f} ({DISPLAY_LABELS.get(c, c)})" if isinstance(c, str) else "-"
                       for b, c in zip(levels["paper_best"], levels["paper_best_control"])],
        "ours / paper": levels["relative_level"]})


def accuracy_sentences(runs_by_scale: Mapping[str, pd.DataFrame]) -> Box:
    """One computed sentence per scale on where its accuracy stands against the paper's."""
    lines = []
    for scale, runs in runs_by_scale.items():
        part = accuracy_levels(runs)
        if part.empty or part["paper_baseline"].isna().all():
            continue
        same = int((part["best_control"] == part["paper_best_control"]).sum())
        lines.append(f"**{profile_name(scale)}**: our Baselines reach {part['relative_level'].min():.0%} to "
                     f"{part['relative_level'].max():.0%} of the paper's Baseline accuracy; the best control gains "
                     f"{part['gain'].min():+.3f} to {part['gain'].max():+.3f} over Baseline (the paper: "
                     f"{part['paper_gain'].min():+.3f} to {part['paper_gain'].max():+.3f}); the best control is the "
                     f"paper's in {same} of {len(part)} cases.")
    return Box("Our accuracy against the paper's", tuple(lines), css="sk-banner note")


def every_case(found: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Every case of one scale of :func:`sharpkit.analysis.verdict.scale_claims`, with the reader's names."""
    cases = found[found["scale"] == scale]
    return pd.DataFrame({
        "model": [f"{arch_name(a)}, {dataset_name(d)}" for a, d in zip(cases["arch"], cases["dataset"])],
        "case": cases["description"], "outcome": cases["outcome"], "value": cases["value"],
        "reference": cases["reference_value"], "p (BY)": cases["p_adjusted"],
        "p reversed (BY)": cases["p_reversed_adjusted"], "seeds": cases["n"]})


# --------------------------------------------------------------------------------------------------
# Kendall's tau
# --------------------------------------------------------------------------------------------------
def cells_of(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The (arch, dataset) pairs of ``runs``, sorted."""
    return sorted({(a, d) for a, d in zip(runs["arch"], runs["dataset"])})


def experiment_runs(runs: pd.DataFrame, arch: str, dataset: str) -> pd.DataFrame:
    return runs[(runs["arch"] == arch) & (runs["dataset"] == dataset)]


def kendall_grids(runs: pd.DataFrame, measures: Sequence[str], evaluations: Sequence[str], n_boot: int = 1000,
                  seed: int = 0) -> dict[tuple[str, str], pd.DataFrame]:
    """Kendall's tau grid (:func:`sharpkit.analysis.stats.kendall_tau_grid`) of every (arch, dataset) of
    ``runs`` with at least two models, keyed by the pair."""
    grids = {(a, d): kendall_tau_grid(experiment_runs(runs, a, d), measures, evaluations, n_boot=n_boot, seed=seed)
             for a, d in cells_of(runs)}
    return {key: grid for key, grid in grids.items() if len(grid)}


def tau_table(grids: Mapping[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """Every grid of :func:`kendall_grids` in one long frame with ``arch`` and ``dataset`` columns."""
    if not grids:
        return pd.DataFrame(columns=["arch", "dataset", "measure", "evaluation", "n", "tau", "ci_low", "ci_high",
                                     "p_value"])
    return pd.concat([g.assign(arch=a, dataset=d) for (a, d), g in grids.items()], ignore_index=True)


def tau_reading(grid: pd.DataFrame, labels: Mapping[str, str] | None = None) -> str:
    """One computed sentence under a Kendall heatmap: how many intervals exclude 0 and in which direction, and
    the strongest correlation."""
    labels = dict(DISPLAY_LABELS if labels is None else labels)
    valid = grid.dropna(subset=["tau"])
    if valid.empty:
        return "No pair of a measure and an evaluation has a rank correlation here."
    negative = int((valid["ci_high"] < 0).sum())
    positive = int((valid["ci_low"] > 0).sum())
    top = valid.loc[valid["tau"].abs().idxmax()]
    return (f"Of {len(valid)} pairs, {positive} have an interval above 0 (sharper models worse) and {negative} below 0 "
            f"(sharper models better, the paper's claim); the strongest is "
            f"{labels.get(top['measure'], top['measure'])} "
            f"with {labels.get(top['evaluation'], top['evaluation'])}, tau = {top['tau']:+.2f} "
            f"[{top['ci_low']:+.2f}, {top['ci_high']:+.2f}] over {int(top['n'])} models.")


# --------------------------------------------------------------------------------------------------
# Beyond the paper
# --------------------------------------------------------------------------------------------------
def load_sweeps(results_dir: str | Path, profiles: Sequence[str]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The finished runs of each profile (evaluations also as errors, :func:`sharpkit.analysis.measures.with_errors`),
    and a sentence for each profile left out (no runs, or every run diverged)."""
    from .measures import with_errors

    sweeps, notes = {}, []
    for profile in profiles:
        runs = load_runs(results_dir, profile, ok_only=True)
        if not has_runs(results_dir, profile):
            notes.append(f"No stored runs in {Path(results_dir) / profile}: produce them with "
                         f"`sharpkit sweep --profile {profile} --results {results_dir}`.")
        elif runs.empty:
            notes.append(f"Every stored run of {profile} diverged: nothing to measure.")
        else:
            sweeps[profile] = with_errors(runs)
    return sweeps, notes


def beyond_settings(results_dir: str | Path, profile: str) -> dict[str, Any]:
    """The evaluation settings of a beyond profile's (single) experiment, from its sweep.json."""
    definition = sweep_profile(results_dir, profile) or {"experiments": [{"evaluation": {}}]}
    return dict(definition["experiments"][0]["evaluation"])


def sweep_line(runs: pd.DataFrame, profile: str, settings: Mapping[str, Any]) -> str:
    return (f"{profile_name(profile)} (`{profile}`): {len(runs)} models, {runs['control'].nunique()} controls x "
            f"{runs['seed'].nunique()} seeds, {arch_name(runs['arch'].iloc[0])} on "
            f"{dataset_name(runs['dataset'].iloc[0])}; "
            f"measures beyond the paper on {settings.get('beyond_points')} training images in batches of "
            f"{settings.get('beyond_batch_size')}; the asymmetry factor over {settings.get('asymmetry_directions')} "
            f"directions at |alpha| = {settings.get('asymmetry_mu')}.")


def measure_summary(runs: pd.DataFrame, columns: Sequence[str], controls: Sequence[str] | None = None) -> pd.DataFrame:
    """Controls (rows, the reader's names) x measures (columns): ``mean ± sem`` over seeds (ddof 0)."""
    order = list(controls) if controls is not None else list(dict.fromkeys(runs["control"]))
    rows = {}
    for control in order:
        part = runs[runs["control"] == control]
        if part.empty:
            continue
        stats = {c: mean_sem(part[c].dropna()) for c in columns if c in runs.columns}
        rows[DISPLAY_LABELS.get(control, control)] = {
            DISPLAY_LABELS.get(c, c): f"{s.mean:.4g} ± {s.sem:.2g}".replace(" ± nan", "") for c, s in stats.items()}
    return pd.DataFrame(rows).T.rename_axis("control")


def effect_sizes(runs: pd.DataFrame, measures: Sequence[str]) -> pd.DataFrame:
    """Rank-biserial effect size of each control against Baseline (rows: measures, columns: controls)."""
    present = [m for m in measures if m in runs.columns]
    tests = control_tests(runs, runs["arch"].iloc[0], runs["dataset"].iloc[0], metrics=present)
    table = tests.pivot(index="metric", columns="control", values="rank_biserial")
    table = table.reindex(index=[m for m in present if m in set(tests["metric"])],
                          columns=list(dict.fromkeys(tests["control"])))
    return table.rename(index=DISPLAY_LABELS, columns=DISPLAY_LABELS)


def side_by_side(taus: Mapping[str, pd.DataFrame], evaluation: str = "test_error") -> pd.DataFrame:
    """Each measure's Kendall tau to ``evaluation`` in every sweep (columns: the sweeps' reader names)."""
    return pd.DataFrame({profile_name(p): g[g["evaluation"] == evaluation].set_index("measure")["tau"]
                         for p, g in taus.items()}).rename(index=DISPLAY_LABELS)


def extra_controls(summary: pd.DataFrame, controls: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Rows of :func:`measure_summary` for ``controls`` and ``columns`` only (the extra controls' table)."""
    rows = [DISPLAY_LABELS.get(c, c) for c in controls if DISPLAY_LABELS.get(c, c) in summary.index]
    cols = [DISPLAY_LABELS.get(c, c) for c in columns if DISPLAY_LABELS.get(c, c) in summary.columns]
    return summary.loc[rows, cols]


def failed_controls(runs: pd.DataFrame, profile: str, controls: Sequence[str], margin: float = 0.05) -> list[str]:
    """A sentence for each control of ``controls`` whose mean test accuracy is more than ``margin`` below the
    Baseline's: a regulariser that did not train at its authors' default strength."""
    means = runs.groupby("control")["test_accuracy"].mean()
    if "baseline" not in means:
        return []
    return [f"{DISPLAY_LABELS.get(c, c)} fails to train in {profile_name(profile)}: test accuracy "
            f"{means[c]:.2f} against Baseline's {means['baseline']:.2f} (its authors' default strength, not tuned "
            "here)."
            for c in controls if c in means and means[c] < means["baseline"] - margin]


def load_diagonal(path: str | Path) -> dict[str, Any] | None:
    """The diagonal-network experiment's record (``sharpkit diagonal-network --out``): its networks as a frame
    (``networks``), the converged ones (``minima``), the taus indexed by measure (``taus``) and a summary line
    (``line``); None when the file is absent."""
    from .diagonal_network import read_diagonal_record

    stored = read_diagonal_record(path)
    if stored is None:
        return None
    networks, minima = stored["networks"], stored["minima"]
    line = (f"{len(networks)} networks, {len(minima)} reached the target loss (task: {stored['task']}); the "
            f"experiment took {stored['wall_time_s']:.0f} s.")
    return {"networks": networks, "minima": minima, "taus": stored["taus"], "line": line}


def diagonal_reading(taus: pd.DataFrame) -> str:
    """Which measure of the diagonal networks ranks the minima by test loss best, computed."""
    ranked = taus["tau"].sort_values(ascending=False)
    beats = "beats" if taus.loc["rescaled_trace", "tau"] > taus.loc["trace", "tau"] else "trails"
    return (f"The {ranked.index[0].replace('_', ' ')} ranks the minima by test loss best "
            f"(tau = {ranked.iloc[0]:+.2f}); the rescaled trace {beats} "
            f"the plain trace ({taus.loc['rescaled_trace', 'tau']:+.2f} against {taus.loc['trace', 'tau']:+.2f}), and "
            f"the top eigenvalue reaches {taus.loc['lambda_max', 'tau']:+.2f}.")


# --------------------------------------------------------------------------------------------------
# Figures with their alt text and readings
# --------------------------------------------------------------------------------------------------
def ratios_figure(ours: ResultsTable, paper: ResultsTable | None, runs: pd.DataFrame) -> Html:
    """:func:`sharpkit.analysis.plots.control_ratios` as a page figure, with alt text and caption."""
    from . import plots
    from .display import figure_html

    fig = plots.control_ratios(ours, paper, runs, DISPLAY_LABELS)
    name = f"{arch_name(ours.arch)} on {dataset_name(ours.dataset)}"
    alt = (f"Each control's mean relative to Baseline for {name}, one panel per metric, ours as filled circles "
           f"with standard-error bars and one dot per seed" + (", the paper's as open diamonds" if paper else "")
           + ", on a logarithmic axis centred at 1.")
    return figure_html(fig, alt, "Each control relative to Baseline (1 = as Baseline, log axis). Filled circle: our "
                                 "mean ± SEM, dots: our seeds; open diamond: the paper's mean.")


def kendall_figure(grid: pd.DataFrame, arch: str, dataset: str, title_prefix: str = "") -> Html:
    """:func:`sharpkit.analysis.plots.tau_heatmap` of one grid as a page figure, its reading as caption."""
    from . import plots
    from .display import figure_html

    name = title_prefix or f"{arch_name(arch)} on {dataset_name(dataset)}"
    ax = plots.tau_heatmap(grid, DISPLAY_LABELS, title=f"{name}: {int(grid['n'].max())} models")
    alt = (f"Heatmap of Kendall's tau between each sharpness measure (rows) and each evaluation written as an error "
           f"(columns) for {name}, with 95% bootstrap intervals. " + tau_reading(grid))
    return figure_html(ax.figure, alt, tau_reading(grid))


def scatter_figure(runs: pd.DataFrame, measures: Sequence[str], name: str, evaluation: str = "test_error",
                   columns: int | None = None) -> Html:
    """:func:`sharpkit.analysis.plots.sharpness_scatter` as a page figure with alt text (two or three panels a
    row, whichever fills the rows best)."""
    from . import plots
    from .display import figure_html

    if columns is None:
        count = sum(m in runs.columns and runs[m].notna().any() for m in measures)
        columns = 2 if count in (2, 4) else 3
    fig = plots.sharpness_scatter(runs, measures, evaluation, labels=DISPLAY_LABELS, columns=columns, title=name)
    shown = [DISPLAY_LABELS.get(m, m) for m in measures if m in runs.columns and runs[m].notna().any()]
    alt = (f"Scatter plots for {name}: {DISPLAY_LABELS.get(evaluation, evaluation)} of each of {len(runs)} models "
           f"against {', '.join(shown)}, coloured by control (each control and its +SAM twin in two shades of one "
           "hue).")
    return figure_html(fig, alt)


def findings_figure(summary: pd.DataFrame) -> Html:
    """:func:`sharpkit.analysis.plots.findings_matrix` as a page figure, alt text computed from the summary."""
    from . import plots
    from .display import figure_html
    from .names import CLAIM_NAMES

    scales = {s: ("the paper" if s == "paper" else profile_name(s)) for s in dict.fromkeys(summary["scale"])}
    fig = plots.findings_matrix(summary, {**CLAIM_NAMES, **METRIC_TITLES}, scales)
    counts = summary.groupby("scale", sort=False)["category"].agg(lambda c: ", ".join(
        f"{n} {k}" for k, n in c.value_counts().items()))
    alt = ("Findings matrix: rows are the paper's three findings for each sharpness measure, columns the paper and "
           "each of our scales, colour whether the finding holds or is reversed (significantly or not). "
           + "; ".join(f"{scales[s]}: {text}" for s, text in counts.items()) + ".")
    return figure_html(fig, alt, "Each cell: cases that hold / cases. Dark blue: holds, at least one case significant "
                                 "after BY; light blue: holds by the means; light red / dark red: reversed; grey: "
                                 "mixed; white: untestable.")


def curves_figure(curves: Mapping[str, Any], profile: str) -> Html:
    """:func:`sharpkit.analysis.plots.loss_curve_grid` of one sweep as a page figure."""
    from . import plots
    from .display import figure_html

    fig = plots.loss_curve_grid(curves, DISPLAY_LABELS, xlabel="alpha (filter-normalised)", title=profile_name(profile))
    alt = (f"Small multiples, one panel per control of {profile_name(profile)}: the training-loss increase of each "
           f"model along one random filter-normalised direction, one line per seed.")
    return figure_html(fig, alt)


def diagonal_figure(diagonal: Mapping[str, Any]) -> Html:
    from . import plots
    from .display import figure_html

    fig = plots.diagonal_scatter(diagonal["minima"], diagonal["taus"])
    alt = ("Four log-log scatter plots of the diagonal linear networks' test loss against the Hessian trace, the "
           "rescaled trace, the top eigenvalue and the rescaled top eigenvalue, coloured by layer balance. "
           + diagonal_reading(diagonal["taus"]))
    return figure_html(fig, alt, diagonal_reading(diagonal["taus"]))


# The measure groups of the beyond chapter's tables (each narrow enough for the page column), from the registry.
BEYOND_GROUPS: dict[str, tuple[str, ...]] = {
    "evaluations": TABLE_EVALUATIONS,
    "the paper's measures": PAPER_SHARPNESS_METRICS,
    "perturbation measures": metric_names(group="beyond", kind="perturbation"),
    "curvature measures": metric_names(group="beyond", kind="curvature"),
}
BEYOND_MEASURES: tuple[str, ...] = tuple(m for group in list(BEYOND_GROUPS.values())[1:] for m in group)


def summary_parts(runs: pd.DataFrame, profile: str) -> list[Any]:
    """:func:`measure_summary` of one beyond sweep as one narrow table per :data:`BEYOND_GROUPS` group (mean
    over the SEM in each cell), each with its CSV download: what the page displays, in order."""
    out: list[Any] = []
    for group, columns in BEYOND_GROUPS.items():
        table = measure_summary(runs, columns)
        if table.empty or not len(table.columns):
            continue
        out += [styled(table, index=True, two_line=True, caption=f"{profile_name(profile)}: {group}"),
                csv_download(table, f"{profile}-{group.replace(' ', '-').replace(chr(39), '')}.csv")]
    return out


def build_scale_box(results_dir: str | Path, profile: str) -> Box:
    """The intro's "Scale" box: what the build's profile is, how long its sweep took and on what, computed
    from its sweep.json, and what that means for reading its numbers."""
    info = load_sweep(results_dir, profile)
    planned = planned_runs(results_dir, profile)
    lines = [f"This build shows **{profile_name(profile)}** (profile `{profile}`"
             + (f", {planned} planned runs" if planned else "") + "). " + sweep_sentence(info, profile),
             "The paper trained 480 networks of full size for 100 epochs each on GPUs; the profiles of this book "
             "keep its design (six controls, shared initialisation and data order, every metric) at a size a CPU "
             "can train: narrow networks, fewer epochs and seeds, small or stand-in datasets. Their numbers show "
             "whether the *pattern* the paper reports appears at that scale; they do not replace the paper's.",
             "`make book` re-uses the stored results and only executes and renders the pages; the `paper` profile "
             "runs the full protocol on suitable hardware (see *How to re-run*)."]
    return Box("Scale", tuple(lines), css="sk-banner warning")


def as_list(item: Any) -> list[Any]:
    """``item`` as a list of things to display (a list stays a list)."""
    return list(item) if isinstance(item, list) else [item]
