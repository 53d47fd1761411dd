"""The canonical-Dataset contract and its check, :func:`validate`.

A canonical dataset is an ``xr.Dataset`` with

* ``time``: datetime64 or cftime dates, strictly increasing, unique, with one regular step,
  fixed or a calendar step of months or years (:mod:`geoclim.data.timeaxis`);
* space: ``(latitude, longitude)`` for grids (latitude ascending), or ``station`` with 1-D
  ``latitude`` / ``longitude`` coordinates for point networks;
* data variables, float32, with CF ``units`` and ``long_name``: registered ones
  (:mod:`geoclim.data.variables`) in their canonical units, any other in units that
  :mod:`geoclim.data.units` parses; static fields have no ``time`` dim;
  ``<var>_imputed`` boolean masks travel beside the variable they describe; integer CF flag
  variables (``flag_values`` / ``flag_meanings``) are categorical inputs
  (:mod:`geoclim.data.categorical`). NaN marks missing.

Every entry point calls :func:`validate`; its errors name what is wrong and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import categorical, timeaxis, units, variables
from geoclim.data.timeaxis import TimeStep
from geoclim.errors import SchemaError
from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME, Layout


def layout_of(ds: xr.Dataset) -> Layout:
    """Return ``"grid"`` or ``"station"``; raise if the dataset has neither spatial layout."""
    if STATION in ds.dims:
        return "station"
    if LATITUDE in ds.dims and LONGITUDE in ds.dims:
        return "grid"
    raise SchemaError(
        f"dataset has dims {list(ds.dims)}; expected ({LATITUDE!r}, {LONGITUDE!r}) for a grid "
        f"or {STATION!r} for a station network"
    )


def space_dims(ds: xr.Dataset) -> tuple[str, ...]:
    """The spatial dims of ``ds`` in storage order."""
    return (STATION,) if layout_of(ds) == "station" else (LATITUDE, LONGITUDE)


def time_step(ds: xr.Dataset) -> TimeStep:
    """The regular time step of ``ds``, fixed or calendar (validated; see :mod:`timeaxis`)."""
    return _check_time(ds)


def validate(
    ds: xr.Dataset, required: Iterable[str] = (), *, source: str | None = None
) -> xr.Dataset:
    """Check ``ds`` against the canonical-Dataset contract and return it unchanged.

    Args:
        ds: the dataset to check.
        required: variable names that must be present.
        source: a file name or label to put in error messages.

    Raises:
        SchemaError: naming the variable, dim or coordinate at fault and what was expected.

    """
    where = f"{source}: " if source else ""
    if not isinstance(ds, xr.Dataset):
        raise SchemaError(f"{where}expected an xarray.Dataset, got {type(ds).__name__}")
    try:
        _check_time(ds)
        _check_space(ds)
        _check_variables(ds, required)
    except SchemaError as err:
        raise SchemaError(f"{where}{err}") from None
    return ds


def _check_time(ds: xr.Dataset) -> TimeStep:
    if TIME not in ds.dims:
        raise SchemaError(f"dataset has no {TIME!r} dim (dims are {list(ds.dims)})")
    return timeaxis.check_axis(ds[TIME].values, TIME)


def _check_coord_range(ds: xr.Dataset, name: str, lo: float, hi: float) -> None:
    if name not in ds.coords:
        raise SchemaError(f"coordinate {name!r} is missing")
    values = np.asarray(ds[name].values, dtype=float)
    if not np.isfinite(values).all() or (values < lo).any() or (values > hi).any():
        raise SchemaError(f"coordinate {name!r} must be finite and within [{lo}, {hi}]")


def _check_space(ds: xr.Dataset) -> None:
    layout = layout_of(ds)
    _check_coord_range(ds, LATITUDE, -90.0, 90.0)
    _check_coord_range(ds, LONGITUDE, -180.0, 360.0)
    if layout == "station":
        for name in (LATITUDE, LONGITUDE):
            if ds[name].dims != (STATION,):
                raise SchemaError(
                    f"coordinate {name!r} has dims {ds[name].dims}; expected ({STATION!r},)"
                )
        if pd.Index(ds[STATION].values).has_duplicates:
            raise SchemaError(f"coordinate {STATION!r} has duplicate station ids")
        return
    for name in (LATITUDE, LONGITUDE):
        if ds[name].dims != (name,):
            raise SchemaError(f"coordinate {name!r} has dims {ds[name].dims}; expected ({name!r},)")
        if ds.sizes[name] > 1 and not (np.diff(ds[name].values) > 0).all():
            raise SchemaError(f"coordinate {name!r} must be strictly ascending")


def _check_variables(ds: xr.Dataset, required: Iterable[str]) -> None:
    missing = [name for name in required if name not in ds.data_vars]
    if missing:
        raise SchemaError(f"missing variable(s) {missing}; dataset has {sorted(ds.data_vars)}")
    spatial = set(space_dims(ds))
    for name, da in ds.data_vars.items():
        name = str(name)
        if variables.is_mask(name) and name[: -len(variables.MASK_SUFFIX)] in ds.data_vars:
            if da.dtype != bool:
                raise SchemaError(f"mask {name!r} has dtype {da.dtype}; expected bool")
            continue
        if categorical.is_categorical(da):
            if set(da.dims) not in (spatial, spatial | {TIME}):
                raise SchemaError(
                    f"categorical variable {name!r} has dims {da.dims}; expected "
                    f"{sorted(spatial | {TIME})} or {sorted(spatial)}"
                )
            categorical.check_values(da, name)
            continue
        if name in variables.REGISTRY:
            _check_registered(name, da, spatial)
        else:
            _check_other(name, da, spatial)


def _check_registered(name: str, da: xr.DataArray, spatial: set[str]) -> None:
    var = variables.get(name)
    dims = set(da.dims)
    expected = spatial if var.kind in ("static", "ancillary") else spatial | {TIME}
    if var.kind == "ancillary" and TIME in dims:
        expected = expected | {TIME}
    if dims != expected:
        raise SchemaError(f"variable {name!r} has dims {da.dims}; expected {sorted(expected)}")
    if da.dtype != np.float32:
        raise SchemaError(f"variable {name!r} has dtype {da.dtype}; expected float32")
    if da.attrs.get("units") != var.units:
        raise SchemaError(
            f"variable {name!r} has units {da.attrs.get('units')!r}; expected {var.units!r}"
        )
    if not da.attrs.get("long_name"):
        raise SchemaError(f"variable {name!r} has no 'long_name' attribute")


def _check_other(name: str, da: xr.DataArray, spatial: set[str]) -> None:
    """A variable the registry does not know: float32 on the space dims, CF units, long_name."""
    dims = set(da.dims)
    if dims not in (spatial, spatial | {TIME}):
        raise SchemaError(
            f"variable {name!r} has dims {da.dims}; expected {sorted(spatial | {TIME})} "
            f"or, for a static field, {sorted(spatial)}"
        )
    if da.dtype != np.float32:
        raise SchemaError(f"variable {name!r} has dtype {da.dtype}; expected float32")
    if not da.attrs.get("units"):
        raise SchemaError(
            f"variable {name!r} has no 'units' attribute; declare them with "
            f"data.variables.{name}.units=..."
        )
    try:
        units.parse(str(da.attrs["units"]))
    except SchemaError as err:
        raise SchemaError(f"variable {name!r}: {err}") from None
    if not da.attrs.get("long_name"):
        raise SchemaError(
            f"variable {name!r} has no 'long_name' attribute (data.variables.{name}.long_name)"
        )


def annotate(ds: xr.Dataset) -> xr.Dataset:
    """Cast variables to float32 and set their CF ``units`` / ``long_name`` attributes.

    Registered variables get the registry's; others keep their own (a ``long_name`` missing
    there defaults to the name). Only use this on data already in canonical units
    (converters call it last).
    """
    out = ds.copy()
    for name in out.data_vars:
        if variables.is_mask(str(name)) and out[name].dtype.kind in "bu":
            out[name] = out[name].astype(bool)
            continue
        if categorical.is_categorical(out[name]):  # codes, not quantities: no units or cast
            continue
        var = variables.describe(str(name), out[name].attrs)
        da = out[name].astype(np.float32)
        da.attrs.update(long_name=var.long_name)
        if var.units:
            da.attrs["units"] = var.units
        out[name] = da
    return out
