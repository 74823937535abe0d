"""The CPU threads per run of a store: one count per store, pinned in its sweep.json, because CPU reductions
split over another number of threads round differently and one store must not mix two arithmetics.
"""
from __future__ import annotations

import json

from ..utils.validation import check_positive
from .store import ResultStore

__all__ = ["DEFAULT_THREADS", "resolve_threads", "stored_threads"]

DEFAULT_THREADS = 1  # CPU threads per run when neither --threads nor the store says otherwise


def stored_threads(store: ResultStore) -> int | None:
    """The CPU threads per run a store's results were computed with: pinned in its sweep.json by the first
    sweep, else (stores older than the pin) the thread count every stored run's provenance agrees on; None
    for a store without runs. Raises when older runs disagree (such a store already mixes arithmetics)."""
    pinned = store.open().get("threads_per_run")
    if pinned is not None:
        return int(pinned)
    counts = set()
    for path in store.layout.result_files():
        try:
            hardware = json.loads(path.read_text()).get("provenance", {}).get("hardware", {})
        except (OSError, json.JSONDecodeError):
            continue
        if hardware.get("device", "cpu").startswith("cpu") and hardware.get("cpu_count"):
            counts.add(int(hardware["cpu_count"]))
    if len(counts) > 1:
        raise ValueError(f"The runs in {store.root} were computed with different CPU thread counts {sorted(counts)}; "
                         "their results differ in the last bits. Pass --threads N to choose one for new runs.")
    return counts.pop() if counts else None


def resolve_threads(store: ResultStore, requested: int | None) -> int:
    """CPU threads per run for a sweep into ``store``: ``requested`` (``--threads``), else the store's
    (:func:`stored_threads`), else :data:`DEFAULT_THREADS`. The number of workers never decides it: CPU
    reductions split over another number of threads round differently, and one store must not mix them.
    A ``requested`` count that differs from the store's is refused."""
    if requested is not None:
        check_positive("threads", requested, integer=True)
    existing = stored_threads(store)
    if requested is not None and existing is not None and requested != existing:
        raise ValueError(f"{store.root} holds runs computed with {existing} CPU thread(s) per run; --threads "
                         f"{requested} would mix two arithmetics in one store. Use --threads {existing} (or leave "
                         "it out), or another --results folder.")
    return requested or existing or DEFAULT_THREADS
