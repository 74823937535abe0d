"""What ``sharpkit report`` prints and writes for one stored profile: every (dataset, architecture) table in the
paper's layout beside the paper's own, and the paper's findings computed from the stored runs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .claims import claims
from .paper import paper_table_for
from .tables import results_table

__all__ = ["CLAIM_REPORT_COLUMNS", "ProfileReport", "profile_report"]

# The columns of the printed findings. The reference is what each finding compares with (Baseline, the control
# without SAM, or the next-flattest control), so its value is printed rather than Baseline's.
CLAIM_REPORT_COLUMNS = ("arch", "dataset", "claim", "evaluation", "metric", "control", "reference", "holds", "value",
                        "reference_value", "p_value", "effect_size", "n")


@dataclass(frozen=True)
class ProfileReport:
    """A profile's report as plain text (for a terminal) and as HTML (our tables, the paper's, the findings)."""

    text: str
    html: str


def profile_report(results: str | Path, profile: str) -> ProfileReport:
    """The report of ``profile``'s stored runs under ``results``; ``ValueError`` when none is stored yet.

    Examples:
        >>> from sharpkit.analysis.profile_report import profile_report
        >>> report = profile_report("results", "digits-mini")  # the repository's stored runs
        >>> report.text.splitlines()[0].startswith("profile digits-mini: 54 runs (54 ok, 0 excluded)")
        True
    """
    from ..experiments.store import load_results, load_sweep_info  # the store imports torch; this module does not

    df = load_results(results, profile)
    info = load_sweep_info(results, profile)
    if df.empty:
        raise ValueError(f"No runs stored yet for profile {profile!r}; run `sharpkit sweep --profile {profile}`.")
    lines = [f"profile {profile}: {len(df)} runs ({(df.status == 'ok').sum()} ok, {(df.status != 'ok').sum()} "
             f"excluded), sweep wall time {info['wall_time_s']:.0f} s"]
    html = []
    for (dataset, arch), _ in df.groupby(["dataset", "arch"], sort=False):
        table = results_table(df, arch, dataset)
        lines += ["", table.to_text()]
        html.append(table.to_html())
        reference = paper_table_for(arch, dataset)
        if reference is not None:
            html.append(reference.to_html())
    found = claims(df)
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_colwidth", 40):
        lines += ["", "claims (computed from the stored runs; p: one-sided paired Wilcoxon over seeds):",
                  found[[c for c in CLAIM_REPORT_COLUMNS if c in found.columns]].to_string(index=False)]
    return ProfileReport("\n".join(lines), "\n".join(html) + found.to_html(index=False))
