"""The reference forecasts every model is scored against: persistence and climatology."""

from __future__ import annotations

from typing import TYPE_CHECKING

import xarray as xr

from geoclim.baselines.climatology import ClimatologyBaseline
from geoclim.baselines.persistence import PersistenceBaseline

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule


def reference_forecasts(dm: GeoDataModule, split: str) -> dict[str, xr.Dataset]:
    """Persistence and climatology (default settings) on the samples of ``split``.

    Pass the result to :func:`geoclim.evaluation.score.score_run` as ``references``; the
    ``climatology`` entry is also the climatology of the anomaly correlation.
    """
    return {
        "persistence": PersistenceBaseline().fit(dm).predict(dm, split),
        "climatology": ClimatologyBaseline().fit(dm).predict(dm, split),
    }
