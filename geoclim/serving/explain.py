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
from geoclim.data.tree_inputs import tree_inputs
from geoclim.data.windows import gather
from geoclim.errors import ConfigError
from geoclim.explain.layout import FIELDS, InputLayout, attribution_dataset
from geoclim.serving import validity
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
    f, meta, task = forecaster, forecaster.metadata, forecaster.task
    f._check_grid(inputs)
    if max_missing is None:
        max_missing = f.max_missing
    if meta.io.nan_inputs == "refuse":
        max_missing = 0.0
    validity.input_validity(task, inputs, max_missing)  # refuses a request with no valid input
    arrays = f.window_arrays(inputs)
    t, y, x = f._samples(inputs)
    batch = gather(arrays, meta.window, t, y, x)
    if meta.io.kind == "tree":
        batch |= tree_inputs(
            arrays,
            task,
            meta.io.calendar,
            inputs.times,
            inputs.latitude,
            inputs.longitude,
            (t, y, x),
            stations=inputs.layout == "station",
        )
    if inputs.domain_rows is not None and inputs.domain_cols is not None:
        batch["lat_idx"] = inputs.domain_rows[y, x].astype(np.int64)
        batch["lon_idx"] = inputs.domain_cols[y, x].astype(np.int64)
    return batch, (t, y, x)


def _reduce(forecaster: Forecaster, out: np.ndarray, channel: int, q: int | None) -> np.ndarray:
    """``(N, L, C[, Q], h, w)`` graph output -> ``(N, L)`` mean over the output cells."""
    p = out[:, :, channel]
    if q is not None:
        p = p[:, :, q]
    return p.mean((-2, -1))


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


def _groups(layout: InputLayout) -> list[tuple[str, list[int], int | None]]:
    """``(field, channels, step)``: one group per ``(variable, lag)`` entry.

    The one-hot channels of a categorical variable form one group: ablating it sets the
    whole one-hot to the baseline (all zeros, the missing-category state), never a
    fractional mixture of categories.
    """
    groups: list[tuple[str, list[int], int | None]] = []
    steps = {"past": layout.input_steps, "known_future": layout.horizon}
    for field in FIELDS:
        by_variable: dict[str, list[int]] = {}
        for c, (_, variable) in enumerate(layout.field_channels(field)):
            by_variable.setdefault(variable, []).append(c)
        for idx in by_variable.values():
            if field == "static":
                groups.append((field, idx, None))
            else:
                groups += [(field, idx, i) for i in range(steps[field])]
    return groups


def baseline_batch(
    layout: InputLayout, batch: dict[str, np.ndarray], modes: dict[str, str] | None = None
) -> dict[str, np.ndarray]:
    """The baseline fields: 0 (the train mean) everywhere, one-hot ``modes`` categories.

    Args:
        layout: the task's layout.
        batch: the request batch (shapes).
        modes: ``{categorical variable: meaning}`` its baseline one-hot takes (a valid
            category, e.g. the most frequent one in training); variables left out are all
            zeros, the missing-category state the adapter also feeds for a missing code.

    """
    modes = layout.check_category_baseline(modes)
    out = {f: np.zeros_like(batch[f]) for f in FIELDS}
    for f in FIELDS:
        idx = layout.baseline_channels(f, modes)
        if idx and f == "static":
            out[f][:, idx] = 1.0
        elif idx:
            out[f][:, :, idx] = 1.0
    return out


def _present(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch fields averaged over the patch cells: ``(N, T, C)`` / ``(N, C)``.

    On one-hot channels: the share of the patch in each category, which a group's
    ablation value is credited to in the per-category breakdown.
    """
    return {f: batch[f].mean((-2, -1)) for f in FIELDS}


def _categories(layout: InputLayout, fields: dict[str, np.ndarray], batch) -> np.ndarray | None:
    """``(N, L, K, lag)`` breakdown of the group values ``fields`` (``(N, L, T, C)``...)."""
    if not layout.categories:
        return None
    present = _present(batch)
    n, n_leads = fields["past"].shape[:2]
    weighted = {f: _fold(fields[f] * present[f][:, None]) for f in FIELDS}
    cube = layout.to_category_cube(weighted["past"], weighted["known_future"], weighted["static"])
    return cube.reshape(n, n_leads, *cube.shape[1:])


def ablation(
    forecaster: Forecaster,
    batch: dict[str, np.ndarray],
    channel: int,
    q: int | None,
    category_baseline: dict[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-entry ablation of a request batch (each group set to :func:`baseline_batch`).

    Returns:
        ``cube (N, L, V, lag)`` (normalised or physical output units), ``prediction (N, L)``,
        ``baseline_prediction (N, L)`` (every input at the baseline) and, for tasks with
        categorical inputs, ``(N, L, K, lag)``: each group's value on the category present.

    """
    layout = InputLayout.from_task(forecaster.task)
    ref = baseline_batch(layout, batch, category_baseline)
    base = _reduce(forecaster, forecaster.run(batch), channel, q)  # (N, L)
    fields = {f: np.zeros((*base.shape, *batch[f].shape[1:-2])) for f in FIELDS}
    for field, idx, i in _groups(layout):
        perturbed = dict(batch)
        v = batch[field].copy()
        if i is None:
            v[:, idx] = ref[field][:, idx]
        else:
            v[:, i, idx] = ref[field][:, i, idx]
        perturbed[field] = v
        drop = base - _reduce(forecaster, forecaster.run(perturbed), channel, q)  # (N, L)
        if i is None:
            fields[field][:, :, idx] = drop[..., None]
        else:
            fields[field][:, :, i, idx] = drop[..., None]
    baseline = _reduce(forecaster, forecaster.run({**batch, **ref}), channel, q)
    # fields are (N, L, T, C) / (N, L, C): fold the lead into the sample axis for to_cube
    n, n_leads = base.shape
    cube = layout.to_cube(
        _fold(fields["past"]),
        _fold(fields["known_future"]),
        _fold(fields["static"]),
        reduce="mean",  # every channel of a one-hot group holds the group's value
    )
    cats = _categories(layout, fields, batch)
    return cube.reshape(n, n_leads, *cube.shape[1:]), base, baseline, cats


def _fold(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def occlusion(
    forecaster: Forecaster,
    batch: dict[str, np.ndarray],
    channel: int,
    q: int | None,
    block: int = 2,
    category_baseline: dict[str, str] | None = None,
) -> np.ndarray:
    """Block occlusion of every variable (all its steps and channels) on grid samples.

    Returns:
        ``(N, L, V, H, W)``: drop of the domain-mean forecast when the block holding each
        cell is set to the baseline (each cell belongs to exactly one block).

    """
    layout = InputLayout.from_task(forecaster.task)
    ref = baseline_batch(layout, batch, category_baseline)
    base = _reduce(forecaster, forecaster.run(batch), channel, q)  # (N, L)
    h, w = batch["past"].shape[-2:]
    names = layout.variables
    out = np.zeros((*base.shape, len(names), h, w), np.float32)
    channels = {  # {field: {variable: its channels (every one-hot channel)}}
        f: {n: [c for c, (_, v) in enumerate(layout.field_channels(f)) if v == n] for n in names}
        for f in FIELDS
    }
    for r0 in range(0, h, block):
        for c0 in range(0, w, block):
            window = (slice(r0, r0 + block), slice(c0, c0 + block))
            for v, name in enumerate(names):
                perturbed = dict(batch)
                for field in FIELDS:
                    idx = channels[field][name]
                    if idx:
                        a = batch[field].copy()
                        r = ref[field]
                        if field == "static":
                            a[:, idx, window[0], window[1]] = r[:, idx, window[0], window[1]]
                        else:
                            a[:, :, idx, window[0], window[1]] = r[:, :, idx, window[0], window[1]]
                        perturbed[field] = a
                drop = base - _reduce(forecaster, forecaster.run(perturbed), channel, q)
                out[:, :, v, window[0], window[1]] = drop[:, :, None, None]
    return out


def shap_values(
    forecaster: Forecaster,
    batch: dict[str, np.ndarray],
    channel: int,
    q: int | None,
    max_evals: int | None = None,
    seed: int = 0,
    category_baseline: dict[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """SHAP permutation values of each ``(variable, lag)`` entry of point samples.

    The players are the ablation groups (:func:`_groups`): a one-hot variable at one step
    is one player, present (the sample's category) or absent (the baseline, all zeros).

    Returns:
        ``(N, L, V, lag)`` Shapley values against the baseline (a zero background) and, for
        categorical inputs, ``(N, L, K, lag)`` (each player's value on the category present).

    """
    import shap

    layout = InputLayout.from_task(forecaster.task)
    if batch["past"].shape[-1] * batch["past"].shape[-2] != 1:
        raise ConfigError("method 'shap' explains point models; use ablation or occlusion")
    n = batch["past"].shape[0]
    shapes = {f: batch[f].shape[1:-2] for f in FIELDS}
    sizes = [int(np.prod(shapes[f])) for f in FIELDS]
    flat = np.concatenate([batch[f].reshape(n, -1) for f in FIELDS], 1)  # (N, F)
    ref = baseline_batch(layout, batch, category_baseline)
    ref_flat = np.concatenate([ref[f].reshape(n, -1) for f in FIELDS], 1)  # (N, F)
    player = _players(layout, shapes)  # (F,) player of each flat input
    n_players = int(player.max()) + 1
    rest = {k: v for k, v in batch.items() if k not in FIELDS}

    def model(z: np.ndarray, row: int) -> np.ndarray:
        m = z.shape[0]  # z (m, P) in {0, 1}: player present or at the (zero) baseline
        b = ref_flat[row][None]
        x = (b + z[:, player] * (flat[row][None] - b)).astype(np.float32)  # (m, F)
        parts = np.split(x, np.cumsum(sizes)[:-1], axis=1)
        feed = {f: p.reshape(m, *shapes[f], 1, 1) for f, p in zip(FIELDS, parts, strict=True)}
        feed |= {k: np.repeat(v[row : row + 1], m, 0) for k, v in rest.items()}
        return _reduce(forecaster, forecaster.run(feed), channel, q)  # (m, L)

    masker = shap.maskers.Independent(np.zeros((1, n_players), np.float32))
    budget = max_evals or 2 * n_players + 1
    values = np.empty((n, forecaster.task.horizon, n_players), np.float32)
    ones = np.ones((1, n_players), np.float32)
    for i in range(n):
        explainer = shap.PermutationExplainer(lambda z, i=i: model(z, i), masker, seed=seed + i)
        values[i] = explainer(ones, max_evals=budget, silent=True).values[0].T
    per_input = values[..., player]  # (N, L, F): every input of a player holds its value
    parts = np.split(per_input, np.cumsum(sizes)[:-1], axis=2)
    fields = {f: p.reshape(n, p.shape[1], *shapes[f]) for f, p in zip(FIELDS, parts, strict=True)}
    cube = layout.to_cube(
        _fold(fields["past"]), _fold(fields["known_future"]), _fold(fields["static"]), reduce="mean"
    )
    point = {f: batch[f].reshape(n, *shapes[f], 1, 1) for f in FIELDS}
    return cube.reshape(n, values.shape[1], *cube.shape[1:]), _categories(layout, fields, point)


def _players(layout: InputLayout, shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    """Player id of each flattened input (``past``, ``known_future``, ``static`` order)."""
    ids = {f: np.zeros(shapes[f], np.int64) for f in FIELDS}
    for p, (field, idx, i) in enumerate(_groups(layout)):
        if i is None:
            ids[field][idx] = p
        else:
            ids[field][i, idx] = p
    return np.concatenate([ids[f].ravel() for f in FIELDS])


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
            (:func:`geoclim.explain.captum.train_modes`) when the model never saw a missing
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
    prediction = _reduce(forecaster, forecaster.run(batch), channel, q)
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
    from pydantic import ValidationError

    from geoclim.errors import SchemaError
    from geoclim.serving import inputs as request
    from geoclim.serving.schemas import ExplainRequest

    if not isinstance(body, ExplainRequest):
        try:
            body = ExplainRequest.model_validate(body, strict=False)
        except ValidationError as err:
            first = err.errors()[0]
            raise SchemaError(
                f"request {'.'.join(map(str, first['loc']))}: {first['msg']}"
            ) from None
    if body.method == "occlusion":
        raise ConfigError("method 'occlusion' maps grids; POST a gridded netCDF history instead")
    locs = body.locations
    stations = [loc.station or f"point-{i}" for i, loc in enumerate(locs)]
    inputs = request.from_arrays(
        forecaster.metadata,
        _utc(body.init_time),
        _stack([loc.past for loc in locs]),
        latitude=np.array([loc.latitude for loc in locs]),
        longitude=np.array([loc.longitude for loc in locs]),
        station=stations,
        future=_stack([loc.future for loc in locs]) or None,
        static={
            k: np.array([loc.static.get(k, np.nan) for loc in locs])
            for k in {k for loc in locs for k in loc.static}
        }
        or None,
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
            "attributions": _nullable(row["attribution"].values),
            "prediction": _nullable(row["prediction"].values),
        }
        if "baseline_prediction" in row:
            entry["baseline_prediction"] = _nullable(row["baseline_prediction"].values)
        if "category_attribution" in row:
            entry["category_attributions"] = _nullable(row["category_attribution"].values)
        out.append(entry)
    return {
        "model": name or forecaster.name,
        "version": version,
        "method": body.method,
        "baseline": "climatology (train mean of every input)",
        "target": ds.attrs["target_variable"],
        "quantile": None if isinstance(level := ds.attrs["target_quantile"], str) else level,
        "units": ds.attrs["units"],
        "init_time": f"{np.datetime_as_string(_utc(body.init_time), unit='s')}Z",
        "lead_time_hours": hours,
        "input_variables": [str(v) for v in ds["input_variable"].values],
        "lags": [int(v) for v in ds["lag"].values],
        "categories": [str(c) for c in ds["category"].values] if "category" in ds.coords else None,
        "explanations": out,
    }


def _utc(value: Any) -> np.datetime64:
    """A request's ``init_time`` as naive UTC ``datetime64[ns]`` (1900-2200)."""
    import pandas as pd

    from geoclim.errors import SchemaError

    try:
        t = pd.Timestamp(value)
        t = t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t
    except (ValueError, OverflowError):
        t = None
    if t is None or not pd.Timestamp("1900-01-01") <= t <= pd.Timestamp("2200-01-01"):
        raise SchemaError(f"init_time {value!s} must be a time between 1900-01-01 and 2200-01-01")
    return t.to_datetime64().astype("datetime64[ns]")


def _stack(series: list[dict[str, list]]) -> dict[str, np.ndarray]:
    """Per-location ``{var: series}`` -> ``{var: (S, T)}`` (same variables everywhere)."""
    from geoclim.errors import SchemaError

    names = {k for s in series for k in s}
    out = {}
    for var in sorted(names):
        rows = [s.get(var) for s in series]
        if any(r is None for r in rows) or len({len(r or ()) for r in rows}) > 1:
            raise SchemaError(
                f"variable {var!r} must be sent for every location with the same length"
            )
        out[var] = np.array(rows, dtype=np.float64)
    return out


def _nullable(values: np.ndarray) -> list:
    a = np.asarray(values, dtype=np.float64)
    out = a.astype(object)
    out[~np.isfinite(a)] = None  # JSON has no NaN
    return out.tolist()
