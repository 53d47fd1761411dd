"""CF unit strings, parsed and converted by pint through cf-xarray's UDUNITS registry.

Every unit in geoclim goes through :data:`ureg` (``cf_xarray.units.units``), so UDUNITS
spellings (``degC``, ``m s-1``, ``kg m-2 s-1``, ``ug m-3``, ``1``) and pint's (``ug/m3``,
``Celsius``) parse alike. The registry gains the air-quality mixing ratios ``ppb`` / ``ppbv``
/ ``ppmv`` / ``pptv`` (volume fractions), and :data:`SPELLINGS` maps the long names monitoring
networks write (``Parts per billion``, ``Micrograms/cubic meter (LC)``) to symbols. Trailing
EPA condition qualifiers (``(LC)`` local conditions, ``(25 C)``, ``SC``) name the reference
conditions of a mass concentration, not a different unit, and are stripped.

Conversions are affine, ``y = factor * x + offset`` (offset only for temperatures). A gas's
mass concentration and its mixing ratio are related by the ideal-gas law,
``x [mol mol-1] = c [kg m-3] * R * T / (M [kg mol-1] * p [Pa])``, which needs the molar mass
``M`` and a *stated* reference temperature ``T`` and pressure ``p``; without them such a
conversion is an error, never a silent default.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geoclim.errors import SchemaError

if TYPE_CHECKING:
    import pint

_EXTRA = ("ppb = 1e-9 = ppbv", "ppmv = ppm", "pptv = 1e-12")
"""Symbols of air-quality data that the UDUNITS registry lacks."""


@functools.cache
def registry() -> pint.UnitRegistry:
    """cf-xarray's UDUNITS registry with :data:`_EXTRA`, built on first use.

    pint and the registry take about a second to import, which every command (and the
    serving process) would otherwise pay at start-up whether it converts a unit or not.

    The import runs in a thread of its own. Importing pint imports matplotlib, which leaves
    parse exceptions in pyparsing's packrat cache. Their tracebacks hold every frame above
    the import, and so the locals of the caller: imported inside a file's opening, that
    file's dataset would stay alive and open for the life of the process. (Never call this
    at module import time: the helper thread's import could wait on the module the calling
    thread is importing, a deadlock.)
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="geoclim-units") as pool:
        ureg = pool.submit(_import_registry).result()
    for definition in _EXTRA:
        name = definition.split("=")[0].strip()
        if name not in ureg:
            ureg.define(definition)
    return ureg


def _import_registry() -> pint.UnitRegistry:
    # cf-xarray redefines pint's %, degrees_north, C, h, ... with their UDUNITS meaning on
    # purpose; pint logs each redefinition as a warning, which is noise to a user.
    pint_log = logging.getLogger("pint.util")
    level = pint_log.level
    pint_log.setLevel(logging.ERROR)
    try:
        from cf_xarray.units import units as ureg
    finally:
        pint_log.setLevel(level)
    return ureg


def _pint_errors():
    """``pint.errors`` (the registry's exceptions), once the registry exists."""
    registry()
    import pint.errors

    return pint.errors


@functools.cache
def _dimensionality(unit: str):
    """The dimensionality of a unit the registry parses (``"kg m-3"``, ``"1"``)."""
    return registry().Quantity(1, unit).dimensionality


SPELLINGS = {
    "parts per billion": "ppb",
    "parts per million": "ppm",
    "parts per trillion": "pptv",
    "parts per billion carbon": "ppb",
    "degrees fahrenheit": "degF",
    "degrees celsius": "degC",
    "degrees c": "degC",
    "deg c": "degC",
    "degrees compass": "degree",
    "degrees": "degree",
    "knots": "knot",
    "millibars": "mbar",
    "percent relative humidity": "%",
    "percent": "%",
    "fraction": "1",
    "unitless": "1",
    "dimensionless": "1",
    "none": "1",
}
"""Long spellings (lower case) seen in station networks -> a symbol the registry knows."""

_QUALIFIER = re.compile(r"\s*(\((lc|sc|stp|\d+(\.\d+)?\s*(deg\s*)?c)\)|\s(lc|sc|stp))\s*$", re.I)


def parse(text: str) -> pint.Unit:
    """The pint unit of a CF / network unit string.

    Raises:
        SchemaError: naming the string when no spelling of it is known.

    """
    if not isinstance(text, str) or not text.strip():
        raise SchemaError(f"units {text!r} are empty; expected a CF units string such as 'K'")
    stripped = _QUALIFIER.sub("", text.strip())
    for candidate in (stripped, SPELLINGS.get(stripped.lower()), stripped.lower()):
        if candidate is None:
            continue
        try:
            return registry().parse_units(candidate)
        except (_pint_errors().PintError, AttributeError, TypeError, ValueError, AssertionError):
            continue
    raise SchemaError(
        f"unknown units {text!r}; expected a CF / UDUNITS string (e.g. 'K', 'degC', 'ug m-3', "
        "'ppb', 'm s-1', '1') or a long spelling of geoclim.data.units.SPELLINGS"
    )


def equivalent(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are the same unit (``ug/m3`` and ``ug m-3``; not ``ppm``/``ppb``)."""
    ua, ub = parse(a), parse(b)
    if ua == ub:
        return True
    if registry().Quantity(1, ua).dimensionality != registry().Quantity(1, ub).dimensionality:
        return False
    try:
        c = conversion(a, b)
    except SchemaError:
        return False
    return bool(np.isclose(c.factor, 1.0, rtol=1e-12) and c.offset == 0.0)


def is_mass_concentration(text: str) -> bool:
    """Whether ``text`` is a mass per volume (``ug m-3``, ``mg/m3``)."""
    return registry().Quantity(1, parse(text)).dimensionality == _dimensionality("kg m-3")


def is_mixing_ratio(text: str) -> bool:
    """Whether ``text`` is a dimensionless fraction other than an angle or a percentage scale.

    ``ppb``, ``ppm``, ``mol mol-1`` and ``1`` count; ``%`` is a fraction too (``percent``).
    """
    return registry().Quantity(1, parse(text)).dimensionality == _dimensionality(
        "1"
    ) and not _is_angle(text)


def _is_angle(text: str) -> bool:
    return str(parse(text)) in ("degree", "degrees", "radian", "arcminute", "arcsecond")


@dataclass(frozen=True)
class Reference:
    """Stated reference conditions for mass concentration <-> mixing ratio conversions.

    Attributes:
        temperature_c: reference temperature in degC (20 in the EU, 25 in the US).
        pressure_hpa: reference pressure in hPa (1013.25 for the standard atmosphere).

    """

    temperature_c: float
    pressure_hpa: float

    def __str__(self) -> str:
        return f"{self.temperature_c:g} degC, {self.pressure_hpa:g} hPa"


@dataclass(frozen=True)
class Conversion:
    """``y = factor * x + offset`` from ``source`` units to ``target`` units."""

    source: str
    target: str
    factor: float
    offset: float = 0.0
    via: str = ""

    @property
    def identity(self) -> bool:
        """Whether the conversion leaves values unchanged."""
        return self.factor == 1.0 and self.offset == 0.0

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Convert ``values`` (float64 result)."""
        out = np.asarray(values, dtype=np.float64) * self.factor
        return out + self.offset if self.offset else out

    def __str__(self) -> str:
        text = f"{self.source!r} -> {self.target!r} (x {self.factor:.10g}"
        text += f" + {self.offset:.10g})" if self.offset else ")"
        return f"{text} at {self.via}" if self.via else text


def conversion(
    source: str,
    target: str,
    *,
    molar_mass: float | None = None,
    reference: Reference | None = None,
    name: str = "",
) -> Conversion:
    """The affine conversion from ``source`` to ``target`` units.

    Args:
        source: units of the values as stored.
        target: units wanted.
        molar_mass: g/mol of the gas, for mass concentration <-> mixing ratio.
        reference: stated temperature and pressure for that conversion.
        name: the variable, for error messages.

    Raises:
        SchemaError: if the units are unknown, incompatible, or a mass <-> mixing conversion
            lacks the molar mass or the reference conditions.

    """
    what = f"variable {name!r}: " if name else ""
    try:
        src, dst = parse(source), parse(target)
    except SchemaError as err:
        raise SchemaError(f"{what}{err}") from None
    try:
        zero = registry().Quantity(0.0, src).to(dst).magnitude
        one = registry().Quantity(1.0, src).to(dst).magnitude
        return Conversion(source, target, _exact(one - zero), _exact(zero))
    except _pint_errors().DimensionalityError:
        pass
    mass_to_mix = is_mass_concentration(source) and is_mixing_ratio(target)
    mix_to_mass = is_mixing_ratio(source) and is_mass_concentration(target)
    if not (mass_to_mix or mix_to_mass):
        raise SchemaError(f"{what}cannot convert {source!r} to {target!r} (incompatible units)")
    if molar_mass is None:
        raise SchemaError(
            f"{what}cannot convert {source!r} to {target!r}: mass concentration <-> mixing "
            "ratio needs a gas's molar mass, and only registered gases have one"
        )
    if reference is None:
        raise SchemaError(
            f"{what}converting {source!r} to {target!r} needs a stated reference temperature "
            "and pressure (e.g. data.source.reference_temperature_c=25 and "
            "data.source.reference_pressure_hpa=1013.25)"
        )
    temperature = registry().Quantity(reference.temperature_c, "degC").to("K")
    pressure = registry().Quantity(reference.pressure_hpa, "hPa")
    gas = registry().Quantity(molar_mass, "g mol-1")
    rt_over_mp = registry().Quantity(1.0, "molar_gas_constant") * temperature / (gas * pressure)
    quantity = registry().Quantity(1.0, src) * (rt_over_mp if mass_to_mix else 1.0 / rt_over_mp)
    factor = _exact(quantity.to(dst).magnitude)
    return Conversion(source, target, factor, 0.0, via=str(reference))


def _exact(value: float) -> float:
    """``value`` rounded to 15 significant digits: 1 ppm is 1000 ppb, not 999.9999999999999."""
    return float(f"{float(value):.15g}")


def convert(values: np.ndarray, source: str, target: str, **kwargs) -> np.ndarray:
    """``values`` in ``source`` units converted to ``target`` (see :func:`conversion`)."""
    return conversion(source, target, **kwargs).apply(values)
