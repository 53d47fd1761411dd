"""Run a notebook's code cells top to bottom, in a Jupyter kernel or in this process.

``run_in_kernel`` is what a researcher does: a fresh ``python3`` kernel through nbclient.
``run_in_process`` runs the same cells in an IPython shell inside the test worker, which has
torch, Lightning and xarray imported already, so a notebook costs its own work and not a
kernel start and those imports (about 3-5 s each on two busy cores). What the worker's
state could hide (an import a notebook forgot) the kernel run finds; the suite runs both.

The in-process run gives the worker back as it found it: working directory, logging tree,
matplotlib backend and interactivity, torch's thread count and the IPython singleton.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import nbformat

from tests.support.cli import preserved_logging


class NotebookError(AssertionError):
    """A cell raised: names the notebook, the cell and its first line."""


def code_cells(path: Path) -> list[str]:
    """The sources of a notebook's code cells, in order."""
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def run_in_kernel(path: Path, cwd: Path, *, timeout: int = 300) -> None:
    """Execute ``path`` in a fresh ``python3`` kernel started in ``cwd``."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    try:
        client.execute()
    except CellExecutionError as error:
        raise NotebookError(f"{path.name}: {error}") from None


def run_in_process(path: Path, cwd: Path) -> None:
    """Execute ``path``'s code cells in an IPython shell of this process, in ``cwd``."""
    import matplotlib
    import matplotlib.pyplot as plt
    import torch
    from IPython.core.interactiveshell import InteractiveShell

    backend, interactive = matplotlib.get_backend(), matplotlib.is_interactive()
    threads = torch.get_num_threads()

    class Shell(InteractiveShell):
        def enable_gui(self, gui=None):
            """``%matplotlib inline`` needs no GUI event loop (as in ipykernel's shell)."""

    InteractiveShell.clear_instance()
    shell = Shell.instance()
    try:
        with contextlib.chdir(cwd), preserved_logging():
            for number, source in enumerate(code_cells(path), start=1):
                result = shell.run_cell(source, store_history=False, silent=False)
                if not result.success:
                    error = result.error_in_exec or result.error_before_exec
                    first = source.strip().splitlines()[0] if source.strip() else ""
                    raise NotebookError(
                        f"{path.name}, code cell {number} ({first!r}) raised "
                        f"{type(error).__name__}: {error}"
                    ) from error
    finally:
        shell.reset(new_session=False)
        Shell.clear_instance()
        plt.close("all")
        matplotlib.use(backend)
        matplotlib.interactive(interactive)
        torch.set_num_threads(threads)
