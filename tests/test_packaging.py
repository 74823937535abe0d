"""The wheel as a user gets it: built from the repository, installed into a fresh virtual environment
outside it, and used there on a torchvision model.

Nothing is downloaded: the wheel is built with this environment's setuptools (no build isolation) and
installed without dependencies; the fresh environment then sees this one's packages (the pinned torch of
constraints.txt) through a ``.pth`` line, as ``--system-site-packages`` would show a system torch. Inside
it, the optional packages are made unimportable, so the core of sharpkit is shown to need none of them.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import venv
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import sharpkit

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# The optional dependencies (and two former ones), which sharpkit.metrics/.optim/.models/.train/.evaluate
# must not need to import.
EXTRA_ONLY = ("pandas", "scipy", "sklearn", "matplotlib", "submitit", "torchmetrics", "skimage")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of what pyproject.toml packages (the checkout itself is not written)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in ["pyproject.toml", PYPROJECT["readme"], *PYPROJECT["license-files"]]:
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "sharpkit", source / "sharpkit", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "--no-index", "--quiet", "-w", str(out)], check=True, timeout=300)
    (built,) = out.glob("sharpkit-*.whl")
    return built


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode()), archive.namelist()


def test_the_wheel_declares_ranges_its_license_and_its_version(wheel):
    meta, names = _metadata(wheel)
    assert meta["Version"] == sharpkit.__version__
    assert meta["License-Expression"] == "MIT"
    assert "sharpkit/py.typed" in names and "sharpkit/resources/reported_tables.csv" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta.get_payload().startswith("# sharpkit\n")  # the package README
    core = [Requirement(line) for line in meta.get_all("Requires-Dist") if "extra ==" not in line]
    assert {r.name for r in core} == {"torch", "torchvision", "numpy", "tqdm"}
    assert not any(s.operator == "==" for r in core for s in r.specifier), core
    torch = next(r for r in core if r.name == "torch")
    assert torch.specifier.contains("2.1.0") and torch.specifier.contains("2.13.0")
    # ... and this environment, installed from constraints.txt, satisfies every core requirement.
    for requirement in core:
        assert requirement.specifier.contains(Version(metadata.version(requirement.name))), requirement


PROGRAM = textwrap.dedent("""
    import json, sys

    for name in sys.argv[1].split(","):  # as if not installed: `import` raises, importlib.util.find_spec is None
        sys.modules[name] = None
    from importlib.metadata import version
    import torch, torchvision
    import sharpkit, sharpkit.models, sharpkit.run.train, sharpkit.run.evaluate
    from sharpkit.metrics import sam_sharpness
    from sharpkit.optim import SAM

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))) for _ in range(2)]
    sharpness = sam_sharpness(model, batches, samples=2, generator=torch.Generator().manual_seed(0))
    optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = batches[0]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.first_step(zero_grad=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.second_step(zero_grad=True)
    print(json.dumps({"file": sharpkit.__file__, "version": sharpkit.__version__,
                      "dist_version": version("sharpkit"), "sharpness": sharpness.value,
                      "restored": all(torch.equal(p, b) for p, b in zip(model.parameters(), before))}))
""")


def test_the_installed_wheel_measures_a_torchvision_model_outside_the_repository(wheel, tmp_path):
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # After the wheel, so that it is installed into an empty environment; appended to sys.path, so the
    # wheel's sharpkit comes first (a path line does not run this environment's editable-install hooks).
    (site / "zz_pinned_torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = subprocess.run([str(python), "-c", PROGRAM, ",".join(EXTRA_ONLY)], cwd=work, capture_output=True,
                            text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(site), report["file"]
    assert not Path(report["file"]).is_relative_to(REPO)
    assert report["version"] == report["dist_version"] == sharpkit.__version__
    assert report["sharpness"] > 0.0
    assert report["restored"], "SAM with lr = 0 did not come back to the weights exactly"
