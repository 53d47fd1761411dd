"""The variable registry: canonical names, aliases, CF units and long names.

The registry knows the variables geoclim has opinions about: their aliases in files, their
canonical units (the ones air-quality networks report most: mixing ratios for gases, ppb and
CO in ppm, mass concentrations for particles), long names and defaults (log transform).
Any other variable is welcome: :func:`describe` gives it the units and long name from its
attributes or its ``data.variables.<name>`` declaration. Units are parsed and converted by
:mod:`geoclim.data.units` (pint through cf-xarray); a gas's mass concentration becomes a
mixing ratio only at a stated reference temperature (20 degC in Europe, 25 degC in the US)
and pressure (1013.25 hPa unless stated otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from geoclim.data import units
from geoclim.errors import SchemaError

Kind = Literal["pollutant", "meteorology", "static", "ancillary", "other"]

MASK_SUFFIX = "_imputed"
"""``<var>_imputed`` (bool) marks values filled by imputation; it travels with ``<var>``."""


@dataclass(frozen=True)
class Variable:
    """One registered physical field.

    Attributes:
        name: canonical short name (data variable name).
        units: canonical units string (CF / UDUNITS spelling where one exists).
        long_name: CF ``long_name``.
        kind: pollutant, meteorology, static (no time dim), ancillary, or other (a variable
            the registry does not know; static or not by its dims).
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


def describe(name: str, attrs: dict | None = None) -> Variable:
    """The registered variable ``name``, or one described by a variable's ``attrs``.

    Args:
        name: canonical (dataset) name.
        attrs: the variable's attributes (``units``, ``long_name``); used for a name the
            registry does not know. Without them such a variable has empty units.

    """
    if name in REGISTRY:
        return REGISTRY[name]
    attrs = attrs or {}
    return Variable(name, str(attrs.get("units", "")), str(attrs.get("long_name") or name), "other")


def is_mask(name: str) -> bool:
    """Whether ``name`` is an imputation mask ``<var>_imputed``."""
    return name.endswith(MASK_SUFFIX) and len(name) > len(MASK_SUFFIX)


def mask_name(name: str) -> str:
    """Name of the imputation mask that travels with ``name``."""
    return f"{name}{MASK_SUFFIX}"


ALIASES = {
    "pm2.5": "pm25",
    "pm2_5": "pm25",
    "ozone": "o3",
    "2t": "t2m",
    "temperature": "t2m",
    "r2": "rh",
    "10u": "u10",
    "10v": "v10",
    "z": "elevation",
    "orography": "elevation",
    "lsm": "land_sea_mask",
    **{name: name for name in REGISTRY},
}
"""Names files use (lower case) -> registered names."""

MIXING_UNITS = frozenset({"ppb", "ppm"})
"""Canonical spellings of mixing-ratio units (gases)."""
MASS_UNITS = frozenset({"ug m-3", "mg m-3"})
"""Canonical spellings of mass-concentration units (particles, or gases by mass)."""

_PREFERRED = tuple(dict.fromkeys([v.units for v in _VARIABLES] + [*MASS_UNITS, *MIXING_UNITS]))
_PREFERRED += ("degC", "hPa", "degF", "knot", "mbar")


def canonical_name(name: str) -> str | None:
    """The registered name a file's variable ``name`` stands for, if any."""
    return ALIASES.get(name.lower())


def normalise_units(text: str) -> str:
    """One spelling per unit: ``Micrograms/cubic meter (LC)`` -> ``ug m-3``, ``C`` -> ``degC``.

    Units geoclim uses get the registry's spelling; others pint's CF spelling.

    Raises:
        SchemaError: if the string is not a unit (see :func:`geoclim.data.units.parse`).

    """
    parsed = units.parse(text)
    for spelling in _PREFERRED:
        if units.equivalent(spelling, text):
            return spelling
    return format(parsed, "~cf") or "1"


def molar_volume(temperature_c: float = 25.0, pressure_hpa: float = 1013.25) -> float:
    """Ideal-gas molar volume in m3/mol at the given temperature and pressure."""
    return 8.314462618 * (temperature_c + 273.15) / (pressure_hpa * 100.0)


def conversion(
    name: str,
    from_units: str,
    *,
    reference_temperature_c: float | None = None,
    reference_pressure_hpa: float = 1013.25,
) -> units.Conversion:
    """The conversion of registered variable ``name`` from ``from_units`` to its canonical units.

    A gas in mass units (or the reverse) needs ``reference_temperature_c``; the pressure is
    the standard atmosphere unless stated.

    Raises:
        SchemaError: if the units are unknown or cannot be converted for this variable.

    """
    var = get(name)
    reference = (
        units.Reference(reference_temperature_c, reference_pressure_hpa)
        if reference_temperature_c is not None
        else None
    )
    return units.conversion(
        from_units, var.units, molar_mass=var.molar_mass, reference=reference, name=name
    )


def conversion_factor(
    name: str, from_units: str, *, reference_temperature_c: float | None = None
) -> float:
    """Factor that converts ``name`` from ``from_units`` into its canonical units.

    Mass <-> mixing-ratio conversions use ``x[ppb] = c[ug m-3] * Vm * 1e3 / M`` with ``Vm`` the
    molar volume (m3/mol) at ``reference_temperature_c`` and 1013.25 hPa and ``M`` in g/mol.

    Raises:
        SchemaError: if the units are unknown, cannot be converted for this variable, need an
            offset (use :func:`convert`), or need an unstated reference temperature.

    """
    c = conversion(name, from_units, reference_temperature_c=reference_temperature_c)
    if c.offset:
        raise SchemaError(f"variable {name!r}: {c} has an offset; use variables.convert")
    return c.factor


def convert(
    values: np.ndarray,
    name: str,
    from_units: str,
    *,
    reference_temperature_c: float | None = None,
) -> np.ndarray:
    """Convert ``values`` of ``name`` into canonical units (offset units such as degC too)."""
    c = conversion(name, from_units, reference_temperature_c=reference_temperature_c)
    return c.apply(values)
