"""Figures of attribution Datasets.

Importance bars, lag x variable heat maps, maps, TFT attention, SHAP beeswarms. Each
function takes the Dataset (or a ``shap.Explanation``), draws one figure and, given
``path``, saves it as PNG atomically; it returns the Figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from geoclim import fileio  # noqa: E402
from geoclim.explain.layout import INPUT_VARIABLE, LAG, SAMPLE  # noqa: E402
from geoclim.types import LATITUDE, LEAD_TIME, LONGITUDE  # noqa: E402

KIND_COLOURS = {
    "past": "#1f77b4",
    "past+future": "#9467bd",
    "future": "#2ca02c",
    "calendar": "#8c8c8c",
    "static": "#d62728",
}


def save(fig: Figure, path: str | Path | None) -> Figure:
    """Write ``fig`` as PNG (atomically) when ``path`` is given; return it."""
    if path is not None:
        with fileio.atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return fig


def _title(ds: xr.Dataset, what: str) -> str:
    a = ds.attrs
    model = f"{a['model']} " if a.get("model") else ""
    q = a.get("target_quantile", "point forecast")
    q = q if isinstance(q, str) else f"q = {q:g}"
    return f"{model}{what}: {a.get('target_variable', '')} ({q}), {a.get('method', '')}"


def _lead_label(ds: xr.Dataset, lead: Any) -> str:
    if lead is None:
        return "mean over leads"
    hours = ds[LEAD_TIME].sel({LEAD_TIME: lead}).values / np.timedelta64(1, "h")
    return f"lead +{float(hours):g} h"


def _magnitude(ds: xr.Dataset, lead: Any = None) -> xr.DataArray:
    """Mean |attribution| over samples (and space), at ``lead`` or over all leads."""
    mag = abs(ds["attribution"])
    dims = [d for d in mag.dims if d not in (INPUT_VARIABLE, LAG, LEAD_TIME)]
    mag = mag.mean([d for d in dims if d == SAMPLE]).sum([d for d in dims if d != SAMPLE])
    return mag.mean(LEAD_TIME) if lead is None else mag.sel({LEAD_TIME: lead})


def importance_bars(ds: xr.Dataset, lead: Any = None, path: str | Path | None = None) -> Figure:
    """Horizontal bars: mean |attribution| of each input variable, summed over its lags."""
    mag = _magnitude(ds, lead)
    if LAG in mag.dims:
        mag = mag.sum(LAG, skipna=True)
    order = np.argsort(mag.values)
    names = mag[INPUT_VARIABLE].values[order]
    kinds = ds["input_kind"].values[order] if "input_kind" in ds else ["past"] * len(names)
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(names) + 1.5))
    ax.barh(names, mag.values[order], color=[KIND_COLOURS.get(k, "#444") for k in kinds])
    ax.set_xlabel(f"mean |attribution| ({ds.attrs.get('units', '')})")
    ax.set_title(f"{_title(ds, 'input importance')}\n{_lead_label(ds, lead)}", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=KIND_COLOURS[k]) for k in dict.fromkeys(kinds)]
    ax.legend(handles, list(dict.fromkeys(kinds)), fontsize="small", loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def lag_heatmap(
    ds: xr.Dataset, lead: Any = None, path: str | Path | None = None, signed: bool = False
) -> Figure:
    """Input variable x lag heat map of mean |attribution| (or the signed mean).

    Lags run from the oldest input (left) to the last lead's valid time (right); the dashed
    line marks the init time. Grey cells: the model has no such input.
    """
    if signed:
        da = (
            ds["attribution"].mean(SAMPLE)
            if SAMPLE in ds["attribution"].dims
            else ds["attribution"]
        )
        da = da.mean(LEAD_TIME) if lead is None else da.sel({LEAD_TIME: lead})
    else:
        da = _magnitude(ds, lead)
    da = da.transpose(INPUT_VARIABLE, LAG).sortby(LAG, ascending=False)
    values = np.ma.masked_invalid(da.values)
    fig, ax = plt.subplots(
        figsize=(max(6.0, 0.28 * da.sizes[LAG] + 2), 0.4 * da.sizes[INPUT_VARIABLE] + 1.8)
    )
    cmap = plt.get_cmap("RdBu_r" if signed else "viridis").copy()
    cmap.set_bad("#e6e6e6")
    vmax = float(np.nanmax(np.abs(da.values))) or 1.0
    im = ax.imshow(
        values,
        aspect="auto",
        cmap=cmap,
        vmin=-vmax if signed else 0.0,
        vmax=vmax,
        interpolation="nearest",
    )
    lags = da[LAG].values
    step = max(1, -(-lags.size // 12))
    ax.set_xticks(np.arange(lags.size)[::step], [f"{-v:+d}" for v in lags[::step]])
    ax.set_yticks(np.arange(da.sizes[INPUT_VARIABLE]), da[INPUT_VARIABLE].values)
    zero = int(np.flatnonzero(lags == 0)[0])
    ax.axvline(zero + 0.5, color="white", ls="--", lw=1)
    ax.set_xlabel("step relative to the init time (negative: past inputs, positive: lead)")
    label = "mean attribution" if signed else "mean |attribution|"
    fig.colorbar(im, ax=ax, label=f"{label} ({ds.attrs.get('units', '')})")
    ax.set_title(f"{_title(ds, 'lag x variable')}\n{_lead_label(ds, lead)}", fontsize=10)
    return save(fig, path)


def spatial_map(
    ds: xr.Dataset, variable: str | None = None, lead: Any = None, path: str | Path | None = None
) -> Figure:
    """A map of attributions: input cells (occlusion) or forecast locations (point models).

    For occlusion Datasets ``(…, input_variable, latitude, longitude)`` the map shows the
    mean signed attribution of ``variable``'s cells; for point Datasets, the mean
    |attribution| of ``variable`` (all variables when ``None``) at each forecast location.
    """
    fig, ax = plt.subplots(figsize=(6.5, 5))
    att = ds["attribution"]
    if LATITUDE in att.dims:
        da = att.sel({INPUT_VARIABLE: variable or str(ds[INPUT_VARIABLE].values[0])})
        da = da.mean(SAMPLE)
        da = da.mean(LEAD_TIME) if lead is None else da.sel({LEAD_TIME: lead})
        vmax = float(np.nanmax(np.abs(da.values))) or 1.0
        mesh = ax.pcolormesh(
            ds[LONGITUDE],
            ds[LATITUDE],
            da.values,
            cmap="RdBu_r",
            vmin=-vmax,
            vmax=vmax,
            shading="nearest",
        )
        fig.colorbar(mesh, ax=ax, label=f"mean attribution ({ds.attrs.get('units', '')})")
        what = f"where {da[INPUT_VARIABLE].item()} matters"
    else:
        mag = abs(att)
        if variable is not None:
            mag = mag.sel({INPUT_VARIABLE: variable})
        mag = mag.sum([d for d in mag.dims if d in (INPUT_VARIABLE, LAG)], skipna=True)
        mag = mag.mean(LEAD_TIME) if lead is None else mag.sel({LEAD_TIME: lead})
        frame = mag.to_dataframe("m").groupby([LATITUDE, LONGITUDE])["m"].mean().reset_index()
        sc = ax.scatter(
            frame[LONGITUDE],
            frame[LATITUDE],
            c=frame["m"],
            s=60,
            cmap="viridis",
            edgecolor="k",
            lw=0.3,
        )
        fig.colorbar(sc, ax=ax, label=f"mean |attribution| ({ds.attrs.get('units', '')})")
        what = f"importance of {variable or 'all inputs'} by location"
    ax.set_xlabel("longitude (deg E)")
    ax.set_ylabel("latitude (deg N)")
    ax.set_title(f"{_title(ds, what)}\n{_lead_label(ds, lead)}", fontsize=10)
    return save(fig, path)


def tft_attention(ds: xr.Dataset, path: str | Path | None = None) -> Figure:
    """TFT attention over positions per lead (heat map) and its mean over leads (line)."""
    att = ds["attention"].sortby(LAG, ascending=False)
    lags = att[LAG].values
    fig, (ax0, ax1) = plt.subplots(
        2, 1, figsize=(7.5, 6), gridspec_kw={"height_ratios": [2, 1]}, sharex=True
    )
    hours = ds[LEAD_TIME].values / np.timedelta64(1, "h")
    im = ax0.imshow(att.values, aspect="auto", cmap="magma", interpolation="nearest")
    ax0.set_yticks(np.arange(hours.size), [f"+{h:g} h" for h in hours])
    ax0.set_ylabel("lead")
    fig.colorbar(im, ax=ax0, label="attention weight")
    zero = int(np.flatnonzero(lags == 0)[0])
    ax0.axvline(zero + 0.5, color="white", ls="--", lw=1)
    ax1.plot(np.arange(lags.size), att.mean(LEAD_TIME).values, marker="o", ms=3)
    ax1.axvline(zero + 0.5, color="grey", ls="--", lw=1)
    step = max(1, -(-lags.size // 12))
    ax1.set_xticks(np.arange(lags.size)[::step], [f"{-v:+d}" for v in lags[::step]])
    ax1.set_xlabel("attended step relative to the init time")
    ax1.set_ylabel("mean over leads")
    ax1.grid(alpha=0.3)
    ax0.set_title(f"TFT attention over past and future steps ({ds.attrs.get('n_samples')} samples)")
    return save(fig, path)


def tft_selection(ds: xr.Dataset, path: str | Path | None = None) -> Figure:
    """TFT variable-selection weights on the variable x lag grid."""
    fake = xr.Dataset(
        {"attribution": ds["selection_weight"]},
        coords=ds["selection_weight"].coords,
        attrs={"units": "weight", "method": "TFT variable selection", "target_variable": ""},
    )
    fake = fake.expand_dims({LEAD_TIME: ds[LEAD_TIME].values[:1]})
    fig = lag_heatmap(fake, lead=None)
    fig.axes[0].set_title("TFT variable-selection weights (encoder | decoder | static at 0)")
    return save(fig, path)


def shap_beeswarm(
    explanation: Any,
    path: str | Path | None = None,
    max_display: int = 15,
    title: str = "",
) -> Figure:
    """SHAP's beeswarm of a tree's :class:`shap.Explanation` (one lead).

    Values are in the estimator's output units: the change from persistence divided by the
    lead's scale for residual tree models (see :mod:`geoclim.explain.tree_shap`).
    """
    import shap

    plt.figure(figsize=(7, 0.35 * max_display + 1.5))
    shap.plots.beeswarm(explanation, max_display=max_display, show=False)
    fig = plt.gcf()
    fig.axes[0].set_xlabel("SHAP value (tree output: scaled change from persistence)")
    fig.axes[0].set_title(f"TreeSHAP {title}".strip(), fontsize=10)
    return save(fig, path)
