"""papermill runs a notebook with its parameters: changing one changes what the page shows."""
from __future__ import annotations

import json
import os
import shutil

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
    assert "Ours (smoke): resnet18 on digits" in resnet_text and "vgg19" not in resnet_text
    assert "Ours (smoke): vgg19 on digits" in vgg_text and "resnet18" not in vgg_text
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
    assert "Ours (smoke): resnet18 on digits" in checked_output(table)
    taus = checked_output(kendall)
    assert "vgg19" in taus and "resnet18" not in taus  # one ResNet-18 model has no rank correlation
    assert "smoke" in checked_output(report)
