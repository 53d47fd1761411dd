"""Every notebook runs top to bottom on its tiny configs.

The default suite runs each notebook's cells in the test worker (``run_in_process``);
``make test-all`` also runs each in a fresh Jupyter kernel, as a researcher does.
"""

from pathlib import Path

import nbformat
import pytest

from tests.support.notebooks import NotebookError, run_in_kernel, run_in_process

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, path.name
        assert all(not c.outputs and c.execution_count is None for c in code), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_the_test_process(path, tmp_path):
    run_in_process(path, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_a_fresh_kernel(path, tmp_path):
    run_in_kernel(path, tmp_path)


def _notebook(path, *cells):
    """Write a notebook of ``cells`` (``"# ..."``: markdown, else code) to ``path``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(c) if c.startswith("#") else nbformat.v4.new_code_cell(c)
        for c in cells
    ]
    nbformat.write(nb, path)
    return path


def test_a_failing_cell_is_reported_with_its_notebook_and_cell(tmp_path):
    path = _notebook(tmp_path / "broken.ipynb", "# broken", "x = 1", "y = x / 0")
    expected = r"broken.ipynb, code cell 2 \('y = x / 0'\) raised ZeroDivisionError"
    with pytest.raises(NotebookError, match=expected):
        run_in_process(path, tmp_path)


def test_the_in_process_run_times_each_code_cell(tmp_path):
    path = _notebook(tmp_path / "two.ipynb", "x = 1", "# not timed", "\ny = x + 1\nassert y == 2")
    times = run_in_process(path, tmp_path)
    assert [(t.number, t.first_line) for t in times] == [(1, "x = 1"), (2, "y = x + 1")]
    assert all(t.wall >= 0 and t.cpu >= 0 for t in times)
