"""The variable registry: canonical names, CF units and long names, unit conversion.

One registry for the whole package. Canonical units are the ones air-quality networks report
most: mixing ratios for gases (ppb, CO in ppm), mass concentrations for particles. Mass
concentrations of gases are converted with the ideal-gas molar volume at a stated reference
temperature and 1013.25 hPa (20 degC in Europe, 25 degC in the US).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from geoclim.errors import SchemaError

Kind = Literal["pollutant", "meteorology", "static", "ancillary"]

MASK_SUFFIX = "_imputed"
"""``<var>_imputed`` (bool) marks values filled by imputation; it travels with ``<var>``."""


@dataclass(frozen=True)
class Variable:
    """One registered physical field.

    Attributes:
        name: canonical short name (data variable name).
        units: canonical units string (CF / UDUNITS spelling where one exists).
        long_name: CF ``long_name``.
        kind: pollutant, meteorology, static (no time dim) or ancillary.
        molar_mass: g/mol for gases, enables ug m-3 <-> ppb conversion.
        log_transform: whether the Normalizer log-transforms it by default (skewed, >= 0).
        nonnegative: physically bounded below by zero.

    """

    name: str
    units: str
    long_name: str
    kind: Kind
    molar_mass: float | None = None
    log_transform: bool = False
    nonnegative: bool = False


_VARIABLES = [
    Variable("pm25", "ug m-3", "PM2.5 mass concentration", "pollutant", None, True, True),
    Variable("pm10", "ug m-3", "PM10 mass concentration", "pollutant", None, True, True),
    Variable("o3", "ppb", "ozone mixing ratio", "pollutant", 48.00, False, True),
    Variable("no2", "ppb", "nitrogen dioxide mixing ratio", "pollutant", 46.01, True, True),
    Variable("nox", "ppb", "nitrogen oxides mixing ratio (as NO2)", "pollutant", 46.01, True, True),
    Variable("so2", "ppb", "sulphur dioxide mixing ratio", "pollutant", 64.07, True, True),
    Variable("co", "ppm", "carbon monoxide mixing ratio", "pollutant", 28.01, True, True),
    Variable("t2m", "K", "2 metre temperature", "meteorology"),
    Variable("rh", "%", "2 metre relative humidity", "meteorology", nonnegative=True),
    Variable("u10", "m s-1", "10 metre eastward wind", "meteorology"),
    Variable("v10", "m s-1", "10 metre northward wind", "meteorology"),
    Variable("ws", "m s-1", "10 metre wind speed", "meteorology", nonnegative=True),
    Variable("wd", "degree", "10 metre wind direction (from, clockwise from north)", "meteorology"),
    Variable("sp", "Pa", "surface pressure", "meteorology"),
    Variable("blh", "m", "boundary layer height", "meteorology", nonnegative=True),
    Variable("tp", "mm", "total precipitation over the time step", "meteorology", nonnegative=True),
    Variable("ssrd", "W m-2", "surface solar radiation downwards", "meteorology", nonnegative=True),
    Variable("elevation", "m", "surface elevation above sea level", "static"),
    Variable("land_sea_mask", "1", "land fraction", "static"),
    Variable("emissions", "1", "relative emission strength", "static", nonnegative=True),
    Variable("coverage", "1", "1 where the cell is within reach of a station", "ancillary"),
]

REGISTRY: dict[str, Variable] = {v.name: v for v in _VARIABLES}
POLLUTANTS: tuple[str, ...] = tuple(v.name for v in _VARIABLES if v.kind == "pollutant")


def get(name: str) -> Variable:
    """Return the registered variable ``name``; raise naming the valid choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise SchemaError(
            f"unknown variable {name!r}; registered variables are {sorted(REGISTRY)}"
        ) from None


def is_mask(name: str) -> bool:
    """Whether ``name`` is an imputation mask ``<registered var>_imputed``."""
    return name.endswith(MASK_SUFFIX) and name[: -len(MASK_SUFFIX)] in REGISTRY


def mask_name(name: str) -> str:
    """Name of the imputation mask that travels with ``name``."""
    return f"{name}{MASK_SUFFIX}"


# Spellings seen in data sources -> canonical units.
_UNIT_ALIASES = {
    "ug/m3": "ug m-3",
    "µg/m3": "ug m-3",
    "ug m-3": "ug m-3",
    "ug/m^3": "ug m-3",
    "micrograms/cubic meter (lc)": "ug m-3",
    "micrograms/cubic meter (25 c)": "ug m-3",
    "micrograms/cubic meter": "ug m-3",
    "ug/m3 lc": "ug m-3",
    "ug/m3 sc": "ug m-3",
    "mg/m3": "mg m-3",
    "mg m-3": "mg m-3",
    "ppb": "ppb",
    "parts per billion": "ppb",
    "ppm": "ppm",
    "parts per million": "ppm",
    "k": "K",
    "degc": "degC",
    "c": "degC",
    "degrees c": "degC",
    "m/s": "m s-1",
    "m s-1": "m s-1",
    "%": "%",
    "pa": "Pa",
    "hpa": "hPa",
    "m": "m",
    "mm": "mm",
    "degree": "degree",
    "degrees": "degree",
    "1": "1",
    "w m-2": "W m-2",
}

# Exact integer ratios: mixing ratios in ppb, mass concentrations in ug m-3.
_MIXING = {"ppb": 1.0, "ppm": 1000.0}
_MASS = {"ug m-3": 1.0, "mg m-3": 1000.0}
MIXING_UNITS = frozenset(_MIXING)
"""Canonical spellings of mixing-ratio units (gases)."""
MASS_UNITS = frozenset(_MASS)
"""Canonical spellings of mass-concentration units (particles, or gases by mass)."""


def normalise_units(units: str) -> str:
    """Map a source's spelling of a unit (e.g. ``Micrograms/cubic meter (LC)``) to ours."""
    key = units.strip().lower()
    if key not in _UNIT_ALIASES:
        raise SchemaError(f"unknown units {units!r}; known spellings are {sorted(_UNIT_ALIASES)}")
    return _UNIT_ALIASES[key]


def molar_volume(temperature_c: float = 25.0, pressure_hpa: float = 1013.25) -> float:
    """Ideal-gas molar volume in m3/mol at the given temperature and pressure."""
    return 8.314462618 * (temperature_c + 273.15) / (pressure_hpa * 100.0)


def conversion_factor(
    name: str, from_units: str, *, reference_temperature_c: float = 25.0
) -> float:
    """Factor that converts ``name`` from ``from_units`` into its canonical units.

    Mass <-> mixing-ratio conversions use ``x[ppb] = c[ug m-3] * Vm * 1e3 / M`` with ``Vm`` the
    molar volume (m3/mol) at ``reference_temperature_c`` and 1013.25 hPa and ``M`` in g/mol.

    Raises:
        SchemaError: if the units are unknown or cannot be converted for this variable.

    """
    var = get(name)
    src, dst = normalise_units(from_units), var.units
    if src == dst:
        return 1.0
    if src in _MIXING and dst in _MIXING:
        return _MIXING[src] / _MIXING[dst]
    if src in _MASS and dst in _MASS:
        return _MASS[src] / _MASS[dst]
    if var.molar_mass is not None and {src, dst} <= set(_MASS) | set(_MIXING):
        ppb_per_ug_m3 = molar_volume(reference_temperature_c) * 1e3 / var.molar_mass
        if src in _MASS:
            return _MASS[src] * ppb_per_ug_m3 / _MIXING[dst]
        return _MIXING[src] / ppb_per_ug_m3 / _MASS[dst]
    raise SchemaError(f"cannot convert variable {name!r} from {from_units!r} to {dst!r}")


def convert(
    values: np.ndarray, name: str, from_units: str, *, reference_temperature_c: float = 25.0
) -> np.ndarray:
    """Convert ``values`` of ``name`` into canonical units (offset units such as degC too)."""
    if normalise_units(from_units) == "degC" and get(name).units == "K":
        return np.asarray(values, dtype=np.float64) + 273.15
    if normalise_units(from_units) == "hPa" and get(name).units == "Pa":
        return np.asarray(values, dtype=np.float64) * 100.0
    factor = conversion_factor(name, from_units, reference_temperature_c=reference_temperature_c)
    return np.asarray(values, dtype=np.float64) * factor
