"""Cross-validation fold layouts: blocked time folds and leave-region-out spatial blocks.

Chosen with the Hydra group ``cv`` (``conf/cv/``); each fold is one job of a multirun::

    geoclim-train -m cv=blocked_time cv.fold=0,1,2,3
    geoclim-train -m cv=spatial_blocks cv.fold=0,1,2,3

**blocked_time** (``k`` folds): the time axis is cut at ``e_j = round(j n / (k + 1))``,
``j = 0 .. k + 1``. Fold ``f`` tests on the block ``[e_{f+1}, e_{f+2})`` and trains and
validates on everything before it, as any forecast must (train < val < test, the contract
of :func:`geoclim.data.task.make_splits`)::

    train = [0, L - v - gap)    val = [L - v, L)    test = [L + gap, e_{f+2})

with ``L = e_{f+1} - gap``, ``v = round(val_fraction * L)`` and ``gap = input_steps +
horizon``, so no window straddles two parts. The ``k`` test blocks are disjoint: no sample
is tested in two folds (a rolling-origin, expanding-window evaluation).

**spatial_blocks** (``k`` folds): locations are cut into ``k`` contiguous blocks, equal
counts of cells or stations in order of longitude (grids with fewer longitudes than ``k``:
of latitude). Fold ``f`` leaves block ``f`` out: its locations are only tested, the other
blocks only trained and validated on, over the usual time splits. It needs point sampling
(``window.patch: 1``), where each sample is one location.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from geoclim.data.task import TimeSplits
from geoclim.data.windows import SampleIndex
from geoclim.errors import ConfigError, DataError
from geoclim.types import LATITUDE, LONGITUDE, STATION

KINDS = ("none", "blocked_time", "spatial_blocks")


@dataclass(frozen=True)
class CVConfig:
    """One fold of a cross-validation (the ``cv`` config group)."""

    name: str
    k: int
    fold: int
    val_fraction: float = 0.2


def parse_cv(config: Mapping[str, Any] | None) -> CVConfig | None:
    """The fold of a ``cv`` config, or ``None`` for ``name: none``.

    Raises:
        ConfigError: an unknown kind or key, ``k < 2``, or a fold outside ``0 .. k - 1``.

    """
    cfg = dict(config or {})
    name = str(cfg.pop("name", "none"))
    if name not in KINDS:
        raise ConfigError(f"cv.name {name!r} is unknown; valid are {list(KINDS)}")
    if name == "none":
        return None
    unknown = sorted(set(cfg) - {"k", "fold", "val_fraction"})
    if unknown:
        raise ConfigError(f"unknown cv key(s) {unknown}; valid are ['fold', 'k', 'val_fraction']")
    k, fold = int(cfg.get("k", 5)), int(cfg.get("fold", 0))
    if k < 2 or not 0 <= fold < k:
        raise ConfigError(f"cv: need k >= 2 and 0 <= fold < k; got k={k}, fold={fold}")
    val_fraction = float(cfg.get("val_fraction", 0.2))
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"cv.val_fraction {val_fraction} must lie in (0, 1)")
    return CVConfig(name, k, fold, val_fraction)


def blocked_time_splits(n_time: int, cv: CVConfig, gap: int) -> TimeSplits:
    """The train / val / test ranges of fold ``cv.fold`` (module docstring).

    Raises:
        DataError: a part shorter than one window (``gap`` steps), naming fold and part.

    """
    edges = np.rint(np.arange(cv.k + 2) * n_time / (cv.k + 1)).astype(int)
    length = int(edges[cv.fold + 1]) - gap
    v = int(round(cv.val_fraction * length))
    ranges = {
        "train": (0, length - v - gap),
        "val": (length - v, length),
        "test": (length + gap, int(edges[cv.fold + 2])),
    }
    for part, (start, stop) in ranges.items():
        if stop - start < gap:
            raise DataError(
                f"cv=blocked_time fold {cv.fold} of {cv.k}: {part} has {max(stop - start, 0)} "
                f"time steps, one window needs input_steps + horizon = {gap} (time axis has "
                f"{n_time} steps: use fewer folds or longer data)"
            )
    return TimeSplits(**ranges)


def spatial_blocks(ds: xr.Dataset, k: int) -> np.ndarray:
    """Block number (``0 .. k - 1``) of every location, flat in ``(y, x)`` order.

    Raises:
        DataError: fewer locations than blocks.

    """
    if STATION in ds.dims:
        key, shape = ds[LONGITUDE].values.astype(np.float64), (ds.sizes[STATION], 1)
    else:
        ny, nx = ds.sizes[LATITUDE], ds.sizes[LONGITUDE]
        lat, lon = np.meshgrid(ds[LATITUDE].values, ds[LONGITUDE].values, indexing="ij")
        key, shape = (lon if nx >= k else lat).astype(np.float64).ravel(), (ny, nx)
    n = int(np.prod(shape))
    if n < k:
        raise DataError(f"cv=spatial_blocks with k={k} needs at least {k} locations; data has {n}")
    order = np.argsort(key, kind="stable")
    blocks = np.empty(n, dtype=np.int64)
    blocks[order] = np.arange(n) * k // n  # equal counts, contiguous in the key
    return blocks


def leave_region_out(
    index: Mapping[str, SampleIndex], ds: xr.Dataset, cv: CVConfig, patch_cells: int
) -> dict[str, SampleIndex]:
    """Keep test samples in block ``cv.fold`` and train / val samples outside it.

    Raises:
        ConfigError: samples that are patches of several cells (``patch_cells > 1``).

    """
    if patch_cells != 1:
        raise ConfigError(
            "cv=spatial_blocks needs point sampling (data.window.patch: 1); this model "
            f"samples patches of {patch_cells} cells"
        )
    blocks = spatial_blocks(ds, cv.k)
    out = {}
    for split, idx in index.items():
        _, y, x = idx.decode()
        cell = y * idx.grid_shape[1] + x
        inside = blocks[cell] == cv.fold
        keep = inside if split == "test" else ~inside
        out[split] = SampleIndex(idx.flat[keep], idx.grid_shape)
    return out
