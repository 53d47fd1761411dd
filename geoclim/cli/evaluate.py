"""``geoclim-eval``: score a run directory's predictions, or a checkpoint, on a chosen split.

Examples::

    geoclim-eval run_dir=logs/train/runs/2024-05-01_12-00-00_000000
    geoclim-eval run_dir=... split=val             # writes scores_val.nc
    geoclim-eval ckpt_path=.../checkpoints/best.ckpt split=val
    geoclim-eval run_dir=... by_location=true      # per station / cell scores

The datamodule is re-created from the run's ``.hydra/config.yaml`` (same data, task, splits
and window as in training), the predictions are read from ``predictions.nc`` (or computed
from the checkpoint on ``split``), scored by :func:`geoclim.evaluation.score.score_run` and
written as ``scores.nc`` (``scores_<split>.nc`` for splits other than test, or ``out``).
Mistakes (a missing run directory, a missing file, an unknown split) are one ``error:``
line and exit status 2.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import xarray as xr
from omegaconf import DictConfig

from geoclim.cli.errors import friendly_errors
from geoclim.errors import ConfigError, DataError
from geoclim.training import rundir

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


def predict_checkpoint(ckpt_path: Path, dm: GeoDataModule, split: str) -> xr.Dataset:
    """Predictions of a network checkpoint on the samples of ``split`` (physical units)."""
    from geoclim.models.module import ForecastModule
    from geoclim.training.predict import predict_split

    return predict_split(ForecastModule.from_checkpoint(ckpt_path), dm, split)


def evaluate(cfg: DictConfig) -> Path:
    """Score what ``cfg`` points at; return the path of the scores file written."""
    from geoclim.baselines.references import reference_forecasts
    from geoclim.data.sources import write_netcdf
    from geoclim.evaluation.regions import parse_regions
    from geoclim.evaluation.score import metrics_summary, score_run

    ckpt = Path(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if ckpt is not None and not ckpt.is_file():
        raise DataError(f"ckpt_path {str(ckpt)!r}: no such checkpoint file")
    if cfg.get("run_dir"):
        run_dir = Path(cfg.run_dir)
    elif ckpt is not None:
        run_dir = rundir.find_run_dir(ckpt.parent)
    else:
        raise ConfigError(
            "nothing to evaluate: give run_dir=<run directory> or ckpt_path=<checkpoint>"
        )
    split = str(cfg.split)
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; valid splits are ['train', 'val', 'test']")
    dm = rundir.load_datamodule(run_dir)
    if ckpt is not None:
        forecast = predict_checkpoint(ckpt, dm, split)
        write_netcdf(forecast, run_dir / f"predictions_{split}.nc")
    else:
        path = run_dir / "predictions.nc"
        if not path.is_file():
            raise DataError(
                f"run_dir {str(run_dir)!r} has no predictions.nc; score a "
                "checkpoint with ckpt_path=... instead"
            )
        with xr.open_dataset(path) as ds:
            forecast = ds.load()
    scores = score_run(
        forecast,
        dm,
        split,
        references=reference_forecasts(dm, split),
        n_boot=int(cfg.n_boot),
        by_location=bool(cfg.by_location),
        regions=parse_regions(cfg.get("regions")),
        pooled=bool(cfg.get("pooled", False)),
    )
    default = "scores.nc" if split == "test" else f"scores_{split}.nc"
    if cfg.by_location:
        default = default.replace("scores", "scores_by_location")
    out = Path(cfg.out) if cfg.get("out") else run_dir / default
    write_netcdf(scores, out)
    if not cfg.by_location:
        summary = metrics_summary(scores, prefix=split)
        for key in sorted(k for k in summary if "/lead_" not in k and "_ci_" not in k):
            log.info("%-40s %.4g", key, summary[key])
    log.info("wrote %s", out)
    return out


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
@friendly_errors
def _hydra_main(cfg: DictConfig) -> None:
    evaluate(cfg)


def main() -> None:
    """Console entry point (``geoclim-eval``)."""
    _hydra_main()


if __name__ == "__main__":
    main()
