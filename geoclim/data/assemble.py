"""Predictions back on coordinates: ``to_forecast_dataset``.

Networks and baselines return arrays plus the integer positions of their samples; this module
scatters them into the predictions Dataset every consumer reads::

    dims  (init_time, lead_time, <space>[, quantile])
    coord valid_time = init_time + lead_time
    one data variable per target, physical units, CF attributes

``init_time`` is the time of the last input step; lead ``k`` is ``k`` time steps later and
``valid_time`` is the template's own stamp ``k`` steps after the init (cftime and mid-month
stamps alike). ``lead_time`` is ``k * step`` as ``timedelta64`` for a fixed step, or the
integer number of months / years with ``units`` ``"months"`` / ``"years"`` for a calendar
step (see :mod:`geoclim.data.timeaxis`). Overlapping patches are averaged; positions with no
prediction are NaN.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from geoclim.data import schema, timeaxis, variables
from geoclim.data.normalize import Normalizer
from geoclim.errors import DataError
from geoclim.types import (
    INIT_TIME,
    LATITUDE,
    LEAD_TIME,
    LONGITUDE,
    QUANTILE,
    STATION,
    TIME,
    VALID_TIME,
)


def to_forecast_dataset(
    prediction: np.ndarray,
    time_idx: np.ndarray,
    lat_idx: np.ndarray,
    lon_idx: np.ndarray,
    template: xr.Dataset,
    targets: tuple[str, ...] | list[str],
    *,
    normalizer: Normalizer | None = None,
    quantiles: tuple[float, ...] | list[float] = (),
) -> xr.Dataset:
    """Scatter sample predictions into the predictions Dataset.

    Args:
        prediction: ``(N, L, C_out, h, w)`` or, with quantiles, ``(N, L, C_out, Q, h, w)``;
            normalised when ``normalizer`` is given, else physical.
        time_idx: ``(N,)`` init positions on ``template.time``.
        lat_idx: ``(N,)`` patch origin rows (station positions for station data).
        lon_idx: ``(N,)`` patch origin columns (0 for station data).
        template: the canonical dataset the samples were cut from (coordinates only).
        targets: names of the ``C_out`` channels.
        normalizer: de-normalises the prediction when given.
        quantiles: the ``Q`` quantile levels, if any.

    Returns:
        Dataset with dims ``(init_time, lead_time, <space>[, quantile])``.

    """
    pred = np.asarray(prediction, dtype=np.float32)
    if quantiles:
        pred = np.moveaxis(pred, 3, -1)  # (N, L, C, h, w, Q)
    else:
        pred = pred[..., None]
    n, lead, n_out, ph, pw, n_q = pred.shape
    if n_out != len(targets):
        raise DataError(f"prediction has {n_out} channels but {len(targets)} targets {targets}")
    layout = schema.layout_of(template)
    times = template[TIME].values
    h, w = (
        (template.sizes[STATION], 1)
        if layout == "station"
        else (template.sizes[LATITUDE], template.sizes[LONGITUDE])
    )
    inits, init_row = np.unique(np.asarray(time_idx, dtype=np.int64), return_inverse=True)

    total = np.zeros((inits.size, lead, n_out, h, w, n_q), np.float64)
    count = np.zeros((inits.size, 1, 1, h, w, 1), np.int32)
    rows = init_row[:, None, None]  # broadcast with yy, xx to (N, h, w)
    yy = np.asarray(lat_idx)[:, None, None] + np.arange(ph)[None, :, None]
    xx = np.asarray(lon_idx)[:, None, None] + np.arange(pw)[None, None, :]
    # (N, h, w) index triples; np.add.at handles repeated cells (overlapping patches)
    np.add.at(total.transpose(0, 3, 4, 1, 2, 5), (rows, yy, xx), pred.transpose(0, 3, 4, 1, 2, 5))
    np.add.at(count[:, 0, 0, :, :, 0], (rows, yy, xx), 1)
    with np.errstate(invalid="ignore"):
        values = (total / count).astype(np.float32)

    step = schema.time_step(template)
    init_time = times[inits]
    coords: dict = {INIT_TIME: init_time, LEAD_TIME: timeaxis.lead_coordinate(step, lead)}
    if layout == "station":
        values = values[:, :, :, :, 0]  # drop the unit column -> (I, L, C, S, Q)
        space = (STATION,)
        coords[STATION] = template[STATION].values
        for name in (LATITUDE, LONGITUDE):
            coords[name] = (STATION, template[name].values)
    else:
        space = (LATITUDE, LONGITUDE)
        coords[LATITUDE] = template[LATITUDE].values
        coords[LONGITUDE] = template[LONGITUDE].values
    dims = (INIT_TIME, LEAD_TIME, *space)
    if quantiles:
        dims = (*dims, QUANTILE)
        coords[QUANTILE] = np.asarray(quantiles, dtype=np.float64)
    data_vars = {}
    for c, name in enumerate(targets):
        v = values[:, :, c]
        v = v if quantiles else v[..., 0]
        if normalizer is not None:
            v = normalizer.decode(v, name)
        meta = variables.describe(name, template[name].attrs if name in template else None)
        data_vars[name] = xr.DataArray(
            v, dims=dims, attrs={"units": meta.units, "long_name": f"forecast {meta.long_name}"}
        )
    ds = xr.Dataset(data_vars, coords=coords)
    valid = timeaxis.valid_times(times, step, inits, lead)  # (I, L) the axis's own stamps
    return ds.assign_coords({VALID_TIME: ((INIT_TIME, LEAD_TIME), valid)})


def truth_at_valid_time(forecast: xr.Dataset, truth: xr.Dataset) -> xr.Dataset:
    """The observations matching each forecast value: ``truth`` at ``valid_time``.

    Returns a Dataset on the forecast's ``(init_time, lead_time, <space>)`` dims with the
    forecast's variables (NaN where the truth is missing or outside its time axis).
    """
    names = [n for n in forecast.data_vars if n in truth.data_vars]
    vt = forecast[VALID_TIME]
    out = truth[names].reindex({TIME: np.unique(vt.values.ravel())}).sel({TIME: vt})
    return out.drop_vars(TIME, errors="ignore")
