"""Batch inputs of tree exports, built from the same arrays as the network batches.

Networks get the Batch from :func:`geoclim.data.windows.gather` (NaN filled with the train
mean). Tree exports (:mod:`geoclim.export.trees`) read the same fields with NaN kept, since
the trees were trained on NaN and route it themselves, plus two inputs their lag features
need: the valid-time calendar encodings and the point coordinates. Torch-free: the export's
parity check and the serving adapter build their feeds with the same function.
"""

from __future__ import annotations

import numpy as np

from geoclim.data.calendar import calendar_on_axis
from geoclim.data.task import ForecastTask
from geoclim.data.windows import WindowArrays, WindowSpec, gather


def tree_inputs(
    arrays: WindowArrays,
    task: ForecastTask,
    calendar: tuple[str, ...],
    times: np.ndarray,
    latitude: np.ndarray,
    longitude: np.ndarray,
    samples: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    stations: bool,
) -> dict[str, np.ndarray]:
    """Inputs of a tree export for point samples ``(t, y, x)``, NaN kept (trees route it).

    Args:
        arrays: the normalised window arrays the samples index.
        task: the task the trees were fitted for.
        calendar: the trees' calendar encodings (names of ``calendar.FEATURES``).
        times: ``(T,)`` the regular time axis of ``arrays``.
        latitude: ``(S,)`` station latitudes, or ``(H,)`` the grid's.
        longitude: ``(S,)`` station longitudes, or ``(W,)`` the grid's.
        samples: ``(t, y, x)``, each ``(B,)``: init positions and cells (``x = 0`` for
            stations).
        stations: the samples are stations (``y`` indexes ``latitude`` and ``longitude``).

    Returns:
        ``past (B, T_in, C_in, 1, 1)``, ``known_future (B, L, C_known, 1, 1)`` and ``static
        (B, C_static, 1, 1)`` as :func:`~geoclim.data.windows.gather` builds them but without
        filling NaN, ``calendar (B, L, C_cal, 1, 1)`` (the encodings at the valid times) and
        ``coordinates (B, 2, 1, 1)`` (latitude, longitude of each point).

    """
    t, y, x = samples
    spec = WindowSpec(task.input_steps, task.horizon)
    fields = gather(arrays, spec, t, y, x, fill_missing=False)
    t_out = t[:, None] + np.arange(1, task.horizon + 1)  # (B, L)
    tree_cal = calendar_on_axis(times, calendar)[t_out]  # (B, L, C_cal)
    lon = longitude[y] if stations else longitude[x]
    coords = np.stack([latitude[y], lon], -1)  # (B, 2)
    return {
        "past": fields["past"],
        "known_future": fields["known_future"],
        "static": fields["static"],
        "calendar": tree_cal[..., None, None].astype(np.float32),
        "coordinates": coords.astype(np.float32)[..., None, None],
    }
