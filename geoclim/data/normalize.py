"""Per-variable normalisation fitted on the train block only.

``z = (f(x) - mean) / std`` with ``f`` the identity or, for skewed non-negative
concentrations, ``f(x) = log1p(max(x, 0))`` (small negative readings, instrument noise, are
clipped to zero before the log). Statistics are pooled over time and space of the train
block; for dask-backed data (opened with ``chunks``) they are computed chunk by chunk and
merged (Chan et al.'s pairwise update), so the data is never loaded whole. The Normalizer
round-trips through JSON and travels in checkpoints and ONNX metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import xarray as xr

from geoclim.data import variables
from geoclim.errors import DataError, SchemaError
from geoclim.types import TIME


@dataclass(frozen=True)
class VariableStats:
    """Statistics of one variable in transformed space."""

    mean: float
    std: float
    log: bool


@dataclass(frozen=True)
class ChannelEncoder:
    """:meth:`Normalizer.encode` over the channels (last axis) of one array at once.

    The same float32 operations in the same order as variable by variable, so the result is
    bit-identical (``(f(x) - mean) / std`` with ``f = log1p(max(x, 0))`` on the log ones).
    Build with :meth:`Normalizer.channels`.
    """

    mean: np.ndarray  # (C,) float32
    std: np.ndarray  # (C,) float32
    log: np.ndarray  # (K,) channel positions of the log-transformed variables

    def __post_init__(self) -> None:
        # log channels that follow each other are transformed in place through a slice
        # (the same element-wise operations, without a gathered copy written back)
        at = self.log.tolist()
        run = at == list(range(at[0], at[0] + len(at))) if at else False
        object.__setattr__(self, "_log_run", slice(at[0], at[-1] + 1) if run else None)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """``(..., C)`` physical values -> a normalised float32 copy."""
        out = np.array(values, dtype=np.float32)
        run = self._log_run  # type: ignore[attr-defined]
        if run is not None:
            part = out[..., run]  # a view
            np.maximum(part, 0.0, out=part)
            np.log1p(part, out=part)
        elif self.log.size:
            part = out[..., self.log]  # a copy: transformed, then written back
            np.maximum(part, 0.0, out=part)
            np.log1p(part, out=part)
            out[..., self.log] = part
        out -= self.mean
        out /= self.std
        return out


class Normalizer:
    """Maps physical values to a standardised space and back.

    Args:
        stats: per-variable statistics; build with :meth:`fit` or :meth:`from_json`.

    """

    def __init__(self, stats: dict[str, VariableStats]):
        self.stats = dict(stats)

    @classmethod
    def fit(
        cls,
        ds: xr.Dataset,
        names: tuple[str, ...] | list[str],
        *,
        time_range: tuple[int, int] | None = None,
        log: tuple[str, ...] | None = None,
    ) -> Normalizer:
        """Fit statistics on ``ds`` restricted to ``time_range`` (train positions).

        Args:
            ds: canonical dataset.
            names: variables to fit.
            time_range: ``[start, stop)`` positions on ``time``; static variables ignore it.
            log: variables to log-transform; default: those the registry marks skewed.

        """
        default = {n for n in names if variables.describe(n).log_transform}
        log_set = set(log) if log is not None else default
        stats = {}
        for name in names:
            if name not in ds.data_vars:
                raise SchemaError(
                    f"cannot normalise {name!r}: not in dataset {sorted(map(str, ds.data_vars))}"
                )
            da = ds[name]
            if time_range is not None and TIME in da.dims:
                da = da.isel({TIME: slice(*time_range)})
            n, mean, m2 = _moments(da, name in log_set)
            if n == 0:
                raise DataError(f"cannot normalise {name!r}: no observed value in the train block")
            std = math.sqrt(m2 / n)
            stats[name] = VariableStats(mean, std if std > 0 else 1.0, name in log_set)
        return cls(stats)

    def _get(self, name: str) -> VariableStats:
        if name not in self.stats:
            raise SchemaError(
                f"normaliser has no statistics for {name!r}; it has {list(self.stats)}"
            )
        return self.stats[name]

    def encode(self, values: np.ndarray, name: str) -> np.ndarray:
        """Physical -> normalised, for a numpy array of variable ``name``."""
        s = self._get(name)
        out = _forward(values, s.log)  # float32 copy: the only full-size temporary
        out -= np.float32(s.mean)
        out /= np.float32(s.std)
        return out

    def channels(self, names: tuple[str, ...] | list[str]) -> ChannelEncoder:
        """:meth:`encode` of several variables at once, as channels of one array."""
        stats = [self._get(n) for n in names]
        return ChannelEncoder(
            np.array([np.float32(s.mean) for s in stats], np.float32),
            np.array([np.float32(s.std) for s in stats], np.float32),
            np.array([c for c, s in enumerate(stats) if s.log], np.intp),
        )

    def decode(self, values: np.ndarray, name: str) -> np.ndarray:
        """Normalised -> physical, for a numpy array of variable ``name``."""
        s = self._get(name)
        x = np.asarray(values, dtype=np.float64) * s.std + s.mean
        return (np.expm1(x) if s.log else x).astype(np.float32)

    def transform(self, ds: xr.Dataset) -> xr.Dataset:
        """Normalise every variable of ``ds`` that has statistics; others pass through."""
        return self._map(ds, self.encode)

    def inverse(self, ds: xr.Dataset) -> xr.Dataset:
        """De-normalise every variable of ``ds`` that has statistics."""
        return self._map(ds, self.decode)

    def _map(self, ds: xr.Dataset, fn) -> xr.Dataset:
        out = ds.copy()
        for name in ds.data_vars:
            if name in self.stats:
                out[name] = xr.apply_ufunc(
                    fn,
                    ds[name],
                    kwargs={"name": name},
                    keep_attrs=True,
                    dask="parallelized",
                    output_dtypes=[np.float32],
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {k: {"mean": v.mean, "std": v.std, "log": v.log} for k, v in self.stats.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalizer:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                {
                    k: VariableStats(float(v["mean"]), float(v["std"]), bool(v["log"]))
                    for k, v in data.items()
                }
            )
        except (KeyError, TypeError, ValueError) as err:
            raise SchemaError(
                f"normaliser statistics are malformed ({err}); expected "
                "{variable: {'mean': float, 'std': float, 'log': bool}}"
            ) from None

    def to_json(self) -> str:
        """Serialise to a JSON string."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Normalizer:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Normalizer) and self.stats == other.stats

    def matches(self, other: Normalizer, rtol: float = 1e-5) -> bool:
        """Same variables and transforms, statistics equal to ``rtol`` (summation order).

        Statistics of the same data differ in the last digits when they are accumulated in
        another order (chunk sizes, float64 vs float32 partial sums); changed data moves
        them far more.
        """
        if self.stats.keys() != other.stats.keys():
            return False
        return all(
            a.log == b.log
            and np.isclose(a.mean, b.mean, rtol=rtol, atol=rtol * b.std)
            and np.isclose(a.std, b.std, rtol=rtol)
            for a, b in ((self.stats[k], other.stats[k]) for k in self.stats)
        )

    def __repr__(self) -> str:
        return f"Normalizer({', '.join(self.stats)})"


def _forward(values: np.ndarray, log: bool) -> np.ndarray:
    """``f(x)`` as a new float32 array (float32 keeps the working set at the data's size)."""
    values = np.array(values, dtype=np.float32)
    if log:
        np.maximum(values, 0.0, out=values)
        np.log1p(values, out=values)
    return values


def _moments(da: xr.DataArray, log: bool) -> tuple[int, float, float]:
    """``(n, mean, M2)`` of the finite values of ``f(da)``, chunk by chunk.

    Dask-backed data is reduced over its own chunks (never loaded whole); in-memory data over
    slices of its first axis, which keeps the float64 temporaries small.
    """
    if da.chunks is not None:
        blocks = da.data.to_delayed().ravel()
        parts = dask.compute(*(dask.delayed(_chunk_moments)(b, log) for b in blocks))
    else:
        values = da.values.reshape(da.shape[0] if da.ndim else 1, -1)
        rows = max(1, _SLICE // max(1, values.shape[1]))
        parts = [_chunk_moments(values[i : i + rows], log) for i in range(0, len(values), rows)]
    n, mean, m2 = 0, 0.0, 0.0
    for nb, mb, m2b in parts:  # merge (n, mean, M2) pairwise (Chan et al.): any chunking
        if nb == 0:
            continue
        total = n + nb
        delta = mb - mean
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    return n, mean, m2


_SLICE = 1 << 22
"""Values per in-memory slice in :func:`_moments`."""


def _chunk_moments(values: np.ndarray, log: bool) -> tuple[int, float, float]:
    """``(n, mean, M2)`` of the finite values of one array (float64 sums of float32 values)."""
    out = _forward(values, log)
    finite = out[np.isfinite(out)]
    if finite.size == 0:
        return 0, 0.0, 0.0
    mean = float(finite.mean(dtype=np.float64))
    return int(finite.size), mean, float(np.square(finite - mean, dtype=np.float64).sum())


def location_stats(
    ds: xr.Dataset,
    normalizer: Normalizer,
    names: tuple[str, ...] | list[str],
    time_range: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-location mean and standard deviation of normalised variables on the train block.

    The statistics of ``normalizer.encode(ds[name])`` over the time steps ``[start, stop)``
    of each location, for networks that standardise their targets per station or cell
    (``model.net.location_norm``) on top of the per-variable normaliser. Locations are
    flattened in storage order (``station``, or ``latitude`` x ``longitude`` row-major, as
    the batch positions count them). A location without a train value gets ``(0, 1)``
    (the per-variable scale), a constant one standard deviation 1.

    Args:
        ds: canonical dataset ``(time, <space>)``.
        normalizer: the fitted per-variable normaliser.
        names: variables (the targets), one column each.
        time_range: ``[start, stop)`` positions on ``time`` (the train block).

    Returns:
        ``(mean, std)``, each ``(n_locations, len(names))`` float32.

    Raises:
        SchemaError: naming a variable the dataset or the normaliser lacks.

    """
    means, stds = [], []
    for name in names:
        if name not in ds.data_vars or TIME not in ds[name].dims:
            raise SchemaError(
                f"cannot scale {name!r} per location: not a time-varying variable of the "
                f"dataset {sorted(map(str, ds.data_vars))}"
            )
        da = ds[name].isel({TIME: slice(*time_range)}).transpose(TIME, ...)
        z = normalizer.encode(da.values, name).reshape(da.sizes[TIME], -1)  # (T, n_loc)
        count = np.isfinite(z).sum(0)
        with np.errstate(invalid="ignore"):
            mean = np.where(count > 0, np.nanmean(np.where(count > 0, z, 0.0), 0), 0.0)
            std = np.where(count > 0, np.nanstd(np.where(count > 0, z, 0.0), 0), 1.0)
        means.append(mean)
        stds.append(np.where(std > 0, std, 1.0))
    return (
        np.stack(means, axis=-1).astype(np.float32),
        np.stack(stds, axis=-1).astype(np.float32),
    )
