"""papermill runs a notebook with its parameters: changing one changes what the page shows."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ._helpers import KERNEL_ENV, PROFILE, RESULTS, ROOT

nbformat = pytest.importorskip("nbformat", reason="the book extra is not installed: pip install -e '.[book]'")
pytest.importorskip("papermill", reason="the book extra is not installed: pip install -e '.[book]'")


def checked_output(notebook) -> str:
    """Text printed by the notebook's cells tagged ``nbval-check-output``."""
    return "".join(o.get("text", "") for c in notebook.cells if "nbval-check-output" in c.metadata.get("tags", [])
                   for o in c.get("outputs", []))


def test_changing_the_arch_parameter_changes_the_table(build_book, tmp_path, monkeypatch):
    for key, value in KERNEL_ENV.items():
        monkeypatch.setenv(key, value)
    results = os.path.relpath(RESULTS, ROOT)
    pages = [build_book.Page(f"table-{arch}", "table", {"arch": arch, "dataset": "digits", "results_dir": results,
                                                        "profile": PROFILE}) for arch in ("resnet18", "vgg19")]
    paths = build_book.execute_pages(pages, tmp_path, ROOT, jobs=2)
    resnet, vgg = (nbformat.read(path, as_version=4) for path in paths)
    assert resnet.metadata["papermill"]["parameters"]["arch"] == "resnet18"
    assert vgg.metadata["papermill"]["parameters"]["arch"] == "vgg19"
    resnet_text, vgg_text = checked_output(resnet), checked_output(vgg)
    assert "Ours (Smoke test): ResNet-18 on Digits" in resnet_text and "VGG-19" not in resnet_text
    assert "Ours (Smoke test): VGG-19 on Digits" in vgg_text and "ResNet-18" not in vgg_text
    assert resnet_text.split("\n", 1)[1] != vgg_text.split("\n", 1)[1]  # the numbers, not only the title



def test_the_result_pages_run_on_a_partly_finished_sweep(build_book, tmp_path, monkeypatch):
    """A sweep that is still running (or was stopped) leaves some runs: one seed of one control of
    ResNet-18 and two controls of VGG-19 here, with no cross-seed cells yet."""
    for key, value in KERNEL_ENV.items():
        monkeypatch.setenv(key, value)
    store = tmp_path / "results" / PROFILE
    (store / "runs").mkdir(parents=True)
    shutil.copy2(RESULTS / PROFILE / "sweep.json", store / "sweep.json")
    for result in sorted((RESULTS / PROFILE / "runs").glob("*/result.json")):
        config = json.loads(result.read_text())["config"]
        if ((config["arch"], config["control"], config["seed"]) == ("resnet18", "baseline", 0)
                or (config["arch"] == "vgg19" and config["control"] in ("baseline", "augmentation"))):
            shutil.copytree(result.parent, store / "runs" / result.parent.name)
    common = {"results_dir": str(tmp_path / "results"), "profile": PROFILE}
    pages = [build_book.Page("kendall_tau", "kendall_tau", common), build_book.Page("report", "report", common),
             build_book.Page("table", "table", {"arch": "resnet18", "dataset": "digits", **common})]
    kendall, report, table = (nbformat.read(path, as_version=4)
                              for path in build_book.execute_pages(pages, tmp_path / "out", ROOT, jobs=2))
    assert "Ours (Smoke test): ResNet-18 on Digits" in checked_output(table)
    taus = checked_output(kendall)
    assert "vgg19" in taus and "resnet18" not in taus  # one ResNet-18 model has no rank correlation
    assert "smoke" in checked_output(report)


def test_the_beyond_chapter_on_the_committed_sweeps_prints_what_scipy_computes(build_book, tmp_path, monkeypatch):
    """The chapter beyond the paper, executed on the sweeps committed in results/: its Kendall taus equal
    scipy's over the stored records, the reparametrisation demo separates the measures as the theory says
    (adaptive and normalised ones unchanged), and the diagonal networks rank as in Andriushchenko et al."""
    import scipy.stats

    from sharpkit.analysis.report import with_errors
    from sharpkit.experiments.store import load_results

    for key, value in KERNEL_ENV.items():
        monkeypatch.setenv(key, value)
    # A copy: a sweep writing into results/ meanwhile must not change the records under the test.
    results = tmp_path / "results"
    profiles = [p for p in build_book.BEYOND_PROFILES if (ROOT / "results" / p / "sweep.json").exists()]
    assert profiles, "no committed sweep of the beyond chapter"
    for name in [*profiles, str(Path(build_book.DIAGONAL_RESULTS).parent)]:
        shutil.copytree(ROOT / "results" / name, results / name)
    page = build_book.Page("beyond", "beyond", {"results_dir": str(results), "profiles": profiles, "n_boot": 20,
                                               "diagonal_results": str(results / build_book.DIAGONAL_RESULTS)})
    (path,) = build_book.execute_pages([page], tmp_path / "out", ROOT, jobs=1)
    text = checked_output(nbformat.read(path, as_version=4))

    printed: dict[str, dict[tuple[str, str], float]] = {}
    current = None
    for line in text.split("changed by the reparametrisation", 1)[0].splitlines():
        tokens = line.split()
        if line.strip() in profiles:
            current = printed.setdefault(line.strip(), {})
        elif current is not None and len(tokens) == 4 and tokens[2].isdigit():
            current[(tokens[0], tokens[1])] = (int(tokens[2]), float(tokens[3]))
    assert printed.keys() == set(profiles)
    for profile in profiles:
        runs = with_errors(load_results(results, profile).query("status == 'ok'"))
        assert len(printed[profile]) >= 30
        for (measure, evaluation), (n, tau) in printed[profile].items():
            both = runs[[measure, evaluation]].dropna()
            expected = scipy.stats.kendalltau(both[measure], both[evaluation]).statistic
            assert n == len(both) and tau == pytest.approx(expected, abs=6e-4, nan_ok=True), (profile, measure)

    changed = text.split("changed by the reparametrisation: ", 1)[1].split("\n", 1)[0].split(", ")
    unchanged = text.split("unchanged: ", 1)[1].split("\n", 1)[0].split(", ")
    assert {"SAM sharpness", "Hessian trace", "Top Hessian eigenvalue", "Worst-case sharpness"} <= set(changed)
    assert {"Fisher-Rao norm", "Relative flatness", "Adaptive avg. sharpness", "Adaptive worst sharpness",
            "Adaptive Hessian trace"} <= set(unchanged)
    diagonal = dict(line.split() for line in text.split("measure\n", 1)[1].splitlines() if line.strip())
    assert float(diagonal["rescaled_trace"]) > float(diagonal["trace"]) + 0.05
