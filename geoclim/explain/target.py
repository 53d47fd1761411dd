"""The explained scalar: which variable, leads, quantile, place and aggregation.

An attribution explains one number per sample (or one per lead). :class:`ExplainTarget`
says which, explicitly::

    ExplainTarget("no2", leads=[1, 6], quantile=0.9, region={"latitude": [42, 44]},
                  aggregation="mean")

reads "the 90 % quantile of NO2 at leads 1 and 6 (one attribution each), averaged over the
output cells between 42 and 44 N". For point models (LSTM, TFT: one station or cell per
sample) the place selects which samples are explained (``stations``, ``region``); for
spatial models (CNN-spatial: a whole grid per sample) it selects the output cells that are
aggregated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from geoclim.errors import ConfigError

AGGREGATIONS = ("mean", "sum")


@dataclass(frozen=True)
class ExplainTarget:
    """The scalar(s) an attribution explains.

    Attributes:
        variable: target variable (default: the task's first target).
        leads: 1-based lead steps; ``None``: every lead.
        per_lead: one attribution per lead (``True``) or one for the aggregate over
            ``leads`` (``False``).
        quantile: a quantile level of the task (any, not only the median); ``None``: the
            point forecast (the quantile nearest the median for quantile models).
        stations: station ids to explain (station networks); ``None``: all.
        region: ``{"latitude": [lo, hi], "longitude": [lo, hi]}`` box (inclusive); cells or
            stations inside it are explained (point models) or aggregated (spatial models).
        aggregation: ``"mean"`` or ``"sum"`` over the selected output cells (and leads when
            ``per_lead`` is false).

    """

    variable: str | None = None
    leads: tuple[int, ...] | None = None
    per_lead: bool = True
    quantile: float | None = None
    stations: tuple[str, ...] | None = None
    region: Mapping[str, Sequence[float]] | None = field(default=None, hash=False)
    aggregation: str = "mean"

    def __post_init__(self) -> None:
        if self.leads is not None:
            object.__setattr__(self, "leads", tuple(int(k) for k in self.leads))
        if self.stations is not None:
            object.__setattr__(self, "stations", tuple(str(s) for s in self.stations))
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"target.aggregation {self.aggregation!r} is unknown; valid are "
                f"{list(AGGREGATIONS)}"
            )
        unknown = sorted(set(self.region or {}) - {"latitude", "longitude"})
        if unknown:
            raise ConfigError(
                f"target.region keys {unknown} are unknown; valid are ['latitude', 'longitude']"
            )

    @classmethod
    def from_config(cls, config: ExplainTarget | Mapping[str, Any] | None) -> ExplainTarget:
        """Build from a (Hydra) mapping; unknown keys name the valid ones."""
        if config is None:
            return cls()
        if isinstance(config, ExplainTarget):
            return config
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - valid)
        if unknown:
            raise ConfigError(f"unknown target key(s) {unknown}; valid are {sorted(valid)}")
        return cls(**dict(config))

    def resolve(self, task: Any) -> ResolvedTarget:
        """Check against the task; the channel, quantile and lead positions to read."""
        targets = tuple(task.targets)
        variable = self.variable or targets[0]
        if variable not in targets:
            raise ConfigError(f"target.variable {variable!r} is not a target; valid: {targets}")
        horizon = int(task.horizon)
        leads = self.leads or tuple(range(1, horizon + 1))
        bad = [k for k in leads if not 1 <= k <= horizon]
        if bad:
            raise ConfigError(f"target.leads {bad} outside 1..{horizon} (the task's horizon)")
        quantiles = tuple(task.quantiles)
        q_index = None
        if quantiles:
            level = 0.5 if self.quantile is None else float(self.quantile)
            if self.quantile is None:
                q_index = int(np.argmin(np.abs(np.asarray(quantiles) - level)))
            elif not np.isclose(quantiles, level).any():
                raise ConfigError(
                    f"target.quantile {level} is not a quantile of the model; valid: "
                    f"{list(quantiles)}"
                )
            else:
                q_index = int(np.flatnonzero(np.isclose(quantiles, level))[0])
        elif self.quantile is not None:
            raise ConfigError(
                f"target.quantile {self.quantile} given but the model forecasts points"
            )
        return ResolvedTarget(self, variable, targets.index(variable), leads, q_index)


@dataclass(frozen=True)
class ResolvedTarget:
    """An :class:`ExplainTarget` checked against a task (positions in the prediction)."""

    spec: ExplainTarget
    variable: str
    channel: int
    leads: tuple[int, ...]
    q_index: int | None

    @property
    def n_outputs(self) -> int:
        """Scalars per sample: one per lead, or one."""
        return len(self.leads) if self.spec.per_lead else 1

    def reduce(self, prediction: Tensor, cell_mask: Tensor | None = None) -> Tensor:
        """``(B, T_out, C_out[, Q], H, W)`` prediction -> ``(B, n_outputs)`` scalars.

        Args:
            prediction: the network output.
            cell_mask: ``(H, W)`` 0/1 weights of the output cells to aggregate
                (``None``: every cell).

        """
        p = prediction[:, :, self.channel]  # (B, T_out[, Q], H, W)
        if self.q_index is not None:
            p = p[:, :, self.q_index]  # (B, T_out, H, W)
        p = p[:, [k - 1 for k in self.leads]]  # (B, n_leads, H, W)
        if cell_mask is None:
            cell_mask = torch.ones(p.shape[-2:], dtype=p.dtype, device=p.device)
        total = (p * cell_mask).sum((-2, -1))  # (B, n_leads)
        if self.spec.aggregation == "mean":
            total = total / cell_mask.sum()
        if not self.spec.per_lead:
            total = total.sum(1, keepdim=True)
            if self.spec.aggregation == "mean":
                total = total / len(self.leads)
        return total

    def describe(self) -> dict[str, Any]:
        """Dataset attributes naming the explained scalar."""
        s = self.spec
        return {
            "target_variable": self.variable,
            "target_leads": list(self.leads),
            "target_per_lead": int(s.per_lead),
            "target_quantile": "point forecast" if s.quantile is None else float(s.quantile),
            "target_region": str(dict(s.region)) if s.region else "all",
            "target_stations": ", ".join(s.stations) if s.stations else "all",
            "target_aggregation": s.aggregation,
        }


def is_spatial(dm: Any) -> bool:
    """Whether the samples of ``dm`` are spatial patches (whole grids), not points."""
    return dm.spec.patch_shape(dm.arrays.grid_shape) != (1, 1)


def select_samples(
    dm: Any, split: str, spec: ExplainTarget, max_samples: int | None, seed: int
) -> np.ndarray:
    """Rows of ``dm.index[split]`` to explain: the selected places, sub-sampled (sorted)."""
    from geoclim.data import schema
    from geoclim.types import LATITUDE, LONGITUDE, STATION

    if split not in dm.index:
        raise ConfigError(f"unknown split {split!r}; valid splits are {sorted(dm.index)}")
    t, y, x = dm.index[split].decode()
    keep = np.ones(t.size, bool)
    ds = dm.ds
    if not is_spatial(dm):
        station = schema.layout_of(ds) == "station"
        if spec.stations is not None:
            if not station:
                raise ConfigError("target.stations given but the data is a grid; use region")
            known = [str(s) for s in ds[STATION].values]
            missing = sorted(set(spec.stations) - set(known))
            if missing:
                raise ConfigError(f"target.stations {missing} not in the data ({known[:5]}...)")
            keep &= np.isin(np.asarray(known)[y], spec.stations)
        if spec.region:
            lat = ds[LATITUDE].values[y]
            lon = ds[LONGITUDE].values[y if station else x]
            keep &= inside(lat, lon, spec.region)
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise ConfigError(f"no sample of split {split!r} at the selected places ({spec})")
    if max_samples is not None and rows.size > max_samples:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, size=max_samples, replace=False))
    return rows


def sample_coordinates(ds: Any, t: np.ndarray, y: np.ndarray, x: np.ndarray) -> dict:
    """Per-sample coordinates of window positions: ``init_time`` and the sample's place.

    Args:
        ds: the canonical dataset the windows are cut from.
        t: init-time positions.
        y: station positions (station data) or latitude positions (grids).
        x: longitude positions (grids; unused for stations).

    Returns:
        ``{"init_time", "station", "latitude", "longitude"}`` (no ``station`` on grids), each a
        ``(sample,)`` array.
    """
    from geoclim.data import schema
    from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME

    coords: dict[str, np.ndarray] = {"init_time": ds[TIME].values[t]}
    if schema.layout_of(ds) == "station":
        coords[STATION] = ds[STATION].values[y].astype(str)
        coords[LATITUDE] = ds[LATITUDE].values[y]
        coords[LONGITUDE] = ds[LONGITUDE].values[y]
    else:
        coords[LATITUDE] = ds[LATITUDE].values[y]
        coords[LONGITUDE] = ds[LONGITUDE].values[x]
    return coords


def inside(lat: np.ndarray, lon: np.ndarray, region: Mapping[str, Sequence[float]]) -> np.ndarray:
    """True where ``(lat, lon)`` lies in the inclusive ``region`` box."""
    ok = np.ones(np.broadcast(lat, lon).shape, bool)
    for values, key in ((lat, "latitude"), (lon, "longitude")):
        if key in region:
            lo, hi = (float(v) for v in region[key])
            ok &= (values >= lo) & (values <= hi)
    return ok
