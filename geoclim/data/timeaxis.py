"""The time axis: its step (fixed or calendar), lead coordinates and resampling.

A canonical time axis is strictly increasing with one regular step, which is either

* a **fixed** duration (10 min, 1 h, 3 h, 1 day, ...): every pair of consecutive stamps is
  exactly that far apart (``datetime64`` or a cftime calendar alike), or
* a **calendar** step of ``n`` months or ``n`` years: consecutive stamps advance by exactly
  ``n`` calendar units while their position inside the month (year) stays within
  :data:`PHASE_TOLERANCE_DAYS`. Month-start (``01-01, 02-01``), mid-month
  (``01-16 12:00, 02-15 00:00``, the CF convention for monthly means) and month-end
  (``01-31, 02-28``) stamps are all monthly; the same holds for years.

A step of 28 days or more is tested as a calendar step first: monthly data on a 360_day
calendar (a constant 30 days) is monthly, not "every 30 days".

**Lead times.** For a fixed step, lead ``k`` is the duration ``k * step`` (``timedelta64``),
so ``valid_time = init_time + lead_time`` holds exactly. A calendar step has no fixed duration
(months are 28-31 days), so its lead time is the integer number of calendar units, ``k * n``,
with ``units`` ``"months"`` or ``"years"`` on the coordinate; ``valid_time`` is then the
dataset's own stamp ``k`` steps after the init (mid-month stays mid-month, cftime stays
cftime). :func:`lead_steps` and :func:`lead_labels` read both forms.

An axis that fits neither is irregular: :func:`infer_step` refuses it and offers
``data.source.resample=<rule>``, which :func:`resample` applies (bin means onto a regular
axis, empty bins NaN).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.errors import ConfigError, DataError, SchemaError

PHASE_TOLERANCE_DAYS = 3.0
"""How far the stamps of a calendar step may wander inside their month or year (days).

Month-end stamps (28th to 31st at the same hour) wander 3 days, mid-month ones 1.5."""

CALENDAR_UNITS = ("month", "year")
LEAD_UNITS = {"month": "months", "year": "years"}

_DAY_NS = 86_400 * 10**9
_MONTH_ALIASES = {"month", "months", "mon", "mons"}
_YEAR_ALIASES = {"year", "years", "yr", "yrs"}
_OFFSET_UNITS = {  # pandas / xarray offset aliases (case-sensitive) -> (unit, multiplier)
    "M": ("month", 1),
    "MS": ("month", 1),
    "ME": ("month", 1),
    "QS": ("month", 3),
    "QE": ("month", 3),
    "Y": ("year", 1),
    "YS": ("year", 1),
    "YE": ("year", 1),
    "A": ("year", 1),
    "AS": ("year", 1),
}
_FIXED_LABELS = (("D", _DAY_NS), ("h", 3600 * 10**9), ("min", 60 * 10**9), ("s", 10**9))


@dataclass(frozen=True)
class TimeStep:
    """The regular step of a time axis.

    Attributes:
        count: number of units per step (``>= 1``).
        unit: ``"ns"`` for a fixed duration of ``count`` nanoseconds, ``"month"`` or
            ``"year"`` for a calendar step of ``count`` months or years.

    """

    count: int
    unit: Literal["ns", "month", "year"]

    def __post_init__(self) -> None:
        if self.unit not in ("ns", *CALENDAR_UNITS):
            raise ConfigError(f"time step unit {self.unit!r}; expected 'ns', 'month' or 'year'")
        if int(self.count) < 1:
            raise ConfigError(f"time step must be positive, got {self.count} {self.unit}")
        object.__setattr__(self, "count", int(self.count))

    @classmethod
    def fixed(cls, duration: Any) -> TimeStep:
        """A fixed step from anything ``pd.Timedelta`` reads (``"1h"``, a timedelta64, ...)."""
        return cls(int(pd.Timedelta(duration).as_unit("ns").value), "ns")

    @property
    def is_calendar(self) -> bool:
        """Whether the step is a number of calendar months or years."""
        return self.unit != "ns"

    @property
    def timedelta(self) -> np.timedelta64:
        """The fixed step as ``timedelta64[ns]``; a calendar step has none (DataError)."""
        if self.is_calendar:
            raise DataError(
                f"the time step is {self}, a calendar step with no fixed duration; "
                "count it in steps instead"
            )
        return np.timedelta64(self.count, "ns")

    @property
    def months(self) -> int:
        """A calendar step in months (``12 * count`` for years)."""
        if not self.is_calendar:
            raise DataError(f"the time step {self} is fixed, not a number of calendar months")
        return self.count * (12 if self.unit == "year" else 1)

    @property
    def nominal(self) -> pd.Timedelta:
        """An approximate duration (a mean Gregorian month or year) for coarse decisions."""
        if self.unit == "ns":
            return pd.Timedelta(self.count, "ns")
        return pd.Timedelta(days=365.2425 / 12) * self.months

    @property
    def is_sub_daily(self) -> bool:
        """Whether one day holds several steps (hour-of-day is meaningful)."""
        return not self.is_calendar and self.count < _DAY_NS

    @property
    def lead_units(self) -> str | None:
        """``units`` of a calendar lead coordinate (``"months"``, ``"years"``), else None."""
        return LEAD_UNITS.get(self.unit)

    @property
    def rule(self) -> str:
        """A resampling frequency giving this step (``"1h"``, ``"1D"``, ``"1MS"``, ``"1YS"``)."""
        if self.is_calendar:
            return f"{self.count}{'MS' if self.unit == 'month' else 'YS'}"
        return str(self)

    def __str__(self) -> str:
        if self.is_calendar:
            return f"{self.count} {self.unit}{'s' if self.count > 1 else ''}"
        for suffix, size in _FIXED_LABELS:
            if self.count % size == 0:
                return f"{self.count // size}{suffix}"
        return f"{self.count}ns"

    def steps_in(self, period: TimeStep) -> int:
        """How many steps make ``period``; a ConfigError unless it is a whole number."""
        if period.is_calendar != self.is_calendar:
            ratio = None
        elif self.is_calendar:
            ratio = period.months / self.months
        else:
            ratio = period.count / self.count
        if ratio is None or ratio != int(ratio) or ratio < 1:
            raise ConfigError(
                f"period {period} is not a whole number of time steps ({self}); "
                f"use a multiple of {self}"
            )
        return int(ratio)


def parse_step(text: Any) -> TimeStep:
    """Read ``"1h"``, ``"30min"``, ``"1D"``, ``"1 month"``, ``"3MS"``, ``"1 year"``, ``"YS"``.

    Raises:
        ConfigError: naming the text and the accepted spellings.

    """
    if isinstance(text, TimeStep):
        return text
    match = re.fullmatch(r"\s*(\d*)\s*([A-Za-z]+)\s*", str(text))
    if match:
        count = int(match.group(1) or 1)
        word = match.group(2)
        if word.lower() in _MONTH_ALIASES:
            return TimeStep(count, "month")
        if word.lower() in _YEAR_ALIASES:
            return TimeStep(count, "year")
        if word in _OFFSET_UNITS:
            unit, mult = _OFFSET_UNITS[word]
            return TimeStep(count * mult, unit)  # type: ignore[arg-type]
    try:
        return TimeStep.fixed(text)
    except (ValueError, TypeError):
        raise ConfigError(
            f"time step {text!r} is not understood; use a duration ('1h', '30min', '1D') "
            "or a calendar step ('1 month', '3 months', '1 year', 'MS', 'YS')"
        ) from None


def to_index(times: Any) -> pd.DatetimeIndex | xr.CFTimeIndex:
    """Time stamps as a ``pd.DatetimeIndex`` (datetime64) or ``xr.CFTimeIndex`` (cftime)."""
    if isinstance(times, pd.DatetimeIndex | xr.CFTimeIndex):
        return times
    values = np.asarray(getattr(times, "values", times))
    if values.dtype == object:
        try:
            return xr.CFTimeIndex(values)
        except (TypeError, ValueError):
            raise SchemaError(
                f"time stamps of type {type(values.flat[0]).__name__} are neither datetime64 "
                "nor cftime dates"
            ) from None
    return pd.DatetimeIndex(values)


def is_cftime(times: Any) -> bool:
    """Whether the stamps are cftime dates (a climate-model calendar)."""
    return isinstance(to_index(times), xr.CFTimeIndex)


def calendar_name(times: Any) -> str:
    """The CF calendar of the stamps (``"standard"`` for datetime64)."""
    index = to_index(times)
    return index.calendar if isinstance(index, xr.CFTimeIndex) else "standard"


def days_in_year(times: Any) -> float:
    """Length of a year in the stamps' calendar, for cyclic day-of-year encodings."""
    return {"noleap": 365.0, "365_day": 365.0, "360_day": 360.0, "all_leap": 366.0}.get(
        calendar_name(times), 365.25
    )


def _differences_ns(index: pd.DatetimeIndex | xr.CFTimeIndex) -> np.ndarray:
    """``(T - 1,)`` int64 nanoseconds between consecutive stamps."""
    diffs = pd.to_timedelta(np.diff(np.asarray(index.values)))
    return np.asarray(diffs.as_unit("ns").asi8, dtype=np.int64)


def _calendar_step(index: pd.DatetimeIndex | xr.CFTimeIndex, unit: str) -> TimeStep | None:
    """The calendar step of ``unit`` if every stamp advances by it, else None."""
    day_fraction = (
        np.asarray(index.hour) / 24 + np.asarray(index.minute) / 1440 + index.second / 86400
    )
    if unit == "month":
        position = np.asarray(index.year) * 12 + np.asarray(index.month)
        phase = np.asarray(index.day) - 1 + day_fraction  # days into the month
    else:
        position = np.asarray(index.year)
        phase = np.asarray(index.dayofyear) - 1 + day_fraction  # days into the year
    advance = np.diff(position)
    if advance[0] < 1 or (advance != advance[0]).any():
        return None
    if np.ptp(phase) > PHASE_TOLERANCE_DAYS:
        return None
    return TimeStep(int(advance[0]), unit)  # type: ignore[arg-type]


def check_axis(times: Any, name: str = "time") -> TimeStep:
    """Check that ``times`` is a valid canonical time axis and return its step.

    Raises:
        SchemaError: naming the coordinate and what is wrong (dtype, NaT, order, an
            irregular step, with the ``data.source.resample`` hint for the last).

    """
    values = np.asarray(getattr(times, "values", times))
    if values.dtype != object and not np.issubdtype(values.dtype, np.datetime64):
        raise SchemaError(
            f"coordinate {name!r} has dtype {values.dtype}; expected datetime64 or cftime dates"
        )
    if values.size < 2:
        raise SchemaError(f"coordinate {name!r} has {values.size} value(s); expected at least 2")
    if pd.isna(values).any():
        raise SchemaError(f"coordinate {name!r} contains NaT")
    index = to_index(values)
    diffs = _differences_ns(index)
    if (diffs <= 0).any():
        i = int(np.argmax(diffs <= 0))
        raise SchemaError(
            f"coordinate {name!r} is not strictly increasing and unique: "
            f"{index[i]} is followed by {index[i + 1]}"
        )
    return infer_step(index, name)


def infer_step(times: Any, name: str = "time") -> TimeStep:
    """The regular step of an increasing time axis (see the module docstring).

    Raises:
        SchemaError: for an irregular axis, offering ``data.source.resample=<rule>``.

    """
    index = to_index(times)
    diffs = _differences_ns(index)
    if diffs.min() >= 27 * _DAY_NS:
        for unit in ("year", "month"):
            step = _calendar_step(index, unit)
            if step is not None:
                return step
    if (diffs == diffs[0]).all():
        return TimeStep(int(diffs[0]), "ns")
    typical = int(np.median(diffs))
    i = int(np.argmax(diffs != diffs[0])) if typical < 27 * _DAY_NS else _first_off(index)
    rule = suggest_rule(typical)
    raise SchemaError(
        f"coordinate {name!r} has an irregular step: {pd.Timedelta(int(diffs[i]), 'ns')} "
        f"after {index[i]} (typical step {pd.Timedelta(typical, 'ns')}); it is neither a fixed "
        "step nor a whole number of calendar months or years. Average it onto a regular axis "
        f"with data.source.resample={rule} (any pandas frequency: '1h', '1D', 'MS', 'YS'; "
        "empty steps become NaN)"
    )


def _first_off(index: pd.DatetimeIndex | xr.CFTimeIndex) -> int:
    """First position after which the stamps stop advancing by one month at a steady phase."""
    position = np.asarray(index.year) * 12 + np.asarray(index.month)
    phase = np.asarray(index.day) - 1 + np.asarray(index.hour) / 24
    advance = np.diff(position)
    off = (advance != np.median(advance)) | (
        np.abs(phase[1:] - np.median(phase)) > PHASE_TOLERANCE_DAYS
    )
    return int(np.argmax(off))


def suggest_rule(typical_ns: int) -> str:
    """A resampling rule near a typical step in nanoseconds (for error messages)."""
    days = typical_ns / _DAY_NS
    if days >= 360:
        return "YS"
    if days >= 27:
        return "MS"
    if days >= 1:
        return f"{max(1, round(days))}D"
    hours = typical_ns / (3600 * 10**9)
    if hours >= 1:
        return f"{max(1, round(hours))}h"
    return f"{max(1, round(typical_ns / (60 * 10**9)))}min"


def resample(ds: xr.Dataset, rule: str, dim: str = "time") -> xr.Dataset:
    """Average ``ds`` onto a regular axis of ``rule`` (``"1h"``, ``"1D"``, ``"MS"``, ...).

    Float variables are bin means (NaN ignored; empty bins NaN), boolean masks are "any",
    categorical (CF flag) variables take the most frequent value of the bin. Attributes
    are kept; the rule is recorded in ``ds.attrs["geoclim_resample"]``.

    Raises:
        ConfigError: naming the rule when xarray cannot resample with it.

    """
    from geoclim.data import categorical

    if dim not in ds.dims:
        raise SchemaError(f"cannot resample: dataset has no {dim!r} dim (dims {list(ds.dims)})")
    timed = [n for n in ds.data_vars if dim in ds[n].dims]
    try:
        groups = ds[timed].resample({dim: rule})
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(
            f"data.source.resample={rule!r} is not a resampling rule ({err}); use e.g. '1h', "
            "'1D', 'MS' (month start) or 'YS'"
        ) from None
    out = {}
    means = groups.mean(keep_attrs=True)
    for name in timed:
        da = ds[name]
        if da.dtype == bool:
            out[name] = groups.max(keep_attrs=True)[name].astype(bool)
        elif categorical.is_categorical(da):
            out[name] = da.resample({dim: rule}).reduce(_mode, keep_attrs=True)
        else:
            out[name] = means[name]
    static = {n: ds[n] for n in ds.data_vars if n not in timed}
    result = xr.Dataset({**out, **static}, attrs={**ds.attrs, "geoclim_resample": str(rule)})
    return result.assign_coords({k: v for k, v in ds.coords.items() if dim not in v.dims})


def _mode(values: np.ndarray, axis: int) -> np.ndarray:
    """Most frequent finite value along ``axis`` (NaN where none)."""
    from scipy import stats

    result = stats.mode(values, axis=axis, nan_policy="omit", keepdims=False)
    return np.asarray(result.mode, dtype=np.float64)


def parse_stamp(value: Any, times: Any) -> Any:
    """A date string (or date) as a stamp comparable with ``times`` (cftime calendars too)."""
    index = to_index(times)
    if isinstance(index, xr.CFTimeIndex):
        from xarray.coding.cftime_offsets import to_cftime_datetime

        try:
            return to_cftime_datetime(str(value), calendar=index.calendar)
        except (ValueError, TypeError):
            raise ConfigError(
                f"date {value!r} is not a valid date of the {index.calendar} calendar"
            ) from None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(f"date {value!r} is not a date (use e.g. '2023-01-31')") from None


def lead_coordinate(step: TimeStep, n_leads: int) -> xr.Variable:
    """The ``lead_time`` values of leads ``1..n_leads`` (see the module docstring)."""
    k = np.arange(1, n_leads + 1)
    if step.is_calendar:
        per = step.count
        return xr.Variable(
            "lead_time",
            (k * per).astype(np.int64),
            attrs={"units": step.lead_units, "long_name": "lead time", "time_step": str(step)},
        )
    return xr.Variable(
        "lead_time",
        (k * step.timedelta).astype("timedelta64[ns]"),
        attrs={"long_name": "lead time", "time_step": str(step)},
    )


def lead_steps(lead_time: xr.DataArray | np.ndarray) -> np.ndarray:
    """Lead numbers ``k`` (in steps, 1-based) of a ``lead_time`` coordinate, either form."""
    values = np.asarray(getattr(lead_time, "values", lead_time))
    if values.size == 0:
        return np.array([], np.int64)
    if np.issubdtype(values.dtype, np.timedelta64):
        values = values.astype("timedelta64[ns]").astype(np.int64)
    return np.rint(values / values[0]).astype(np.int64)


def lead_labels(lead_time: xr.DataArray) -> list[str]:
    """Readable lead labels: ``"6h"``, ``"2D"``, ``"3 months"`` (calendar leads read units)."""
    values = np.asarray(lead_time.values)
    if np.issubdtype(values.dtype, np.timedelta64):
        return [str(TimeStep.fixed(v)) for v in values]
    units = str(lead_time.attrs.get("units", "steps"))
    singular = units[:-1] if units.endswith("s") else units
    return [f"{int(v)} {singular if int(v) == 1 else units}" for v in values]


def valid_times(times: Any, step: TimeStep, init_pos: np.ndarray, n_leads: int) -> np.ndarray:
    """``(I, L)`` valid stamps: the axis's own stamp ``k`` steps after each init position.

    Positions beyond the end of the axis are extrapolated by the step (a calendar step keeps
    the day of month, clipped to the month's length).
    """
    values = np.asarray(getattr(times, "values", times))
    pos = np.asarray(init_pos, dtype=np.int64)[:, None] + np.arange(1, n_leads + 1)  # (I, L)
    inside = pos < values.size
    out = values[np.minimum(pos, values.size - 1)]
    if inside.all():
        return out
    last = values[-1]
    beyond = pos[~inside] - (values.size - 1)
    out = out.copy()
    out[~inside] = [shift(last, step, int(k)) for k in beyond]
    return out


def shift(stamp: Any, step: TimeStep, k: int) -> Any:
    """``stamp`` moved ``k`` steps on (calendar steps by whole months / years)."""
    if not step.is_calendar:
        if isinstance(stamp, np.datetime64):
            return stamp + k * step.timedelta
        return stamp + pd.Timedelta(k * step.timedelta).to_pytimedelta()
    months = k * step.months
    if isinstance(stamp, np.datetime64):
        return (pd.Timestamp(stamp) + pd.DateOffset(months=months)).to_datetime64()
    year, month = divmod(stamp.month - 1 + months, 12)
    target = stamp.replace(year=stamp.year + year, month=month + 1, day=1)
    return stamp.replace(
        year=target.year, month=target.month, day=min(stamp.day, target.daysinmonth)
    )
