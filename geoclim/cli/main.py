"""The plain ``geoclim`` command: data summaries, ingestion, samples, leaderboard, serving.

Training, evaluation and export are Hydra entry points of their own (``geoclim-train``,
``geoclim-eval``, ``geoclim-export``); this command groups the tools that take a few
arguments instead of a config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from geoclim.cli.check import add_check_parser
from geoclim.cli.errors import friendly_errors
from geoclim.cli.help import HelpFormatter

MAIN_EPILOG = """\
commands with options of their own (each takes --help):
  geoclim compare RUN_DIR...   leaderboard of run directories
  geoclim serve MODEL          serve an exported model over HTTP
  geoclim demo                 the main job on the embedded real data

training, scoring and export are separate commands (each takes --help):
  geoclim-train, geoclim-eval, geoclim-export

examples:
  geoclim samples
  geoclim summary naps_no2 my_file.nc
  geoclim inspect my_file.nc --write-config conf_local
  geoclim compare logs/train/multiruns/2024-05-01_12-00-00_000000
"""

SUMMARY_EPILOG = """\
examples:
  geoclim summary naps_no2                 an embedded sample (list: geoclim samples)
  geoclim summary data/obs.nc store.zarr   files: variables, units, coverage, time step
"""

INSPECT_EPILOG = """\
examples:
  geoclim inspect my_file.nc                       how it reads + suggested configs
  geoclim inspect my_file.nc --write-config conf_local
  geoclim-train hydra.searchpath=[file://$PWD/conf_local] data=my_file task=my_file
"""


def _open(item: str):
    """A path's canonical Dataset, or an embedded sample's; "no such file" for neither."""
    from geoclim.data import samples, sources
    from geoclim.errors import SchemaError

    path = Path(item)
    if path.exists():
        return sources.open_dataset(path)
    if item in samples.available():
        return samples.load(item)
    raise SchemaError(
        f"{item}: no such file or store, and no embedded sample of that name "
        f"(samples: {samples.available()})"
    )


def _summary(args: argparse.Namespace) -> int:
    from geoclim.data.summary import format_summary

    for item in args.datasets:
        print(format_summary(item, _open(item)))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from geoclim.data import inspect, samples
    from geoclim.errors import SchemaError

    for item in args.datasets:
        if not Path(item).exists() and item not in samples.available():
            raise SchemaError(
                f"{item}: no such file or store, and no embedded sample of that name "
                f"(samples: {samples.available()})"
            )
        ins = inspect.inspect_dataset(item)
        print(inspect.format_inspection(ins))
        configs = inspect.suggest_configs(ins)
        name = inspect.config_name(ins)
        if args.write_config is None:
            for group, text in configs.items():
                print(f"\n--- suggested {group}/{name}.yaml\n{text.rstrip()}")
        else:
            for written in inspect.write_configs(ins, args.write_config):
                print(f"wrote {written}")
        where = args.write_config or "DIR"
        print(
            f"\ntrain: geoclim-train hydra.searchpath=[file://{Path(where).absolute()}] "
            f"data={name} task={name}"
            + ("" if args.write_config else f"  (after: geoclim inspect {item} --write-config DIR)")
        )
    return 0


def _samples(args: argparse.Namespace) -> int:
    from geoclim.data import samples

    for name in samples.available():
        print(f"{name:<16} {samples.describe(name)}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from geoclim.data.ingest import ingest_folder

    report = ingest_folder(
        args.raw_dir,
        args.store_dir,
        archive_dir=args.archive,
        recursive=args.recursive,
        on_bad_rows=args.on_bad_rows,
    )
    print(report)
    return report.exit_code


INGEST_EPILOG = """\
exit status:
  0  every file (and row) is in the store
  2  nothing done: a mistake to fix (missing folder, bad option, damaged store,
     another ingest running); the message says what
  3  partial: the good files are in; files were rejected or bad rows dropped
     (the report lists each such file with its bad lines, the first 20 and a count)

Where two files hold rows for one (pollutant, site, POC, day), the later-modified file wins
(equal times: the later path); the report names the superseded file and row count.
State and County FIPS codes are kept as text station coordinates (state_fips, county_fips).

example:
  geoclim ingest ~/airdata ~/stores/airdata --recursive --on-bad-rows=skip
  geoclim summary ~/stores/airdata/stations.nc
"""


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="ingest a folder of EPA AirData daily CSVs into a store",
        description="Ingest new and changed EPA AirData daily CSVs of RAW_DIR into STORE_DIR\n"
        "(stations.nc + manifest.json + tables/). A bad file never blocks the good ones.",
        epilog=INGEST_EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("raw_dir", metavar="RAW_DIR", type=Path, help="folder of EPA daily CSVs")
    p.add_argument("store_dir", metavar="STORE_DIR", type=Path, help="store (created if needed)")
    p.add_argument(
        "--archive",
        metavar="DIR",
        type=Path,
        default=None,
        help="move ingested files here (default: leave them in RAW_DIR)",
    )
    p.add_argument(
        "--recursive",
        action="store_true",
        help="also read the subfolders of RAW_DIR (default: off)",
    )
    p.add_argument(
        "--on-bad-rows",
        choices=["reject", "skip"],
        default="reject",
        help="a file with bad rows: reject it whole, or skip its bad rows and keep the rest "
        "(default: reject)",
    )
    p.set_defaults(func=_ingest)


def _compare(argv: list[str]) -> int:
    from geoclim.cli.compare import compare_main

    return compare_main(argv) or 0


def _serve(argv: list[str]) -> int:
    from geoclim.cli.serve import serve_main

    return serve_main(argv) or 0


def _demo(argv: list[str]) -> int:
    from geoclim.cli.demo import main as demo_main

    return demo_main(argv) or 0


PASSTHROUGH = {"compare": _compare, "serve": _serve, "demo": _demo}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``geoclim``."""
    parser = argparse.ArgumentParser(
        prog="geoclim",
        description="geoclim: data summaries and inspection, EPA ingestion, embedded samples,\n"
        "leaderboards, serving and the demo.",
        epilog=MAIN_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "summary",
        help="summarise datasets (files or embedded sample names)",
        description="Summarise each dataset: dims, variables with units, coverage, time step.",
        epilog=SUMMARY_EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("datasets", nargs="+", help="netCDF/zarr path or sample name")
    p.set_defaults(func=_summary)

    p = sub.add_parser(
        "inspect",
        help="how geoclim reads a file (layout, time, units, what to declare) + configs",
        description="How geoclim reads each file (layout, time axis, units, what to declare)\n"
        "and the data and task configs that train on it.",
        epilog=INSPECT_EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("datasets", nargs="+", help="netCDF/zarr path or sample name")
    p.add_argument(
        "--write-config",
        type=Path,
        default=None,
        metavar="DIR",
        help="write DIR/data/NAME.yaml and DIR/task/NAME.yaml (Hydra search path layout)",
    )
    p.set_defaults(func=_inspect)

    p = sub.add_parser(
        "samples",
        help="list the embedded real datasets",
        description="List the embedded real datasets (usable as data=<name> and by summary).",
        epilog="example:\n  geoclim samples\n  geoclim summary naps_no2_grid",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(func=_samples)

    _add_ingest(sub)
    add_check_parser(sub)

    for name, helptext in [
        ("compare", "leaderboard of run directories"),
        ("serve", "serve an exported model over HTTP"),
        ("demo", "the main job on the embedded real data"),
    ]:
        sub.add_parser(name, help=helptext, add_help=False)
    return parser


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``geoclim``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv[:1] or "--verbose" in argv[:1]
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    rest = argv[1:] if verbose else argv
    if rest and rest[0] in PASSTHROUGH:
        return PASSTHROUGH[rest[0]](rest[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
