"""Write constraints.txt: the exact version of every package that `pip install -e ".[dev,book]"` needs, as
installed in the running environment (run it with .venv/bin/python after changing the environment).

pyproject.toml declares ranges, so that the wheel installs beside any torch 2.x; this lock is what makes
`make test`, `make book` and CI install the same versions every time (torch and torchvision in particular:
an unconstrained `torch` downloads the newest CUDA build). Packages are followed from sharpkit's own
requirements in pyproject.toml through the installed metadata of each dependency, with the markers of this
interpreter and platform.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("dev", "book")
HEADER = """\
# Exact versions for `make venv` (and so `make test`, `make book` and CI):
#     pip install -c constraints.txt -e ".[dev,book]"
# The package itself (pyproject.toml) asks only for ranges. Written by scripts/write_constraints.py from the
# environment the book and the tests were built in ({platform}, Python {python}); regenerate it with
# `.venv/bin/python scripts/write_constraints.py` after changing that environment.
"""


def _requirements(name: str, extras: frozenset[str]) -> list[Requirement]:
    """What ``name[extras]`` requires here: sharpkit's own lines from pyproject.toml (the installed metadata
    of an editable install may be older), every other package's from its installed metadata."""
    if canonicalize_name(name) == "sharpkit":
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        lines = project["dependencies"] + [line for extra in sorted(extras)
                                           for line in project["optional-dependencies"][extra]]
        return [Requirement(line) for line in lines]
    requirements = []
    for line in metadata.requires(name) or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras | {""}):
            requirements.append(requirement)
    return requirements


def locked_versions(extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """{distribution name: installed version} of everything ``sharpkit[extras]`` needs, sharpkit excluded."""
    versions: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [("sharpkit", frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        key = (canonicalize_name(name), wanted)
        if key in seen:
            continue
        seen.add(key)
        if key[0] != "sharpkit":
            try:
                versions[key[0]] = metadata.version(name)
            except metadata.PackageNotFoundError:
                sys.exit(f"{name} is required but not installed here: install the environment first "
                         f'(pip install -e ".[{",".join(EXTRAS)}]"), then run this again.')
        todo += [(r.name, frozenset(r.extras)) for r in _requirements(name, wanted)]
    return dict(sorted(versions.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "constraints.txt"))
    args = parser.parse_args()
    text = HEADER.format(platform=f"{platform.system()} {platform.machine()}", python=platform.python_version())
    text += "".join(f"{name}=={version}\n" for name, version in locked_versions().items())
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
