#!/usr/bin/env python
"""Build the sharpkit book: run the sweep, execute every notebook with papermill, render with Jupyter Book.

    python scripts/build_book.py                          # what `make book` runs
    python scripts/build_book.py --profile cifar10-mini   # another profile
    python scripts/build_book.py --no-sweep               # only results already stored

Steps (each prints the command it runs, so any of them can be repeated by hand):

1. profile: ``--profile``, else the first of ``cifar10-minima``, ``cifar10-mini`` whose results are all stored, else
   ``digits-mini`` (embedded data: trains offline on any machine);
2. sweep: ``sharpkit sweep --profile P --results DIR`` (runs already stored are reused, not recomputed);
3. notebooks: every jupytext notebook of ``notebooks/`` is converted to ``.ipynb`` and executed by
   papermill with its parameters into ``_build/src/notebooks/``; the ``table`` notebook runs once per
   table of the paper (``table-1`` ... ``table-8``; ``table_nodata`` for a table whose experiment the profile
   lacks), the others once; the parameters and papermill-injected cells are then tagged ``remove-cell``;
4. MathJax: copied from the npm registry (``npm pack mathjax@3``) into the site, so formulas render
   without network; without npm the pages load it from the CDN;
5. site: the prose (``book/``), ``_config.yml``, ``_toc.yml`` and the executed notebooks are staged in
   ``_build/src`` and ``jupyter-book build`` renders them into ``_build/html`` with Sphinx warnings
   as errors. Jupyter Book executes nothing (``execute_notebooks: "off"``).

``--execute-into DIR --pages ...`` only executes notebooks, with DIR as their working directory (how
the executed notebooks under ``tests/book/executed`` that nbval re-runs are produced).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_PROFILE = "digits-mini"
# Used by default, the first whose results the repository holds completely: the models at a minimum, then the
# early-training snapshots (the report adds every other stored profile beside the one built).
STORED_PROFILES = ("cifar10-minima", "cifar10-mini")
BEYOND_PROFILES = ["beyond-cifar10", "beyond-digits"]  # the "Beyond the paper" chapter's sweeps (stored)
DIAGONAL_RESULTS = "diagonal-network/result.json"  # under the results root: `sharpkit diagonal-network --out`
MATHJAX_PACKAGE = "mathjax@3"
MATHJAX_ENTRY = "tex-mml-chtml.js"  # Sphinx's default MathJax 3 component
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
# What tex-mml-chtml.js loads at run time (fonts, extensions, the menu's accessibility parts); the
# rest of the package (other bundles, SVG output) is not needed.
MATHJAX_PARTS = (MATHJAX_ENTRY, "a11y", "adaptors", "input", "output/chtml", "sre", "ui")
# tqdm.auto (imported by sharpkit.run.train) warns inside a kernel without ipywidgets; the warning
# would land in the pages as stderr output, which the book treats as an error.
KERNEL_ENV = {"PYTHONWARNINGS": "ignore:IProgress not found"}


@dataclass(frozen=True)
class Page:
    """One executed notebook of the book."""

    name: str  # output name, as listed in _toc.yml (notebooks/<name>)
    source: str  # jupytext notebook in notebooks/, without suffix
    parameters: dict[str, Any] = field(default_factory=dict)
    title: str | None = None  # replaces the notebook's first heading (the page title)


def log(message: str) -> None:
    print(f"[build_book] {message}", flush=True)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    log("$ " + " ".join(str(part) for part in command))
    return subprocess.run([str(part) for part in command], check=True, **kwargs)


def venv_tool(name: str) -> str:
    """A console script installed next to this Python (the project's .venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"`{name}` is not installed next to {sys.executable} nor on PATH. Install the "
                                "book's dependencies: pip install -e '.[book]'.")
    return found


# --------------------------------------------------------------------------------------------------
# 1-2. Profile and sweep
# --------------------------------------------------------------------------------------------------
def has_results(results: Path, profile: str) -> bool:
    from sharpkit.experiments.layout import StoreLayout

    return StoreLayout.of(results, profile).has_runs()


def missing_runs(results: Path, profile: str) -> int:
    """How many runs of ``profile`` have no stored result under ``results``."""
    from sharpkit.experiments.layout import StoreLayout
    from sharpkit.experiments.profiles import get_profile

    layout = StoreLayout.of(results, profile)
    return sum(not layout.result_file(spec.run_id).exists() for spec in get_profile(profile).runs())


def choose_profile(requested: str | None, results: Path) -> str:
    """``requested``, else the first of :data:`STORED_PROFILES` of which *every* run is stored (a partial
    store would make the build train for hours), else the default profile."""
    if requested:
        return requested
    for profile in STORED_PROFILES:
        if not has_results(results, profile):
            continue
        missing = missing_runs(results, profile)
        if not missing:
            return profile
        log(f"{results / profile} lacks {missing} runs: not building on it (finish it with "
            f"`scripts/background_sweep.sh {profile}`, or pass PROFILE={profile})")
    return DEFAULT_PROFILE


def run_sweep(profile: str, results: Path, workers: int) -> None:
    run([sys.executable, "-m", "sharpkit.cli", "sweep", "--profile", profile, "--results", results,
         "--workers", str(workers)], cwd=ROOT)


# --------------------------------------------------------------------------------------------------
# 3. Notebooks
# --------------------------------------------------------------------------------------------------
def table_dataset(profile: str, arch: str, paper_ds: str) -> str:
    """The profile's dataset standing for the paper's ``paper_ds`` with ``arch`` (e.g. ``digits`` for
    CIFAR-10 in digits-mini); ``paper_ds`` itself when the profile has no such experiment (the page
    then says that there are no results and how to produce them)."""
    from sharpkit.analysis.report import paper_dataset
    from sharpkit.experiments.profiles import get_profile

    for experiment in get_profile(profile).experiments:
        if experiment.arch == arch and paper_dataset(experiment.dataset) == paper_ds:
            return experiment.dataset
    return paper_ds


def has_experiment(profile: str, arch: str, dataset: str) -> bool:
    """Whether ``profile`` trains ``arch`` on exactly ``dataset``."""
    from sharpkit.experiments.profiles import get_profile

    return any(e.arch == arch and e.dataset == dataset for e in get_profile(profile).experiments)


def book_pages(profile: str, results_dir: str) -> list[Page]:
    """Every executed notebook of the book, with its parameters."""
    from sharpkit.analysis.report import paper_table, paper_tables_index

    common = {"results_dir": results_dir, "profile": profile}
    # The slowest first, so that they overlap with the others when several run at once.
    pages = [Page("report", "report", common), Page("intro", "intro", common),
             Page("metrics_explained", "metrics_explained", {}), Page("kendall_tau", "kendall_tau", common),
             Page("overview", "overview", common), Page("own_model", "own_model", {})]
    for n, (arch, paper_ds) in sorted(paper_tables_index().items()):
        dataset = table_dataset(profile, arch, paper_ds)
        # A table whose experiment the profile lacks gets the page without runs of ours (table_nodata).
        source = "table" if dataset != paper_ds or has_experiment(profile, arch, paper_ds) else "table_nodata"
        parameters = {"arch": arch, "dataset": dataset, **common}
        pages.append(Page(f"table-{n}", source, parameters, title=paper_table(n).title))
    # The chapter beyond the paper reads its own stored sweep whatever the main profile is.
    pages.append(Page("beyond", "beyond", {"results_dir": results_dir, "profiles": BEYOND_PROFILES,
                                           "diagonal_results": f"{results_dir}/{DIAGONAL_RESULTS}"}))
    return pages


def set_title(notebook: Any, title: str) -> None:
    """Replace the first markdown heading of ``notebook`` (its page title) by ``title``."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            lines = cell.source.lstrip().splitlines()
            cell.source = "\n".join([f"# {title}"] + lines[1:])
            return
    raise ValueError("Expected a notebook whose first markdown cell starts with a '# ' title, but found none.")


# Cells a reader never needs to see: the parameters cell of each notebook and the one papermill injects after
# it (its values are the page's parameters, which the page states in words where they matter).
MACHINERY_TAGS = ("parameters", "injected-parameters")


def hide_machinery(path: Path) -> None:
    """Tag the parameters and papermill-injected cells of the executed notebook ``path`` ``remove-cell``, so
    that Jupyter Book leaves them out of the page (the notebook keeps them, for papermill and nbval)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    changed = False
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if any(tag in tags for tag in MACHINERY_TAGS) and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed = True
    if changed:
        nbformat.write(notebook, path)


def execute_page(page: Page, out_dir: Path, work_dir: Path, cwd: Path, threads: int) -> Path:
    """jupytext -> .ipynb (title set) -> papermill with the page's parameters, run in ``cwd``."""
    import jupytext
    import nbformat

    notebook = jupytext.read(NOTEBOOKS / f"{page.source}.md")
    if page.title:
        set_title(notebook, page.title)
    source = work_dir / f"{page.name}.ipynb"
    nbformat.write(notebook, source)
    target = out_dir / f"{page.name}.ipynb"
    command = [sys.executable, "-m", "papermill", source, target, "--cwd", cwd, "--no-progress-bar",
               "-y", json.dumps(page.parameters)]
    started = time.perf_counter()
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                            env={**os.environ, **KERNEL_ENV, "OMP_NUM_THREADS": str(threads)})
    if result.returncode != 0:
        raise RuntimeError(f"papermill failed on {page.name} ({' '.join(map(str, command))}):\n"
                           f"{result.stderr[-4000:]}\nThe partly executed notebook is {target}.")
    log(f"executed {page.name} in {time.perf_counter() - started:.0f} s: papermill notebooks/{page.source}.ipynb "
        f"{target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} -y '{json.dumps(page.parameters)}'")
    return target


def execute_pages(pages: list[Page], out_dir: Path, cwd: Path, jobs: int) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = max(1, jobs)
    # Kernels running side by side share the cores: more OpenMP threads than cores makes torch's
    # spinning threads slow everything down by an order of magnitude.
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with tempfile.TemporaryDirectory(prefix="sharpkit-book-") as work:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(execute_page, page, out_dir, Path(work), cwd, threads) for page in pages]
            return [future.result() for future in futures]


# --------------------------------------------------------------------------------------------------
# 4. MathJax
# --------------------------------------------------------------------------------------------------
def vendor_mathjax(cache: Path) -> Path | None:
    """MathJax's browser bundle from the npm registry, unpacked once into ``cache``; None without npm
    (or when the registry cannot be reached)."""
    target = cache / "mathjax"
    if (target / MATHJAX_ENTRY).exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        log("npm not found: the pages will load MathJax from the CDN (formulas need network).")
        return None
    with tempfile.TemporaryDirectory(prefix="sharpkit-mathjax-") as tmp:
        try:
            packed = run([npm, "pack", MATHJAX_PACKAGE, "--silent", "--pack-destination", tmp],
                         capture_output=True, text=True)
        except subprocess.CalledProcessError as error:
            log(f"npm pack {MATHJAX_PACKAGE} failed ({error.stderr.strip()[-300:]}); using the CDN instead.")
            return None
        archive = Path(tmp) / packed.stdout.strip().splitlines()[-1]
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        staging = cache / "mathjax.partial"
        shutil.rmtree(staging, ignore_errors=True)
        for part in MATHJAX_PARTS:
            source = Path(tmp) / "package" / "es5" / part
            destination = staging / part
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination)
            else:
                shutil.copy2(source, destination)
        version = json.loads((Path(tmp) / "package" / "package.json").read_text())["version"]
        (staging / "VERSION").write_text(version + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    log(f"MathJax {version} vendored into {target}")
    return target


# --------------------------------------------------------------------------------------------------
# 5. Site
# --------------------------------------------------------------------------------------------------
def stage_sources(src: Path, mathjax: Path | None) -> None:
    """Copy the prose and the book configuration into ``src``; point MathJax at the vendored copy."""
    import yaml

    shutil.copytree(ROOT / "book", src / "book", ignore=shutil.ignore_patterns("_static_src"))
    shutil.copytree(ROOT / "book" / "_static_src", src / "_vendor")
    shutil.copy2(ROOT / "_toc.yml", src / "_toc.yml")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {}) or {}
    config["sphinx"]["config"] = sphinx_config
    if mathjax is not None:
        shutil.copytree(mathjax, src / "_vendor" / "mathjax")
        sphinx_config["mathjax_path"] = f"mathjax/{MATHJAX_ENTRY}"
    else:
        sphinx_config["mathjax_path"] = MATHJAX_CDN
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def build_site(src: Path, output_root: Path, strict: bool) -> Path:
    command = [venv_tool("jupyter-book"), "build", src, "--path-output", output_root, "--all"]
    if strict:
        command += ["-W", "--keep-going"]
    run(command)
    return output_root / "_build" / "html"


# --------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", help=f"sweep profile (default: the first of {', '.join(STORED_PROFILES)} whose "
                                          f"results are all stored, else {DEFAULT_PROFILE})")
    parser.add_argument("--results", default="results",
                        help="results root, relative to the repository (default: results)")
    parser.add_argument("--output", default=str(ROOT), help="folder that receives _build/ (default: the repository)")
    parser.add_argument("--no-sweep", action="store_true", help="do not run the sweep; use the stored results only")
    parser.add_argument("--workers", type=int, default=1, help="sweep worker processes (default 1)")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                        help="notebooks executed at the same time (default: up to 4, one per core)")
    parser.add_argument("--no-strict", action="store_true", help="do not turn Sphinx warnings into errors")
    parser.add_argument("--execute-into",
                        help="only execute notebooks, into this folder (also their working directory)")
    parser.add_argument("--executed",
                        help="render the notebooks already executed in this folder (e.g. tests/book/executed) "
                             "instead of running the sweep and papermill")
    parser.add_argument("--pages", help="comma-separated page names to execute (default: all)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results = (ROOT / args.results).resolve()
    profile = choose_profile(args.profile, results)
    log(f"profile {profile}, results in {results}")

    if args.execute_into:
        cwd = Path(args.execute_into).resolve()
        pages = book_pages(profile, os.path.relpath(results, cwd))
        if args.pages:
            wanted = args.pages.split(",")
            unknown = sorted(set(wanted) - {p.name for p in pages})
            if unknown:
                raise ValueError(f"Unknown page(s) {unknown}; pages are {[p.name for p in pages]}.")
            pages = [p for p in pages if p.name in wanted]
        execute_pages(pages, cwd, cwd, args.jobs)
        log(f"done in {time.perf_counter() - started:.0f} s")
        return 0

    output_root = Path(args.output).resolve()
    build = output_root / "_build"
    src = build / "src"
    shutil.rmtree(src, ignore_errors=True)
    (src / "notebooks").mkdir(parents=True)
    if args.executed:
        for page in book_pages(profile, args.results):
            shutil.copy2(Path(args.executed) / f"{page.name}.ipynb", src / "notebooks" / f"{page.name}.ipynb")
    else:
        if not args.no_sweep:
            run_sweep(profile, results, args.workers)
        execute_pages(book_pages(profile, os.path.relpath(results, ROOT)), src / "notebooks", ROOT, args.jobs)
    for notebook in sorted((src / "notebooks").glob("*.ipynb")):
        hide_machinery(notebook)
    stage_sources(src, vendor_mathjax(build / "vendor"))
    html = build_site(src, output_root, strict=not args.no_strict)
    log(f"book ready in {time.perf_counter() - started:.0f} s: {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
