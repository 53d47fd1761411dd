"""Build an expensive, read-only fixture once per test session, shared by the xdist workers.

A session fixture is built once per worker: with ``--numprocesses=2`` a trained and
exported run is trained and exported twice. :func:`build_once` builds into a folder beside
the workers' own temporary roots, under a file lock, so the first worker to ask builds it
and the others wait and read it (pytest-xdist's recipe for shared session data). The folder
must be treated as read-only by the tests that share it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def build_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Path:
    """``build(folder)`` once per session, whichever worker asks first; returns ``folder``."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's root, shared by its workers
    folder = root / "shared" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        built = folder / ".built"
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed half-way
            folder.mkdir()
            build(folder)
            built.touch()
    return folder
