"""scripts/build_book.py: which pages it makes, with which parameters, and that the executed notebooks
committed for the other book tests are those its sources produce."""
from __future__ import annotations

import json

import pytest

from ._helpers import EXECUTED, PROFILE, ROOT, load_build_book

jupytext = pytest.importorskip("jupytext", reason="the book extra is not installed: pip install -e '.[book]'")
nbformat = pytest.importorskip("nbformat", reason="the book extra is not installed: pip install -e '.[book]'")
yaml = pytest.importorskip("yaml", reason="the book extra is not installed: pip install -e '.[book]'")

from sharpkit.analysis.report import paper_dataset, paper_tables_index  # noqa: E402
from sharpkit.experiments.profiles import get_profile  # noqa: E402

REGENERATE = ("python scripts/build_book.py --profile smoke --results tests/book/results "
              "--execute-into tests/book/executed")


def toc_files() -> list[str]:
    """Every `file:` entry of _toc.yml, root first."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc["parts"]:
        walk(part["chapters"])
    return files


@pytest.mark.parametrize("dataset, expected", [
    ("cifar10", "cifar10"), ("cifar100", "cifar100"), ("tinyimagenet", "tinyimagenet"),
    ("cifar100-c", "cifar100"), ("cifar10-c:/data/CIFAR-10-C", "cifar10"),
    ("npz:../shared/data/cifar10-jpeg-20k.npz", "cifar10"), ("npz:/x/CIFAR100_small.npz", "cifar100"),
    ("npz:/x/tinyimagenet-64.npz", "tinyimagenet"), ("npz:/x/other.npz", "cifar10"), ("digits", "cifar10"),
])
def test_paper_dataset_maps_our_datasets_to_the_papers(dataset, expected):
    assert paper_dataset(dataset) == expected


def test_paper_dataset_rejects_a_non_name():
    with pytest.raises(ValueError, match="dataset name"):
        paper_dataset("")


def test_every_notebook_page_of_the_toc_is_made_and_every_made_page_is_listed(build_book):
    listed = {f.removeprefix("notebooks/") for f in toc_files() if f.startswith("notebooks/")}
    made = {page.name for page in build_book.book_pages(PROFILE, "results")}
    assert listed == made
    for prose in (f for f in toc_files() if f.startswith("book/")):
        assert (ROOT / f"{prose}.md").is_file(), prose
    for page in build_book.book_pages(PROFILE, "results"):
        assert (ROOT / "notebooks" / f"{page.source}.md").is_file(), page.source


def test_one_table_page_per_paper_table_with_the_datasets_of_the_profile(build_book):
    pages = {p.name: p for p in build_book.book_pages("digits-mini", "results")}
    for n, (arch, dataset) in paper_tables_index().items():
        page = pages[f"table-{n}"]
        # A table whose experiment the profile lacks is the page without runs of ours.
        assert page.source == ("table" if dataset == "cifar10" else "table_nodata")
        assert page.title.startswith(f"Table {n}: ")
        assert page.parameters["arch"] == arch
        # digits stands in for CIFAR-10; the other datasets have no experiment in digits-mini.
        assert page.parameters["dataset"] == ("digits" if dataset == "cifar10" else dataset)
        assert page.parameters["profile"] == "digits-mini" and page.parameters["results_dir"] == "results"
    cifar_pages = {p.name: p for p in build_book.book_pages("cifar10-mini", "results")}
    assert cifar_pages["table-4"].parameters["dataset"] == "npz:../shared/data/cifar10-jpeg-20k.npz"
    assert cifar_pages["table-5"].parameters["dataset"] == "cifar100"
    paper_pages = {p.name: p for p in build_book.book_pages("paper", "results")}
    assert {p.source for n, p in paper_pages.items() if n.startswith("table-")} == {"table"}


def test_the_profile_is_cifar10_mini_only_when_its_results_are_stored(build_book, tmp_path):
    assert build_book.choose_profile(None, tmp_path) == "digits-mini"
    assert build_book.choose_profile("smoke", tmp_path) == "smoke"
    (tmp_path / "cifar10-mini" / "runs" / "abc").mkdir(parents=True)
    (tmp_path / "cifar10-mini" / "sweep.json").write_text("{}")
    assert build_book.choose_profile(None, tmp_path) == "digits-mini"  # a store without any run
    (tmp_path / "cifar10-mini" / "runs" / "abc" / "result.json").write_text("{}")
    assert build_book.choose_profile(None, tmp_path) == "digits-mini"  # a partial store would train for hours
    run_ids = [spec.run_id for spec in get_profile("cifar10-mini").runs()]
    for run_id in run_ids:
        (tmp_path / "cifar10-mini" / "runs" / run_id).mkdir()
        (tmp_path / "cifar10-mini" / "runs" / run_id / "result.json").write_text("{}")
    assert build_book.choose_profile(None, tmp_path) == "cifar10-mini"
    (tmp_path / "cifar10-mini" / "runs" / run_ids[-1] / "result.json").unlink()
    assert build_book.choose_profile(None, tmp_path) == "digits-mini"
    (tmp_path / "cifar10-mini" / "runs" / run_ids[-1] / "result.json").write_text("{}")
    # The models at a minimum come first once all of their runs are stored; a partial grid is passed over.
    (tmp_path / "cifar10-minima" / "runs").mkdir(parents=True)
    (tmp_path / "cifar10-minima" / "sweep.json").write_text("{}")
    minima_ids = [spec.run_id for spec in get_profile("cifar10-minima").runs()]
    for run_id in minima_ids[:-1]:
        (tmp_path / "cifar10-minima" / "runs" / run_id).mkdir()
        (tmp_path / "cifar10-minima" / "runs" / run_id / "result.json").write_text("{}")
    assert build_book.choose_profile(None, tmp_path) == "cifar10-mini"
    (tmp_path / "cifar10-minima" / "runs" / minima_ids[-1]).mkdir()
    (tmp_path / "cifar10-minima" / "runs" / minima_ids[-1] / "result.json").write_text("{}")
    assert build_book.choose_profile(None, tmp_path) == "cifar10-minima"


def test_set_title_replaces_the_first_heading_only(build_book):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("# Generic title\n\nText.\n\n# Later heading"),
    ])
    build_book.set_title(notebook, "Table 3: ResNet-18 trained on TinyImageNet")
    assert notebook.cells[1].source == "# Table 3: ResNet-18 trained on TinyImageNet\n\nText.\n\n# Later heading"
    with pytest.raises(ValueError, match="title"):
        build_book.set_title(nbformat.v4.new_notebook(), "x")


def code_cells(notebook) -> list[str]:
    return [c.source.strip() for c in notebook.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("page", [p.name for p in load_build_book().book_pages(PROFILE, "../results")])
def test_committed_executed_notebooks_are_up_to_date(build_book, page):
    """The notebooks nbval re-runs must be the current sources executed with the current parameters."""
    spec = {p.name: p for p in build_book.book_pages(PROFILE, "../results")}[page]
    executed = nbformat.read(EXECUTED / f"{page}.ipynb", as_version=4)
    source = jupytext.read(ROOT / "notebooks" / f"{spec.source}.md")
    stale = f"tests/book/executed/{page}.ipynb is stale; regenerate it with `{REGENERATE}`."
    assert code_cells(executed) == code_cells(source), stale
    assert executed.metadata["papermill"]["parameters"] == json.loads(json.dumps(spec.parameters)), stale
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, stale


@pytest.mark.parametrize("page", [f"table-{n}" for n in range(1, 9)])
def test_every_table_page_with_runs_shows_the_training_accuracy_column(page):
    """Whether a table's models sit at a minimum is on the page itself: every table page that shows our
    runs has the eval-mode training accuracy column (in the executed notebooks of the smoke profile)."""
    notebook = nbformat.read(EXECUTED / f"{page}.ipynb", as_version=4)
    outputs = "".join(str(o.get("data", {}).get("text/html", "")) + str(o.get("data", {}).get("text/markdown", ""))
                      + str(o.get("text", ""))
                      for c in notebook.cells for o in c.get("outputs", []))
    if "No stored runs of" in outputs:
        return
    assert "<th>Train Accuracy (eval)</th>" in outputs, page


def test_hide_machinery_tags_the_parameters_and_injected_cells_only(build_book, tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 2", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(x)", metadata={"tags": ["remove-input"]}),
    ])
    path = tmp_path / "page.ipynb"
    nbformat.write(notebook, path)
    build_book.hide_machinery(path)
    build_book.hide_machinery(path)  # idempotent
    tags = [c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells]
    assert tags == [[], ["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], ["remove-input"]]


def test_every_notebook_hides_its_parameters_and_imports():
    """The first screen of a page is its title and results: the parameters cell and the cell of imports
    and loading are removed from the rendered page (tags in the source)."""
    for path in sorted((ROOT / "notebooks").glob("*.md")):
        cells = [c for c in jupytext.read(path).cells if c.cell_type == "code"]
        parameters = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
        assert len(parameters) == 1 and "remove-cell" in parameters[0].metadata["tags"], path.name
        imports = [c for c in cells if c.source.lstrip().startswith(("from ", "import "))]
        assert imports and all("remove-cell" in c.metadata.get("tags", []) for c in imports), path.name
