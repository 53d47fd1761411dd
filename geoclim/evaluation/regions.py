"""Regions to score separately: latitude/longitude boxes, masks and station subsets.

A region selects locations; scoring sets the truth to NaN outside it, so every metric
(and the common mask, the bootstrap and the paired tests) sees only its points. Config form
(``regions`` in ``conf/evaluate.yaml`` and ``conf/train.yaml``)::

    regions:
      europe: {lat: [35, 72], lon: [-25, 45]}    # inclusive box; lon may wrap: [350, 10]
      land:   {mask: land_sea_mask}              # a static variable, nonzero inside
      urban:  {stations: ["060371103", "060374004"]}

Longitudes are compared modulo 360, so boxes work on -180..180 and 0..360 grids alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from geoclim.errors import ConfigError
from geoclim.types import LATITUDE, LONGITUDE, STATION

GLOBAL = "all"
_KEYS = ("lat", "lon", "mask", "stations")


@dataclass(frozen=True)
class Region:
    """A named set of locations (a box, a mask variable or a list of stations)."""

    name: str
    lat: tuple[float, float] | None = None
    lon: tuple[float, float] | None = None
    mask: str | None = None
    stations: tuple[str, ...] | None = None

    def select(self, ds: xr.Dataset) -> xr.DataArray:
        """Boolean over the space dims of ``ds``: True inside the region.

        Raises:
            ConfigError: a mask variable or station the dataset does not have, or a region
                that selects nothing.

        """
        space = [d for d in (LATITUDE, LONGITUDE, STATION) if d in ds.dims]
        shape = [ds.sizes[d] for d in space]
        inside = xr.DataArray(np.ones(shape, bool), dims=space, coords={d: ds[d] for d in space})
        if self.lat is not None:
            lat = ds[LATITUDE]
            inside = inside & (lat >= min(self.lat)) & (lat <= max(self.lat))
        if self.lon is not None:
            lon, (lo, hi) = ds[LONGITUDE] % 360.0, (v % 360.0 for v in self.lon)
            inside = inside & (
                ((lon >= lo) & (lon <= hi)) if lo <= hi else ((lon >= lo) | (lon <= hi))
            )
        if self.mask is not None:
            if self.mask not in ds:
                raise ConfigError(
                    f"region {self.name!r}: mask variable {self.mask!r} is not in the data; "
                    f"it has {sorted(map(str, ds.data_vars))}"
                )
            inside = inside & (ds[self.mask].fillna(0) != 0)
        if self.stations is not None:
            have = ds[STATION].values.astype(str) if STATION in ds.dims else np.array([])
            unknown = sorted(set(self.stations) - set(have))
            if unknown:
                raise ConfigError(
                    f"region {self.name!r}: stations {unknown} are not in the data "
                    f"(it has {len(have)} stations, e.g. {list(have[:5])})"
                )
            inside = inside & xr.DataArray(np.isin(have, self.stations), dims=STATION)
        if not bool(inside.any()):
            raise ConfigError(f"region {self.name!r} selects no location of the data")
        return inside


def parse_regions(config: Mapping[str, Any] | None) -> list[Region]:
    """Regions from their config mapping ``{name: {lat, lon, mask, stations}}``.

    Raises:
        ConfigError: an unknown key, a box edge that is not two numbers, an empty region
            spec, or the reserved name ``all``.

    """
    regions = []
    for name, spec in dict(config or {}).items():
        spec = dict(spec or {})
        unknown = sorted(set(spec) - set(_KEYS))
        if unknown or not spec:
            raise ConfigError(
                f"regions.{name}: unknown or missing keys {unknown or '(none given)'}; "
                f"valid keys are {list(_KEYS)}"
            )
        if name == GLOBAL:
            raise ConfigError(f"regions.{name}: {GLOBAL!r} is the whole domain; rename it")
        regions.append(
            Region(
                name=str(name),
                lat=_pair(name, "lat", spec.get("lat")),
                lon=_pair(name, "lon", spec.get("lon")),
                mask=spec.get("mask"),
                stations=tuple(map(str, spec["stations"])) if spec.get("stations") else None,
            )
        )
    return regions


def _pair(name: str, key: str, value: Sequence[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"regions.{name}.{key}: expected [low, high] degrees; got {value!r}"
        ) from None
    return lo, hi
