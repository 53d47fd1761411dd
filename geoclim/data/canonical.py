"""A file's dataset -> the canonical Dataset, with a report of every decision.

:func:`canonicalise` renames (``data.source.rename``, then the registry's aliases), finds the
layout (:mod:`geoclim.data.layout`), reads each variable's units from its attributes or its
declaration (``data.variables.<name>: {units, long_name}``), converts registered variables
to their canonical units and keeps every other numeric variable in its own units. What it
did is a :class:`LoadReport`: one row per variable -- kept, renamed, converted (from -> to,
factor / offset) or dropped (and why) -- and the problems that stop a load (no units,
conflicting declarations), each naming the config key that fixes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from geoclim.data import categorical, layout, schema, units, variables
from geoclim.errors import SchemaError
from geoclim.types import STATION, TIME

log = logging.getLogger(__name__)

DECLARATION_KEYS = ("units", "long_name")
"""Keys of a ``data.variables.<name>`` declaration."""


@dataclass
class VariableRow:
    """What became of one variable of the file."""

    name: str
    source_name: str
    action: str  # kept | renamed | converted | dropped
    units: str = ""
    detail: str = ""


@dataclass
class LoadReport:
    """Every decision of one load: layout notes, variable rows, blocking problems."""

    source: str
    layout: layout.LayoutInfo | None = None
    rows: list[VariableRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The one table a load logs (aligned text)."""
        head = f"{self.source}: " + (
            f"{self.layout.layout}; " + "; ".join(self.layout.notes) if self.layout else ""
        )
        lines = [head.rstrip("; "), f"  {'variable':<16} {'action':<10} {'units':<12} detail"]
        for r in self.rows:
            name = r.name if r.name == r.source_name else f"{r.name} <- {r.source_name}"
            lines.append(f"  {name:<16} {r.action:<10} {r.units:<12} {r.detail}".rstrip())
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def raise_problems(self) -> None:
        """Raise one :class:`SchemaError` listing every problem, if there is any."""
        if self.problems:
            raise SchemaError(f"{self.source}: " + "; ".join(self.problems))


def check_declarations(declared: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """``data.variables`` as ``{name: {units, long_name}}``; unknown keys are an error."""
    out = {}
    for name, entry in (declared or {}).items():
        if not isinstance(entry, dict):
            raise SchemaError(
                f"data.variables.{name} is {entry!r}; expected a mapping such as "
                "{units: degC, long_name: dew point temperature}"
            )
        unknown = sorted(set(entry) - set(DECLARATION_KEYS))
        if unknown:
            raise SchemaError(
                f"data.variables.{name}: unknown key(s) {unknown}; valid are "
                f"{list(DECLARATION_KEYS)}"
            )
        out[str(name)] = {k: str(v) for k, v in entry.items() if v is not None}
    return out


def canonicalise(
    raw: xr.Dataset,
    *,
    source: str = "dataset",
    rename: dict[str, str] | None = None,
    declared: dict[str, Any] | None = None,
    drop: tuple[str, ...] | list[str] = (),
    reference: units.Reference | None = None,
    default_station: str = "station",
) -> tuple[xr.Dataset, LoadReport]:
    """The canonical form of ``raw`` and the report of how it was made.

    Args:
        raw: the dataset as the file has it.
        source: a label (file name) for the report and errors.
        rename: the file's names -> wanted names, applied first (``data.source.rename``).
        declared: ``{name: {units, long_name}}`` for variables whose file lacks them
            (``data.variables``); keyed by the wanted (canonical) name.
        drop: file variables to leave out (``data.source.drop``).
        reference: stated conditions for gas mass concentration <-> mixing ratio.
        default_station: id of the station a single series becomes, when the file names none.

    Returns:
        ``(ds, report)``; ``ds`` holds only the kept variables. The report's ``problems``
        are not raised here (see :meth:`LoadReport.raise_problems`).

    """
    report = LoadReport(source)
    declared = check_declarations(declared)
    raw = _apply_rename(raw, rename or {}, drop)
    try:
        ds, report.layout = layout.canonical_layout(raw, default_station=default_station)
    except SchemaError as err:
        raise SchemaError(f"{source}: {err}") from None
    spatial = set(schema.space_dims(ds))
    bounds = {
        str(v.attrs["bounds"]): str(n) for n, v in raw.variables.items() if "bounds" in v.attrs
    }
    kept: dict[str, xr.DataArray] = {}
    for raw_name in list(ds.data_vars):
        raw_name = str(raw_name)
        origin = _origin(raw_name, rename or {})
        if origin in drop or origin in bounds:
            why = "data.source.drop" if origin in drop else f"cell bounds of {bounds[origin]!r}"
            report.rows.append(VariableRow(raw_name, origin, "dropped", "", why))
            continue
        name = variables.canonical_name(raw_name) or raw_name
        if variables.is_mask(raw_name):
            name = raw_name
        row = VariableRow(name, origin, "kept")
        da = _variable(ds, raw_name, name, spatial, declared, reference, row, report)
        if da is not None and name in kept:
            row.action, row.detail, da = "dropped", f"a second variable named {name!r}", None
        if da is not None:
            kept[name] = da
            if row.action == "kept" and name != origin:
                row.action = "renamed"
        report.rows.append(row)
    for name in declared:
        if name not in kept and not any(r.name == name for r in report.rows):
            report.problems.append(
                f"data.variables.{name} is declared but the file has no variable {name!r}"
            )
    out = xr.Dataset(kept, coords=ds.coords, attrs=ds.attrs)
    return schema.annotate(out), report


def _origin(name: str, rename: dict[str, str]) -> str:
    inverse = {v: k for k, v in rename.items()}
    return inverse.get(name, name)


def _apply_rename(raw: xr.Dataset, rename: dict[str, str], drop) -> xr.Dataset:
    missing = sorted(k for k in rename if k not in raw.variables and k not in raw.dims)
    if missing:
        raise SchemaError(
            f"data.source.rename: {missing} not in the file; it has "
            f"{sorted(map(str, raw.variables))}"
        )
    absent = sorted(k for k in drop if k not in raw.variables)
    if absent:
        raise SchemaError(
            f"data.source.drop: {absent} not in the file; it has {sorted(map(str, raw.data_vars))}"
        )
    return raw.rename(dict(rename)) if rename else raw


def _variable(ds, raw_name, name, spatial, declared, reference, row, report):
    """The variable ``raw_name`` converted and annotated, or ``None`` (row says why)."""
    da = ds[raw_name]
    if variables.is_mask(name) and da.dtype.kind in "bu":
        row.detail, row.units = "imputation mask", "bool"
        return da.astype(bool)
    if categorical.is_categorical(da):  # CF flags: kept as codes, never converted
        row.detail, row.units = f"categorical ({len(da.attrs['flag_values'])} flags)", "-"
        return da
    why = _unusable(da, spatial)
    if why:
        row.action, row.detail = "dropped", why
        return None
    src = _source_units(ds, da, name, row.source_name, declared.get(name, {}), report)
    if src is None:
        row.action, row.detail = "dropped", "no units (see problems)"
        return None
    try:
        units.parse(src)
    except SchemaError as err:
        report.problems.append(f"variable {name!r}: {err} (fix data.variables.{name}.units)")
        row.action, row.detail = "dropped", "unknown units"
        return None
    da = da.astype(np.float64) if da.dtype.kind in "iu" else da
    attrs = dict(da.attrs)
    long_name = declared.get(name, {}).get("long_name")
    if name in variables.REGISTRY:
        target = variables.get(name).units
        try:
            c = units.conversion(
                src,
                target,
                molar_mass=variables.get(name).molar_mass,
                reference=reference,
                name=name,
            )
        except SchemaError as err:
            report.problems.append(str(err))
            row.action, row.detail = "dropped", "cannot convert (see problems)"
            return None
        if not c.identity:
            da = xr.apply_ufunc(c.apply, da, dask="parallelized", output_dtypes=[np.float64])
            row.action, row.detail = "converted", str(c)
        elif src != target:
            row.detail = f"units {src!r} are {target!r}"
        attrs.update(units=target, long_name=long_name or variables.get(name).long_name)
    else:
        spelling = variables.normalise_units(src)
        if spelling != src:
            row.detail = f"units {src!r} written {spelling!r}"
        name_attr = attrs.get("long_name") or attrs.get("standard_name") or name
        attrs.update(units=spelling, long_name=long_name or name_attr)
        target = spelling
    row.units = target
    if TIME not in da.dims:
        row.detail = (row.detail + "; " if row.detail else "") + "static (no time dim)"
    return da.assign_attrs(attrs)


def _unusable(da: xr.DataArray, spatial: set[str]) -> str:
    """Why ``da`` cannot be a canonical variable ('' if it can)."""
    if da.dtype.kind not in "fiu":
        return f"not numeric (dtype {da.dtype})"
    if "flag_values" in da.attrs or "flag_masks" in da.attrs:
        return "flags that are not integer codes with flag_values and flag_meanings"
    dims = set(map(str, da.dims))
    extra = sorted(dims - spatial - {TIME})
    if extra:
        return f"extra dim(s) {extra}: select one value first (e.g. one level)"
    if not spatial <= dims:
        lacking = sorted(spatial - dims)
        if spatial == {STATION} and lacking:
            return "no station dim"
        return f"lacks the spatial dim(s) {lacking}"
    return ""


def _source_units(ds, da, name, origin, declaration, report) -> str | None:
    """The units the values are stored in: the file's or the declared ones (both: must agree)."""
    file_units = da.attrs.get("units")
    file_units = None if file_units is None or str(file_units).strip() == "" else str(file_units)
    declared = declaration.get("units")
    if file_units and declared:
        if units.equivalent(file_units, declared):
            return declared
        report.problems.append(
            f"variable {name!r} has units {file_units!r} in the file but "
            f"data.variables.{name}.units declares {declared!r}; remove one"
        )
        return None
    if file_units or declared:
        return file_units or declared
    hint = ""
    if "units" in ds.attrs:
        hint = (
            f"; the global attributes say units={ds.attrs['units']!r}, which geoclim uses "
            "only when declared"
        )
    report.problems.append(
        f"variable {name!r} has no units: declare them with data.variables.{name}.units=... "
        f"(or leave it out with data.source.drop=[{origin}]){hint}"
    )
    return None
