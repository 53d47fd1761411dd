"""Extra batch inputs of tree exports, built from the same arrays as the network batches.

Networks get the Batch from :func:`geoclim.data.windows.gather` (NaN filled with the train
mean). Tree exports (:mod:`geoclim.export.trees`) read the same fields with NaN kept, since
the trees were trained on NaN and route it themselves, plus two inputs their lag features
need: the valid-time calendar encodings and the point coordinates.
"""

from __future__ import annotations

import functools

import numpy as np

from geoclim.data import calendar
from geoclim.data.windows import WindowArrays, WindowSpec, gather
from geoclim.export.metadata import ExportMetadata
from geoclim.serving.inputs import Inputs


def calendar_on_axis(times: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """:func:`~geoclim.data.calendar.calendar_features` of a regular axis, memoised.

    Requests for the same init time and history length (the common case: every client asks
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
    out = calendar.calendar_features(times, names)
    out.flags.writeable = False
    return out


def tree_inputs(
    arrays: WindowArrays,
    meta: ExportMetadata,
    inputs: Inputs,
    t: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
) -> dict[str, np.ndarray]:
    """Inputs of a tree export for point samples ``(t, y, x)``, NaN kept (trees route it).

    Returns:
        ``past (B, T_in, C_in, 1, 1)``, ``known_future (B, L, C_known, 1, 1)`` and ``static
        (B, C_static, 1, 1)`` as :func:`~geoclim.data.windows.gather` builds them but without
        filling NaN, ``calendar (B, L, C_cal, 1, 1)`` (``meta.io.calendar`` at the valid
        times) and ``coordinates (B, 2, 1, 1)`` (latitude, longitude of each point).

    """
    task = meta.task
    spec = WindowSpec(task.input_steps, task.horizon)
    fields = gather(arrays, spec, t, y, x, fill_missing=False)
    t_out = t[:, None] + np.arange(1, task.horizon + 1)  # (B, L)
    tree_cal = calendar_on_axis(inputs.times, meta.io.calendar)[t_out]  # (B, L, C)
    if inputs.layout == "station":
        coords = np.stack([inputs.latitude[y], inputs.longitude[y]], -1)
    else:
        coords = np.stack([inputs.latitude[y], inputs.longitude[x]], -1)
    return {
        "past": fields["past"],
        "known_future": fields["known_future"],
        "static": fields["static"],
        "calendar": tree_cal[..., None, None].astype(np.float32),
        "coordinates": coords.astype(np.float32)[..., None, None],
    }
