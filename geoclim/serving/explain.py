"""Model-agnostic attributions of an exported model over onnxruntime (no torch).

What :meth:`Forecaster.explain <geoclim.serving.adapter.Forecaster.explain>` and
``POST /v1/explain`` run. The graph is a black box ``batch -> forecast``; the baseline is the
train mean of every input, **0 in normalised space** (what the adapter fills gaps with, and
the ``climatology`` baseline of :mod:`geoclim.explain.captum`). A categorical (CF flag)
input is one-hot: its channels are ablated together, as one group per step, to a valid
baseline, never a fractional one-hot: all zeros (the missing-category state, what the
adapter feeds for a missing code) unless ``category_baseline`` names a category per variable
(the training mode is the categorical analogue of the train mean; the torch-side
``climatology`` baseline uses it). Attributions of a categorical input are reported under
its variable; ``category_attribution`` credits each group's value to the category the
sample had (``wd=NE``). Methods:

* ``ablation`` -- every ``(input_variable, lag)`` entry set to the baseline in turn (over the
  whole patch); attribution = forecast minus the ablated forecast, per lead. On the same
  network this equals Captum's feature ablation with ``ablation="cell"`` (tested).
* ``occlusion`` -- grids only: one variable at all its steps, over a ``block x block`` window
  of cells, set to the baseline; a map per variable (``(input_variable, latitude,
  longitude)``) of the drop of the domain-mean forecast.
* ``shap`` -- point models: SHAP's permutation explainer on the ORT function, with the
  baseline as the background: the Shapley values of the same game ablation probes one
  player at a time, interactions shared fairly. SHAP is imported on first use only.

Attributions are in the target's physical units (the normalised difference times the train
standard deviation; trees predict physical values already), log-transformed targets stay in
normalised units. The result is the attribution Dataset of
:func:`geoclim.explain.layout.attribution_dataset` (``sample`` = forecast location and init).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import timeaxis
from geoclim.errors import ConfigError
from geoclim.explain.layout import InputLayout, attribution_dataset
from geoclim.serving.attribution import ablation, occlusion, reduce_output, shap_values
from geoclim.serving.inputs import Inputs
from geoclim.types import LATITUDE, LEAD_TIME, LONGITUDE, STATION

Forecaster = Any  # geoclim.serving.adapter.Forecaster (not imported: no import circle)
METHODS = ("ablation", "occlusion", "shap")


def request_batch(
    forecaster: Forecaster, inputs: Inputs, max_missing: float | None = None
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The normalised graph inputs of every sample of a request, as the forecast builds them.

    Returns:
        The batch arrays (Batch layout, plus the tree inputs for tree exports) and the
        sample positions ``(t, y, x)``.

    """
    f = forecaster
    f.input_validity(inputs, max_missing)  # refuses a request with no valid input
    arrays = f.window_arrays(inputs)
    t, y, x = f._samples(inputs)
    batch = f.graph_batch(inputs, arrays, t, y, x)
    return batch, (t, y, x)


def _resolve(forecaster: Forecaster, variable: str | None, quantile: float | None):
    targets, quantiles = forecaster.task.targets, tuple(forecaster.task.quantiles)
    variable = variable or targets[0]
    if variable not in targets:
        raise ConfigError(f"explain variable {variable!r} is not a target; valid: {targets}")
    if not quantiles:
        if quantile is not None:
            raise ConfigError(f"quantile {quantile} given but the model forecasts points")
        return variable, targets.index(variable), None
    level = 0.5 if quantile is None else float(quantile)
    close = np.isclose(quantiles, level)
    if quantile is not None and not close.any():
        raise ConfigError(f"quantile {quantile} is not a model quantile; valid: {list(quantiles)}")
    q = (
        int(np.flatnonzero(close)[0])
        if close.any()
        else int(np.argmin(np.abs(np.subtract(quantiles, level))))
    )
    return variable, targets.index(variable), q


def explain_inputs(
    forecaster: Forecaster,
    inputs: Inputs,
    *,
    method: str = "ablation",
    variable: str | None = None,
    quantile: float | None = None,
    max_missing: float | None = None,
    block: int = 2,
    max_evals: int | None = None,
    seed: int = 0,
    category_baseline: dict[str, str] | None = None,
) -> xr.Dataset:
    """Attributions of every forecast of a validated request.

    Args:
        forecaster: the exported model.
        inputs: the validated request.
        method: one of :data:`METHODS`.
        variable: explained target (default the first).
        quantile: explained quantile level of a quantile model (any of its levels; default
            the median, or the level nearest 0.5); ``None`` for point models.
        max_missing: accepted missing fraction (default the forecaster's).
        block: occlusion window edge in cells.
        max_evals: model evaluations per sample for ``shap`` (default ``2 F + 1``).
        seed: permutation seed for ``shap``.
        category_baseline: ``{categorical variable: meaning}`` of the baseline one-hot
            (:func:`baseline_batch`); by default every categorical input's baseline is all
            zeros, the missing-category state. Pass the training mode
            (:func:`geoclim.explain.baselines.train_modes`) when the model never saw a missing
            code: all zeros is then outside its training data and draws attribution.

    Returns:
        The attribution Dataset (``sample`` = forecast; ``prediction`` and, for ablation,
        ``baseline_prediction`` of the explained scalar per lead).

    """
    if method not in METHODS:
        raise ConfigError(f"unknown explain method {method!r}; valid are {list(METHODS)}")
    variable, channel, q = _resolve(forecaster, variable, quantile)
    batch, (t, y, x) = request_batch(forecaster, inputs, max_missing)
    layout = InputLayout.from_task(forecaster.task)
    scale, units = _scale(forecaster, variable)
    prediction = reduce_output(forecaster.run(batch), channel, q)
    extra: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    space: dict[str, np.ndarray] = {}
    categories = None
    if method == "ablation":
        cube, prediction, baseline, categories = ablation(
            forecaster, batch, channel, q, category_baseline
        )
        extra["baseline_prediction"] = (("sample", LEAD_TIME), baseline * scale)
    elif method == "shap":
        cube, categories = shap_values(
            forecaster, batch, channel, q, max_evals, seed, category_baseline
        )
    else:
        if inputs.layout != "grid" or batch["past"].shape[-1] == 1:
            raise ConfigError("method 'occlusion' needs a spatial model on a grid request")
        cube = occlusion(forecaster, batch, channel, q, block, category_baseline)
        space = {LATITUDE: inputs.latitude, LONGITUDE: inputs.longitude}
    extra["prediction"] = (("sample", LEAD_TIME), prediction * scale)
    attrs = {
        "method": f"onnx_{method}",
        "baseline": "climatology",
        "units": units,
        "model": forecaster.name,
        "target_variable": variable,
        "target_quantile": "point forecast"
        if q is None
        else float(forecaster.task.quantiles[q]),  # the median by default
        "target_aggregation": "mean",
    }
    if category_baseline:
        attrs["category_baseline"] = ", ".join(f"{k}={v}" for k, v in category_baseline.items())
    # timedelta64 leads for a fixed step, whole months / years for a calendar step
    lead_time = timeaxis.lead_coordinate(forecaster.metadata.step, forecaster.task.horizon).values
    coords = _sample_coords(inputs, t, y, x, spatial=bool(space))
    if space:
        return _occlusion_dataset(cube * scale, layout, lead_time, coords, space, extra, attrs)
    return attribution_dataset(
        cube * scale,
        layout,
        lead_time,
        sample_coords=coords,
        extra=extra,
        attrs=attrs,
        category_cube=None if categories is None else categories * scale,
    )


def _scale(forecaster: Forecaster, variable: str) -> tuple[float, str]:
    meta = forecaster.metadata
    units = meta.variables.get(variable, {}).get("units", "")
    if meta.io.output_space == "physical":
        return 1.0, units
    stats = meta.normalizer.stats[variable]
    if stats.log:
        return 1.0, f"normalised log1p({variable})"
    return float(stats.std), units


def _sample_coords(inputs: Inputs, t, y, x, *, spatial: bool) -> dict[str, np.ndarray]:
    coords: dict[str, np.ndarray] = {"init_time": inputs.times[t]}
    if spatial:
        return coords
    if inputs.layout == "station":
        coords[STATION] = np.asarray(inputs.station)[y]
        coords[LATITUDE], coords[LONGITUDE] = inputs.latitude[y], inputs.longitude[y]
    else:
        coords[LATITUDE], coords[LONGITUDE] = inputs.latitude[y], inputs.longitude[x]
    return coords


def _occlusion_dataset(cube, layout, lead_time, coords, space, extra, attrs) -> xr.Dataset:
    dims = ("sample", LEAD_TIME, "input_variable", *space)
    data = {"attribution": (dims, cube.astype(np.float32))}
    data |= {k: (d, np.asarray(v)) for k, (d, v) in extra.items()}
    return xr.Dataset(
        data,
        coords={
            "sample": np.arange(cube.shape[0]),
            LEAD_TIME: lead_time,
            "input_variable": list(layout.variables),
            "input_kind": ("input_variable", layout.kinds()),
            **{k: ("sample", v) for k, v in coords.items()},
            **space,
        },
        attrs=attrs,
    )


def explain_records(
    forecaster: Forecaster,
    body: Any,
    *,
    name: str | None = None,
    version: str | None = None,
    max_missing: float | None = None,
) -> dict[str, Any]:
    """Explain the forecasts of a ``POST /v1/explain`` body (JSON in, JSON out).

    Args:
        forecaster: the model.
        body: an :class:`~geoclim.serving.schemas.ExplainRequest` or its JSON dict.
        name: model name to report.
        version: model version to report.
        max_missing: accepted missing fraction (default: the request's, else the server's).

    Returns:
        A dict in the :class:`~geoclim.serving.schemas.ExplainResponse` schema: per location,
        ``attributions[lead][input_variable][lag]`` (``None`` where the model has no such
        input), the explained forecast and its value at the baseline.

    """
    from geoclim.serving import inputs as request
    from geoclim.serving.records import (
        json_floats,
        stack_series,
        static_values,
        station_ids,
        utc,
        validated,
    )
    from geoclim.serving.schemas import ExplainRequest

    body = validated(ExplainRequest, body)
    if body.method == "occlusion":
        raise ConfigError("method 'occlusion' maps grids; POST a gridded netCDF history instead")
    locs = body.locations
    stations = station_ids(locs)
    inputs = request.from_arrays(
        forecaster.metadata,
        utc(body.init_time),
        stack_series([loc.past for loc in locs]),
        latitude=np.array([loc.latitude for loc in locs]),
        longitude=np.array([loc.longitude for loc in locs]),
        station=stations,
        future=stack_series([loc.future for loc in locs]) or None,
        static=static_values(locs) or None,
        units=body.units or None,
    )
    if max_missing is None:
        max_missing = body.max_missing
    ds = explain_inputs(
        forecaster,
        inputs,
        method=body.method,
        variable=body.variable,
        quantile=body.quantile,
        max_missing=max_missing,
        max_evals=body.max_evals,
        category_baseline=body.category_baseline,
    )
    t0 = inputs.inits[0]  # elapsed hours to each valid time (exact for calendar steps too)
    hours = [
        pd.Timedelta(inputs.times[t0 + k] - inputs.times[t0]) / pd.Timedelta(hours=1)
        for k in range(1, forecaster.task.horizon + 1)
    ]
    out = []
    for i, station in enumerate(stations):
        row = ds.isel(sample=i)
        entry = {
            "station": station,
            "latitude": locs[i].latitude,
            "longitude": locs[i].longitude,
            "attributions": json_floats(row["attribution"].values),
            "prediction": json_floats(row["prediction"].values),
        }
        if "baseline_prediction" in row:
            entry["baseline_prediction"] = json_floats(row["baseline_prediction"].values)
        if "category_attribution" in row:
            entry["category_attributions"] = json_floats(row["category_attribution"].values)
        out.append(entry)
    return {
        "model": name or forecaster.name,
        "version": version,
        "method": body.method,
        "baseline": "climatology (train mean of every input)",
        "target": ds.attrs["target_variable"],
        "quantile": None if isinstance(level := ds.attrs["target_quantile"], str) else level,
        "units": ds.attrs["units"],
        "init_time": f"{np.datetime_as_string(utc(body.init_time), unit='s')}Z",
        "lead_time_hours": hours,
        "input_variables": [str(v) for v in ds["input_variable"].values],
        "lags": [int(v) for v in ds["lag"].values],
        "categories": [str(c) for c in ds["category"].values] if "category" in ds.coords else None,
        "explanations": out,
    }
