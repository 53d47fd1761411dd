"""Time stamps of serving requests: checked against the export's step and calendar.

A request's axis is checked against the model's :class:`~geoclim.data.timeaxis.TimeStep`
(fixed, or calendar months / years) and CF calendar, and extended past the last init by whole
steps (:func:`geoclim.data.timeaxis.shift`), so that mid-month stamps stay mid-month and cftime
calendars stay cftime. Fixed steps on datetime64 stamps keep a numpy fast path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import timeaxis
from geoclim.errors import SchemaError
from geoclim.export.metadata import ExportMetadata
from geoclim.types import TIME


def is_fixed(meta: ExportMetadata) -> bool:
    """Whether the model's axis is a fixed step on datetime64 stamps (the fast path)."""
    return not meta.step.is_calendar and meta.time_calendar == "standard"


def check_axis(meta: ExportMetadata, times: np.ndarray, where: str) -> np.ndarray:
    """Check stamps against the model's step and calendar; return them (datetime64[ns])."""
    if is_fixed(meta):
        return check_times(times, meta.step.timedelta, where)
    times = np.asarray(times)
    calendar = timeaxis.calendar_name(times) if times.size else meta.time_calendar
    if calendar != meta.time_calendar and not (
        {calendar, meta.time_calendar} <= {"standard", "gregorian", "proleptic_gregorian"}
    ):
        raise SchemaError(
            f"{where} coordinate {TIME!r} is on the {calendar!r} calendar; the model was "
            f"trained on the {meta.time_calendar!r} calendar: send cftime stamps of that "
            f"calendar (xr.open_dataset(..., use_cftime=True), or "
            f"ds.convert_calendar({meta.time_calendar!r}))"
        )
    if times.dtype != object:
        times = times.astype("datetime64[ns]")
    if times.size >= 2:
        step = timeaxis.check_axis(times, f"{where} {TIME}")
        if step != meta.step:
            raise SchemaError(
                f"{where} time step {step} does not match the model's time step {meta.step}; "
                "send a regular, increasing axis with NaN for missing values"
            )
    return times


def as_stamps(meta: ExportMetadata, values) -> np.ndarray:
    """Init times (a list, an array or one value) as stamps of the model's calendar."""
    if isinstance(values, np.ndarray):
        values = values.ravel().tolist() if values.dtype == object else list(values.ravel())
    elif isinstance(values, str) or not hasattr(values, "__iter__"):
        values = [values]
    if meta.time_calendar == "standard":
        return np.asarray([as_utc(v) for v in values], dtype="datetime64[ns]")
    probe = _cf_probe(meta)
    return np.asarray(
        [v if hasattr(v, "calendar") else timeaxis.parse_stamp(_iso(v), probe) for v in values],
        dtype=object,
    )


def _iso(value) -> str:
    """A date as ISO text for a cftime parser (datetime64 and Timestamps to seconds)."""
    if isinstance(value, np.datetime64 | pd.Timestamp):
        return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%S")
    return str(value)


def _cf_probe(meta: ExportMetadata) -> xr.CFTimeIndex:
    """A one-stamp index of the model's cftime calendar (for parsing dates)."""
    return xr.date_range("2000-01-01", periods=1, calendar=meta.time_calendar, use_cftime=True)


def extended_axis(
    meta: ExportMetadata, times: np.ndarray, inits_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The request's stamps extended by the model's step past the last init + horizon.

    Returns:
        ``(T,)`` axis (the request's own stamps first: mid-month stays mid-month) and the
        ``(N,)`` init positions on it (``T`` for an init that is not on the axis).

    """
    index = timeaxis.to_index(times)
    pos = np.asarray(index.get_indexer(timeaxis.to_index(inits_t)), dtype=np.int64)
    need = int(max(pos.max(), 0)) + meta.task.horizon - (times.size - 1)
    extra = [timeaxis.shift(times[-1], meta.step, k) for k in range(1, max(need, 0) + 1)]
    axis = np.concatenate([times, np.asarray(extra, dtype=times.dtype)]) if extra else times
    return axis, np.where(pos < 0, axis.size, pos)


def check_times(times: np.ndarray, step: np.timedelta64, where: str) -> np.ndarray:
    """Check datetime64 stamps advance by exactly ``step``; return them as ``[ns]``."""
    times = np.asarray(times)
    if not np.issubdtype(times.dtype, np.datetime64):
        raise SchemaError(
            f"{where} coordinate {TIME!r} has dtype {times.dtype}; expected datetime64"
        )
    times = times.astype("datetime64[ns]")
    if np.isnat(times).any():
        raise SchemaError(f"{where} coordinate {TIME!r} contains NaT")
    steps = np.diff(times)
    bad = np.nonzero(steps != step)[0]
    if bad.size:
        i = int(bad[0])
        raise SchemaError(
            f"{where} time step {pd.Timedelta(steps[i])} after {pd.Timestamp(times[i])} does "
            f"not match the model's time step {pd.Timedelta(step)}; send a regular, increasing "
            "axis with NaN for missing values"
        )
    return times


def as_utc(value: np.datetime64 | str) -> np.datetime64:
    """``datetime64[ns]`` of a time given as datetime64 (UTC) or a string / datetime."""
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[ns]")
    t = pd.Timestamp(str(value) if isinstance(value, np.str_) else value)
    return (t.tz_convert("UTC").tz_localize(None) if t.tzinfo else t).to_datetime64()


def label(stamp) -> str:
    """A readable time stamp (datetime64 or cftime)."""
    return str(pd.Timestamp(stamp)) if isinstance(stamp, np.datetime64) else str(stamp)
