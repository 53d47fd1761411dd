"""``geoclim compare``: the leaderboard of run directories, with its figures.

Examples::

    geoclim compare logs/train/multiruns/2024-05-01_12-00-00_000000
    geoclim compare RUN_A RUN_B --sort-by skill_persistence/no2 --lead 6
    geoclim compare MULTIRUN --format markdown --out reports/no2

Runs of one data set (and fold) are scored again on their **common mask** by default
(``--mask common``, :mod:`geoclim.evaluation.common`): the points where every one of them
and the references have a forecast, so the rows compare like for like; the ``mask`` column
states it (``common/<runs> runs/<inits> inits/<points> pts``). ``--mask own`` shows each
run's recorded scores (its own mask) without re-creating any data.

Prints the ranked table (``--format table|markdown|csv``). With ``--out DIR`` it also writes
``leaderboard.md``, ``leaderboard.csv`` (every per-lead column and interval bound),
``folds.csv`` (cross-validation runs: mean, spread and each fold) and PNG figures: RMSE and
skill vs lead time of every model (``lead_curves.png``), per-location RMSE maps
(``error_map_<var>.png``) and forecast vs observation at one station / cell
(``timeseries_<var>.png``). Maps and time series need the observations: the datamodule of
each distinct data set is re-created once from a run's config (``--no-maps`` skips them).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from geoclim import fileio
from geoclim.cli.errors import friendly_errors
from geoclim.data import timeaxis
from geoclim.errors import DataError
from geoclim.evaluation import leaderboard as lb
from geoclim.evaluation import plots, render
from geoclim.types import INIT_TIME, LATITUDE, LEAD_TIME, LONGITUDE, STATION, VALID_TIME

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``geoclim compare``."""
    from geoclim.cli.help import HelpFormatter

    p = argparse.ArgumentParser(
        prog="geoclim compare",
        description="Leaderboard of run directories (single or multirun).",
        formatter_class=HelpFormatter,
        epilog="examples:\n  geoclim compare logs/train/multiruns/2024-05-01_12-00-00_000000\n"
        "  geoclim compare RUN_A RUN_B --sort-by skill_persistence --lead 6 --out board",
    )
    p.add_argument("paths", nargs="+", type=Path, help="run directories or multirun directories")
    p.add_argument(
        "--sort-by",
        default="rmse",
        help="metric to rank by: rmse, skill_persistence/no2, test/crps/pm25, ... "
        "(a bare metric uses the first target; default rmse)",
    )
    p.add_argument(
        "--lead",
        type=int,
        default=None,
        help="rank by the score at this lead (steps) and show only its per-lead "
        "column; also the lead of the time-series plot",
    )
    p.add_argument("--split", default="test", help="scored split prefix (default test)")
    p.add_argument("--format", choices=render.FORMATS, default="table", help="printed format")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write leaderboard.md, leaderboard.csv and figures here",
    )
    p.add_argument(
        "--location",
        default=None,
        help="time-series location: a station id or 'lat,lon' (nearest cell); "
        "default the best-observed location",
    )
    p.add_argument(
        "--mask",
        choices=("common", "own"),
        default="common",
        help="common: score the runs of one data set again on the points where all of them "
        "(and the references) have a forecast, so rows compare like for like (needs "
        "predictions.nc; re-creates the data); own: each run's recorded scores",
    )
    p.add_argument(
        "--n-boot",
        type=int,
        default=200,
        help="bootstrap replicates of the common-mask intervals (default 200)",
    )
    p.add_argument(
        "--no-maps",
        action="store_true",
        help="skip error maps and time series (they re-create the data)",
    )
    return p


@friendly_errors
def compare_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``geoclim compare`` (hooked into ``geoclim.cli.main``)."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    runs = [lb.load_run(p) for p in lb.find_runs(args.paths)]
    root = _common_root(args.paths)
    masks = None
    if args.mask == "common":
        from geoclim.evaluation import common

        runs, info = common.rescore(runs, split=args.split, n_boot=args.n_boot)
        masks = {path: m.describe() for path, m in info.items()}
    df = lb.leaderboard(
        runs, sort_by=args.sort_by, lead=args.lead, split=args.split, root=root, masks=masks
    )
    header = (
        f"{len(runs)} run(s) ranked by {df.attrs['sort_key']} "
        f"({lb.describe_direction(df.attrs['sort_key'])}); "
        + (
            "each data set's runs scored on their common mask (column mask)"
            if masks is not None
            else "each run on its own mask (rows may cover different points)"
        )
    )
    if df["data"].nunique() > 1:
        header += (
            f"; WARNING: {df['data'].nunique()} different data sets, compare runs "
            "within one 'data' value only"
        )
    print(header if args.format != "csv" else "", end="\n" if args.format != "csv" else "")
    print(render.render(df, args.format, lead=args.lead))
    folds = lb.aggregate_folds(df, runs)
    if folds is not None and args.format != "csv":
        print(f"\ncross-validation folds ({df.attrs['sort_column']}):")
        print(render.to_table(folds) if args.format == "table" else render.to_markdown(folds))
    if args.out is not None:
        write_report(
            runs,
            df,
            args.out,
            header=header,
            lead=args.lead,
            split=args.split,
            maps=not args.no_maps,
            location=args.location,
        )
    return 0


def _common_root(paths: Sequence[Path]) -> Path | None:
    try:
        common = Path(os.path.commonpath([p.resolve() for p in paths]))
    except ValueError:
        return None
    return common if not lb.is_run_dir(common) else common.parent


def write_report(
    runs: Sequence[lb.RunRecord],
    df,
    out: Path,
    *,
    header: str,
    lead: int | None,
    split: str,
    maps: bool,
    location: str | None,
) -> None:
    """Write the leaderboard files and figures into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    fileio.write_text(out / "leaderboard.csv", render.render(df, "csv"))
    labels = lb.run_labels(runs)
    figures: list[Path] = []
    scores = {labels[r.path]: _whole_domain(s) for r in runs if (s := r.scores()) is not None}
    if scores:
        figures.append(
            plots.plot_lead_curves(
                scores, out / "lead_curves.png", title=f"{split} scores by lead time"
            )
        )
    if maps:
        for data_id, group in _by_data(runs).items():
            suffix = "" if len(_by_data(runs)) == 1 else f"_{data_id.replace(':', '-')}"
            try:
                figures += _map_figures(group, labels, out, suffix, lead, location)
            except Exception as err:  # noqa: BLE001 -- figures must not lose the leaderboard
                log.warning("no maps / time series for data %s: %s", data_id, err)
    lines = [
        f"# Leaderboard ({split})",
        "",
        header,
        "",
        render.render(df, "markdown", lead=lead),
        "",
    ]
    folds = lb.aggregate_folds(df, runs)
    if folds is not None:
        fileio.write_text(out / "folds.csv", folds.to_csv(index=False, float_format="%.6g"))
        lines += ["## Cross-validation folds", "", render.to_markdown(folds), ""]
    lines += [f"![{f.stem}]({f.name})" for f in figures]
    fileio.write_text(out / "leaderboard.md", "\n".join(lines) + "\n")
    log.info(
        "wrote %s",
        ", ".join(str(p) for p in [out / "leaderboard.md", out / "leaderboard.csv", *figures]),
    )


def _whole_domain(scores: xr.Dataset) -> xr.Dataset:
    """Scores of the whole domain (runs scored with ``regions`` have a ``region`` dim)."""
    return scores.sel(region="all", drop=True) if "region" in scores.dims else scores


def _by_data(runs: Sequence[lb.RunRecord]) -> dict[str, list[lb.RunRecord]]:
    groups: dict[str, list[lb.RunRecord]] = {}
    for run in runs:
        if run.predictions_path.is_file():
            groups.setdefault(run.data_id, []).append(run)
    return groups


def _map_figures(
    runs: Sequence[lb.RunRecord],
    labels: dict[Path, str],
    out: Path,
    suffix: str,
    lead: int | None,
    location: str | None,
) -> list[Path]:
    from geoclim.data.assemble import truth_at_valid_time
    from geoclim.evaluation.metrics import point_forecast, rmse
    from geoclim.evaluation.score import observed
    from geoclim.training.rundir import load_datamodule

    dm = load_datamodule(runs[0].path)
    assert dm.ds is not None
    forecasts = {}
    for run in runs:
        with xr.open_dataset(run.predictions_path) as ds:
            forecasts[labels[run.path]] = ds.load()
    names = [n for n in dm.task.targets if all(n in f for f in forecasts.values())]
    figures = []
    for var in names:
        units = dm.ds[var].attrs.get("units", "")
        truth_src = observed(dm.ds, [var])
        rmse_maps, series, obs = {}, {}, None
        site = None
        for label, fc in forecasts.items():
            fc = fc[[var]]
            if lead is not None:
                k = _lead_index(fc, lead)
                fc = fc.isel({LEAD_TIME: slice(k, k + 1)})
            truth = truth_at_valid_time(point_forecast(fc), truth_src)
            rmse_maps[label] = rmse(point_forecast(fc), truth, reduce_dims=[INIT_TIME, LEAD_TIME])[
                var
            ]
            site = site or _pick_location(truth[var], location)
            at = fc[var].isel({LEAD_TIME: 0}).sel(site)
            series[label] = at.assign_coords({VALID_TIME: at[VALID_TIME]}).swap_dims(
                {INIT_TIME: VALID_TIME}
            )
            obs = (
                obs
                if obs is not None
                else truth[var].isel({LEAD_TIME: 0}).sel(site).swap_dims({INIT_TIME: VALID_TIME})
            )
        assert site is not None and obs is not None  # runs is a non-empty group (_by_data)
        at_lead = f"lead {lead}" if lead is not None else "all leads"
        figures.append(
            plots.plot_error_maps(
                rmse_maps,
                out / f"error_map_{var}{suffix}.png",
                variable=var,
                units=units,
                title=f"{var} RMSE per location ({at_lead})",
            )
        )
        where = ", ".join(f"{k}={_fmt(v)}" for k, v in site.items())
        lead_label = timeaxis.lead_labels(forecasts[next(iter(forecasts))][LEAD_TIME])[
            (lead or 1) - 1
        ]
        figures.append(
            plots.plot_timeseries(
                series,
                obs,
                out / f"timeseries_{var}{suffix}.png",
                variable=var,
                units=units,
                title=f"{var} forecast at lead {lead or 1} ({lead_label}) vs observed, {where}",
            )
        )
    return figures


def _lead_index(fc: xr.Dataset, lead: int) -> int:
    if not 1 <= lead <= fc.sizes[LEAD_TIME]:
        raise DataError(f"--lead {lead} is outside the forecast's leads 1..{fc.sizes[LEAD_TIME]}")
    return lead - 1


def _pick_location(truth: xr.DataArray, location: str | None) -> dict:
    """``{dim: label}`` of the requested station / nearest cell, or the best-observed one."""
    if STATION in truth.dims:
        if location is not None:
            if location not in truth[STATION].values.astype(str):
                raise DataError(
                    f"--location {location!r} is not a station; stations are "
                    f"{list(truth[STATION].values[:10])}..."
                )
            return {STATION: location}
        counts = truth.notnull().sum([d for d in truth.dims if d != STATION])
        return {STATION: truth[STATION].values[int(np.argmax(counts.values))]}
    if location is not None:
        try:
            lat, lon = (float(v) for v in location.split(","))
        except ValueError:
            raise DataError(f"--location {location!r}: expected 'lat,lon' for a grid") from None
        cell = truth.sel({LATITUDE: lat, LONGITUDE: lon}, method="nearest")
        return {LATITUDE: float(cell[LATITUDE]), LONGITUDE: float(cell[LONGITUDE])}
    counts = truth.notnull().sum([d for d in truth.dims if d not in (LATITUDE, LONGITUDE)])
    counts = counts.transpose(LATITUDE, LONGITUDE)
    iy, ix = np.unravel_index(int(np.argmax(counts.values)), counts.shape)
    return {LATITUDE: float(counts[LATITUDE][iy]), LONGITUDE: float(counts[LONGITUDE][ix])}


def _fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
