"""Run ``geoclim-train`` as a user does, in this process or in a fresh one.

In this process, ``geoclim.cli.train.main`` is called with ``sys.argv`` set, the working
directory changed and stdout/stderr captured: the same entry point, config search, Hydra
run and error handling as the console script, without paying for a new interpreter and
torch/Lightning import per test. ``subprocess=True`` runs ``python -m geoclim.cli.train``
in a new process instead (the console path itself, DDP, and anything that must not share
this process's state).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess as sp
import sys
from pathlib import Path
from unittest import mock


def geoclim_train(*args, cwd, timeout=300, subprocess=False) -> sp.CompletedProcess:
    """``geoclim-train *args`` run in ``cwd``; returncode, stdout and stderr as text."""
    return console("train", *args, cwd=cwd, timeout=timeout, subprocess=subprocess)


def console(command, *args, cwd, timeout=300, subprocess=False) -> sp.CompletedProcess:
    """``geoclim-<command> *args`` in ``cwd``, for the Hydra apps: train, evaluate, explain."""
    import importlib

    module = f"geoclim.cli.{command}"
    env = {"GEOCLIM_LOG_DIR": str(Path(cwd) / "logs"), "HYDRA_FULL_ERROR": "0"}
    if subprocess:
        return sp.run(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    cli = importlib.import_module(module)
    prog = f"geoclim-{command}"
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with (
        mock.patch.dict(os.environ, env),
        mock.patch.object(sys, "argv", [prog, *args]),
        contextlib.chdir(cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        preserved_logging(),
    ):
        try:
            cli.main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return sp.CompletedProcess([prog, *args], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def preserved_logging():
    """Give the logging tree back as it was: Hydra configures the loggers per run.

    Handlers added to the root logger are closed and removed, its level restored, and the
    loggers that ``hydra_logging=disabled`` (``disable_existing_loggers``) switched off are
    switched on again, so later tests in the same worker still see their records.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    loggers = [x for x in logging.root.manager.loggerDict.values() if isinstance(x, logging.Logger)]
    disabled = {x: x.disabled for x in loggers}
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        for logger, was in disabled.items():
            logger.disabled = was
