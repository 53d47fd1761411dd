"""Calendar encodings: known-future inputs computed from the time coordinate alone.

Cyclic features are encoded as sine/cosine pairs so midnight sits next to 23:00 and
31 December next to 1 January. Hours are UTC, as is the canonical time axis. Day of year is
measured in the data's calendar (a 360_day year has 360 days, noleap 365).

Which features make sense depends on the time step (:func:`valid_features`): hour of day only
below one day, day of week below seven days, day of year for fixed steps, month of year for
anything shorter than a year (the seasonal encoding of monthly data). Asking for one that
does not (``hour_sin`` on daily data) is a ConfigError naming it and the valid ones.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from geoclim.data import timeaxis
from geoclim.data.timeaxis import TimeStep
from geoclim.errors import ConfigError

FEATURES = (
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "doy_sin",
    "doy_cos",
    "month_sin",
    "month_cos",
    "is_weekend",
)

_WEEK = pd.Timedelta(days=7)


def valid_features(step: TimeStep) -> tuple[str, ...]:
    """The calendar features that vary meaningfully on an axis with ``step``."""
    bases = []
    if step.is_sub_daily:
        bases.append("hour")
    if not step.is_calendar and step.nominal < _WEEK:
        bases.append("dow")
    if not step.is_calendar:
        bases.append("doy")
    if not (step.is_calendar and step.months % 12 == 0) and step.nominal < pd.Timedelta(days=365):
        bases.append("month")
    names = [f"{b}_{fn}" for b in bases for fn in ("sin", "cos")]
    return tuple(n for n in FEATURES if n in names or (n == "is_weekend" and "dow" in bases))


def default_features(step: TimeStep) -> tuple[str, ...]:
    """The usual calendar inputs for ``step``: hour, day of week and year; month if monthly."""
    valid = valid_features(step)
    if not step.is_calendar:
        valid = tuple(n for n in valid if not n.startswith("month") and n != "is_weekend")
    return valid


def check_features(names: tuple[str, ...] | list[str], step: TimeStep) -> None:
    """Refuse calendar features unknown or meaningless for ``step`` (ConfigError)."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown calendar feature(s) {unknown}; valid are {list(FEATURES)}")
    valid = valid_features(step)
    bad = [n for n in names if n not in valid]
    if bad:
        raise ConfigError(
            f"calendar feature(s) {bad} do not vary on data with a time step of {step}; "
            f"valid for this step are {list(valid) or 'none'} (set task.future_inputs or "
            "the features' calendar accordingly)"
        )


def calendar_features(
    times: np.ndarray | pd.DatetimeIndex,
    names: tuple[str, ...],
    *,
    step: TimeStep | None = None,
) -> np.ndarray:
    """Return calendar features for each time.

    Args:
        times: ``(T,)`` datetime64 or cftime stamps.
        names: feature names from :data:`FEATURES`.
        step: the axis's step; when given, features that make no sense for it are refused.

    Returns:
        ``(T, len(names))`` float32 array.

    """
    if step is not None:
        check_features(names, step)
    hour, dow, doy, month, year_days = _fields(times)
    angle = {
        "hour": 2 * np.pi * hour / 24.0,
        "dow": 2 * np.pi * dow / 7.0,
        "doy": 2 * np.pi * doy / year_days,
        "month": 2 * np.pi * month / 12.0,
    }
    columns = []
    for name in names:
        if name == "is_weekend":
            columns.append((dow >= 5).astype(np.float64))
            continue
        base, _, fn = name.rpartition("_")
        if base not in angle or fn not in ("sin", "cos"):
            raise ConfigError(f"unknown calendar feature {name!r}; valid are {list(FEATURES)}")
        columns.append(np.sin(angle[base]) if fn == "sin" else np.cos(angle[base]))
    return (
        np.stack(columns, axis=-1).astype(np.float32)
        if columns
        else np.zeros((len(hour), 0), np.float32)
    )


_NS = np.dtype("datetime64[ns]")


def calendar_on_axis(times: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """:func:`calendar_features` of a regular time axis, memoised for fixed datetime64 steps.

    Requests for the same start and length (the common case in serving: every client asks
    for the latest forecast) share one computation; pandas' calendar accessors cost more than
    the rest of a single-location forecast.

    Returns:
        ``(T, len(names))`` float32, read-only.

    """
    raw = np.asarray(times)
    if raw.dtype == object:  # cftime stamps (model calendars): computed, not memoised
        return calendar_features(raw, tuple(names))
    times = raw if raw.dtype == _NS else raw.astype(_NS)
    stamps = times.view(np.int64)
    steps = stamps[1:] - stamps[:-1]
    if steps.size and (steps != steps[0]).any():  # calendar months / years
        return calendar_features(times, tuple(names))
    step = int(steps[0]) if steps.size else 0
    return _calendar(int(stamps[0]), times.size, step, tuple(names))


@functools.lru_cache(maxsize=256)
def _calendar(start: int, n: int, step: int, names: tuple[str, ...]) -> np.ndarray:
    times = (start + np.arange(n, dtype=np.int64) * step).astype("datetime64[ns]")
    out = calendar_features(times, names)
    out.flags.writeable = False
    return out


def _fields(times) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Hour of day, day of week (Monday 0), day of year (0-based), month (0-based), year length."""
    index = timeaxis.to_index(times)
    if isinstance(index, pd.DatetimeIndex):
        # numpy datetime arithmetic: no pandas accessors on the serving hot path
        t = np.asarray(index.values, dtype="datetime64[ns]")
        days = t.astype("datetime64[D]")
        hour = (t - days) / np.timedelta64(1, "h")
        dow = ((days.astype(np.int64) + 3) % 7).astype(np.float64)  # 1970-01-01 was a Thursday
        doy = (days - days.astype("datetime64[Y]")).astype(np.int64) + hour / 24.0
        month = (t.astype("datetime64[M]").astype(np.int64) % 12).astype(np.float64)
        return hour, dow, doy, month, 365.25
    hour = np.asarray(index.hour) + np.asarray(index.minute) / 60.0 + index.second / 3600.0
    dow = np.asarray(index.dayofweek, dtype=np.float64)
    doy = np.asarray(index.dayofyear) - 1 + hour / 24.0
    month = np.asarray(index.month, dtype=np.float64) - 1
    return hour, dow, doy, month, timeaxis.days_in_year(index)
