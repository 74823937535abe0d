"""sharpkit.analysis.report as a compatibility module: every name it ever held is still there and is the very
object of the module that now defines it (tables, paper, claims, convergence, measures), so nothing is computed
twice; and none of those modules imports report (report imports from them)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from sharpkit.analysis import report

SPLIT = ("tables", "paper", "claims", "convergence", "measures")
# What report.py defined before the split, public and private, and the module that defines each now.
DEFINED = {
    "tables": ("METRIC_TITLES", "DISPLAY_LABELS", "BETTER", "EVALUATION_METRICS", "SHARPNESS_METRICS",
               "COLUMN_GROUPS", "ARCH_LABELS", "DATASET_LABELS", "_PAPER_MODELS_PER_CELL", "_label", "format_cell",
               "ResultsTable", "_bold", "_title", "results_table"),
    "paper": ("_CSV_TO_REGISTRY", "_PAPER_CSV", "_paper_rows", "_registry_arch", "paper_tables_index",
              "_duplicate_of", "paper_table", "paper_table_for", "PAPER_DATASETS", "paper_dataset", "accuracy_levels"),
    "claims": ("_CLAIM_COLUMNS", "_sam_pairs", "_Cell", "_finite", "_cell_claims", "claims", "paper_claims"),
    "convergence": ("MINIMUM_TARGET", "convergence", "convergence_sentences"),
    "measures": ("ERROR_EVALUATIONS", "with_errors", "asymmetry_curves"),
}
# What report.py imported from the layers below, and so offered as report.X.
IMPORTED = ("parse_dataset_name", "FIT_METRICS", "REGISTRY", "TABLE_EVALUATIONS", "TABLE_METRICS",
            "TABLE_SHARPNESS_METRICS", "error_columns", "error_name", "metric_info", "CONTROLS", "check_choice",
            "ARCH_NAMES", "DATASET_NAMES", "arch_name", "dataset_name", "PairedTest", "_require_columns",
            "control_order", "mean_sem", "ok_runs", "paired_wilcoxon", "select_cell")


@pytest.mark.parametrize("module_name", SPLIT)
def test_every_old_name_is_the_object_of_its_new_module(module_name):
    module = importlib.import_module(f"sharpkit.analysis.{module_name}")
    for name in DEFINED[module_name]:
        assert getattr(report, name) is getattr(module, name), f"report.{name} is not {module_name}.{name}"
    # A module's public names are its __all__, and report offers each of them.
    assert set(module.__all__) <= set(vars(module)) and all(hasattr(report, n) for n in module.__all__)


def test_report_keeps_its_imported_names_and_its_all():
    for name in IMPORTED:
        assert hasattr(report, name), name
    assert report.__all__ == [
        "ARCH_LABELS", "DISPLAY_LABELS", "ERROR_EVALUATIONS", "BETTER", "COLUMN_GROUPS", "FIT_METRICS",
        "DATASET_LABELS", "EVALUATION_METRICS", "METRIC_TITLES", "ResultsTable", "SHARPNESS_METRICS", "TABLE_METRICS",
        "accuracy_levels", "claims", "convergence", "convergence_sentences", "format_cell", "paper_claims",
        "paper_table", "paper_table_for", "paper_tables_index", "results_table"]
    defined = {n for names in DEFINED.values() for n in names}
    own = {n for n, v in vars(report).items() if not n.startswith("__") and not isinstance(v, type(report))}
    assert own == defined | set(IMPORTED) | {"annotations"}, own ^ (defined | set(IMPORTED))


def test_one_cache_of_the_papers_csv():
    from sharpkit.analysis import claims, paper

    assert report._paper_rows is paper._paper_rows is claims._paper_rows
    assert report.paper_table(1).cells.equals(paper.paper_table(1).cells)


@pytest.mark.parametrize("module_name", SPLIT)
def test_the_split_modules_never_import_report(module_name):
    path = Path(importlib.import_module(f"sharpkit.analysis.{module_name}").__file__)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = ("." * node.level) + (node.module or "")
            names = [a.name for a in node.names]
            assert "report" not in target.split(".") and not (node.level and not node.module and "report" in names), \
                f"{path.name}:{node.lineno} imports report"
        elif isinstance(node, ast.Import):
            assert not any(a.name.endswith(".report") for a in node.names), f"{path.name}:{node.lineno} imports report"
