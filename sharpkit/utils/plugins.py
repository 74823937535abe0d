"""Plugins: the user's own modules that register models and datasets, imported before a command runs.

A plugin is an ordinary Python module that registers things when it is imported, e.g.::

    # mymodels.py
    from torch import nn
    from sharpkit.models import register_model

    @register_model("my_mlp")
    def my_mlp(num_classes, *, width=64):
        ...

It is found in three places, imported in this order:

1. the entry points of the groups ``sharpkit.models`` and ``sharpkit.plugins`` of the installed packages
   (``[project.entry-points."sharpkit.models"] my_mlp = "mypkg.models"`` in a ``pyproject.toml``);
2. the modules named in the environment variable ``SHARPKIT_IMPORT`` (separated by ``os.pathsep``, ``:`` on
   POSIX);
3. the modules passed to :func:`load_plugins` (the command line's ``--import MODULE``).

A module is a dotted module name (looked for on ``sys.path``, then in the current directory, as
``python -m`` would) or the path of a ``.py`` file. Within :func:`plugins_loaded`, ``SHARPKIT_IMPORT`` names
every module of 2 and 3, so the processes a sweep starts (they inherit the environment, and call
:func:`load_plugins` when they start) import the same modules as the command that started them.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

IMPORT_ENV = "SHARPKIT_IMPORT"
ENTRY_POINT_GROUPS = ("sharpkit.models", "sharpkit.plugins")


class PluginError(ValueError):
    """A plugin module (or entry point) could not be imported; the message names it and the error."""


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def normalise(spec: str) -> str:
    """``spec`` as it is exported to worker processes: a file path made absolute, a module name as given."""
    spec = spec.strip()
    if not spec:
        raise PluginError("Expected a module name (e.g. mypkg.models) or the path of a .py file, but got an empty "
                          f"name (from --import or ${IMPORT_ENV}).")
    return str(Path(spec).expanduser().resolve()) if _is_file(spec) else spec


def _where(error: BaseException) -> str:
    """Where an import failed: the innermost frame of its traceback (the user's file and line)."""
    frames = traceback.extract_tb(error.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _not_found(spec: str, error: BaseException) -> bool:
    """Whether ``error`` says the module itself is missing (not something it imports)."""
    if isinstance(error, FileNotFoundError):
        return True
    name = getattr(error, "name", None)
    return isinstance(error, ModuleNotFoundError) and name is not None and (spec == name or spec.startswith(name + "."))


def _failure(spec: str, error: BaseException, source: str) -> PluginError:
    if _not_found(spec, error):
        fix = ("Pass a module name that imports from here (its folder on PYTHONPATH, or the current directory) or "
               "the path of an existing .py file.")
    else:
        fix = f"The module was found but failed while importing{_where(error)}: fix that error."
    return PluginError(f"Cannot import the plugin module {spec!r} (from {source}): {type(error).__name__}: "
                       f"{error}. {fix}")


def _import_file(path: str) -> ModuleType:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such file {file}")
    name = file.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        loaded_file = getattr(loaded, "__file__", None)
        if loaded_file and Path(loaded_file).resolve() == file:
            return loaded
        raise ImportError(f"another module named {name!r} is already imported (from "
                          f"{getattr(loaded, '__file__', 'built in')}); rename {file.name}")
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"{file} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as `import` does, so that objects it defines pickle by name (spawned workers).
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_name(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        # Not found at all (rather than a dependency of it missing): look in the current directory too, which
        # is not on sys.path when the `sharpkit` console script runs.
        cwd = os.getcwd()
        if not _not_found(name, error) or cwd in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(name)


def import_plugin(spec: str, source: str = "--import") -> ModuleType:
    """Import one plugin module (a dotted name or a ``.py`` path); raises :class:`PluginError` naming it,
    ``source`` (where it was asked for) and the import's own error."""
    spec = normalise(spec)
    try:
        return _import_file(spec) if _is_file(spec) else _import_name(spec)
    except Exception as error:  # any failure of the user's code at import time: name the module with it
        raise _failure(spec, error, source) from error


def load_entry_points(groups: Sequence[str] = ENTRY_POINT_GROUPS) -> list[str]:
    """Import the module of every entry point of ``groups``; returns their values (``module[:attr]``)."""
    loaded = []
    for group in groups:
        for entry in importlib.metadata.entry_points(group=group):
            try:
                entry.load()  # importing the module registers what it defines
            except Exception as error:
                where = f"entry point {entry.name!r} = {entry.value!r} of group {group!r}"
                dist = getattr(entry, "dist", None)
                if dist is not None:
                    where += f", installed by {dist.metadata['Name']}"
                raise PluginError(f"Cannot load the {where}: {type(error).__name__}: {error}{_where(error)}. Fix "
                                  "or uninstall that package.") from error
            loaded.append(entry.value)
    return loaded


def env_modules() -> list[str]:
    """The modules named in ``$SHARPKIT_IMPORT``."""
    return [part for part in os.environ.get(IMPORT_ENV, "").split(os.pathsep) if part.strip()]


def load_plugins(modules: Sequence[str] = ()) -> list[str]:
    """Import the entry points, the modules of ``$SHARPKIT_IMPORT`` and ``modules``, in that order.

    Returns the modules of ``$SHARPKIT_IMPORT`` and ``modules`` as :func:`normalise` writes them, each once:
    what a worker process must import too. Importing a module a second time does nothing.
    """
    load_entry_points()
    wanted: list[str] = []
    for spec, source in [(s, f"${IMPORT_ENV}") for s in env_modules()] + [(s, "--import") for s in modules]:
        import_plugin(spec, source)
        if normalise(spec) not in wanted:
            wanted.append(normalise(spec))
    return wanted


@contextlib.contextmanager
def plugins_loaded(modules: Sequence[str] = ()) -> Iterator[list[str]]:
    """:func:`load_plugins`, then, within the block, ``$SHARPKIT_IMPORT`` names every module imported, so that
    worker processes started inside it import them too; afterwards the previous value returns."""
    wanted = load_plugins(modules)
    previous = os.environ.get(IMPORT_ENV)
    if wanted:
        os.environ[IMPORT_ENV] = os.pathsep.join(wanted)
    try:
        yield wanted
    finally:
        if previous is None:
            os.environ.pop(IMPORT_ENV, None)
        else:
            os.environ[IMPORT_ENV] = previous
