"""JSON point requests (the ``POST /v1/forecast`` body) -> JSON forecasts, without HTTP.

The same function serves the HTTP route and :meth:`Forecaster.predict_records`, so a
caller holding JSON records gets exactly what the service would answer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from geoclim.data.quantiles import point_from_quantiles
from geoclim.data.task import ForecastTask
from geoclim.errors import SchemaError
from geoclim.export.metadata import ExportMetadata
from geoclim.serving.schemas import ForecastRequest

M = TypeVar("M", bound=BaseModel)


class PointForecaster(Protocol):
    """What answering records needs of a model (:class:`~geoclim.serving.adapter.Forecaster`).

    A protocol, so that this module does not import the adapter that calls it.
    """

    name: str
    metadata: ExportMetadata
    max_missing: float

    @property
    def task(self) -> ForecastTask:
        """The embedded task."""
        ...

    def predict_points(
        self,
        init_time: np.datetime64 | str,
        past: dict[str, np.ndarray],
        *,
        latitude: np.ndarray | list[float],
        longitude: np.ndarray | list[float],
        station: list[str] | None = None,
        future: dict[str, np.ndarray] | None = None,
        static: dict[str, np.ndarray] | None = None,
        units: dict[str, str] | None = None,
        max_missing: float | None = None,
    ) -> Any:
        """A :class:`~geoclim.serving.adapter.PointForecast` (values, validity, fills)."""
        ...


_EARLIEST, _LATEST = np.datetime64("1900-01-01", "ns"), np.datetime64("2200-01-01", "ns")


def forecast_records(
    forecaster: PointForecaster,
    body: ForecastRequest | dict[str, Any],
    *,
    name: str | None = None,
    version: str | None = None,
    max_missing: float | None = None,
) -> dict[str, Any]:
    """Forecast the locations of a request body.

    Args:
        forecaster: the model.
        body: a :class:`~geoclim.serving.schemas.ForecastRequest` or its JSON dict.
        name: model name to report (default: the forecaster's).
        version: model version to report.
        max_missing: accepted fraction of missing inputs (default: the request's, else the
            forecaster's).

    Returns:
        A JSON-ready dict in the :class:`~geoclim.serving.schemas.ForecastResponse` schema;
        values over the lead times per location, ``None`` where not finite.

    Raises:
        SchemaError: for a malformed body (naming the field) or inconsistent series.

    """
    body = validated(ForecastRequest, body)
    f, locs = forecaster, body.locations
    task = f.task
    init = utc(body.init_time)
    stations = station_ids(locs)
    if max_missing is None:
        max_missing = body.max_missing
    result = f.predict_points(
        init,
        stack_series([loc.past for loc in locs]),
        latitude=[loc.latitude for loc in locs],
        longitude=[loc.longitude for loc in locs],
        station=stations,
        future=stack_series([loc.future for loc in locs]) or None,
        static=static_values(locs) or None,
        units=body.units or None,
        max_missing=max_missing,
    )
    values, valid = result.values, result.valid_time
    quantiles = list(task.quantiles)
    lists = {var: json_floats(v) for var, v in values.items()}  # nested (S, L[, Q]) lists
    points = {  # (S, L): the median rule of geoclim.data.quantiles
        var: json_floats(point_from_quantiles(np.asarray(v), quantiles, axis=2))
        if quantiles
        else lists[var]
        for var, v in values.items()
    }
    forecasts, ok, filled = [], result.valid.tolist(), result.filled.tolist()
    for i, loc in enumerate(locs):
        point = {var: v[i] for var, v in points.items()}
        qs = (
            None
            if not quantiles
            else {
                var: {f"{q:g}": [row[j] for row in v[i]] for j, q in enumerate(quantiles)}
                for var, v in lists.items()
            }
        )
        forecasts.append(
            {
                "station": stations[i],
                "latitude": loc.latitude,
                "longitude": loc.longitude,
                "values": point,
                "quantiles": qs,
                "valid": bool(ok[i]),
                "inputs_filled": int(filled[i]),
            }
        )
    masked = [stations[i] for i, good in enumerate(ok) if not good]
    warnings = list(result.warnings)
    if masked:
        warnings.append(
            f"{len(masked)} location(s) masked (forecast null, valid false): more than "
            f"max_missing = {max_missing if max_missing is not None else f.max_missing:g} of "
            f"their inputs missing, or no real past value: {masked[:5]}"
        )
    init_text, hours, valid_text = time_fields(
        init, result.inputs.times[result.inputs.inits[0]], valid
    )
    return {
        "model": name or f.name,
        "version": version,
        "init_time": init_text,
        "lead_time_hours": hours,
        "valid_time": valid_text,
        "units": {var: f.metadata.variables.get(var, {}).get("units", "") for var in task.targets},
        "forecasts": forecasts,
        "inputs_filled": int(sum(filled)),
        "masked_locations": len(masked),
        "warnings": warnings,
    }


def validated(model: type[M], body: M | dict[str, Any]) -> M:
    """``body`` as the request ``model``; a malformed body is a SchemaError naming the field."""
    if isinstance(body, model):
        return body
    try:
        return model.model_validate(body, strict=False)
    except ValidationError as err:
        first = err.errors()[0]
        raise SchemaError(f"request {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def stack_series(series: list[dict[str, list]]) -> dict[str, np.ndarray]:
    """Per-location ``{var: series}`` -> ``{var: (S, T)}``; ``None`` values become NaN.

    When every location sends every variable with one common length (the usual request),
    all of them become one ``(S, V, T)`` array in one call, and each variable a view of it.

    Raises:
        SchemaError: a variable sent for some locations only, or with different lengths.
    """
    names = sorted({k for s in series for k in s})
    if not names:
        return {}
    try:
        block = np.array([[s[var] for var in names] for s in series], dtype=np.float64)
    except (KeyError, ValueError):  # a variable missing somewhere, or ragged lengths
        return stack_each(series)
    return {var: block[:, i] for i, var in enumerate(names)}


def stack_each(series: list[dict[str, list]]) -> dict[str, np.ndarray]:
    """:func:`stack_series` variable by variable, naming what does not fit."""
    out = {}
    for var in sorted({k for s in series for k in s}):
        rows = [s.get(var) for s in series]
        if any(r is None for r in rows):
            raise SchemaError(
                f"variable {var!r} is sent for some locations but not all; "
                "send the same variables everywhere"
            )
        lengths = {len(r) for r in rows if r is not None}
        if len(lengths) > 1:
            raise SchemaError(
                f"series {var!r} has different lengths across locations {sorted(lengths)}"
            )
        out[var] = np.array(rows, dtype=np.float64)
    return out


def static_values(locations: list[Any]) -> dict[str, np.ndarray]:
    """``{name: (S,)}`` static inputs sent with the locations (NaN where one lacks it)."""
    names = sorted({k for loc in locations for k in loc.static})
    return {k: np.array([loc.static.get(k, np.nan) for loc in locations]) for k in names}


def station_ids(locations: list[Any]) -> list[str]:
    """Each location's ``station``, or ``point-<i>`` when it has none."""
    return [loc.station or f"point-{i}" for i, loc in enumerate(locations)]


def utc(value: dt.datetime) -> np.datetime64:
    """A naive UTC ``datetime64[ns]`` within 1900-2200 (outside, time arithmetic overflows).

    Kept per ``(value, its UTC offset)`` for the next request with the same init time
    (equal keys are one instant: the offset tells ambiguous local times apart).
    """
    try:
        key = (value, value.utcoffset())
    except (ValueError, OverflowError, TypeError):  # _utc says what is wrong with it
        return _utc(value)
    t = _UTC_SEEN.get(key)
    if t is None:
        t = _utc(value)
        if len(_UTC_SEEN) >= 1024:
            _UTC_SEEN.clear()
        _UTC_SEEN[key] = t
    return t


_UTC_SEEN: dict[tuple[dt.datetime, dt.timedelta | None], np.datetime64] = {}
"""Init times already converted by :func:`utc` (bounded)."""


def _utc(value: dt.datetime) -> np.datetime64:
    try:
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        t = np.datetime64(value, "ns")
    except (ValueError, OverflowError):
        t = None
    if t is None or not _EARLIEST <= t <= _LATEST:
        raise SchemaError(f"init_time {value!s} must be a time between 1900-01-01 and 2200-01-01")
    return t


def json_floats(values: np.ndarray) -> list:
    """Nested lists of floats, ``None`` where not finite (JSON has no NaN)."""
    a = np.asarray(values)
    if a.dtype not in _JSON_FLOATS:
        a = a.astype(np.float64)
    finite = np.isfinite(a)
    if finite.all():
        return a.tolist()  # Python floats: float32 values widen exactly, as to float64
    a = a.astype(np.float64)
    return np.where(finite, a.astype(object), np.array(None, dtype=object)).tolist()


_JSON_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
"""Float dtypes whose ``tolist`` gives the Python floats of their float64 values."""


def time_fields(init: np.datetime64, t0, valid) -> tuple[str, list[float], list[str]]:
    """The answer's ``init_time``, ``lead_time_hours`` and ``valid_time``.

    Hours are elapsed from ``t0`` (the init's place on the request axis) to each valid
    time: exact for fixed and calendar (month, year) steps. On datetime64 axes the fields
    depend on these stamps alone and are kept for the next request with the same ones
    (fresh lists each time: a caller may change its answer).
    """
    stamps = np.asarray(valid)
    if stamps.dtype.kind != "M" or not isinstance(init, np.datetime64):  # computed each time
        return _time_fields(init, t0, valid)
    t0 = np.datetime64(t0)
    # each stamp as (dtype, item): exact, and compared for less than datetime64 scalars
    key = (init.dtype, init.item(), t0.dtype, t0.item(), stamps.dtype, stamps.tobytes())
    kept = _KEPT_TIME_FIELDS.get(key)
    if kept is None:
        fields = _time_fields(init, t0, stamps)
        kept = (fields[0], tuple(fields[1]), tuple(fields[2]))
        if len(_KEPT_TIME_FIELDS) >= 1024:
            _KEPT_TIME_FIELDS.clear()
        _KEPT_TIME_FIELDS[key] = kept
    return kept[0], list(kept[1]), list(kept[2])


_KEPT_TIME_FIELDS: dict[tuple, tuple[str, tuple[float, ...], tuple[str, ...]]] = {}
""":func:`time_fields` of the datetime64 stamps seen (bounded)."""


def _time_fields(init: np.datetime64, t0, valid) -> tuple[str, list[float], list[str]]:
    return (
        f"{np.datetime_as_string(init, unit='s')}Z",
        _hours_since(valid, t0),
        [f"{t}Z" for t in _iso_all(valid)],
    )


def _hours_since(times, t0) -> list[float]:
    """Elapsed hours from ``t0`` to each of ``times`` (datetime64 at once, cftime one by one)."""
    stamps = np.asarray(times)
    if stamps.dtype.kind == "M":
        return ((stamps - np.datetime64(t0)) / np.timedelta64(1, "h")).tolist()
    return [(t - t0).total_seconds() / 3600.0 for t in times]


def _iso_all(times) -> list[str]:
    """:func:`_iso` of each stamp (datetime64 arrays formatted in one call)."""
    stamps = np.asarray(times)
    if stamps.dtype.kind == "M":
        return np.datetime_as_string(stamps, unit="s").tolist()
    return [_iso(t) for t in times]


def _iso(stamp) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a datetime64 or cftime stamp."""
    if isinstance(stamp, np.datetime64):
        return str(np.datetime_as_string(stamp, unit="s"))
    return stamp.strftime("%Y-%m-%dT%H:%M:%S")
