"""Fingerprints of training data: which data a model was fitted on, as one short string.

Runs (``scores.nc`` attributes), exports (ONNX metadata) and served forecasts carry the
fingerprint of the train block, so a leaderboard only compares runs on the same data and an
exported model can be traced to it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import xarray as xr

from geoclim.errors import SchemaError
from geoclim.types import TIME


def data_fingerprint(
    ds: xr.Dataset, names: tuple[str, ...] | list[str], time_range: tuple[int, int] | None = None
) -> str:
    """sha256 of the variables ``names`` (and coordinates) of ``ds`` over ``time_range``.

    Hashes names, dims, shapes, units and float32 bytes in a fixed order, so the same data
    loaded twice gives the same fingerprint.

    Returns:
        ``"sha256:<hex>"``.

    """
    if time_range is not None and TIME in ds.dims:
        ds = ds.isel({TIME: slice(*time_range)})
    h = hashlib.sha256()
    for coord in sorted(str(c) for c in ds.coords):
        values = ds[coord].values
        h.update(coord.encode())
        h.update(
            values.astype("datetime64[ns]").view("<i8").tobytes()
            if np.issubdtype(values.dtype, np.datetime64)
            else np.asarray(values).astype(str).tobytes()
            if values.dtype.kind in "OUS"
            else np.ascontiguousarray(values).tobytes()
        )
    for name in sorted(names):
        if name not in ds.data_vars:
            raise SchemaError(
                f"cannot fingerprint {name!r}: not in dataset {sorted(map(str, ds.data_vars))}"
            )
        da = ds[name]
        h.update(f"{name}|{da.dims}|{da.shape}|{da.attrs.get('units')}".encode())
        for part in _time_slices(da):  # the same bytes whole or in slices of time
            h.update(np.ascontiguousarray(part.values, dtype="<f4").tobytes())
    return "sha256:" + h.hexdigest()


def _time_slices(da: xr.DataArray) -> list[xr.DataArray]:
    """``da`` whole, or (dask-backed, time first) in slices of its time chunks."""
    if da.chunks is None or not da.dims or da.dims[0] != TIME:
        return [da]
    step = max(da.chunksizes[TIME])
    return [da.isel({TIME: slice(lo, lo + step)}) for lo in range(0, da.sizes[TIME], step)]
