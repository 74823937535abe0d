"""The layer contract of ARCHITECTURE.md: a module of sharpkit imports only from its own layer or the layers
below it (function-level imports included), nothing inside the package uses an old 0.1 import path, and the
analysis layer can be imported without torch. The imports are read from the source (ast), not executed."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sharpkit
from sharpkit._moved import MOVED

PACKAGE = Path(sharpkit.__file__).parent
# Lowest first. A module belongs to the first layer one of whose prefixes it starts with.
LAYERS = [
    ("utilities", ("sharpkit.utils", "sharpkit._moved")),
    ("building blocks", ("sharpkit.data", "sharpkit.models", "sharpkit.optim", "sharpkit.metrics")),
    ("one run", ("sharpkit.run",)),
    ("a grid of runs", ("sharpkit.experiments",)),
    ("analysis", ("sharpkit.analysis",)),
    ("interfaces", ("sharpkit.cli",)),
]


def layer_of(module: str) -> int:
    if module == "sharpkit":
        return 0  # the package's __init__ imports only _moved
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer of ARCHITECTURE.md; add its folder to LAYERS and the document")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    where = PACKAGE.parent.joinpath(*name.split("."))
    return where.with_suffix(".py").exists() or (where / "__init__.py").exists()


def sharpkit_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of a sharpkit module in ``path``, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "sharpkit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "sharpkit":
                continue
            subs = [f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")]
            found += [(node.lineno, s) for s in subs] or [(node.lineno, target)]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path):
    here = module_name(path)
    for line, target in sharpkit_imports(path):
        if target in MOVED and here != "sharpkit._moved":
            pytest.fail(f"{path.relative_to(PACKAGE)}:{line} imports the old path {target}; use {MOVED[target]}")
        if layer_of(target) > layer_of(here):
            pytest.fail(f"{path.relative_to(PACKAGE)}:{line} ({LAYERS[layer_of(here)][0]}) imports {target} "
                        f"({LAYERS[layer_of(target)][0]}), a higher layer; move the shared code down "
                        f"(see ARCHITECTURE.md)")


def test_the_contract_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a building block importing the sweep is reported."""
    fake = PACKAGE / "metrics" / "_contract_probe.py"
    fake.write_text("from ..experiments import sweep\n")
    try:
        [(line, target)] = sharpkit_imports(fake)
        assert target == "sharpkit.experiments.sweep"
        assert layer_of(target) > layer_of(module_name(fake))
    finally:
        fake.unlink()


def test_every_layer_folder_is_named_in_architecture_md():
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    for path in SOURCES:
        rel = path.relative_to(PACKAGE.parent).as_posix()
        assert f"`{rel}`" in text or path.name == "__init__.py", f"ARCHITECTURE.md does not describe {rel}"


def test_analysis_imports_without_torch():
    # Every module of the layer, found on disk, so that a new one cannot slip past the check.
    modules = sorted(f"sharpkit.analysis.{p.stem}" for p in (PACKAGE / "analysis").glob("*.py")
                     if p.name != "__init__.py")
    assert len(modules) >= 9, modules
    code = f"import sys; import {', '.join(modules)}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_old_paths_give_the_moved_module_with_a_warning():
    import importlib

    for old, new in MOVED.items():
        if old == "sharpkit._validation":
            continue
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
            module = importlib.import_module(old)
        assert module is importlib.import_module(new)
