"""Lag features for tree models, cut from the same sample index as the networks.

One table row is one ``(sample cell, lead)`` pair: a sample at init position ``t`` (the last
input step) with patch origin ``(y, x)`` gives a row for every cell of its patch and every
lead ``k = 1..L``. Columns, in order:

* ``<var>_lag<l>``: each past variable (targets first, then past inputs) at ``t - l``, for
  the configured lags ``l < input_steps`` (lag 0 is the init time);
* ``<var>_mean<w>``: the NaN-mean of each past variable over the last ``w`` input steps
  ``t - w + 1 .. t`` (``w <= input_steps``);
* ``<var>_valid``: each known-future dataset variable of the task (e.g. forecast
  meteorology) at the valid time ``t + k``;
* calendar encodings (:mod:`geoclim.data.calendar`) at the valid time ``t + k``, known from
  the clock alone (``calendar: auto``, the default, picks those that suit the data's step:
  hour / day of week / day of year for hourly data, month of year for monthly data);
* the task's static fields and, optionally, the cell's ``latitude`` / ``longitude``;

Categorical (CF flag) inputs enter as their one-hot channels, one 0/1 column per category
named ``<var>=<meaning>`` (``wd=N_lag0``, ``land_cover=urban``): trees split on them
directly, and the rolling means become the share of each category in the window.
* ``lead`` (in steps), when one model serves every lead.

Source of values: the normalised arrays ``dm.arrays`` the networks are fed (same channels,
same imputation, NaN where missing). Trees are invariant to the monotone per-variable
normalisation, so this costs nothing in accuracy and guarantees that trees and networks see
the same inputs. Everything a row reads lies in the input window or is known ahead, as for
the networks. NaN stays NaN: the three libraries route missing values themselves.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geoclim.data import calendar, schema
from geoclim.data.timeaxis import TimeStep
from geoclim.errors import ConfigError
from geoclim.types import LATITUDE, LONGITUDE, TIME

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule

log = logging.getLogger(__name__)

DEFAULT_CALENDAR = "auto"  # calendar.default_features of the data's step


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns the table has (see the module docstring).

    Attributes:
        lags: past steps before the init time; lags ``>= input_steps`` are dropped.
        rolling: window lengths of the rolling means; longer than ``input_steps`` dropped.
        calendar: calendar encodings at the valid time (names from ``calendar.FEATURES``),
            or ``"auto"`` for :func:`geoclim.data.calendar.default_features` of the step.
        static: include the task's static fields.
        coordinates: include the cell's latitude and longitude.

    """

    lags: tuple[int, ...] = (0, 1, 2, 3, 5, 11, 23)
    rolling: tuple[int, ...] = (6, 24)
    calendar: tuple[str, ...] | str = DEFAULT_CALENDAR
    static: bool = True
    coordinates: bool = True

    def __post_init__(self) -> None:
        for name in ("lags", "rolling", "calendar"):
            value = getattr(self, name)
            if not (name == "calendar" and value == "auto"):
                object.__setattr__(self, name, tuple(value or ()))
        if any(int(lag) < 0 for lag in self.lags):
            raise ConfigError(f"features.lags {list(self.lags)} must be >= 0")
        if any(int(w) < 1 for w in self.rolling):
            raise ConfigError(f"features.rolling {list(self.rolling)} must be >= 1")
        unknown = [c for c in self.calendar_names() if c not in calendar.FEATURES]
        if unknown:
            raise ConfigError(
                f"unknown calendar feature(s) {unknown}; valid are {list(calendar.FEATURES)}"
            )

    def calendar_names(self, step: TimeStep | None = None) -> tuple[str, ...]:
        """The calendar columns: as configured, or the defaults of ``step`` for ``auto``."""
        if self.calendar != "auto":
            return tuple(self.calendar)
        return calendar.default_features(step) if step is not None else ()

    @classmethod
    def from_config(cls, config: FeatureSpec | Mapping[str, Any] | None) -> FeatureSpec:
        """Build from a (Hydra) mapping; unknown keys name the valid ones."""
        if config is None:
            return cls()
        if isinstance(config, FeatureSpec):
            return config
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - valid)
        if unknown:
            raise ConfigError(f"unknown features key(s) {unknown}; valid are {sorted(valid)}")
        return cls(
            **{
                k: (tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v)
                for k, v in config.items()
            }
        )


class LagFeatures:
    """Builds feature rows for ``(init, cell, lead)`` triples of one datamodule.

    Args:
        dm: a set-up datamodule (its normalised arrays are read, never copied).
        spec: the feature spec.
        with_lead: add the ``lead`` column (one model for every lead).

    """

    def __init__(self, dm: GeoDataModule, spec: FeatureSpec, *, with_lead: bool):
        dm.setup()
        assert dm.arrays is not None and dm.ds is not None
        task, arrays = dm.task, dm.arrays
        self.arrays = arrays
        n_in = task.input_steps
        self.lags = tuple(sorted({int(lag) for lag in spec.lags if int(lag) < n_in}))
        self.windows = tuple(sorted({int(w) for w in spec.rolling if 1 < int(w) <= n_in}))
        dropped = sorted(set(map(int, spec.lags)) - set(self.lags))
        if dropped:
            log.info("lags %s reach past the input window (%d steps); dropped", dropped, n_in)
        past = task.past_channels
        dynamic = task.dynamic_channels
        self.future_channels = tuple(
            dynamic.index(c) for v in task.future_variables for c in task.channel_names(v)
        )
        names = spec.calendar_names(dm.step)
        self.calendar_names = names
        self.calendar = calendar.calendar_features(dm.ds[TIME].values, names, step=dm.step)
        self.static = arrays.static if spec.static else arrays.static[..., :0]
        self.coords = _cell_coordinates(dm) if spec.coordinates else None
        self.with_lead = with_lead
        self.names: list[str] = (
            [f"{v}_lag{lag}" for lag in self.lags for v in past]
            + [f"{v}_mean{w}" for w in self.windows for v in past]
            + [f"{c}_valid" for v in task.future_variables for c in task.channel_names(v)]
            + list(names)
            + (list(task.static_channels) if spec.static else [])
            + ([LATITUDE, LONGITUDE] if spec.coordinates else [])
            + (["lead"] if with_lead else [])
        )
        if not self.names:
            raise ConfigError("the feature spec selects no column; add lags or calendar")

    def build(self, t: np.ndarray, y: np.ndarray, x: np.ndarray, lead: np.ndarray) -> np.ndarray:
        """The ``(R, F)`` float32 table for rows ``(t, y, x, lead)``, each ``(R,)``.

        ``(y, x)`` are cells (not patch origins); ``lead`` counts steps from 1.
        """
        dyn, n_past = self.arrays.dynamic, self.arrays.n_past
        cols: list[np.ndarray] = []
        if self.lags:
            lag_t = t[:, None] - np.asarray(self.lags)  # (R, n_lags)
            cols.append(dyn[lag_t, y[:, None], x[:, None], :n_past].reshape(t.size, -1))
        if self.windows:
            span = np.arange(1 - max(self.windows), 1)  # oldest .. init
            window = dyn[t[:, None] + span, y[:, None], x[:, None], :n_past]  # (R, W, C)
            with warnings.catch_warnings():  # an all-missing window is a NaN feature
                warnings.simplefilter("ignore", RuntimeWarning)
                cols += [np.nanmean(window[:, -w:], axis=1) for w in self.windows]
        valid_t = t + lead
        if self.future_channels:
            cols.append(dyn[valid_t, y, x][:, list(self.future_channels)])
        cols.append(self.calendar[valid_t])
        cols.append(self.static[y, x])
        if self.coords is not None:
            cols.append(self.coords[y, x])
        if self.with_lead:
            cols.append(lead[:, None].astype(np.float32))
        return np.concatenate(cols, axis=1, dtype=np.float32)


def _cell_coordinates(dm: GeoDataModule) -> np.ndarray:
    """``(H, W, 2)`` latitude/longitude of each cell (stations: ``(S, 1, 2)``)."""
    ds = dm.ds
    assert ds is not None
    if schema.layout_of(ds) == "station":
        lat, lon = ds[LATITUDE].values, ds[LONGITUDE].values
        return np.stack([lat, lon], -1)[:, None, :].astype(np.float32)
    lat, lon = np.meshgrid(ds[LATITUDE].values, ds[LONGITUDE].values, indexing="ij")
    return np.stack([lat, lon], -1).astype(np.float32)
