"""Old import paths of the modules that moved into the layer folders (sharpkit 0.1 had them flat):
``import sharpkit.train`` still works and gives the very module ``sharpkit.run.train`` (same object, so
``isinstance`` checks and monkeypatching keep working), with a DeprecationWarning that names the new path."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "sharpkit._validation": "sharpkit.utils.validation",
    "sharpkit.io": "sharpkit.utils.io",
    "sharpkit.seeding": "sharpkit.utils.seeding",
    "sharpkit.provenance": "sharpkit.utils.provenance",
    "sharpkit.locks": "sharpkit.utils.locks",
    "sharpkit.corruptions": "sharpkit.data.corruptions",
    "sharpkit.controls": "sharpkit.run.controls",
    "sharpkit.config": "sharpkit.run.config",
    "sharpkit.train": "sharpkit.run.train",
    "sharpkit.evaluate": "sharpkit.run.evaluate",
    "sharpkit.profiles": "sharpkit.experiments.profiles",
    "sharpkit.store": "sharpkit.experiments.store",
    "sharpkit.sweep": "sharpkit.experiments.sweep",
    "sharpkit.diagonal_network": "sharpkit.experiments.diagonal_network",
    "sharpkit.stats": "sharpkit.analysis.stats",
    "sharpkit.report": "sharpkit.analysis.report",
    "sharpkit.plots": "sharpkit.analysis.plots",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path of :data:`MOVED` and loads it as the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        if spec.name != "sharpkit._validation":  # private: sharpkit's own building blocks still use it
            warnings.warn(f"{spec.name} moved to {new}; import it from there (the old path will be removed in "
                          "sharpkit 0.3)", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module):
        pass  # already executed at its new path


def install() -> None:
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
