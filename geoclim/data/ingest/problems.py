"""Bad lines of raw files: collected per check, reported per file (first 20 shown + a count).

A reader runs every row check over the whole file (:class:`RowChecks`) instead of stopping at
the first bad cell, so one report names every bad line of a file. Line numbers are 1-based
physical lines of the file (header = line 1), as an editor shows them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

MAX_SHOWN = 20
"""Bad lines quoted per file in reports and error messages; the rest are counted."""


@dataclass(frozen=True)
class BadLine:
    """One bad line of a raw file.

    Attributes:
        line: 1-based physical line (header = 1), or ``None`` for a whole-file problem.
        message: every problem found on that line, ``; ``-separated.

    """

    line: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class FileProblems:
    """The bad lines of one raw file.

    Attributes:
        path: the file as the user named it (or its key relative to the raw folder).
        count: number of bad lines (all of them, not only those shown).
        shown: the first :data:`MAX_SHOWN` bad lines, in file order.
        rows: data rows of the file (0 when the file could not be read at all).

    """

    path: str
    count: int
    shown: tuple[BadLine, ...]
    rows: int = 0

    @classmethod
    def whole_file(cls, path: str | os.PathLike, message: str) -> FileProblems:
        """A file that cannot be read at all (no header, wrong columns, not CSV...)."""
        return cls(os.fspath(path), 1, (BadLine(None, message),))

    def with_path(self, path: str) -> FileProblems:
        """The same problems, reported under another name (a store key, say)."""
        return FileProblems(path, self.count, self.shown, self.rows)

    def format(self, indent: str = "  ") -> str:
        """``<path>: <n> bad line(s)`` and the lines shown, one per line, then ``... N more``."""
        if self.count == 1 and len(self.shown) == 1:
            only = self.shown[0]
            where = self.path if only.line is None else f"{self.path}, line {only.line}"
            return f"{where}: {only.message}"
        head = f"{self.path}: {self.count} bad lines"
        if self.rows:
            head += f" of {self.rows} data rows"
        if self.count > len(self.shown):
            head += f" (first {len(self.shown)} shown)"
        body = [f"{indent}{line}" for line in self.shown]
        if self.count > len(self.shown):
            body.append(f"{indent}... and {self.count - len(self.shown)} more bad line(s)")
        return "\n".join([head + ":", *body])


class RowChecks:
    """Collects every bad cell of a file's data rows, check by check.

    Args:
        lines: ``(N,)`` 1-based line number of each data row.

    """

    def __init__(self, lines: np.ndarray) -> None:
        self.lines = np.asarray(lines)
        self._checks: list[tuple[np.ndarray, np.ndarray | None, str]] = []

    def flag(self, bad: np.ndarray, values: np.ndarray, column: str, expected: str) -> None:
        """Mark rows where ``bad`` holds: ``bad value <v> in column <c>; expected <e>``.

        ``values`` are the cells as written in the file (quoted in the message).
        """
        self._add(bad, np.asarray(values), f"in column {column!r}; expected {expected}")

    def flag_rows(self, bad: np.ndarray, message: str) -> None:
        """Mark rows where ``bad`` holds with a fixed ``message``."""
        self._add(bad, None, message)

    def _add(self, bad: np.ndarray, values: np.ndarray | None, text: str) -> None:
        bad = np.asarray(bad, dtype=bool)
        if bad.shape != self.lines.shape:
            raise ValueError(f"check mask has shape {bad.shape}, rows {self.lines.shape}")
        if bad.any():
            self._checks.append((bad.copy(), values, text))

    @property
    def bad(self) -> np.ndarray:
        """``(N,)`` bool: rows with at least one problem."""
        out = np.zeros(self.lines.shape, dtype=bool)
        for mask, _, _ in self._checks:
            out |= mask
        return out

    def _message(self, row: int) -> str:
        parts = []
        for mask, values, text in self._checks:
            if mask[row]:
                parts.append(text if values is None else f"bad value {str(values[row])!r} {text}")
        return "; ".join(parts)

    def problems(self, path: str | os.PathLike, limit: int = MAX_SHOWN) -> FileProblems | None:
        """The file's bad lines (``None`` if every row passed every check)."""
        rows = np.flatnonzero(self.bad)
        if not len(rows):
            return None
        shown = tuple(BadLine(int(self.lines[r]), self._message(int(r))) for r in rows[:limit])
        return FileProblems(os.fspath(path), len(rows), shown, len(self.lines))
