"""Atomic file writes: the one helper every writer of geoclim goes through.

A file is written to a temp file in the destination's directory, flushed and fsync'd, given
the normal permissions of a new file (``0666 & ~umask``: 0644 under the usual umask, so a
teammate's leaderboard can read a run), and renamed over the destination. A crash at any
moment leaves either the old file or the new one, never half of one; the temp file of an
interrupted write starts with ``.<name>.`` and ends with ``.tmp`` so that stores can sweep
stale ones (:func:`sweep_temp_files`).

:data:`NETCDF_LOCK` serialises netCDF work done in threads that may overlap (a server's).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"

NETCDF_LOCK = threading.RLock()
"""Held around whole netCDF reads and writes (open, decode, load, close) in threads that may
run at once. netCDF-C and HDF5 are not thread-safe and netCDF4-python releases the GIL in
them; xarray serialises opening a file and reading data, but not the metadata calls after
the opening nor the define steps of a write (pydata/xarray#9779), so two threads doing these
at once corrupt HDF5 (``NetCDF: HDF error``, crashes). Take it before any xarray call (it is
never taken inside xarray's own locks)."""


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temp_path_for(path: Path) -> Path:
    """A new, empty temp file beside ``path`` (same directory, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    os.chmod(tmp, _default_mode())  # mkstemp creates 0600
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path``, on error it is removed.

    For writers that take a file name (netCDF, ONNX): ``with atomic_path(p) as tmp:
    ds.to_netcdf(tmp)``.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def sweep_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files that interrupted atomic writes left in ``folder``.

    Returns:
        The paths removed (the caller reports them).

    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
