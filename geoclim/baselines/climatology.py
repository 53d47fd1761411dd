"""Climatology: the smoothed hour-of-day x season mean of the train block.

The season follows the data's time step (:mod:`geoclim.data.timeaxis`):

* sub-daily data: hour of day x day of year;
* daily (any fixed step of a day or more): day of year (one hour bin);
* monthly (calendar months): month of year, 12 bins, not smoothed;
* yearly: a single bin, the train mean.

For every cell (or station) and target, with ``h`` the hour of day and ``d`` the season bin
(day of year 0..365, or month 0..11) of each observed train value ``x_i``::

    S(h, d) = sum_i [h_i = h][d_i = d] x_i         N(h, d) = sum_i [h_i = h][d_i = d]
    S~(h, d) = sum_d' g(d - d') S(h, d')            g(u) = exp(-u^2 / (2 sigma^2)),
    N~(h, d) = sum_d' g(d - d') N(h, d')            u the circular day distance (366 days)
    clim(h, d) = (S~(h, d) + kappa * m(h)) / (N~(h, d) + kappa)

``g`` is a circular Gaussian over day of year (``smoothing_days = sigma``, cut at
``4 sigma``; months and years are not smoothed), so 31 December sits next to 1 January;
``N~`` is the effective number of train values near ``(h, d)``. ``m(h)`` is the plain
hour-of-day mean of the train block and
``kappa = prior_weight`` a pseudo-count: where the train block has plenty of data near day
``d`` the smoothed mean dominates, and days far from any train day (a train block shorter
than a year) fall back on the hour-of-day mean instead of extrapolating. Where ``m(h)`` is
undefined (the cell never observed at that hour) the cell's train mean is used, then the
domain's. ``smoothing_days = 0`` disables smoothing.

Only observed train values count: values marked ``<var>_imputed`` and everything outside the
train block are ignored, so changing val or test data never changes the climatology.
Hours are UTC hours of the time axis (daily data has a single hour bin); days of year and
months are those of the data's calendar (cftime calendars included).

Memory: the fitted table is ``n_hours x n_season x cells x targets`` float32
(24 x 366 x 64 x 64 x 2 is ~290 MB); fitting and prediction are vectorised (one sparse
product for the sums, one circular convolution, one gather).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from scipy import sparse
from scipy.ndimage import convolve1d

from geoclim.baselines import base
from geoclim.data import timeaxis
from geoclim.data.timeaxis import TimeStep
from geoclim.errors import ConfigError, DataError
from geoclim.types import TIME

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule

N_DAYS = 366
N_MONTHS = 12


def season_bins(times, step: TimeStep) -> tuple[np.ndarray, int]:
    """``(T,)`` season bin of each stamp and the number of bins, following ``step``.

    Day of year (0..365, 366 bins) for fixed steps, month of year (0..11) for monthly
    steps, a single bin for yearly steps (or multiples of 12 months).
    """
    index = timeaxis.to_index(times)
    if not step.is_calendar:
        return np.asarray(index.dayofyear) - 1, N_DAYS
    if step.months % 12 == 0:
        return np.zeros(len(index), np.int64), 1
    return np.asarray(index.month) - 1, N_MONTHS


class ClimatologyBaseline:
    """Smoothed hour-of-day x season climatology, fitted on the train block only.

    Args:
        smoothing_days: standard deviation ``sigma`` of the circular Gaussian over day of
            year, in days (0: no smoothing).
        prior_weight: pseudo-count ``kappa`` pulling sparse bins to the hour-of-day mean.
        kind: config tag, must be ``"baseline"``.

    """

    def __init__(
        self, smoothing_days: float = 15.0, prior_weight: float = 2.0, kind: str = "baseline"
    ):
        base.check_kind(kind)
        if smoothing_days < 0 or prior_weight < 0:
            raise ConfigError(
                f"climatology smoothing_days ({smoothing_days}) and prior_weight "
                f"({prior_weight}) must be >= 0"
            )
        self.smoothing_days = float(smoothing_days)
        self.prior_weight = float(prior_weight)
        self.name = "climatology"
        self.hours: np.ndarray | None = None  # (n_hours,) hour bins present in the data
        self.step: TimeStep | None = None  # the data's step: sets the season bins
        self.table: np.ndarray | None = None  # (n_hours, n_season, H, W, C) float32

    def fit(self, dm: GeoDataModule) -> ClimatologyBaseline:
        """Fit the table on the observed train values of ``dm``'s targets."""
        dm.setup()
        assert dm.ds is not None and dm.splits is not None
        start, stop = dm.splits.train
        values = base.physical_targets(dm, observed_only=True)[start:stop]  # (T_tr, H, W, C)
        times = dm.ds[TIME].values
        self.step = timeaxis.infer_step(times)
        self.hours = np.unique(np.asarray(timeaxis.to_index(times).hour))
        hour_bin, day, n_season = self._bins(times[start:stop])
        self.table = self._smoothed_means(values, hour_bin, day, n_season)
        return self

    def _bins(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Hour bin and season bin of each stamp, and the number of season bins."""
        assert self.hours is not None and self.step is not None
        hours = np.asarray(timeaxis.to_index(times).hour)
        hour_bin = np.minimum(np.searchsorted(self.hours, hours), self.hours.size - 1)
        season, n_season = season_bins(times, self.step)
        return hour_bin, season, n_season

    def _smoothed_means(
        self, values: np.ndarray, hour_bin: np.ndarray, day: np.ndarray, n_season: int
    ) -> np.ndarray:
        n_time, *space = values.shape
        flat = values.reshape(n_time, -1).astype(np.float64)
        finite = np.isfinite(flat)
        if not finite.any():
            raise DataError("climatology: the train block has no observed target value")
        n_hours = self.hours.size if self.hours is not None else 1
        onehot = sparse.csr_matrix(
            (np.ones(n_time), (hour_bin * n_season + day, np.arange(n_time))),
            shape=(n_hours * n_season, n_time),
        )
        sums = (onehot @ np.where(finite, flat, 0.0)).reshape(n_hours, n_season, -1)
        counts = (onehot @ finite.astype(np.float64)).reshape(n_hours, n_season, -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            prior = sums.sum(1) / counts.sum(1)  # (n_hours, P) hour-of-day mean
            cell = sums.sum((0, 1)) / counts.sum((0, 1))  # (P,) cell mean
        domain = np.nanmean(
            np.where(finite, flat, np.nan).reshape(n_time, -1, space[-1]), axis=(0, 1)
        )  # (C,) per target
        cell = np.where(np.isfinite(cell), cell, np.tile(domain, cell.size // domain.size))
        prior = np.where(np.isfinite(prior), prior, cell[None, :])
        if self.smoothing_days > 0 and n_season == N_DAYS:  # smoothing over days of year
            radius = int(np.ceil(4 * self.smoothing_days))
            u = np.arange(-radius, radius + 1)
            kernel = np.exp(-0.5 * (u / self.smoothing_days) ** 2)
            sums = convolve1d(sums, kernel, axis=1, mode="wrap")
            counts = convolve1d(counts, kernel, axis=1, mode="wrap")
        kappa = self.prior_weight
        with np.errstate(invalid="ignore", divide="ignore"):
            table = (sums + kappa * prior[:, None, :]) / (counts + kappa)
        table = np.where(counts + kappa > 0, table, prior[:, None, :])
        return table.reshape(n_hours, n_season, *space).astype(np.float32)

    def predict(self, dm: GeoDataModule, split: str) -> xr.Dataset:
        """Climatology at the valid times of the samples ``dm.index[split]``."""
        t, y, x = base.split_samples(dm, split)
        if self.table is None:
            self.fit(dm)
        assert self.table is not None and dm.ds is not None
        hour_bin, day, _ = self._bins(dm.ds[TIME].values)
        valid = t[:, None] + np.arange(1, dm.spec.lead_steps + 1)  # (N, L), inside the axis
        ph, pw = base.patch_shape(dm)
        yy = (y[:, None] + np.arange(ph))[:, None, :, None]  # (N, 1, h, 1)
        xx = (x[:, None] + np.arange(pw))[:, None, None, :]  # (N, 1, 1, w)
        hh = hour_bin[valid][:, :, None, None]  # (N, L, 1, 1)
        dd = day[valid][:, :, None, None]
        pred = np.moveaxis(self.table[hh, dd, yy, xx], -1, 2)  # (N, L, C, h, w)
        return base.to_predictions(dm, pred, t, y, x, model=self.name)
