"""Run a notebook's code cells top to bottom, in a Jupyter kernel or in this process.

``run_in_kernel`` is what a researcher does: a fresh ``python3`` kernel through nbclient.
``run_in_process`` runs the same cells in an IPython shell inside the test worker, which has
torch, Lightning and xarray imported already, so a notebook costs its own work and not a
kernel start and those imports (about 3-5 s each on two busy cores). What the worker's
state could hide (an import a notebook forgot) the kernel run finds; the suite runs both.

The in-process run gives the worker back as it found it: working directory, logging tree,
matplotlib backend and interactivity, torch's thread count and the IPython singleton. It
returns each code cell's wall and CPU seconds; ``python -m tests.support.notebooks
notebooks/*.ipynb`` prints them, two runs per notebook: the second one is the notebook's own
work, without the first imports and traces that a test worker shares with its other tests.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from tests.support.cli import preserved_logging


class NotebookError(AssertionError):
    """A cell raised: names the notebook, the cell and its first line."""


@dataclass(frozen=True)
class CellTime:
    """How long one code cell took.

    Attributes:
        number: the code cell's number (1 = the first code cell).
        first_line: its first line.
        wall: wall-clock seconds.
        cpu: CPU seconds of this process (all threads), less sensitive to a loaded machine.
    """

    number: int
    first_line: str
    wall: float
    cpu: float


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


def run_in_process(path: Path, cwd: Path) -> list[CellTime]:
    """Execute ``path``'s code cells in an IPython shell of this process, in ``cwd``.

    Returns:
        The time each code cell took, in order.

    Raises:
        NotebookError: a cell raised (naming the notebook, the cell and its first line).
    """
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
    times = []
    try:
        with contextlib.chdir(cwd), preserved_logging():
            for number, source in enumerate(code_cells(path), start=1):
                wall, cpu = time.perf_counter(), time.process_time()
                result = shell.run_cell(source, store_history=False, silent=False)
                first = source.strip().splitlines()[0] if source.strip() else ""
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                times.append(CellTime(number, first, wall, cpu))
                if not result.success:
                    error = result.error_in_exec or result.error_before_exec
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
    return times


def main(paths: list[str]) -> None:
    """Print each notebook's per-cell seconds, twice: the first run pays first imports."""
    import os

    import lightning  # noqa: F401 -- a test worker has it imported before any notebook

    for name in paths:
        path = Path(name).resolve()
        for attempt in ("first run", "second run"):
            with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
                times = run_in_process(path, Path(tmp))
            wall, cpu = sum(t.wall for t in times), sum(t.cpu for t in times)
            load = os.getloadavg()[0]
            print(f"{path.name} ({attempt}): {wall:.2f} s wall, {cpu:.2f} s CPU, load {load:.1f}")
            for t in times:
                seconds = f"{t.wall:6.2f} s wall {t.cpu:6.2f} s CPU"
                print(f"  cell {t.number:2d} {seconds}  {t.first_line[:60]}")


if __name__ == "__main__":
    main(sys.argv[1:])
