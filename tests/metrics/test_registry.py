"""The metric registry (sharpkit.metrics.registry) is the only place a metric attribute is written.

- every consumer's table (report, stats, book, evaluate, sweep, the CLI, sharpkit.metrics) equals what the
  registry's records give, and the values the stored run ids and the book depend on are the ones they always
  were (pinned here, as they were written before the registry);
- no module of sharpkit but the registry defines a literal keyed by (or listing) two or more registered metric
  names at module or class level (read from the source with ast), and the check catches a planted one;
- the registry imports without torch, and ``sharpkit.metrics`` still exports every name of its ``__all__``.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

import sharpkit
from sharpkit.metrics import registry
from sharpkit.metrics.registry import REGISTRY, MetricInfo, metric_info, metric_names, metrics_in

PACKAGE = Path(sharpkit.__file__).parent
NAMES = frozenset(REGISTRY)

# Module-level literals that list metric names without being metric attributes, with the reason.
ALLOWED = {
    ("metrics/__init__.py", "PAPER_CONVENTIONS"): "keyword arguments by function name (relative_flatness_exact "
                                                  "is no metric): how the paper's code calls a function",
}


# --------------------------------------------------------------------------------------------------
# The values the stored results and the book depend on, as they were written before the registry
# --------------------------------------------------------------------------------------------------
def test_run_id_defaults_keep_their_content_and_order():
    from sharpkit.run import evaluate

    # Hashed into every stored run id (EvalSettings.to_dict): content and order must never change.
    assert evaluate.METRICS == ("test_accuracy", "test_ece", "generalization_gap", "corruption_accuracy",
                                "fisher_rao_norm", "sam_sharpness", "relative_flatness")
    assert evaluate.EvalSettings().metrics == evaluate.METRICS
    assert evaluate.EVALUATION_METRICS == ("test_accuracy", "test_ece", "generalization_gap", "corruption_accuracy")
    assert evaluate.SHARPNESS_METRICS == ("fisher_rao_norm", "sam_sharpness", "relative_flatness")
    assert evaluate.BEYOND_METRICS == ("adaptive_average_sharpness", "adaptive_worst_sharpness", "worst_sharpness",
                                       "hessian_trace", "adaptive_hessian_trace", "hessian_top_eigenvalue",
                                       "asymmetry_factor")
    assert evaluate.ALL_METRICS == evaluate.METRICS + ("sam_sharpness_clean",) + evaluate.BEYOND_METRICS


def test_table_values_are_the_ones_the_book_shows():
    from sharpkit.analysis import book, report, stats
    from sharpkit.experiments import sweep

    assert report.TABLE_METRICS == ("train_accuracy", "test_accuracy", "test_ece", "corruption_accuracy",
                                    "prediction_disagreement", "fisher_rao_norm", "sam_sharpness",
                                    "sam_sharpness_clean", "relative_flatness")
    assert report.METRIC_TITLES == {
        "train_accuracy": "Train Accuracy (eval)", "test_accuracy": "Test Accuracy", "test_ece": "Test ECE",
        "corruption_accuracy": "Corruption Accuracy", "prediction_disagreement": "Prediction Disagreement",
        "fisher_rao_norm": "Fisher Rao Norm", "sam_sharpness": "SAM Sharpness",
        "sam_sharpness_clean": "SAM Sharpness (clean)", "relative_flatness": "Relative Flatness"}
    assert report.BETTER == {"train_accuracy": None, "test_accuracy": "higher", "test_ece": "lower",
                             "corruption_accuracy": "higher", "prediction_disagreement": "lower",
                             "fisher_rao_norm": None, "sam_sharpness": None, "sam_sharpness_clean": None,
                             "relative_flatness": None}
    assert report.FIT_METRICS == ("train_accuracy",)
    assert report.EVALUATION_METRICS == ("test_accuracy", "test_ece", "corruption_accuracy", "prediction_disagreement")
    assert report.SHARPNESS_METRICS == ("fisher_rao_norm", "sam_sharpness", "sam_sharpness_clean", "relative_flatness")
    assert report.ERROR_EVALUATIONS == ("test_error", "test_ece", "corruption_error", "prediction_disagreement")
    labels = {k: v for k, v in report.DISPLAY_LABELS.items() if k not in report.CONTROLS}
    assert labels == {**report.METRIC_TITLES, "test_error": "Test error", "corruption_error": "Corruption error (%)",
                      "adaptive_average_sharpness": "Adaptive avg. sharpness",
                      "adaptive_worst_sharpness": "Adaptive worst sharpness", "worst_sharpness": "Worst-case sharpness",
                      "hessian_trace": "Hessian trace", "adaptive_hessian_trace": "Adaptive Hessian trace",
                      "hessian_top_eigenvalue": "Top Hessian eigenvalue", "asymmetry_factor": "Asymmetry factor"}
    assert report.format_cell("sam_sharpness", 4.0517e-06, 2.1734e-07) == "4.052E-06 ± 2.173E-07"
    assert report.format_cell("sam_sharpness_clean", 4.0517e-06, float("nan")) == "4.052E-06"
    assert report.format_cell("fisher_rao_norm", 0.0094, 0.0004) == "0.009 ± 0.000"
    # The order of ALTERNATIVES is the row order of control_tests' default metrics.
    assert list(stats.ALTERNATIVES.items()) == [
        ("test_accuracy", "greater"), ("test_ece", "less"), ("corruption_accuracy", "greater"),
        ("prediction_disagreement", "less"), ("fisher_rao_norm", "greater"), ("sam_sharpness", "greater"),
        ("sam_sharpness_clean", "greater"), ("relative_flatness", "greater"), ("generalization_gap", "less"),
        ("adaptive_average_sharpness", "greater"), ("adaptive_worst_sharpness", "greater"),
        ("worst_sharpness", "greater"), ("hessian_trace", "greater"), ("adaptive_hessian_trace", "greater"),
        ("hessian_top_eigenvalue", "greater"), ("asymmetry_factor", "greater")]
    assert stats.CORRECTION_FAMILIES == {
        "safety": ("test_ece", "corruption_accuracy", "prediction_disagreement"),
        "sharpness": ("fisher_rao_norm", "sam_sharpness", "relative_flatness"),
        "sharpness_clean": ("sam_sharpness_clean",),
        "beyond": ("adaptive_average_sharpness", "adaptive_worst_sharpness", "worst_sharpness", "hessian_trace",
                   "adaptive_hessian_trace", "hessian_top_eigenvalue", "asymmetry_factor")}
    assert sweep.SAMPLED_METRICS == {"sam_sharpness": 1e-6}
    assert book.BEYOND_GROUPS == {
        "evaluations": ("test_accuracy", "test_ece", "corruption_accuracy", "prediction_disagreement"),
        "the paper's measures": ("fisher_rao_norm", "sam_sharpness", "relative_flatness"),
        "perturbation measures": ("adaptive_average_sharpness", "adaptive_worst_sharpness", "worst_sharpness",
                                  "asymmetry_factor"),
        "curvature measures": ("hessian_trace", "adaptive_hessian_trace", "hessian_top_eigenvalue")}


def test_corruption_accuracy_is_a_percentage_and_every_other_accuracy_a_fraction():
    import pandas as pd

    from sharpkit.analysis.report import with_errors

    accuracies = [name for name in REGISTRY if name.endswith("_accuracy")]
    assert {name: metric_info(name).unit for name in accuracies} == {
        name: "percent" if name == "corruption_accuracy" else "fraction" for name in accuracies}
    out = with_errors(pd.DataFrame({"test_accuracy": [0.25], "corruption_accuracy": [40.0]}))
    assert out["test_error"].tolist() == [0.75] and out["corruption_error"].tolist() == [60.0]


# --------------------------------------------------------------------------------------------------
# Every consumer derived from the records
# --------------------------------------------------------------------------------------------------
def _where(**attributes):
    return tuple(n for n, i in REGISTRY.items() if all(getattr(i, a) == v for a, v in attributes.items()))


def test_every_consumer_equals_what_the_records_give():
    from sharpkit import cli
    from sharpkit.analysis import book, report, stats, verdict
    from sharpkit.experiments import sweep
    from sharpkit.run import evaluate

    table = _where(table_column=True)
    evaluations = tuple(m for m in table if REGISTRY[m].group == "evaluation")
    sharpness = tuple(m for m in table if REGISTRY[m].group == "sharpness")
    paper_sharpness = _where(group="sharpness", paper_column=True)
    requestable = _where(requestable=True)

    # report: the paper-layout tables
    assert report.TABLE_METRICS == table
    assert report.FIT_METRICS == _where(group="training", table_column=True)
    assert report.EVALUATION_METRICS == evaluations
    assert report.SHARPNESS_METRICS == sharpness
    assert report.COLUMN_GROUPS == {"evaluations": report.FIT_METRICS + evaluations, "sharpness": sharpness}
    assert report.METRIC_TITLES == {m: REGISTRY[m].title for m in table}
    assert report.BETTER == {m: REGISTRY[m].better for m in table}
    assert {k: v for k, v in report.DISPLAY_LABELS.items() if k not in report.CONTROLS} == {
        n: i.title for n, i in REGISTRY.items() if i.title is not None}
    errors = {i.error_of: n for n, i in REGISTRY.items() if i.error_of}
    assert report.ERROR_EVALUATIONS == tuple(errors.get(m, m) for m in evaluations)
    assert all(REGISTRY[m].better == "lower" for m in report.ERROR_EVALUATIONS)
    for name, info in REGISTRY.items():
        assert report.format_cell(name, 1.5, float("nan")) == format(1.5, info.display_format)
    # stats and verdict: the tests of each control against Baseline
    assert stats.ALTERNATIVES == {n: i.alternative for n, i in REGISTRY.items() if i.alternative}
    families: dict[str, tuple[str, ...]] = {}
    for name, info in REGISTRY.items():
        if info.family:
            families[info.family] = families.get(info.family, ()) + (name,)
    assert stats.CORRECTION_FAMILIES == families
    assert verdict.CORRECTION_FAMILIES is stats.CORRECTION_FAMILIES and verdict.METRIC_TITLES is report.METRIC_TITLES
    # book: the beyond chapter's groups
    assert book.BEYOND_GROUPS == {"evaluations": evaluations, "the paper's measures": paper_sharpness,
                                  "perturbation measures": _where(group="beyond", kind="perturbation"),
                                  "curvature measures": _where(group="beyond", kind="curvature")}
    # evaluate and the CLI: what a run can be evaluated on
    assert set(evaluate.ALL_METRICS) == set(requestable) and evaluate.ALL_METRICS[:len(evaluate.METRICS)] == \
        evaluate.METRICS
    assert evaluate.BEYOND_METRICS == _where(group="beyond")
    assert evaluate.SHARPNESS_METRICS == paper_sharpness
    assert evaluate.EVALUATION_METRICS == tuple(m for m in evaluate.METRICS if REGISTRY[m].group == "evaluation")
    assert evaluate.CLEAN_SAM_METRIC in requestable and not REGISTRY[evaluate.CLEAN_SAM_METRIC].paper_column
    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    option = next(a for a in commands.choices["evaluate"]._actions if a.dest == "metrics")
    assert tuple(option.choices) == evaluate.ALL_METRICS and tuple(option.default) == evaluate.METRICS
    # sweep: the verify tolerances
    assert sweep.SAMPLED_METRICS == {n: i.verify_tolerance for n, i in REGISTRY.items() if i.verify_tolerance}
    # sharpkit.metrics: the paper's measures as functions
    import sharpkit.metrics as M

    assert M.SHARPNESS_METRICS == {m: getattr(M, REGISTRY[m].function) for m in paper_sharpness}


def test_every_function_named_by_a_record_exists():
    import sharpkit.metrics as M

    for name, info in REGISTRY.items():
        if info.function is not None:
            assert info.function in M.__all__ and callable(getattr(M, info.function)), name


# --------------------------------------------------------------------------------------------------
# The queries and the records' checks
# --------------------------------------------------------------------------------------------------
def test_metric_info_names_the_allowed_metrics():
    assert metric_info("test_ece").title == "Test ECE"
    with pytest.raises(ValueError, match=r"'fisher_rao_norm'.*but got 'fisher_rao'.*registry\.py"):
        metric_info("fisher_rao")
    with pytest.raises(ValueError, match="'sharpness'"):
        metrics_in("sharp")
    with pytest.raises(ValueError, match="'paper_column'"):
        metric_names(paper=True)
    assert metrics_in("derived") == ("test_error", "corruption_error")
    assert metric_names() == tuple(REGISTRY)


def test_records_refuse_inconsistent_attributes():
    ok = dict(name="x", group="evaluation", description="d")
    MetricInfo(**ok, better="higher", alternative="greater")
    with pytest.raises(ValueError, match="alternative='greater'"):
        MetricInfo(**ok, better="higher", alternative="less")
    with pytest.raises(ValueError, match="group"):
        MetricInfo(name="x", group="sharpnes", description="d")
    with pytest.raises(ValueError, match="unit"):
        MetricInfo(**ok, unit="percentage")
    with pytest.raises(ValueError, match="kind"):
        MetricInfo(**ok, kind="curvature")
    with pytest.raises(ValueError):
        MetricInfo(**ok, display_format=".3Q")
    with pytest.raises(ValueError, match="registered twice"):
        registry._register(MetricInfo(**ok), MetricInfo(**ok))
    assert dataclasses.is_dataclass(MetricInfo) and MetricInfo.__dataclass_params__.frozen


# --------------------------------------------------------------------------------------------------
# No metric attribute defined outside the registry
# --------------------------------------------------------------------------------------------------
def _metric_strings(nodes: list[ast.expr | None]) -> list[str]:
    return [n.value for n in nodes if isinstance(n, ast.Constant) and n.value in NAMES]


def metric_tables(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """``(line, target)`` of each module- or class-level assignment whose value holds a dict literal with two or
    more registered metric names as keys, or a tuple, list or set literal with two or more as elements."""
    found = []
    tree = ast.parse(source, filename=filename)
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for statement in body:
            if isinstance(statement, ast.If):  # module-level ``if TYPE_CHECKING:`` and the like
                bodies.append(statement.body + statement.orelse)
                continue
            if isinstance(statement, ast.Assign):
                targets, value = statement.targets, statement.value
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                targets, value = [statement.target], statement.value
            else:
                continue
            names = [t.id for t in targets if isinstance(t, ast.Name)] or ["<target>"]
            if "__all__" in names:
                continue
            for node in ast.walk(value):
                if isinstance(node, ast.Dict):
                    hits = _metric_strings(node.keys)
                elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                    hits = _metric_strings(node.elts)
                else:
                    continue
                if len(hits) >= 2:
                    found.append((statement.lineno, names[0]))
                    break
    return sorted(found)


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "metrics" / "registry.py")


def violations(path: Path, rel: str) -> list[str]:
    """One message per metric table in the module at ``path`` (``rel``: its path under sharpkit/)."""
    return [f"sharpkit/{rel}:{line} defines {target}, a table of metric attributes keyed by registered metric "
            f"names; add the attribute to the records of sharpkit/metrics/registry.py and derive {target} from them"
            for line, target in metric_tables(path.read_text(), str(path)) if (rel, target) not in ALLOWED]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_metric_table_outside_the_registry(path):
    problems = violations(path, path.relative_to(PACKAGE).as_posix())
    assert not problems, "\n".join(problems)


def test_allowed_tables_still_exist():
    for rel, target in ALLOWED:
        assert (rel, target) in {(rel, t) for _, t in metric_tables((PACKAGE / rel).read_text())}, (rel, target)


def test_the_check_catches_a_planted_table(tmp_path):
    """The checker itself: each form of a metric table is reported; computations inside functions, single names
    and ``__all__`` are not."""
    planted = '''
TITLES = {"test_accuracy": "Test Accuracy", "test_ece": "Test ECE"}
ORDER: tuple[str, ...] = ("fisher_rao_norm", "sam_sharpness")
NESTED = {"safety": ("test_ece", "corruption_accuracy")}
LABELS = {**OTHER, "test_error": "Test error", "corruption_error": "Corruption error (%)"}
if True:
    GUARDED = ["hessian_trace", "asymmetry_factor"]

class Settings:
    metrics = {"sam_sharpness", "relative_flatness"}

ONE = {"sam_sharpness": 1e-6}
__all__ = ["fisher_rao_norm", "sam_sharpness"]
UNRELATED = ("baseline", "baseline_sam")

def measure(wanted):
    for name in ("hessian_trace", "adaptive_hessian_trace"):
        pass
'''
    found = [target for _, target in metric_tables(planted)]
    assert found == ["TITLES", "ORDER", "NESTED", "LABELS", "GUARDED", "metrics"]
    probe = tmp_path / "probe.py"
    probe.write_text(planted)
    problems = violations(probe, "analysis/probe.py")
    assert len(problems) == 6 and problems[0].startswith("sharpkit/analysis/probe.py:2 defines TITLES")
    # An allowed table is allowed only where it is allowed.
    probe.write_text('PAPER_CONVENTIONS = {"sam_sharpness": {}, "relative_flatness": {}}\n')
    assert violations(probe, "metrics/__init__.py") == [] and len(violations(probe, "analysis/probe.py")) == 1


# --------------------------------------------------------------------------------------------------
# Imports: the registry without torch, sharpkit.metrics' names bound on first use
# --------------------------------------------------------------------------------------------------
def test_the_registry_imports_without_torch():
    code = ("import sys; import sharpkit.metrics.registry, sharpkit.metrics; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _declared_exports() -> dict[str, str]:
    """name -> module of each name the ``if TYPE_CHECKING:`` block of sharpkit/metrics/__init__.py imports."""
    tree = ast.parse((PACKAGE / "metrics" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    return {alias.asname or alias.name: f"sharpkit.metrics.{node.module}" for node in block.body
            if isinstance(node, ast.ImportFrom) and node.level == 1 for alias in node.names}


def test_every_export_of_sharpkit_metrics_is_the_declared_object():
    import sharpkit.metrics as M

    declared = _declared_exports()
    assert set(M.__all__) == set(declared) | {"PAPER_CONVENTIONS", "SHARPNESS_METRICS"}
    assert {f"sharpkit.metrics{m}" for m in M._MODULES} == set(declared.values())
    for name in M.__all__:
        value = getattr(M, name)
        assert not isinstance(value, types.ModuleType), name
        if name in declared:
            assert value is getattr(importlib.import_module(declared[name]), name), name


def test_a_submodule_imported_first_does_not_hide_its_function():
    # In a fresh interpreter: the three submodules named after their function are imported before the package
    # binds its names, as a test module importing from them directly does.
    code = ("import types; from sharpkit.metrics.sam_sharpness import SamSharpness; "
            "from sharpkit.metrics.adaptive_sharpness import AdaptiveSharpness; "
            "import sharpkit.metrics.relative_flatness; import sharpkit.metrics as M; "
            "from sharpkit.metrics import sam_sharpness; "
            "names = ('sam_sharpness', 'adaptive_sharpness', 'relative_flatness'); "
            "print(all(callable(getattr(M, n)) and not isinstance(getattr(M, n), types.ModuleType) for n in names), "
            "sam_sharpness is M.sam_sharpness, sorted(M.SHARPNESS_METRICS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "['fisher_rao_norm',", "'relative_flatness',", "'sam_sharpness']"]
