"""One-screen summaries of canonical datasets: what is there, where, when, and how complete."""

from __future__ import annotations

import pandas as pd
import xarray as xr

from geoclim.data import schema, timeaxis, variables
from geoclim.types import TIME


def describe(ds: xr.Dataset) -> dict:
    """Facts about ``ds``: layout, space size, time span and step, per-variable completeness.

    For grids with a ``coverage`` field, completeness counts covered cells only (cells far from
    every station are outside the product, not missing).

    Returns:
        A dict with ``layout``, ``space`` (stations or ``lat x lon`` cells), ``start``, ``end``,
        ``step``, ``n_time`` and ``variables``: ``{name: {units, missing_pct, imputed_pct}}``.
    """
    layout = schema.layout_of(ds)
    space_dims = schema.space_dims(ds)
    inside = None
    if "coverage" in ds.data_vars:
        inside = ds["coverage"] > 0
    rows = {}
    for name, da in ds.data_vars.items():
        name = str(name)
        if variables.is_mask(name) or TIME not in da.dims:
            continue
        missing = da.isnull()
        mask = ds.get(variables.mask_name(name))
        imputed = mask if mask is not None else xr.zeros_like(missing)
        if inside is not None:
            missing, imputed = missing.where(inside), imputed.where(inside)
        total = float(missing.count()) or 1.0
        rows[name] = {
            "units": da.attrs.get("units", ""),
            "missing_pct": 100.0 * float(missing.sum()) / total,
            "imputed_pct": 100.0 * float(imputed.sum()) / total,
        }
    times = timeaxis.to_index(ds[TIME].values)  # datetime64 or cftime
    step = timeaxis.infer_step(times)
    if layout == "station":
        space = f"{ds.sizes[space_dims[0]]} stations"
    else:
        cells = f"{ds.sizes[space_dims[0]]} x {ds.sizes[space_dims[1]]} cells"
        space = cells if inside is None else f"{cells} ({int(inside.sum())} covered)"
    return {
        "layout": layout,
        "space": space,
        "start": str(times[0]),
        "end": str(times[-1]),
        "step": str(step) if step.is_calendar else _format_step(pd.Timedelta(step.count, "ns")),
        "n_time": len(times),
        "variables": rows,
    }


def format_summary(name: str, ds: xr.Dataset) -> str:
    """A short, aligned text block describing ``ds`` (see :func:`describe`)."""
    d = describe(ds)
    lines = [
        f"{name}: {d['layout']}, {d['space']}, {d['n_time']} steps of {d['step']} "
        f"from {d['start']} to {d['end']} (UTC)",
        f"  {'variable':<10} {'units':<8} {'missing %':>10} {'imputed %':>10}",
    ]
    for var, row in d["variables"].items():
        lines.append(
            f"  {var:<10} {row['units']:<8} {row['missing_pct']:>10.2f} {row['imputed_pct']:>10.2f}"
        )
    src = ds.attrs.get("source")
    if src:
        lines.append(f"  source: {src}")
    return "\n".join(lines)


def _format_step(step: pd.Timedelta) -> str:
    for unit, size in (
        ("d", pd.Timedelta(days=1)),
        ("h", pd.Timedelta(hours=1)),
        ("min", pd.Timedelta(minutes=1)),
    ):
        if step % size == pd.Timedelta(0):
            return f"{step // size} {unit}"
    return str(step)
