"""What a run leaves in its directory, written atomically (temp file + rename).

::

    <run dir>/
      .hydra/            composed config, overrides (Hydra)
      checkpoints/       best.ckpt, last.ckpt (networks)
      csv/metrics.csv    per-epoch log (CSV logger)
      metrics.json       flat {name: value}: val/test metrics and the scores summary
      predictions.nc     test-split predictions Dataset (physical units)
      scores.nc          scores Dataset (geoclim.evaluation.score)
      task.json          the ForecastTask
      normalizer.json    the fitted Normalizer
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from geoclim.data.datamodule import GeoDataModule
from geoclim.data.sources import write_netcdf
from geoclim.fileio import write_text

log = logging.getLogger(__name__)


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Scalars (tensors, numpy numbers) as plain floats, sorted by name."""
    out = {}
    for name, value in metrics.items():
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            continue
    return dict(sorted(out.items()))


def write_metrics(run_dir: Path, metrics: Mapping[str, float]) -> Path:
    """``metrics.json``: flat ``{name: value}``; non-finite values are written as ``null``."""
    clean = {k: (v if math.isfinite(v) else None) for k, v in to_floats(metrics).items()}
    return write_text(run_dir / "metrics.json", json.dumps(clean, indent=2) + "\n")


def write_data_files(run_dir: Path, dm: GeoDataModule) -> None:
    """``task.json`` and ``normalizer.json``."""
    write_text(run_dir / "task.json", json.dumps(dm.task.to_dict(), indent=2) + "\n")
    if dm.normalizer is not None:
        write_text(run_dir / "normalizer.json", dm.normalizer.to_json() + "\n")


def write_predictions(run_dir: Path, predictions: xr.Dataset) -> Path:
    """``predictions.nc`` (CF netCDF, atomic)."""
    return write_netcdf(predictions, run_dir / "predictions.nc")


def score(
    run_dir: Path,
    predictions: xr.Dataset,
    dm: GeoDataModule,
    split: str = "test",
    regions: dict | None = None,
) -> dict[str, float]:
    """Score ``predictions`` with :mod:`geoclim.evaluation.score`; write ``scores.nc``.

    ``regions`` (the config's ``regions`` mapping) adds per-region scores.

    Returns:
        The flat summary (``test/rmse/no2``, ``test/skill_persistence/no2``, ...).

    """
    from geoclim.baselines.references import reference_forecasts
    from geoclim.evaluation.regions import parse_regions
    from geoclim.evaluation.score import metrics_summary, score_run

    refs = reference_forecasts(dm, split)
    scores = score_run(predictions, dm, split, references=refs, regions=parse_regions(regions))
    scores.attrs["data_fingerprint"] = dm.fingerprint  # the leaderboard groups runs by it
    write_netcdf(scores, run_dir / "scores.nc")
    return to_floats(metrics_summary(scores, prefix=split))
