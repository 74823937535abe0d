"""The public API's docstrings: each has an example, and every example runs (``make test``).

The public API is what ``sharpkit.metrics``, ``sharpkit.optim`` and ``sharpkit.models`` export (their
``__all__``), plus the entry points of one run and of a grid (:data:`ENTRY_POINTS`). The tests

- run every doctest of the modules that define it (the packages, their modules and the entry points'
  modules), one test per docstring, named after the object;
- fail, naming the object, when a public function or class has no ``>>>`` example in its own docstring,
  or a public constant appears in no ``>>>`` line of its package's docstring.

The examples run on the CPU with one torch thread (tiny models, a few seconds in all); each runs with the
model registry and torch's global random state restored afterwards.
"""
from __future__ import annotations

import doctest
import importlib
import inspect
import io
import pkgutil

import pytest
import torch

PACKAGES = ("sharpkit.metrics", "sharpkit.optim", "sharpkit.models")
ENTRY_POINTS = {
    "sharpkit.run.config": ("make_train_config", "TrainConfig"),
    "sharpkit.run.train": ("train",),
    "sharpkit.run.checkpoint": ("save_checkpoint", "load_for_resume", "read_log"),
    "sharpkit.data.dataset_names": ("parse_dataset_name", "DatasetName"),
    "sharpkit.experiments.profiles": ("get_profile", "Profile"),
    "sharpkit.experiments.layout": ("StoreLayout", "CacheLayout"),
    "sharpkit.experiments.cells": ("cell_metrics",),
    "sharpkit.analysis.profile_report": ("profile_report",),
    "sharpkit.analysis.diagonal_network": ("read_diagonal_record",),
}
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def documented_modules() -> list[str]:
    """The modules whose doctests run: each package, every module in it, and the entry points' modules."""
    names = []
    for package in PACKAGES:
        names.append(package)
        names += [f"{package}.{info.name}" for info in pkgutil.iter_modules(importlib.import_module(package).__path__)]
    return names + list(ENTRY_POINTS)


def public_objects() -> list[tuple[str, str, object]]:
    """``(namespace, name, object)`` of every object of the public API."""
    found = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        found += [(package, name, getattr(module, name)) for name in module.__all__]
    for module_name, names in ENTRY_POINTS.items():
        module = importlib.import_module(module_name)
        found += [(module_name, name, getattr(module, name)) for name in names]
    return found


def collect_doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = []
    for name in documented_modules():
        # Only the objects defined in the module itself: a re-exported function is collected once, where it lives.
        tests += finder.find(importlib.import_module(name), name)
    return sorted(tests, key=lambda test: test.name)


MODULES = documented_modules()
DOCTESTS = collect_doctests()
PUBLIC = public_objects()


def is_function_or_class(obj: object) -> bool:
    return inspect.isclass(obj) or callable(obj)


@pytest.fixture
def isolated():
    """One torch thread (tiny tensors: threads only add overhead), and no example leaves a trace: the model
    registry and torch's global random state are restored afterwards."""
    from sharpkit.models import registry

    threads, state, models = torch.get_num_threads(), torch.get_rng_state(), dict(registry._MODELS)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(state)
        registry._MODELS.clear()
        registry._MODELS.update(models)


@pytest.mark.parametrize("test", DOCTESTS, ids=[test.name for test in DOCTESTS])
def test_docstring_examples_run(test, isolated):
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report = io.StringIO()
    runner.run(test, out=report.write)
    assert runner.failures == 0, f"the examples of {test.name} ({test.filename}) fail:\n{report.getvalue()}"


@pytest.mark.parametrize("namespace, name, obj", PUBLIC, ids=[f"{ns}.{name}" for ns, name, _ in PUBLIC])
def test_every_public_object_has_an_example(namespace, name, obj):
    if is_function_or_class(obj):
        # The object's own docstring: a class without one would show its dataclass signature or nothing.
        docstring = obj.__doc__ or ""
        assert ">>>" in docstring, (f"{namespace}.{name} has no example: add an `Examples:` section with `>>>` "
                                    "lines to its docstring (they run in tests/test_docs.py).")
        defined_in = inspect.getmodule(inspect.unwrap(obj)).__name__
        assert defined_in in MODULES, (f"{namespace}.{name} is defined in {defined_in}, whose doctests "
                                       "tests/test_docs.py does not run; add the module to its list.")
    else:
        lines = [line for line in (importlib.import_module(namespace).__doc__ or "").splitlines()
                 if line.lstrip().startswith(">>>") and name in line]
        assert lines, (f"{namespace}.{name} (a constant) appears in no `>>>` line of the {namespace} docstring; "
                       "show it in the package docstring's `Examples:` section.")


def test_every_public_example_is_collected():
    names = {test.name.rsplit(".", 1)[-1] for test in DOCTESTS}
    missing = [f"{ns}.{name}" for ns, name, obj in PUBLIC if is_function_or_class(obj) and name not in names]
    assert not missing, f"examples that tests/test_docs.py does not collect: {missing}"
    assert {"sharpkit.metrics", "sharpkit.optim", "sharpkit.models"} <= {test.name for test in DOCTESTS}


def test_a_wrong_example_fails():
    test = doctest.DocTestParser().get_doctest(">>> 1 + 1\n3\n", {}, "wrong", None, 0)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    runner.run(test, out=lambda text: None)
    assert runner.failures == 1
