"""Calendar encodings: known-future inputs computed from the time coordinate alone.

Cyclic features are encoded as sine/cosine pairs so midnight sits next to 23:00 and
31 December next to 1 January. Hours are UTC, as is the canonical time axis.
"""

from __future__ import annotations

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
    t = pd.DatetimeIndex(times)
    hour = (t.hour + t.minute / 60.0).to_numpy(dtype=np.float64)
    dow = t.dayofweek.to_numpy(dtype=np.float64)
    doy = (t.dayofyear - 1).to_numpy(dtype=np.float64) + hour / 24.0
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
