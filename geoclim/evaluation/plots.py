"""Figures of the leaderboard: scores vs lead time, error maps, forecast vs observation.

Figures are built with matplotlib's object API (``Figure``, no pyplot state, no display
needed) and written as PNG; every function returns the path it wrote. There is no coastline
data here: maps are plain longitude/latitude axes in degrees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from geoclim.types import LATITUDE, LEAD_TIME, LONGITUDE, QUANTILE, STATION, VALID_TIME

PANELS = (
    ("rmse", "RMSE"),
    ("skill_persistence", "MSE skill vs persistence"),
    ("skill_climatology", "MSE skill vs climatology"),
)


def lead_axis(lead_time: np.ndarray | xr.DataArray) -> tuple[np.ndarray, str]:
    """Lead times as numbers for an axis: hours below 2 days of horizon, else days.

    Calendar leads (integer months / years, :mod:`geoclim.data.timeaxis`) keep their units.
    """
    values = np.asarray(getattr(lead_time, "values", lead_time))
    if not np.issubdtype(values.dtype, np.timedelta64):
        units = getattr(lead_time, "attrs", {}).get("units", "steps")
        return values.astype(float), f"lead time ({units})"
    lead = pd.to_timedelta(values)
    if lead.max() < pd.Timedelta("2D"):
        return (lead / pd.Timedelta("1h")).to_numpy(float), "lead time (h)"
    return (lead / pd.Timedelta("1D")).to_numpy(float), "lead time (days)"


def plot_lead_curves(
    scores: Mapping[str, xr.Dataset],
    path: str | Path,
    *,
    variables: Sequence[str] | None = None,
    title: str = "",
    bands: bool = False,
    skill_floor: float = -1.0,
) -> Path:
    """RMSE and MSE skill vs persistence / climatology against lead time, one line per model.

    Args:
        scores: ``{label: scores Dataset (metric, lead_time)}`` (see
            :func:`geoclim.evaluation.score.score_run`).
        path: PNG to write.
        variables: targets to draw (rows); default: all in the first Dataset.
        title: figure title.
        bands: draw the ``<m>_ci_lower/upper`` bootstrap intervals as bands.
        skill_floor: skill axes stop here (a reference scored against another can sit far
            below and flatten every other line); clipped lines are noted on the panel.

    """
    first = next(iter(scores.values()))
    variables = list(variables) if variables else [str(v) for v in first.data_vars]
    panels = [p for p in PANELS if any(p[0] in s["metric"].values for s in scores.values())]
    fig = Figure(figsize=(4.6 * len(panels), 3.4 * len(variables) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(variables), len(panels), squeeze=False))
    colors = {label: f"C{i % 10}" for i, label in enumerate(scores)}
    for row, var in enumerate(variables):
        for col, (metric, name) in enumerate(panels):
            ax = axes[row, col]
            lowest = np.inf
            for label, ds in scores.items():
                if var not in ds or metric not in ds["metric"].values:
                    continue
                x, xlabel = lead_axis(ds[LEAD_TIME])
                y = ds[var].sel(metric=metric).values
                lowest = min(lowest, float(np.nanmin(y)) if np.isfinite(y).any() else np.inf)
                ax.plot(x, y, marker="o", ms=3, color=colors[label], label=label)
                if bands and f"{metric}_ci_lower" in ds["metric"].values:
                    ax.fill_between(
                        x,
                        ds[var].sel(metric=f"{metric}_ci_lower").values,
                        ds[var].sel(metric=f"{metric}_ci_upper").values,
                        color=colors[label],
                        alpha=0.15,
                        lw=0,
                    )
                ax.set_xlabel(xlabel)
            units = first[var].attrs.get("target_units", "") if var in first else ""
            ax.set_ylabel(f"RMSE ({units})" if metric == "rmse" and units else name)
            if metric.startswith("skill"):
                ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
                if lowest < skill_floor:
                    ax.set_ylim(bottom=skill_floor - 0.05)
                    ax.text(
                        0.98,
                        0.03,
                        f"axis cut at {skill_floor:g}",
                        ha="right",
                        va="bottom",
                        transform=ax.transAxes,
                        fontsize="small",
                        color="0.35",
                    )
            ax.set_title(f"{var}: {name}")
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="outside lower center", ncols=min(len(labels), 5), frameon=False
        )
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_error_maps(
    maps: Mapping[str, xr.DataArray],
    path: str | Path,
    *,
    variable: str,
    units: str = "",
    title: str = "",
) -> Path:
    """Per-location RMSE of each model on longitude/latitude axes, one shared colour scale.

    Grids are drawn with ``pcolormesh`` (cells centred on their coordinates); station
    networks as coloured points.

    Args:
        maps: ``{label: RMSE DataArray}`` with dims ``(latitude, longitude)`` or
            ``(station,)`` (``latitude``/``longitude`` coordinates).
        path: PNG to write.
        variable: the target's name (titles).
        units: the target's units (colour bar).
        title: figure title.

    """
    finite = [np.asarray(m.values, float)[np.isfinite(m.values)] for m in maps.values()]
    values = np.concatenate(finite) if finite else np.array([0.0])
    vmin, vmax = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    n = len(maps)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.4 * cols + 0.8, 3.6 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    artist = None
    for ax, (label, rmse) in zip(axes, maps.items(), strict=False):
        if STATION in rmse.dims:
            artist = ax.scatter(
                rmse[LONGITUDE].values,
                rmse[LATITUDE].values,
                c=rmse.values,
                s=36,
                vmin=vmin,
                vmax=vmax,
                cmap="viridis",
                edgecolor="k",
                linewidth=0.3,
            )
        else:
            da = rmse.transpose(LATITUDE, LONGITUDE)
            artist = ax.pcolormesh(
                da[LONGITUDE].values,
                da[LATITUDE].values,
                da.values,
                vmin=vmin,
                vmax=vmax,
                cmap="viridis",
                shading="nearest",
            )
        ax.set_title(f"{label}: {variable} RMSE")
        ax.set_xlabel("longitude (°E)")
        ax.set_ylabel("latitude (°N)")
        ax.set_aspect(1.0 / max(np.cos(np.deg2rad(float(rmse[LATITUDE].mean()))), 0.1))
    for ax in axes[n:]:
        ax.set_visible(False)
    if artist is not None:
        fig.colorbar(
            artist, ax=list(axes[:n]), label=f"RMSE ({units})" if units else "RMSE", shrink=0.9
        )
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_timeseries(
    forecasts: Mapping[str, xr.DataArray],
    observed: xr.DataArray,
    path: str | Path,
    *,
    variable: str,
    units: str = "",
    title: str = "",
) -> Path:
    """Forecasts at one lead and place against the observations, over valid time.

    Args:
        forecasts: ``{label: DataArray}`` over ``valid_time`` (1-D), optionally with a
            ``quantile`` dim (median line, outermost central interval as a band).
        observed: observations over ``valid_time`` (or ``time``).
        path: PNG to write.
        variable: the target's name (axis label).
        units: its units.
        title: figure title.

    """
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax = fig.subplots()
    obs_time = observed[VALID_TIME if VALID_TIME in observed.dims else observed.dims[0]]
    # markers: init strides differ between models (e.g. 47 h for points, 6 h for grids), so
    # lines alone would draw the interpolation between sparse forecasts as if forecast
    ax.plot(
        obs_time.values, observed.values, color="k", lw=1.4, marker="o", ms=3.5, label="observed"
    )
    for i, (label, fc) in enumerate(forecasts.items()):
        color = f"C{i % 10}"
        if QUANTILE in fc.dims:
            q = fc[QUANTILE].values
            mid = fc.isel({QUANTILE: int(np.argmin(np.abs(q - 0.5)))})
            ax.fill_between(
                fc[VALID_TIME].values,
                fc.isel({QUANTILE: 0}).values,
                fc.isel({QUANTILE: -1}).values,
                color=color,
                alpha=0.2,
                lw=0,
                label=f"{label} {q[0]:g}-{q[-1]:g} quantiles",
            )
            fc = mid
        ax.plot(
            fc[VALID_TIME].values,
            fc.values,
            color=color,
            lw=0.7,
            marker=".",
            ms=4,
            alpha=0.85,
            label=label,
        )
    ax.set_xlabel("valid time (UTC)")
    ax.set_ylabel(f"{variable} ({units})" if units else variable)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small", ncols=min(len(forecasts) + 1, 4))
    if title:
        ax.set_title(title)
    fig.autofmt_xdate()
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_drift(report: xr.Dataset, path: str | Path, *, title: str = "") -> Path:
    """Pooled PSI per variable (bars, threshold line) and a map of the most shifted one.

    Args:
        report: a :func:`geoclim.data.drift.compare` report.
        path: PNG to write (atomically).
        title: figure title.

    Returns:
        ``path``.

    """
    from geoclim.data.drift import VARIABLE, Thresholds
    from geoclim.fileio import atomic_path

    names = [str(v) for v in report[VARIABLE].values]
    psi_pooled = np.nan_to_num(report["psi_pooled"].values, nan=0.0)
    threshold = float(report.attrs.get("threshold_psi", Thresholds.psi))
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    bars, where = fig.subplots(1, 2)
    colors = ["tab:red" if d else "tab:blue" for d in report["drift_pooled"].values]
    bars.bar(names, psi_pooled, color=colors)
    bars.axhline(threshold, color="k", ls="--", lw=1, label=f"PSI threshold {threshold:g}")
    bars.set_ylabel("PSI (reference deciles)")
    bars.set_title("distribution shift per variable (red: drift)")
    bars.legend(loc="upper right")
    bars.tick_params(axis="x", rotation=45)
    worst = names[int(np.argmax(psi_pooled))]
    da = report["psi"].sel({VARIABLE: worst})
    lat, lon = report[LATITUDE].values, report[LONGITUDE].values
    if STATION in report.dims:
        art = where.scatter(lon, lat, c=da.values, cmap="viridis", s=40, edgecolors="k")
    else:
        art = where.pcolormesh(lon, lat, da.transpose(LATITUDE, LONGITUDE).values, shading="auto")
    fig.colorbar(art, ax=where, label=f"PSI of {worst}")
    where.set_xlabel("longitude (degrees east)")
    where.set_ylabel("latitude (degrees north)")
    where.set_title(f"{worst}: PSI per location")
    if title:
        fig.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path
