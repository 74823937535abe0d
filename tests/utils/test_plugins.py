"""The user's modules: imported by name or file, exported to worker processes, failures named."""
import os
import subprocess
import sys
from importlib import metadata

import pytest

from sharpkit.utils import plugins
from sharpkit.utils.plugins import IMPORT_ENV, PluginError, import_plugin, load_plugins, plugins_loaded


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """A folder of throwaway modules on sys.path; whatever the test imports from it is forgotten after."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(IMPORT_ENV, raising=False)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("skplug_"):
            del sys.modules[name]


def test_a_module_is_imported_by_name_or_by_file(module_dir):
    (module_dir / "skplug_named.py").write_text("VALUE = 1\n")
    assert import_plugin("skplug_named").VALUE == 1
    (module_dir / "sub").mkdir()
    (module_dir / "sub" / "skplug_file.py").write_text("VALUE = 2\n")
    assert import_plugin(str(module_dir / "sub" / "skplug_file.py")).VALUE == 2
    assert import_plugin(str(module_dir / "sub" / "skplug_file.py")) is sys.modules["skplug_file"]  # once


def test_within_the_block_the_environment_names_every_module_for_workers(module_dir):
    (module_dir / "skplug_a.py").write_text("")
    (module_dir / "skplug_b.py").write_text("")
    os.environ[IMPORT_ENV] = "skplug_a"
    try:
        with plugins_loaded(["skplug_b", "skplug_a", str(module_dir / "skplug_b.py")]) as wanted:
            assert wanted == ["skplug_a", "skplug_b", str(module_dir / "skplug_b.py")]
            assert os.environ[IMPORT_ENV] == os.pathsep.join(wanted)
        assert os.environ[IMPORT_ENV] == "skplug_a"  # restored
    finally:
        del os.environ[IMPORT_ENV]


def test_a_process_started_inside_imports_the_same_modules(module_dir):
    (module_dir / "skplug_child.py").write_text("print('imported in the child')\n")
    with plugins_loaded(["skplug_child"]):
        out = subprocess.run([sys.executable, "-c", "from sharpkit.utils.plugins import load_plugins; "
                              "print(load_plugins())"], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(module_dir)}).stdout
    assert out.splitlines() == ["imported in the child", "['skplug_child']"]


def test_a_module_in_the_current_directory_is_found_without_pythonpath(tmp_path, monkeypatch):
    # The `sharpkit` console script does not put the current directory on sys.path; `--import` looks there.
    (tmp_path / "skplug_here.py").write_text("VALUE = 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert import_plugin("skplug_here").VALUE == 3
    finally:
        sys.modules.pop("skplug_here", None)


def test_a_module_that_is_not_there_is_named_with_the_fix(module_dir):
    with pytest.raises(PluginError, match=r"Cannot import the plugin module 'skplug_missing' \(from --import\): "
                                          r"ModuleNotFoundError: No module named 'skplug_missing'\. Pass a module "
                                          r"name that imports from here"):
        import_plugin("skplug_missing")
    with pytest.raises(PluginError, match=r"'.*nope\.py'.*FileNotFoundError: no such file .*an existing \.py file"):
        import_plugin(str(module_dir / "nope.py"))


def test_a_module_that_fails_while_importing_is_named_with_its_error_and_line(module_dir):
    (module_dir / "skplug_broken.py").write_text("import os\nraise RuntimeError('no GPU here')\n")
    with pytest.raises(PluginError, match=r"'skplug_broken' \(from \$SHARPKIT_IMPORT\): RuntimeError: no GPU here\. "
                                          r"The module was found but failed while importing "
                                          r"\(at .*skplug_broken\.py:2\)"):
        import_plugin("skplug_broken", source=f"${IMPORT_ENV}")
    (module_dir / "skplug_dep.py").write_text("import skplug_not_installed\n")
    with pytest.raises(PluginError, match=r"'skplug_dep'.*No module named 'skplug_not_installed'\. The module was "
                                          r"found but failed"):
        import_plugin("skplug_dep")
    os.environ[IMPORT_ENV] = "skplug_missing"
    try:
        with pytest.raises(PluginError, match=r"'skplug_missing' \(from \$SHARPKIT_IMPORT\)"):
            load_plugins()
    finally:
        del os.environ[IMPORT_ENV]


def test_entry_points_of_both_groups_are_imported_and_a_broken_one_is_named(module_dir, monkeypatch):
    (module_dir / "skplug_ep.py").write_text("import builtins\nbuiltins.skplug_loaded = True\n")
    points = {"sharpkit.models": [metadata.EntryPoint("mine", "skplug_ep", "sharpkit.models")],
              "sharpkit.plugins": [metadata.EntryPoint("bad", "skplug_gone:thing", "sharpkit.plugins")]}
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", lambda group: points.get(group, []))
    with pytest.raises(PluginError, match=r"Cannot load the entry point 'bad' = 'skplug_gone:thing' of group "
                                          r"'sharpkit\.plugins': ModuleNotFoundError.*Fix or uninstall that package"):
        load_plugins()
    import builtins

    assert builtins.__dict__.pop("skplug_loaded")  # the good one was imported first
    points["sharpkit.plugins"] = []
    assert plugins.load_entry_points() == ["skplug_ep"]


def test_a_file_whose_name_is_taken_by_another_module_is_refused(module_dir):
    (module_dir / "json.py").write_text("")
    with pytest.raises(PluginError, match=r"another module named 'json' is already imported .*rename json\.py"):
        import_plugin(str(module_dir / "json.py"))


def test_an_empty_name_is_refused():
    with pytest.raises(PluginError, match="Expected a module name"):
        import_plugin(" ")

