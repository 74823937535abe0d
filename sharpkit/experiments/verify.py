"""Verification of stored results: re-run stored runs from scratch and check every stored metric, bit for bit
where the arithmetic is the stored run's, else against the spread of the cell's other seeds.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metrics.registry import REGISTRY
from ..utils.provenance import arithmetic_differences
from ..utils.validation import check_positive
from .job import RunJob
from .layout import StoreLayout
from .profiles import Profile, RunSpec
from .store import ResultStore

__all__ = ["SAMPLED_METRICS", "VERIFY_FALSE_ALARM", "VerifyOutcome", "verify"]

# Every metric is computed from seeded generators, so on the same hardware and software a re-run is
# bit-identical. SAM sharpness is a Monte-Carlo estimate: with its seeded noise it repeats exactly too, but
# floating-point sums over 10^4-10^6 perturbed entries are the first to move if thread counts or kernels
# differ, so it gets a stated tolerance (the registry's verify_tolerance; 0, exact, for every other metric).
SAMPLED_METRICS: dict[str, float] = {name: info.verify_tolerance for name, info in REGISTRY.items()
                                     if info.verify_tolerance > 0}


@dataclass(frozen=True)
class VerifyOutcome:
    run_id: str
    passed: bool
    lines: tuple[str, ...]


def _compare_records(stored: dict[str, Any], fresh: dict[str, Any]) -> tuple[bool, list[str]]:
    notes, passed = [], True
    if stored["status"] != fresh["status"]:
        return False, [f"status {stored['status']} -> {fresh['status']}"]
    pairs = {f"train.{k}": (v, fresh.get("metrics", {}).get(k)) for k, v in stored.get("metrics", {}).items()}
    pairs.update({k: (v, fresh.get("evaluation", {}).get("metrics", {}).get(k))
                  for k, v in stored.get("evaluation", {}).get("metrics", {}).items()})
    for name, (old, new) in sorted(pairs.items()):
        tolerance = SAMPLED_METRICS.get(name, 0.0)
        if new is None:
            passed = False
            notes.append(f"{name}: missing in the re-run")
            continue
        rel = abs(new - old) / max(abs(old), 1e-300)
        if (tolerance == 0.0 and new != old) or rel > tolerance:
            passed = False
            notes.append(f"{name}: stored {old!r} re-run {new!r} (rel. diff {rel:.2e}, allowed {tolerance:.0e})")
    old_pred = stored.get("evaluation", {}).get("details", {}).get("test_predictions")
    new_pred = fresh.get("evaluation", {}).get("details", {}).get("test_predictions")
    if old_pred != new_pred:
        passed = False
        notes.append("test predictions differ")
    return passed, notes


VERIFY_FALSE_ALARM = 0.01  # per run: the in-distribution check's chance of failing a faithful re-run


def _cell_values(store: ResultStore, spec: RunSpec) -> dict[str, list[float]]:
    """Every stored metric of the other seeds of ``spec``'s cell (status ok): name -> values."""
    values: dict[str, list[float]] = {}
    for other in store.profile.runs():
        if other.cell != spec.cell or other.run_id == spec.run_id or not store.result_path(other).exists():
            continue
        record = json.loads(store.result_path(other).read_text())  # read once (state() would read it again)
        if record.get("status") != "ok":
            continue
        for name, value in _metric_pairs(record):
            values.setdefault(name, []).append(value)
    return values


def _metric_pairs(record: dict[str, Any]) -> list[tuple[str, float]]:
    pairs = [(f"train.{k}", v) for k, v in record.get("metrics", {}).items()]
    pairs += list(record.get("evaluation", {}).get("metrics", {}).items())
    return [(name, float(value)) for name, value in pairs if isinstance(value, (int, float))]


def _in_distribution(stored: dict[str, Any], fresh: dict[str, Any],
                     seeds: dict[str, list[float]]) -> tuple[bool, list[str]]:
    """Each re-run metric against the spread of its cell's other stored seeds: a two-sided t prediction
    interval ``mean +- t(1 - a/2, n-1) * s * sqrt(1 + 1/n)`` with ``a`` = :data:`VERIFY_FALSE_ALARM` / (number of
    metrics), so a faithful re-run on other arithmetic fails with probability <= 1 % (seeds i.i.d. normal)."""
    from scipy import stats as scipy_stats

    fresh_values = dict(_metric_pairs(fresh))
    names = [name for name, _ in _metric_pairs(stored)]
    alpha = VERIFY_FALSE_ALARM / max(len(names), 1)
    passed, lines = True, []
    for name in sorted(names):
        new, others = fresh_values.get(name), seeds.get(name, [])
        if new is None:
            passed = False
            lines.append(f"{name}: not reproduced (missing in the re-run)")
            continue
        if len(others) < 2:
            passed = False
            lines.append(f"{name}: cannot be checked in distribution (fewer than 2 other seeds stored)")
            continue
        n, mean, sd = len(others), float(np.mean(others)), float(np.std(others, ddof=1))
        half = float(scipy_stats.t.ppf(1 - alpha / 2, n - 1)) * sd * math.sqrt(1 + 1 / n)
        ok = abs(new - mean) <= half or new == mean
        passed &= ok
        lines.append(f"{name}: {'reproduced in distribution' if ok else 'not reproduced'} (re-run {new:.6g}; the "
                     f"cell's {n} other seeds {mean:.6g} +- {half:.3g})")
    return passed, lines


def verify(profile: Profile, results_root: str | Path, k: int, *, seed: int = 0, data_root: str | None = None,
           device: str = "auto", work_dir: str | Path | None = None, log=print) -> list[VerifyOutcome]:
    """Re-run ``k`` randomly chosen stored runs from scratch and check every stored metric.

    Where the re-run's arithmetic equals the stored run's (:func:`arithmetic_differences` finds nothing:
    same torch, device type, CPU and kernel set, threads), every metric must be reproduced bitwise (SAM
    sharpness within :data:`SAMPLED_METRICS`): "reproduced bitwise" or "not reproduced". Where it differs,
    bits cannot match, and each metric is checked against the spread of the cell's other stored seeds
    (:func:`_in_distribution`): "reproduced in distribution" or "not reproduced". Prints one line per run
    and the notes under it."""
    import random
    import tempfile

    check_positive("k", k, integer=True)
    store = ResultStore(results_root, profile)
    store.open()
    done = [spec for spec in profile.runs() if store.state(spec) == "done"]
    if not done:
        raise ValueError(f"No stored runs of profile {profile.name!r} in {store.root}: run the sweep first.")
    chosen = random.Random(seed).sample(done, min(k, len(done)))
    outcomes = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for spec in chosen:
            stored = json.loads(store.result_path(spec).read_text())
            threads = stored.get("provenance", {}).get("hardware", {}).get("cpu_count")
            previous = torch.get_num_threads()
            if threads:
                torch.set_num_threads(int(threads))  # same reduction order as the stored run
            try:
                start = time.perf_counter()
                RunJob.of(spec, Path(tmp) / "results", Path(tmp) / "cache", profile.version, data_root, device).run()
                seconds = time.perf_counter() - start
            finally:
                torch.set_num_threads(previous)
            fresh_file = StoreLayout.of(Path(tmp) / "results", spec.profile).result_file(spec.run_id)
            fresh = json.loads(fresh_file.read_text())
            differences = arithmetic_differences(stored.get("provenance", {}), fresh.get("provenance", {}))
            count = len(_metric_pairs(stored))
            label = f"{spec.config.arch}/{spec.config.control}/seed{spec.config.seed}"
            if not differences:
                passed, notes = _compare_records(stored, fresh)
                verdict = "reproduced bitwise" if passed else "not reproduced bitwise"
            else:
                passed, notes = _in_distribution(stored, fresh, _cell_values(store, spec))
                notes = [f"arithmetic differs from the stored run's ({'; '.join(differences)}): checked in "
                         f"distribution, false-alarm rate {VERIFY_FALSE_ALARM:.0%} per run"] + notes
                verdict = "reproduced in distribution" if passed else "not reproduced"
            head = f"{'PASS' if passed else 'FAIL'} {spec.run_id} {label}: {count} metrics {verdict} in {seconds:.0f} s"
            log(head)
            for note in notes:
                log(f"    {note}")
            outcomes.append(VerifyOutcome(spec.run_id, passed, (head, *notes)))
    return outcomes
