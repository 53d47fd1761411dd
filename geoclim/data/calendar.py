"""Calendar encodings: known-future inputs computed from the time coordinate alone.

Cyclic features are encoded as sine/cosine pairs so midnight sits next to 23:00 and
31 December next to 1 January. Hours are UTC, as is the canonical time axis.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from geoclim.errors import ConfigError

FEATURES = (
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "doy_sin",
    "doy_cos",
    "is_weekend",
)


def calendar_features(times: np.ndarray | pd.DatetimeIndex, names: tuple[str, ...]) -> np.ndarray:
    """Return calendar features for each time.

    Args:
        times: ``(T,)`` datetimes.
        names: feature names from :data:`FEATURES`.

    Returns:
        ``(T, len(names))`` float32 array.

    """
    # numpy datetime arithmetic: no pandas accessors on the serving hot path
    t = np.asarray(pd.DatetimeIndex(times).values, dtype="datetime64[ns]")
    days = t.astype("datetime64[D]")
    hour = (t - days) / np.timedelta64(1, "h")
    dow = ((days.astype(np.int64) + 3) % 7).astype(np.float64)  # 1970-01-01 was a Thursday
    doy = (days - days.astype("datetime64[Y]")).astype(np.int64) + hour / 24.0
    angle = {
        "hour": 2 * np.pi * hour / 24.0,
        "dow": 2 * np.pi * dow / 7.0,
        "doy": 2 * np.pi * doy / 365.25,
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
        else np.zeros((len(t), 0), np.float32)
    )


def calendar_on_axis(times: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """:func:`calendar_features` of a regular time axis, memoised.

    Requests for the same start and length (the common case in serving: every client asks
    for the latest forecast) share one computation; pandas' calendar accessors cost more than
    the rest of a single-location forecast.

    Returns:
        ``(T, len(names))`` float32, read-only.

    """
    times = np.asarray(times, dtype="datetime64[ns]")
    step = int((times[1] - times[0]).astype(np.int64)) if times.size > 1 else 0
    return _calendar(int(times[0].astype(np.int64)), times.size, step, tuple(names))


@functools.lru_cache(maxsize=256)
def _calendar(start: int, n: int, step: int, names: tuple[str, ...]) -> np.ndarray:
    times = (start + np.arange(n, dtype=np.int64) * step).astype("datetime64[ns]")
    out = calendar_features(times, names)
    out.flags.writeable = False
    return out
