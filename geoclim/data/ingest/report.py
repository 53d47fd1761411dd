"""What one ingest run did, as a value and as the text ``geoclim ingest`` prints.

A run is *partial* when something the raw folder offered did not get in: a rejected file
(every one is listed with its bad lines, the first 20 quoted, plus a count) or bad rows
dropped with ``on_bad_rows="skip"``. The CLI turns that into exit status
:data:`EXIT_PARTIAL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from geoclim.data.ingest.epa_merge import FILE_RULE, Superseded
from geoclim.data.ingest.problems import FileProblems

EXIT_OK = 0
"""Exit status: every file and row of the raw folder is in the store."""
EXIT_USER_ERROR = 2
"""Exit status: nothing was done (bad option, missing folder, damaged store, ...)."""
EXIT_PARTIAL = 3
"""Exit status: the good files are in, but files were rejected or rows dropped."""


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


@dataclass(frozen=True)
class IngestReport:
    """What one :func:`~geoclim.data.ingest.store.ingest_folder` call did.

    Attributes:
        store_dir: the store folder.
        ingested: keys (paths relative to the raw folder) added for the first time.
        replaced: keys whose content changed and whose rows were replaced.
        skipped: keys unchanged since the last ingest (no-op).
        archived: keys moved into the archive folder.
        rejected: files left out, each with its bad lines (a file already in the store keeps
            its previous version).
        dropped: files ingested without their bad rows (``on_bad_rows="skip"``).
        superseded: rows replaced by another file's rows for the same (site, POC, day).
        recovered: what was cleaned up or finished after an interrupted run.
        kept_previous: rejected keys whose earlier, good version stays in the store.
        rebuilt: whether ``stations.nc`` and the manifest were rewritten.
        stations: stations in the store.
        times: days on the store's time axis.
        variables: variables in the store.

    """

    store_dir: Path
    ingested: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    archived: tuple[str, ...] = ()
    rejected: tuple[FileProblems, ...] = ()
    dropped: tuple[FileProblems, ...] = ()
    superseded: tuple[Superseded, ...] = ()
    recovered: tuple[str, ...] = ()
    kept_previous: tuple[str, ...] = ()
    rebuilt: bool = False
    stations: int = 0
    times: int = 0
    variables: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        """Whether files were rejected or rows dropped."""
        return bool(self.rejected or self.dropped)

    @property
    def exit_code(self) -> int:
        """:data:`EXIT_PARTIAL` for a partial run, else :data:`EXIT_OK`."""
        return EXIT_PARTIAL if self.partial else EXIT_OK

    def _sections(self) -> list[str]:
        out = []
        if self.recovered:
            out.append("recovered from an interrupted run:")
            out += [f"  {item}" for item in self.recovered]
        if self.rejected:
            out.append(f"rejected {len(self.rejected)} file(s), not ingested (fix and rerun):")
            out += [_indent(p.format(indent="  ")) for p in self.rejected]
            if self.kept_previous:
                out.append(f"  the store keeps the earlier version of {list(self.kept_previous)}")
        if self.dropped:
            out.append(f"dropped bad rows of {len(self.dropped)} file(s) (on-bad-rows=skip):")
            out += [_indent(p.format(indent="  ")) for p in self.dropped]
        if self.superseded:
            out.append(f"superseded rows ({FILE_RULE}):")
            out += [f"  {item}" for item in self.superseded]
        return out

    def __str__(self) -> str:
        head = (
            f"{self.store_dir}: {len(self.ingested)} new, {len(self.replaced)} replaced, "
            f"{len(self.skipped)} skipped, {len(self.archived)} archived, "
            f"{len(self.rejected)} rejected; "
            f"{self.stations} stations x {self.times} days, variables {list(self.variables)}"
        )
        lines = [head, *self._sections()]
        if self.partial:
            rows = sum(p.count for p in self.dropped)
            lines.append(
                f"partial: {len(self.rejected)} file(s) rejected, {rows} row(s) dropped "
                f"(exit status {EXIT_PARTIAL})"
            )
        return "\n".join(lines)
