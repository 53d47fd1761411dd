"""Canonical dimension names, the Batch layout and shared aliases.

Dimension names follow WeatherBench 2 / CF usage and are fixed here once: loaders rename
whatever a file uses into these, nothing downstream renames again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypedDict

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from torch import Tensor

TIME = "time"
INIT_TIME = "init_time"
LEAD_TIME = "lead_time"
VALID_TIME = "valid_time"
LATITUDE = "latitude"
LONGITUDE = "longitude"
STATION = "station"
QUANTILE = "quantile"

GRID_DIMS: tuple[str, str] = (LATITUDE, LONGITUDE)
"""Spatial dims of a gridded dataset, in storage order."""

Layout = Literal["grid", "station"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


class Batch(TypedDict):
    """The one batch layout every forecaster receives (point models see ``H = W = 1``).

    Tensors never carry coordinates: the integer positions let predictions be put back on
    their coordinates by :func:`geoclim.data.assemble.to_forecast_dataset`. For station data
    ``lat_idx`` holds the station position and ``lon_idx`` is zero.
    """

    past: Tensor  # (B, T_in, C_in, H, W)        past inputs (targets first), normalised
    known_future: Tensor  # (B, T_out, C_known, H, W)  calendar encodings, forecast forcing
    known_past: Tensor  # (B, T_in, C_known, H, W)   the same known inputs at the input steps
    static: Tensor  # (B, C_static, H, W)        elevation, land-sea mask, coordinates
    target: Tensor  # (B, T_out, C_out, H, W)     normalised targets, NaN-free
    target_mask: Tensor  # (B, T_out, C_out, H, W)  1 where the target counts in the loss
    time_idx: Tensor  # (B,) integer position of the init time (the last input step)
    lat_idx: Tensor  # (B,) row of the patch's top-left cell, or station position
    lon_idx: Tensor  # (B,) column of the patch's top-left cell, 0 for stations
