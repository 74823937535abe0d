"""Fixtures of the sweep tests (the micro profile is in _micro.py)."""
import pytest

from sharpkit.experiments.sweep import sweep

from ._micro import micro_profile


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """The micro profile swept once per session into a results folder: what the other tests' sweeps, re-runs
    and resumes must reproduce."""
    root = tmp_path_factory.mktemp("reference")
    summary = sweep(micro_profile(), root / "results", cache_dir=root / "cache", progress=False, log=lambda *_: None)
    assert len(summary.ran) == 4 and not summary.diverged
    return root / "results"
