"""Persistence: tomorrow looks like now (or like the same hour yesterday).

Two variants, one class:

* ``period: null`` -- **persistence**. Every lead gets the last observed value at the init
  time ``t`` (the last input step): ``f(t + k) = x(t)``. When ``x(t)`` is missing, the most
  recent observed value inside the input window (``t - input_steps + 1 .. t``) is used; with
  none, the forecast is NaN.
* ``period: "24h"`` (any duration that is a whole number ``P`` of time steps, or a calendar
  period such as ``"12 months"`` / ``"1 year"`` on monthly data) -- **periodic
  persistence**: ``f(t + k) = x(t + k - P * ceil(k / P))``, the value one period before the
  valid time, stepped back by further periods for leads beyond ``P`` so it is always known
  at the init time. With hourly data and ``period: 24h`` this is "same hour yesterday"; with
  monthly data and ``period: 1 year``, "same month last year". Missing source values stay
  NaN (filling would shift the phase).

Values are physical, from ``dm.ds`` after imputation (the same past the networks see).
Nothing is fitted. Prediction is one fancy-indexing gather over the sample index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.baselines import base
from geoclim.data import schema, timeaxis
from geoclim.data.timeaxis import TimeStep
from geoclim.errors import ConfigError

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule


class PersistenceBaseline:
    """Persistence or periodic (diurnal) persistence.

    Args:
        period: ``None`` for persistence of the init value, or a duration string / timedelta
            (``"24h"``, ``"1D"``) that is a whole number of time steps, for periodic
            persistence.
        kind: config tag, must be ``"baseline"``.

    """

    def __init__(self, period: str | pd.Timedelta | None = None, kind: str = "baseline"):
        base.check_kind(kind)
        if period in (None, "", "null"):
            self.period: TimeStep | None = None
        else:
            try:
                self.period = timeaxis.parse_step(period)
            except ConfigError:
                raise ConfigError(
                    f"persistence period {period!r} is not a duration; use e.g. '24h', '1D', "
                    "'1 year' or null"
                ) from None

    @property
    def name(self) -> str:
        """``persistence`` or ``persistence_<period>`` (``persistence_24h``)."""
        return "persistence" if self.period is None else f"persistence_{_label(self.period)}"

    def fit(self, dm: GeoDataModule) -> PersistenceBaseline:
        """Nothing to learn; checks the period against the data's time step."""
        dm.setup()
        self.period_steps(dm)
        return self

    def period_steps(self, dm: GeoDataModule) -> int | None:
        """The period in time steps (``None`` for plain persistence)."""
        if self.period is None:
            return None
        assert dm.ds is not None
        try:
            return schema.time_step(dm.ds).steps_in(self.period)
        except ConfigError as err:
            raise ConfigError(f"persistence {err}") from None

    def source_positions(self, dm: GeoDataModule, t: np.ndarray) -> np.ndarray:
        """``(N, L)`` time positions each lead's forecast is read from."""
        lead = np.arange(1, dm.spec.lead_steps + 1)
        period = self.period_steps(dm)
        if period is None:
            return np.repeat(t[:, None], lead.size, axis=1)
        back = period * np.ceil(lead / period).astype(np.int64)  # smallest multiple >= k
        return t[:, None] + lead[None, :] - back[None, :]

    def predict(self, dm: GeoDataModule, split: str) -> xr.Dataset:
        """Persistence forecasts of the samples ``dm.index[split]`` (physical units)."""
        t, y, x = base.split_samples(dm, split)
        values = base.physical_targets(dm)
        if self.period is None:
            values = last_observed(values, dm.spec.input_steps)
        pred = base.gather_cells(values, self.source_positions(dm, t), y, x, base.patch_shape(dm))
        return base.to_predictions(dm, pred, t, y, x, model=self.name)


def _label(period: TimeStep) -> str:
    """``24h``, ``90min``, ``12months``: a short spelling of a period for model names."""
    if period.is_calendar:
        return str(period).replace(" ", "")
    hours = period.nominal / pd.Timedelta("1h")
    return f"{hours:g}h" if hours == int(hours) else f"{period.nominal / pd.Timedelta('1min'):g}min"


def last_observed(values: np.ndarray, window: int) -> np.ndarray:
    """Forward-fill NaN along axis 0, looking back at most ``window - 1`` steps.

    Args:
        values: ``(T, ...)`` array.
        window: the fill reaches back over the ``window`` steps ending at each position.

    Returns:
        Same shape; position ``t`` holds the latest finite value in ``[t - window + 1, t]``
        (NaN if there is none).

    """
    n_time = values.shape[0]
    steps = np.arange(n_time).reshape((n_time,) + (1,) * (values.ndim - 1))
    last = np.where(np.isfinite(values), steps, -1)
    np.maximum.accumulate(last, axis=0, out=last)
    fresh = (last >= 0) & (steps - last < window)
    filled = np.take_along_axis(values, np.maximum(last, 0), axis=0)
    return np.where(fresh, filled, np.nan).astype(values.dtype)
