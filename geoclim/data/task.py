"""What to forecast from what (:class:`ForecastTask`) and the time splits.

Splits are contiguous blocks of the time axis, ``train < val < test``, separated by a gap of
``input_steps + horizon`` steps so that no window straddles two blocks and nothing fitted on
train (normaliser, imputer, climatology, trees) ever sees a val or test value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import calendar, categorical, timeaxis, variables
from geoclim.errors import ConfigError, DataError
from geoclim.types import TIME

SPLIT_NAMES = ("train", "val", "test")


def _tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class ForecastTask:
    """The forecasting problem, stored with every checkpoint and export.

    Attributes:
        targets: variables to forecast; they are also the first past inputs.
        past_inputs: extra variables observed only up to the init time.
        future_inputs: inputs known over the horizon: calendar encodings (see
            :data:`geoclim.data.calendar.FEATURES`) or dataset variables taken as a perfect
            forecast (e.g. forecast meteorology).
        static_inputs: variables without a time dim (elevation, land_sea_mask, ...).
        input_steps: lookback length in time steps (including the init time).
        horizon: number of lead steps; lead ``k`` (1-based) is ``k`` steps after init.
        quantiles: optional quantile levels in (0, 1) for probabilistic forecasts.
        categories: ``{variable: {meaning: flag value}}`` of the categorical (CF flag)
            inputs, one-hot channels ``<variable>=<meaning>``; filled from the data's
            ``flag_values`` / ``flag_meanings`` when the datamodule is set up.

    """

    targets: tuple[str, ...]
    past_inputs: tuple[str, ...] = ()
    future_inputs: tuple[str, ...] = ()
    static_inputs: tuple[str, ...] = ()
    input_steps: int = 24
    horizon: int = 24
    quantiles: tuple[float, ...] = field(default=())
    categories: dict[str, dict[str, int]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("targets", "past_inputs", "future_inputs", "static_inputs", "quantiles"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        self._check_categories()
        if not self.targets:
            raise ConfigError("task.targets is empty; name at least one variable to forecast")
        for key in ("targets", "past_inputs", "future_inputs", "static_inputs"):
            bad = [n for n in getattr(self, key) if not isinstance(n, str) or not n]
            if bad:
                raise ConfigError(f"task.{key}: {bad} are not variable names")
        if self.input_steps < 1 or self.horizon < 1:
            raise ConfigError(
                f"task.input_steps ({self.input_steps}) and task.horizon ({self.horizon}) "
                "must be >= 1"
            )
        if any(not 0.0 < q < 1.0 for q in self.quantiles) or list(self.quantiles) != sorted(
            set(self.quantiles)
        ):
            raise ConfigError(
                f"task.quantiles {list(self.quantiles)} must be increasing and within (0, 1)"
            )

    def _check_categories(self) -> None:
        cats = {
            str(name): {str(m): int(v) for m, v in dict(meanings).items()}
            for name, meanings in dict(self.categories or {}).items()
        }
        object.__setattr__(self, "categories", cats)
        inputs = set(self.past_inputs) | set(self.future_inputs) | set(self.static_inputs)
        for name, meanings in cats.items():
            if name in self.targets:
                raise ConfigError(
                    f"task.targets: {name!r} is categorical (CF flag_values / flag_meanings); "
                    "targets must be continuous, use it as a past, future or static input"
                )
            if name not in inputs or not meanings:
                raise ConfigError(
                    f"task.categories: {name!r} must be an input with at least one category"
                )

    def channel_names(self, name: str) -> list[str]:
        """Batch channel names of one input: ``[name]``, or ``<name>=<meaning>`` one-hot."""
        if name in self.categories:
            return categorical.channel_names(name, self.categories[name])
        return [name]

    @property
    def past_channels(self) -> tuple[str, ...]:
        """Names of the ``Batch.past`` channels (categorical inputs one-hot)."""
        return tuple(c for v in self.past_variables for c in self.channel_names(v))

    @property
    def known_channels(self) -> tuple[str, ...]:
        """Names of the ``Batch.known_future`` channels."""
        return tuple(c for v in self.future_inputs for c in self.channel_names(v))

    @property
    def dynamic_channels(self) -> tuple[str, ...]:
        """Channels of :attr:`dynamic_variables`, in order (past channels first)."""
        return tuple(c for v in self.dynamic_variables for c in self.channel_names(v))

    @property
    def static_channels(self) -> tuple[str, ...]:
        """Names of the ``Batch.static`` channels."""
        return tuple(c for v in self.static_inputs for c in self.channel_names(v))

    @cached_property  # fields are frozen tuples: computed once per task
    def past_variables(self) -> tuple[str, ...]:
        """Channels of ``Batch.past``: targets first, then the other past inputs."""
        return self.targets + tuple(v for v in self.past_inputs if v not in self.targets)

    @cached_property  # fields are frozen tuples: computed once per task
    def future_variables(self) -> tuple[str, ...]:
        """Dataset variables among the known-future inputs (calendar features excluded)."""
        return tuple(v for v in self.future_inputs if v not in calendar.FEATURES)

    @cached_property  # fields are frozen tuples: computed once per task
    def dynamic_variables(self) -> tuple[str, ...]:
        """Every time-varying dataset variable the task reads, past channels first."""
        past = self.past_variables
        return past + tuple(v for v in self.future_variables if v not in past)

    @property
    def dims(self) -> dict[str, int]:
        """Channel counts of the batch fields (one-hot widths from :attr:`categories`)."""
        return {
            "c_past": len(self.past_channels),
            "c_known": len(self.known_channels),
            "c_static": len(self.static_channels),
            "c_out": len(self.targets),
            "n_quantiles": len(self.quantiles),
            "input_steps": self.input_steps,
            "horizon": self.horizon,
        }

    def check_variables(self, ds: xr.Dataset) -> None:
        """Check the task's names against ``ds`` (any variable may be a target or an input).

        Targets, past and future inputs need a ``time`` dim; static inputs are the variables
        without one. Future inputs may also be calendar features.

        Raises:
            ConfigError: naming the task field and the dataset's variables.

        """
        dynamic = sorted(str(n) for n, v in ds.data_vars.items() if TIME in v.dims)
        static = sorted(
            str(n)
            for n, v in ds.data_vars.items()
            if TIME not in v.dims and not variables.is_mask(str(n))
        )
        has = f"the dataset has time-varying {dynamic} and static {static}"
        for key in ("targets", "past_inputs", "future_inputs", "static_inputs"):
            for name in getattr(self, key):
                if key == "future_inputs" and name in calendar.FEATURES:
                    continue
                if name not in ds.data_vars:
                    extra = (
                        f" and calendar features {list(calendar.FEATURES)}"
                        if key == "future_inputs"
                        else ""
                    )
                    raise ConfigError(f"task.{key}: no variable {name!r}; {has}{extra}")
                is_static = TIME not in ds[name].dims
                if key == "static_inputs" and not is_static:
                    raise ConfigError(
                        f"task.static_inputs: {name!r} has a time dim; static inputs are "
                        f"variables without one ({static}); use past_inputs or future_inputs"
                    )
                if key != "static_inputs" and is_static:
                    raise ConfigError(
                        f"task.{key}: {name!r} has no time dim; put it in task.static_inputs"
                    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (lists instead of tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForecastTask:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming the valid ones."""
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ConfigError(f"unknown task field(s) {unknown}; valid fields are {sorted(valid)}")
        return cls(**data)


@dataclass(frozen=True)
class TimeSplits:
    """Integer ``[start, stop)`` ranges of the time axis for each split."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]

    def __getitem__(self, name: str) -> tuple[int, int]:
        if name not in SPLIT_NAMES:
            raise ConfigError(f"unknown split {name!r}; valid splits are {list(SPLIT_NAMES)}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, list[int]]:
        """JSON-serialisable form."""
        return {name: list(self[name]) for name in SPLIT_NAMES}


def make_splits(
    times: np.ndarray | pd.DatetimeIndex | xr.CFTimeIndex,
    task: ForecastTask,
    *,
    fractions: tuple[float, float, float] | None = (0.7, 0.15, 0.15),
    boundaries: dict[str, tuple[str, str]] | None = None,
) -> TimeSplits:
    """Cut the time axis into contiguous train < val < test blocks separated by a gap.

    Args:
        times: the dataset's (regular, increasing) time coordinate.
        task: gives the gap, ``input_steps + horizon``.
        fractions: share of the time axis for train, val and test (before gaps are removed
            from the start of val and test). Ignored when ``boundaries`` is given.
        boundaries: explicit inclusive date ranges per split, e.g.
            ``{"train": ("2023-01-01", "2023-08-31"), ...}``; must not overlap. Dates are
            read in the data's calendar (``"2000-02-30"`` exists on a 360_day axis).

    Returns:
        The integer ranges. Each block is long enough for at least one window.

    """
    times = timeaxis.to_index(times)  # DatetimeIndex, or CFTimeIndex for model calendars
    n, gap = len(times), task.input_steps + task.horizon
    if boundaries is not None:
        missing = [s for s in SPLIT_NAMES if s not in boundaries]
        if missing:
            raise ConfigError(f"splits.boundaries lacks {missing}; expected {list(SPLIT_NAMES)}")
        ranges = {}
        for name in SPLIT_NAMES:
            lo, hi = (timeaxis.parse_stamp(b, times) for b in boundaries[name])
            start = int(np.searchsorted(times.values, lo, side="left"))
            stop = int(np.searchsorted(times.values, hi, side="right"))
            ranges[name] = (start, stop)
        for before, after in zip(SPLIT_NAMES, SPLIT_NAMES[1:], strict=False):
            early = ranges[before][1] + gap - ranges[after][0]
            if early > 0:
                raise ConfigError(
                    f"splits: {after} starts {early} step(s) too early; it must start at "
                    f"least input_steps + horizon = {gap} steps after {before} ends"
                )
    else:
        if fractions is None or len(fractions) != 3 or any(f <= 0 for f in fractions):
            raise ConfigError(f"splits.fractions {fractions} must be three positive numbers")
        total = float(sum(fractions))
        cut1 = int(round(n * fractions[0] / total))
        cut2 = int(round(n * (fractions[0] + fractions[1]) / total))
        ranges = {"train": (0, cut1), "val": (cut1 + gap, cut2), "test": (cut2 + gap, n)}
    for name, (start, stop) in ranges.items():
        if stop - start < gap:
            raise DataError(
                f"split {name!r} has {max(stop - start, 0)} time steps; one window needs "
                f"input_steps + horizon = {gap} (time axis has {n} steps: use longer data, "
                "other fractions or a shorter window)"
            )
    return TimeSplits(**ranges)


def window_positions(split: tuple[int, int], task: ForecastTask) -> np.ndarray:
    """Init-time positions whose whole window (inputs and leads) lies inside ``split``."""
    start, stop = split
    return np.arange(start + task.input_steps - 1, stop - task.horizon, dtype=np.int64)
