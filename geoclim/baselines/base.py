"""The baseline contract, :class:`Baseline`, and the helpers every baseline shares.

A baseline is fitted on a set-up :class:`~geoclim.data.datamodule.GeoDataModule` (train block
only) and predicts exactly the samples ``dm.index[split]``, returning the predictions Dataset
of :func:`geoclim.data.assemble.to_forecast_dataset`::

    dims  (init_time, lead_time, <space>[, quantile])
    coord valid_time = init_time + lead_time
    one data variable per target, physical units

Baselines read physical values from ``dm.ds`` (after imputation) and, for tree features, the
normalised arrays ``dm.arrays`` the networks see. Everything is gathered with integer fancy
indexing over the sample index: no per-sample Python loop anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import xarray as xr

from geoclim.data import schema, variables
from geoclim.data.assemble import to_forecast_dataset
from geoclim.errors import ConfigError
from geoclim.types import TIME, IntArray

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule


@runtime_checkable
class Baseline(Protocol):
    """What ``train()`` needs from a baseline configured in ``conf/model/<name>.yaml``."""

    def fit(self, dm: GeoDataModule) -> Baseline:
        """Fit on the train block of ``dm`` (set up on demand); return ``self``."""
        ...

    def predict(self, dm: GeoDataModule, split: str) -> xr.Dataset:
        """Predict the samples ``dm.index[split]``; the predictions Dataset, physical units."""
        ...


def check_kind(kind: str) -> None:
    """Baseline configs carry ``kind: baseline``; anything else is a config mix-up."""
    if kind != "baseline":
        raise ConfigError(
            f"model.kind is {kind!r} for a baseline; expected 'baseline' "
            "(networks use kind: network)"
        )


def split_samples(dm: GeoDataModule, split: str) -> tuple[IntArray, IntArray, IntArray]:
    """``(t, y, x)`` positions of the samples of ``split`` (``t`` = init, last input step)."""
    dm.setup()
    if split not in dm.index:
        raise ConfigError(f"unknown split {split!r}; valid splits are {sorted(dm.index)}")
    return dm.index[split].decode()


def patch_shape(dm: GeoDataModule) -> tuple[int, int]:
    """``(h, w)`` of one sample's spatial patch (``(1, 1)`` for point samples)."""
    return dm.spec.patch_shape(dm.grid_shape)


def physical_targets(dm: GeoDataModule, *, observed_only: bool = False) -> np.ndarray:
    """The targets in physical units as one ``(T, H, W, C_out)`` float32 array.

    Station networks are ``(T, S, 1, C_out)``, the layout of ``dm.arrays``.

    Args:
        dm: a set-up datamodule; values come from ``dm.ds`` (after imputation).
        observed_only: set values marked by ``<var>_imputed`` to NaN (truth for fitting
            and scoring must be observed, not imputed).

    """
    dm.setup()
    ds = dm.ds
    assert ds is not None
    space = schema.space_dims(ds)
    n_time, (h, w) = ds.sizes[TIME], dm.grid_shape
    out = np.empty((n_time, h, w, len(dm.task.targets)), np.float32)
    for c, name in enumerate(dm.task.targets):
        values = ds[name].transpose(TIME, *space).values.reshape(n_time, h, w)
        mask = variables.mask_name(name)
        if observed_only and mask in ds:
            imputed = ds[mask].transpose(TIME, *space).values.reshape(n_time, h, w)
            values = np.where(imputed, np.nan, values)
        out[..., c] = values
    return out


def gather_cells(
    values: np.ndarray,
    time_pos: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    patch: tuple[int, int],
) -> np.ndarray:
    """Gather ``values`` at per-lead time positions over each sample's patch.

    Args:
        values: ``(T, H, W, C)`` array.
        time_pos: ``(N, L)`` time positions to read for each sample and lead; positions
            outside ``[0, T)`` give NaN.
        y: ``(N,)`` patch origin rows.
        x: ``(N,)`` patch origin columns.
        patch: ``(h, w)`` patch shape.

    Returns:
        ``(N, L, C, h, w)`` float32, the layout :func:`to_forecast_dataset` takes.

    """
    ph, pw = patch
    inside = (time_pos >= 0) & (time_pos < values.shape[0])
    tt = np.clip(time_pos, 0, values.shape[0] - 1)[:, :, None, None]  # (N, L, 1, 1)
    yy = (y[:, None] + np.arange(ph))[:, None, :, None]  # (N, 1, h, 1)
    xx = (x[:, None] + np.arange(pw))[:, None, None, :]  # (N, 1, 1, w)
    out = values[tt, yy, xx].astype(np.float32)  # (N, L, h, w, C)
    out[~inside] = np.nan
    return np.ascontiguousarray(np.moveaxis(out, -1, 2))


def to_predictions(
    dm: GeoDataModule,
    prediction: np.ndarray,
    t: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    *,
    quantiles: tuple[float, ...] = (),
    model: str = "",
) -> xr.Dataset:
    """Wrap physical ``(N, L, C[, Q], h, w)`` predictions as the predictions Dataset."""
    assert dm.ds is not None
    out = to_forecast_dataset(prediction, t, y, x, dm.ds, dm.task.targets, quantiles=quantiles)
    if model:
        out.attrs["model"] = model
    return out
