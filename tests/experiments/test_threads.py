"""A store keeps the CPU thread count its runs were computed with."""
import json
from pathlib import Path

import pytest

from sharpkit.experiments.sweep import sweep

from ._micro import micro_profile

REPO = Path(__file__).resolve().parents[2]


def test_a_store_keeps_its_thread_count(reference, tmp_path):
    import shutil

    from sharpkit.experiments.store import ResultStore
    from sharpkit.experiments.sweep import resolve_threads

    root = tmp_path / "results"
    shutil.copytree(reference, root)
    store = ResultStore(root, micro_profile())
    assert resolve_threads(store, None) == 1 and resolve_threads(store, 1) == 1
    with pytest.raises(ValueError, match="--threads 1"):
        sweep(micro_profile(), root, threads=2, cache_dir=tmp_path / "cache", progress=False, log=lambda *_: None)
    # A store older than the pin: the thread count its runs' provenance agrees on.
    info = json.loads((root / "micro" / "sweep.json").read_text())
    del info["threads_per_run"]
    (root / "micro" / "sweep.json").write_text(json.dumps(info))
    assert resolve_threads(store, None) == 1
    record_path = next((root / "micro" / "runs").glob("*/result.json"))
    record = json.loads(record_path.read_text())
    record["provenance"]["hardware"]["cpu_count"] = 2
    record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="different CPU thread counts"):
        resolve_threads(store, None)
