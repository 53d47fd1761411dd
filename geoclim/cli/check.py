"""``geoclim check REFERENCE NEW``: does new data still look like the training data?

Prints the pooled drift table (:func:`geoclim.data.drift.drift_summary`), and with ``--out``
writes ``drift.nc`` (the full report, per variable and per station / cell) and ``drift.png``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import xarray as xr

from geoclim.errors import ConfigError, SchemaError

log = logging.getLogger(__name__)

CHECK_EPILOG = """\
exit status:
  0  checked (drift or not, unless --fail-on drift)
  1  drift found and --fail-on drift was given
  2  a mistake to fix (no such file, different layouts, a variable missing...)

Drift (per variable, pooled over space and time, and per station / cell) is any of:
  PSI over reference deciles > --psi (default 0.25; 0.1-0.25 is a moderate shift),
  KS p-value < 0.01 with KS statistic > 0.1, missing rate changed by > 10 points,
  > 1 % of new values outside the reference [min, max], any value outside physical bounds.

example:
  geoclim check naps_no2 ~/stores/airdata/stations.nc --out drift/ --fail-on drift
"""


def open_any(item: str) -> xr.Dataset:
    """A netCDF / zarr path, else an embedded sample name; 'no such file' for a missing path."""
    from geoclim.data import samples, sources

    path = Path(item)
    if path.exists():
        return sources.open_dataset(path)
    if path.suffix or "/" in item or item in ("~", "."):
        raise SchemaError(f"{item}: no such file or store")
    if item not in samples.available():
        raise SchemaError(
            f"{item!r} is neither a file nor an embedded sample (samples: {samples.available()})"
        )
    return samples.load(item)


def run_check(args: argparse.Namespace) -> int:
    """Run ``geoclim check`` on parsed arguments; return the exit status."""
    from geoclim.data import drift
    from geoclim.evaluation import plots
    from geoclim.fileio import atomic_path

    if not 0 < args.psi:
        raise ConfigError(f"--psi must be > 0, got {args.psi}")
    thresholds = drift.Thresholds(psi=args.psi, bins=args.bins)
    reference, new = open_any(args.reference), open_any(args.new)
    report = drift.compare(reference, new, variables=args.variables, thresholds=thresholds)
    report = report.assign_attrs(reference=args.reference, new=args.new)
    print(f"reference {args.reference}  vs  new {args.new}")
    print(drift.drift_summary(report))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out / "drift.nc") as tmp:
            report.to_netcdf(tmp)
        plots.plot_drift(report, args.out / "drift.png", title=f"{args.new} vs {args.reference}")
        print(f"wrote {args.out / 'drift.nc'} and {args.out / 'drift.png'}")
    drifting = [str(v) for v in report["variable"].values[report["drift_pooled"].values]]
    if drifting:
        log.warning("drift in %s", drifting)
    return 1 if drifting and args.fail_on == "drift" else 0


def add_check_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``check`` subcommand."""
    p = sub.add_parser(
        "check",
        help="drift and data checks of NEW data against REFERENCE (training) data",
        description="Compare NEW against REFERENCE per variable and per station / cell: "
        "missing rate, range violations, distribution shift (KS, Wasserstein, PSI).",
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("reference", metavar="REFERENCE", help="netCDF/zarr path or sample name")
    p.add_argument("new", metavar="NEW", help="netCDF/zarr path or sample name")
    p.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=None,
        help="write DIR/drift.nc and DIR/drift.png (default: print only)",
    )
    p.add_argument(
        "--fail-on",
        choices=["never", "drift"],
        default="never",
        help="exit 1 when a variable drifts (default: never)",
    )
    p.add_argument(
        "--variables",
        nargs="+",
        default=None,
        metavar="NAME",
        help="variables to compare (default: every time-varying one in both)",
    )
    p.add_argument("--psi", type=float, default=0.25, help="PSI drift threshold (default: 0.25)")
    p.add_argument("--bins", type=int, default=10, help="PSI quantile bins (default: 10)")
    p.set_defaults(func=run_check)
