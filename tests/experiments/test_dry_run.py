"""The dry run: the grid it prints and its cost model."""
from pathlib import Path

import pytest

from sharpkit.experiments.profiles import get_profile
from sharpkit.experiments.sweep import dry_run

from ._micro import micro_profile

REPO = Path(__file__).resolve().parents[2]


def test_paper_profile_dry_run_prints_480_runs():
    lines = []
    numbers = dry_run(get_profile("paper"), measure=False, log=lines.append)
    assert numbers["runs"] == 480 and numbers["cells"] == 48
    text = "\n".join(lines)
    assert "480 training runs" in text and "tinyimagenet" in text and "cifar100-c" in text
    runs = get_profile("paper").runs()
    assert sum(1 for r in runs if r.config.dataset in ("cifar10", "cifar100")) == 360
    assert {r.config.epochs for r in runs} == {100} and {r.config.seed for r in runs} == set(range(10))


def test_dry_run_cost_model_counts_test_passes_and_evaluation_and_splits_over_workers():
    from sharpkit.experiments.sweep import evaluation_forward_images

    profile = micro_profile()
    spec = profile.runs()[0]
    # by hand: 2 epochs x 32 test images + the final predictions; 64 training images twice (final eval-mode
    # accuracy, generalisation gap); 18 corruptions x 5 severities x 8 images; Fisher-Rao (forward+backward)
    # on 64 points; SAM sharpness (2 samples + the base loss) on 64; relative flatness on 64.
    expected = 2 * 32 + 32 + 2 * 64 + 18 * 5 * 8 + 3 * 64 + 3 * 64 + 3 * 64
    assert evaluation_forward_images(spec.config, spec.evaluation) == expected
    one = dry_run(profile, measure=True, log=lambda *_: None)
    two = dry_run(profile, measure=True, workers=2, log=lambda *_: None)
    for numbers in (one, two):
        assert numbers["estimated_seconds"] > 0 and numbers["estimated_eval_seconds"] > 0
    assert one["estimated_wall_seconds"] == pytest.approx(one["estimated_seconds"] + one["estimated_eval_seconds"])
    assert two["estimated_wall_seconds"] == pytest.approx(
        (two["estimated_seconds"] + two["estimated_eval_seconds"]) / 2)
