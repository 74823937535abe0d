"""The store's layout: every path of a results folder and its cache, spelled in one module, and a check
that no other module of the package spells them."""
import ast
import json
from pathlib import Path

import pytest

import sharpkit
from sharpkit.experiments import layout
from sharpkit.experiments.layout import CacheLayout, StoreLayout, cell_name

PACKAGE = Path(sharpkit.__file__).parent
REPO = PACKAGE.parent


def test_the_paths_of_a_results_folder(tmp_path):
    store = StoreLayout.of(tmp_path, "micro")
    assert store.root == tmp_path / "micro"
    assert store.sweep_file == tmp_path / "micro" / "sweep.json"
    assert store.result_file("abc") == tmp_path / "micro" / "runs" / "abc" / "result.json"
    assert store.cell_file("digits", "vit", "baseline") == tmp_path / "micro" / "cells" / "digits-vit-baseline.json"
    assert StoreLayout(str(tmp_path / "micro")) == store  # a str root is a Path too


def test_the_paths_of_a_cache(tmp_path):
    cache = CacheLayout(tmp_path)
    assert (cache.work_dir("abc"), cache.init_dir, cache.corrupted_dir, cache.slurm_dir) == (
        tmp_path / "work" / "abc", tmp_path / "init", tmp_path / "corrupted", tmp_path / "slurm")
    assert cache.work_dirs() == []
    (tmp_path / "work" / "b").mkdir(parents=True)
    (tmp_path / "work" / "a").mkdir()
    (tmp_path / "work" / "stray.txt").write_text("")
    assert cache.work_dirs() == [tmp_path / "work" / "a", tmp_path / "work" / "b"]


def test_discovery_finds_finished_runs_only(tmp_path):
    store = StoreLayout.of(tmp_path, "p")
    assert not store.has_runs() and StoreLayout.profiles_under(tmp_path) == []
    store.sweep_file.parent.mkdir(parents=True)
    store.sweep_file.write_text("{}")
    store.run_dir("b").mkdir(parents=True)  # a run folder without a record: a run in progress
    assert not store.has_runs() and store.result_files() == [] and store.run_dirs() == [store.run_dir("b")]
    for run_id in ("b", "a"):
        store.result_file(run_id).parent.mkdir(parents=True, exist_ok=True)
        store.result_file(run_id).write_text(json.dumps({}))
    assert store.has_runs() and store.result_files() == [store.result_file("a"), store.result_file("b")]
    assert StoreLayout.profiles_under(tmp_path) == ["p"]


@pytest.mark.parametrize(("dataset", "expected"), [
    ("digits", "digits-vit-baseline"),
    ("npz:../shared/data/cifar10-jpeg-20k.npz", "npz____shared_data_cifar10-jpeg-20k_npz-vit-baseline"),
    ("cifar10-c:/data/c", "cifar10-c__data_c-vit-baseline"),
])
def test_cell_names_are_those_of_the_stored_cells(dataset, expected):
    assert cell_name(dataset, "vit", "baseline") == expected


def test_every_stored_cell_file_is_named_by_the_layout():
    """Differential: the cell files written by earlier sharpkit versions are where the layout says."""
    for sweep_file in sorted((REPO / "results").glob("*/sweep.json")):
        store = StoreLayout(sweep_file.parent)
        for path in store.cell_files():
            cell = json.loads(path.read_text())
            assert store.cell_file(cell["dataset"], cell["arch"], cell["control"]) == path


# --------------------------------------------------------------------------------------------------
# No other module spells the layout
# --------------------------------------------------------------------------------------------------
STORE_NAMES = {layout.SWEEP_FILE, layout.RUNS_DIR, layout.CELLS_DIR, "work", "corrupted", "slurm"}


def spelled_paths(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each path built from one of ``names`` in ``source``: an operand of ``/`` or part of a
    glob pattern (``"*/sweep.json"``); names in docstrings, messages and dictionary keys do not count."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found += [(node.lineno, side.value) for side in (node.left, node.right)
                      if isinstance(side, ast.Constant) and side.value in names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("glob", "rglob") and node.args and isinstance(node.args[0], ast.Constant)):
            parts = set(str(node.args[0].value).split("/"))
            found += [(node.lineno, name) for name in sorted(parts & names)]
    return sorted(found)


def test_the_check_catches_a_planted_path():
    planted = ('root / "sweep.json"\nPath(x) / "runs" / run_id\nroot.glob("*/sweep.json")\n'
               '"cells" / other\n{"runs": 3}\nprint("wrote sweep.json")\n')
    assert spelled_paths(planted, STORE_NAMES) == [(1, "sweep.json"), (2, "runs"), (3, "sweep.json"), (4, "cells")]


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if p.name != "layout.py"),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_layout_spells_the_paths_of_a_store(path):
    spelled = spelled_paths(path.read_text(), STORE_NAMES)
    assert not spelled, (f"sharpkit/{path.relative_to(PACKAGE)} builds store paths by hand ({spelled}); use "
                         "sharpkit.experiments.layout (StoreLayout, CacheLayout) instead")


@pytest.mark.parametrize("path", sorted((REPO / "scripts").glob("*.py")), ids=lambda p: p.name)
def test_scripts_find_stored_results_through_the_layout(path):
    assert not spelled_paths(path.read_text(), STORE_NAMES)


RUN_FOLDER_NAMES = {"checkpoint.pt", "log.jsonl", "result.json"}  # sharpkit.run.checkpoint's file names
RUN_FOLDER_OWNERS = {Path("run/checkpoint.py"), Path("experiments/layout.py")}


def test_the_run_folder_names_are_those_of_the_checkpoint_module():
    from sharpkit.run import checkpoint

    assert {checkpoint.CHECKPOINT_FILE, checkpoint.LOG_FILE, checkpoint.RESULT_FILE} == RUN_FOLDER_NAMES
    assert layout.RESULT_FILE == checkpoint.RESULT_FILE  # a store's record sits where a run folder's does


@pytest.mark.parametrize("path", sorted([*(p for p in PACKAGE.rglob("*.py")
                                            if p.relative_to(PACKAGE) not in RUN_FOLDER_OWNERS),
                                         *(REPO / "scripts").glob("*.py"), *(REPO / "benchmarks").glob("*.py")]),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_only_the_checkpoint_module_spells_the_files_of_a_run_folder(path):
    spelled = spelled_paths(path.read_text(), RUN_FOLDER_NAMES)
    assert not spelled, (f"{path.relative_to(REPO)} builds run-folder paths by hand ({spelled}); use "
                         "sharpkit.run.checkpoint's CHECKPOINT_FILE, LOG_FILE, RESULT_FILE and read_log")
