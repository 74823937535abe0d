"""The verdict of the reproduction, computed: which of the paper's findings hold, are reversed or cannot be
tested, at each stored scale, with Benjamini-Yekutieli-corrected p-values.

- :func:`tested_claims`: :func:`sharpkit.analysis.report.claims` of one frame of runs with both one-sided
  tests (the finding's direction and the reverse), each BY-corrected within one comparison's sharpness
  measures (the authors' families, :data:`sharpkit.analysis.stats.CORRECTION_FAMILIES`).
- :func:`scale_claims`: the paper's printed tables and every stored scale in one frame (column ``scale``).
- :func:`summarise`: per finding, measure and scale, how many cases hold / are reversed, how many of those
  significantly, and one category (the colour of the findings matrix, :func:`sharpkit.analysis.plots.findings_matrix`).
- :func:`regime`: whether a scale's runs sit at a minimum or are early-training snapshots.
- :func:`verdict`: the "What we found" box of the intro and the report, every number in it computed.

pandas and scipy only: importable without torch.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from .claims import claims, paper_claims
from .convergence import convergence
from .display import Box
from .names import CLAIM_NAMES, arch_name, dataset_name, profile_name
from .paper import accuracy_levels, paper_dataset, paper_tables_index
from .stats import CORRECTION_FAMILIES, paired_wilcoxon
from .tables import METRIC_TITLES

__all__ = [
    "ALPHA",
    "CATEGORIES",
    "Verdict",
    "regime",
    "scale_claims",
    "summarise",
    "tested_claims",
    "untested_tables",
    "verdict",
]

ALPHA = 0.05  # significance level of the BY-corrected tests
# The categories of one (finding, measure, scale), in the order of the findings matrix's legend.
CATEGORIES: tuple[str, ...] = ("holds, significant", "holds", "mixed", "reversed", "reversed, significant",
                               "untestable")
_TESTED_COLUMNS = ["direction", "reversed", "p_adjusted", "p_reversed", "p_reversed_adjusted", "significant",
                   "reversed_significant", "outcome"]


def _family(metric: str) -> str:
    return next((f for f, members in CORRECTION_FAMILIES.items() if metric in members), metric)


def _by(p_values: pd.Series) -> pd.Series:
    """Benjamini-Yekutieli over the finite values of ``p_values`` (NaN stays NaN)."""
    out = pd.Series(np.nan, index=p_values.index, dtype=float)
    finite = p_values.notna()
    if finite.any():
        out[finite] = scipy.stats.false_discovery_control(p_values[finite].to_numpy(np.float64), method="by")
    return out


def _comparison(row: pd.Series) -> str:
    """What one test compares, apart from the measure: the unit within which BY corrects."""
    if row["claim"] == "sam_raises":
        return str(row["reference"])
    if row["claim"] == "best_is_sharper":
        return f"{row['control']}|{row['evaluation']}"
    return ""


def _correct(found: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Add the BY-adjusted p-values and the outcome columns to a frame with ``holds``, ``reversed``,
    ``p_value`` and ``p_reversed``."""
    found = found.copy()
    found["p_adjusted"] = np.nan
    found["p_reversed_adjusted"] = np.nan
    if len(found):
        keys = [found["arch"], found["dataset"], found["claim"], found.apply(_comparison, axis=1),
                found["metric"].map(_family)]
        if "scale" in found:
            keys.insert(0, found["scale"])
        for _, index in found.groupby(keys, sort=False).groups.items():
            found.loc[index, "p_adjusted"] = _by(found.loc[index, "p_value"].astype(float))
            found.loc[index, "p_reversed_adjusted"] = _by(found.loc[index, "p_reversed"].astype(float))
    found["significant"] = found["holds"].astype(bool) & (found["p_adjusted"] < alpha)
    found["reversed_significant"] = found["reversed"].astype(bool) & (found["p_reversed_adjusted"] < alpha)
    found["outcome"] = np.where(found["holds"], "holds", np.where(found["reversed"], "reversed", "no order"))
    return found


def _directions(found: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The finding's direction of ``control`` against ``reference`` (``"less"`` for the flattest Baseline,
    else ``"greater"``) and whether the means are strictly in the opposite order."""
    direction = pd.Series(np.where(found["claim"] == "baseline_flattest", "less", "greater"), index=found.index)
    value, reference = found["value"].astype(float), found["reference_value"].astype(float)
    same = found["control"] == found["reference"]  # Baseline itself is the best: no comparison
    reverse = np.where(direction == "less", value > reference, value < reference) & ~same
    return direction, pd.Series(reverse, index=found.index)


def tested_claims(runs: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """The paper's findings on ``runs`` (a frame of :func:`sharpkit.experiments.store.load_results`), each case
    tested both ways and corrected.

    Columns: those of :func:`sharpkit.analysis.report.claims`, plus ``direction`` (the finding's one-sided
    alternative of ``control`` against ``reference``), ``reversed`` (the means are strictly in the other order),
    ``p_adjusted`` (``p_value`` after Benjamini-Yekutieli), ``p_reversed`` (the one-sided paired Wilcoxon test
    of the opposite direction, ``control`` against ``reference`` over the seeds both have) and
    ``p_reversed_adjusted``, ``significant`` (holds and ``p_adjusted < alpha``), ``reversed_significant``, and
    ``outcome`` (``holds``, ``reversed`` or ``no order``: tied means, or Baseline itself best on the evaluation).

    BY corrects within one comparison (one control against its reference, or Baseline against every other
    control for the flattest-Baseline finding) over the paper's three sharpness measures, the family of the
    authors' significance script; the clean-convention SAM sharpness is a family of its own.
    """
    found = claims(runs)
    if found.empty:
        return found.assign(**{c: pd.Series(dtype=object) for c in _TESTED_COLUMNS})
    direction, reverse = _directions(found)
    found["direction"], found["reversed"] = direction, reverse.astype(bool)
    ok = runs[runs["status"] == "ok"]
    by_run = {key: part.set_index("seed") for key, part in ok.groupby(["arch", "dataset", "control"])}
    tests: dict[tuple[str, ...], float] = {}
    p_reversed = []
    for row in found.itertuples():
        key = (row.arch, row.dataset, row.control, row.reference, row.metric, row.direction)
        if row.control == row.reference:
            tests[key] = math.nan
        elif key not in tests:
            a, b = by_run[row.arch, row.dataset, row.control], by_run[row.arch, row.dataset, row.reference]
            seeds = a.index.intersection(b.index).sort_values()
            opposite = "greater" if row.direction == "less" else "less"
            tests[key] = paired_wilcoxon(a.loc[seeds, row.metric], b.loc[seeds, row.metric], opposite).p_value
        p_reversed.append(tests[key])
    found["p_reversed"] = p_reversed
    return _correct(found, alpha)


def scale_claims(runs_by_scale: Mapping[str, pd.DataFrame], alpha: float = ALPHA) -> pd.DataFrame:
    """The paper's printed tables (``scale == "paper"``, no tests: the paper prints no per-seed values) and
    :func:`tested_claims` of every scale of ``runs_by_scale`` (profile name -> its runs), in one frame."""
    paper = paper_claims().drop(columns="table").assign(scale="paper")
    direction, reverse = _directions(paper)
    paper = paper.assign(direction=direction, reversed=reverse.astype(bool), p_reversed=np.nan)
    parts = [_correct(paper, alpha)] + [tested_claims(runs, alpha).assign(scale=scale)
                                         for scale, runs in runs_by_scale.items()]
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def _category(cases: int, holds: int, reversed_: int, holds_sig: int, reversed_sig: int) -> str:
    if cases == 0:
        return "untestable"
    if 2 * holds > cases:
        return "holds, significant" if holds_sig else "holds"
    if 2 * reversed_ > cases:
        return "reversed, significant" if reversed_sig else "reversed"
    return "mixed"


def summarise(found: pd.DataFrame, scales: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (claim, metric, scale) of :func:`scale_claims`: ``cases``, ``holds``, ``reversed``,
    ``holds_significant``, ``reversed_significant``, the smallest BY-adjusted p-value of a case that holds
    (``best_p_adjusted``, with its uncorrected ``best_p``) and of a reversed one (``best_p_reversed_adjusted``),
    and ``category`` (:data:`CATEGORIES`: more than half the cases hold / are reversed, significant when at
    least one of them is). A (claim, metric) that one scale lacks is ``untestable`` there. Rows in the order
    of the findings, columns ``scales`` (default: as they appear)."""
    scales = list(dict.fromkeys(found["scale"])) if scales is None else list(scales)
    rows = []
    claims_, metrics = list(dict.fromkeys(found["claim"])), list(dict.fromkeys(found["metric"]))
    keys = sorted(dict.fromkeys(zip(found["claim"], found["metric"])),
                  key=lambda key: (claims_.index(key[0]), metrics.index(key[1])))  # finding by finding
    for claim, metric in keys:
        for scale in scales:
            part = found[(found["claim"] == claim) & (found["metric"] == metric) & (found["scale"] == scale)]
            held, rev = part[part["holds"].astype(bool)], part[part["reversed"].astype(bool)]
            best = held.loc[held["p_adjusted"].idxmin()] if held["p_adjusted"].notna().any() else None
            counts = dict(cases=len(part), holds=len(held), reversed=len(rev),
                          holds_significant=int(part["significant"].sum()),
                          reversed_significant=int(part["reversed_significant"].sum()))
            rows.append({"claim": claim, "metric": metric, "scale": scale, **counts,
                         "best_p_adjusted": best["p_adjusted"] if best is not None else math.nan,
                         "best_p": best["p_value"] if best is not None else math.nan,
                         "best_p_reversed_adjusted": rev["p_reversed_adjusted"].min() if len(rev) else math.nan,
                         "category": _category(counts["cases"], counts["holds"], counts["reversed"],
                                               counts["holds_significant"], counts["reversed_significant"])})
    return pd.DataFrame(rows)


def regime(runs: pd.DataFrame) -> str:
    """``"at a minimum"`` when every finished run without augmentation fits its training subset (eval-mode
    training accuracy >= :data:`sharpkit.analysis.report.MINIMUM_TARGET`,
    :func:`~sharpkit.analysis.report.convergence`),
    ``"early training (not at a minimum)"`` when any falls short, ``"unknown"`` without recorded training accuracy."""
    if "train_accuracy" not in runs or not runs["train_accuracy"].notna().any():
        return "unknown"
    table = convergence(runs)
    plain = table[~table["augmented"] & (table["n"] > 0)]
    if plain.empty:
        return "unknown"
    return "at a minimum" if int(plain["below"].sum()) == 0 else "early training (not at a minimum)"


def untested_tables(runs_by_scale: Mapping[str, pd.DataFrame]) -> list[int]:
    """The paper's tables for which no scale holds a run of the same architecture on a dataset standing for
    the table's (Tables 2, 3, 5, 6, 8 when only CIFAR-10 stand-ins are stored)."""
    covered = {(a, paper_dataset(d)) for runs in runs_by_scale.values() for a, d in zip(runs["arch"], runs["dataset"])}
    return [n for n, cell in sorted(paper_tables_index().items()) if cell not in covered]


# --------------------------------------------------------------------------------------------------
# The verdict box
# --------------------------------------------------------------------------------------------------
# The box is sharpkit.analysis.display.Box; the name says what this module makes of it.
Verdict = Box


def _count(k: int, n: int) -> str:
    return f"{k} of {n} case{'s' if n != 1 else ''}"


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 0.01 else f"{value:.1e}"


def _claim_sentence(part: pd.DataFrame, tested: bool) -> str:
    """One finding at one scale: counts of the cases that hold / are reversed, significance after BY."""
    cases, held, rev = len(part), int(part["holds"].sum()), int(part["reversed"].sum())
    text = f"holds in {_count(held, cases)}"
    if rev:
        text += f", reversed in {rev}"
    if not tested:
        return text
    sig, rsig = int(part["significant"].sum()), int(part["reversed_significant"].sum())
    notes = []
    if held:
        if sig:
            notes.append(f"{sig} significantly")
        elif part.loc[part["holds"].astype(bool), "p_adjusted"].notna().any():
            best = part[part["holds"].astype(bool)].sort_values("p_adjusted").iloc[0]
            notes.append(f"none significant: smallest BY-adjusted p = {_p(best['p_adjusted'])}, "
                         f"uncorrected {_p(best['p_value'])}")
    if rev:
        notes.append(f"{rsig} significantly reversed" if rsig else "no reversal significant")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _scale_facts(scale: str, runs: pd.DataFrame, planned: int | None) -> str:
    ok = runs[runs["status"] == "ok"]
    stored = f"{len(runs)} of {planned} planned runs" if planned else f"{len(runs)} runs"
    parts = [f"`{scale}`", stored, f"{ok['seed'].nunique()} seeds", regime(runs)]
    fit = convergence(runs) if "train_accuracy" in runs and runs["train_accuracy"].notna().any() else None
    if fit is not None and len(fit):
        plain = fit[~fit["augmented"]]
        parts[-1] += (f", training accuracy {plain['mean'].min():.2f}-{plain['mean'].max():.2f}"
                      " without augmentation" if len(plain) else "")
    levels = accuracy_levels(runs)
    if len(levels) and levels["paper_baseline"].notna().any():
        parts.append(f"Baseline test accuracy {levels['baseline'].min():.3f}-{levels['baseline'].max():.3f} "
                     f"against the paper's {levels['paper_baseline'].min():.3f}-{levels['paper_baseline'].max():.3f}")
    return "; ".join(parts)


def _augmented(controls: pd.Series) -> pd.Series:
    """Whether each control trains on augmented images (an unknown control: no)."""
    from ..run.controls import CONTROLS

    return controls.map(lambda c: CONTROLS[c].augmentation if c in CONTROLS else False).astype(bool)


def _augmentation_note(part: pd.DataFrame) -> str | None:
    """When most cases that hold are the paper-convention SAM sharpness of an augmentation control, say so:
    that measurement re-draws the augmentations for every loss, so it is partly data noise."""
    held = part[part["holds"].astype(bool)]
    augmented = _augmented(held["control"])
    artefact = int(((held["metric"] == "sam_sharpness") & augmented).sum())
    if len(held) and 2 * artefact >= len(held):
        return (f"{artefact} of the {len(held)} cases that hold are the paper-convention SAM sharpness of an "
                "augmentation control, whose losses are measured on re-drawn augmentations (see the protocol)")
    return None


def _best_note(part: pd.DataFrame, runs: pd.DataFrame) -> str | None:
    """When the best control on most evaluations is an augmentation control, say which and how well those
    fit their training images: at a scale whose other controls sit at a minimum, the "best is sharper"
    finding then compares models away from a minimum of the clean training loss with a Baseline at one."""
    from ..run.controls import CONTROLS

    if regime(runs) != "at a minimum":  # early training: no control is at a minimum, nothing to tell apart
        return None
    best = part[part["claim"] == "best_is_sharper"].drop_duplicates(["arch", "dataset", "evaluation"])
    augmented = _augmented(best["control"])
    if not len(best) or 2 * int(augmented.sum()) < len(best):
        return None
    controls = sorted(set(best.loc[augmented, "control"]), key=list(CONTROLS).index)
    text = (f"the best control is an augmentation control ({', '.join(CONTROLS[c].label for c in controls)}) on "
            f"{int(augmented.sum())} of {len(best)} evaluations")
    fit = convergence(runs) if "train_accuracy" in runs and runs["train_accuracy"].notna().any() else None
    if fit is not None:
        fit = fit[fit["control"].isin(controls)]
        if len(fit) and fit["mean"].notna().any():
            text += (f"; those train on augmented images and fit the clean ones only to training accuracy "
                     f"{fit['mean'].min():.2f}-{fit['mean'].max():.2f}, so this finding compares models away from "
                     "a minimum of the clean training loss with a Baseline")
    return text


def _where(summary: pd.DataFrame, claim: str, minima: Sequence[str], early: Sequence[str]) -> str:
    def state(scales: Sequence[str]) -> str:
        rows = summary[(summary["claim"] == claim) & summary["scale"].isin(scales)]
        cases, held, rev = int(rows["cases"].sum()), int(rows["holds"].sum()), int(rows["reversed"].sum())
        word = "holds" if 2 * held > cases else "reversed" if 2 * rev > cases else "mixed"
        return f"{word} ({held} of {cases} cases hold, {rev} reversed)"

    return f"at minima {state(minima)}; in early training {state(early)}"


def verdict(found: pd.DataFrame, runs_by_scale: Mapping[str, pd.DataFrame],
            planned: Mapping[str, int] | None = None, alpha: float = ALPHA) -> Verdict:
    """The "What we found" box: the paper's findings as printed, then at each stored scale (in the order of
    ``runs_by_scale``: the build's profile first) how many cases hold or are reversed, how many significantly
    after BY, and, when scales at a minimum and in early training are both stored, which findings hold in
    which. ``found`` is :func:`scale_claims` of ``runs_by_scale``; ``planned`` gives a scale's planned runs."""
    planned = dict(planned or {})
    claims_ = [c for c in CLAIM_NAMES if c in set(found["claim"])]
    lines: list[str | tuple[str, tuple[str, ...]]] = []
    paper = found[found["scale"] == "paper"]
    lines.append(("**The paper** (Tables 1-8 as printed; Table 6 left out, it repeats Table 3)",
                  tuple(f"{CLAIM_NAMES[c]}: {_claim_sentence(paper[paper['claim'] == c], False)}." for c in claims_)))
    scales = [s for s in runs_by_scale if len(runs_by_scale[s])]
    for scale in scales:
        part = found[found["scale"] == scale]
        subs = [f"{CLAIM_NAMES[c]}: {_claim_sentence(part[part['claim'] == c], True)}."
                for c in claims_ if (part["claim"] == c).any()] or ["No finding can be tested yet."]
        for note in (_augmentation_note(part), _best_note(part, runs_by_scale[scale])):
            subs += [f"{note[0].upper()}{note[1:]}."] if note else []
        lines.append((f"**{profile_name(scale)}** ({_scale_facts(scale, runs_by_scale[scale], planned.get(scale))})",
                      tuple(subs)))
    regimes = {s: regime(runs_by_scale[s]) for s in scales}
    minima = [s for s in scales if regimes[s] == "at a minimum"]
    early = [s for s in scales if regimes[s].startswith("early training")]
    if minima and early:
        summary = summarise(found, scales)
        lines.append(("**At minima against early training**",
                      tuple(f"{CLAIM_NAMES[c]}: {_where(summary, c, minima, early)}." for c in claims_)))
    untested = untested_tables(runs_by_scale)
    if untested:
        names = sorted({dataset_name(paper_tables_index()[n][1]) for n in untested})
        lines.append(f"**Untestable here**: Tables {', '.join(map(str, untested))} ({' and '.join(names)}: the data "
                     "cannot be had offline; their pages show the paper's own findings).")
    lines.append(f"A case holds when the means are ordered as the paper states; significant: one-sided paired "
                 f"Wilcoxon test over seeds, Benjamini-Yekutieli-corrected within each comparison's sharpness "
                 f"measures, adjusted p < {alpha:g}.")
    return Verdict("What we found", tuple(lines))


def measure_title(metric: str) -> str:
    return METRIC_TITLES.get(metric, metric)


def case_label(row: Mapping[str, object]) -> str:
    """``"ResNet-18 on CIFAR-10 (20k JPEG copy)"``: the cell of one case, for tables of cases."""
    return f"{arch_name(str(row['arch']))} on {dataset_name(str(row['dataset']))}"
