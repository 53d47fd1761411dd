"""``geoclim-eval``: score a run directory's predictions, or a checkpoint, on a chosen split.

Examples::

    geoclim-eval run_dir=logs/train/runs/2024-05-01_12-00-00_000000
    geoclim-eval run_dir=... split=val             # predicts val, writes scores_val.nc
    geoclim-eval ckpt_path=.../checkpoints/best.ckpt split=val
    geoclim-eval run_dir=... by_location=true      # per station / cell scores

The datamodule is re-created from the run's ``.hydra/config.yaml`` (same data, task, splits
and window as in training), the predictions are read from ``predictions.nc`` (the test
split, as geoclim-train wrote it) or computed for ``split`` from the checkpoint (given, or
the run's best), the saved tree model or a refitted persistence / climatology, scored by
:func:`geoclim.evaluation.score.score_run`, printed as a score table and written as
``scores.nc`` (``scores_<split>.nc`` for splits other than test, or ``out``).
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

from geoclim.cli.config import CONFIG_PATH
from geoclim.cli.errors import friendly_errors
from geoclim.errors import ConfigError, DataError
from geoclim.evaluation.report import score_table
from geoclim.training import rundir

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule

log = logging.getLogger(__name__)

TRAINED_SPLIT = "test"  # the split whose forecasts geoclim-train writes as predictions.nc
BEST_CHECKPOINT = "checkpoints/best.ckpt"


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
    forecast = forecasts_for(run_dir, dm, split, ckpt)
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
        log.info("%s", score_table(summary, split, title=str(run_dir)))
    log.info("wrote %s", out)
    return out


def forecasts_for(
    run_dir: Path, dm: GeoDataModule, split: str, ckpt: Path | None = None
) -> xr.Dataset:
    """The forecasts of ``split`` to score: from ``ckpt``, ``predictions.nc`` or the run's model.

    ``geoclim-train`` writes the test split's forecasts as ``predictions.nc``. Another split
    is predicted here (and written as ``predictions_<split>.nc``): a network from its best
    checkpoint, a tree baseline from its saved ``model/``, persistence and climatology by
    fitting them again on the train block (they are deterministic and cheap).

    Raises:
        DataError: if nothing in ``run_dir`` can forecast ``split``; the message says what
            to pass instead.

    """
    from geoclim.data.sources import write_netcdf

    path = run_dir / "predictions.nc"
    if ckpt is None and split == TRAINED_SPLIT:
        if not path.is_file():
            raise DataError(
                f"run_dir {str(run_dir)!r} has no predictions.nc (did geoclim-train finish?); "
                f"score a network checkpoint with ckpt_path={run_dir}/checkpoints/best.ckpt"
            )
        with xr.open_dataset(path) as ds:
            return ds.load()
    if ckpt is None:
        ckpt = run_dir / BEST_CHECKPOINT
        if ckpt.is_file():
            log.info(
                "predictions.nc holds the %s split; predicting the %r split with %s",
                TRAINED_SPLIT,
                split,
                ckpt,
            )
        else:
            ckpt = None
    if ckpt is not None:
        forecast = predict_checkpoint(ckpt, dm, split)
    else:
        forecast = predict_baseline(run_dir, dm, split)
    write_netcdf(forecast, run_dir / f"predictions_{split}.nc")
    log.info("wrote %s", run_dir / f"predictions_{split}.nc")
    return forecast


def predict_baseline(run_dir: Path, dm: GeoDataModule, split: str) -> xr.Dataset:
    """Forecasts of ``split`` by the baseline a run directory trained (no checkpoint)."""
    from geoclim.training.instantiate import build_estimator, model_kind

    cfg = rundir.read_config(run_dir)
    kind = model_kind(cfg)
    if kind == "network":
        raise DataError(
            f"run_dir {str(run_dir)!r} trained a network but has no {BEST_CHECKPOINT} to "
            f"predict the {split!r} split; pass ckpt_path=<checkpoint> (e.g. "
            f"{run_dir}/checkpoints/last.ckpt) or split={TRAINED_SPLIT}"
        )
    estimator = build_estimator(cfg)
    folder = run_dir / rundir.MODEL_DIR
    if hasattr(type(estimator), "load") and folder.is_dir():
        log.info("predicting the %r split with the model saved in %s", split, folder)
        return type(estimator).load(folder, dm).predict(dm, split)
    if kind == "baseline" and getattr(estimator, "save", None) is None:
        log.info(
            "predicting the %r split with %s fitted again on the train block (it keeps no "
            "fitted state in the run directory)",
            split,
            type(estimator).__name__,
        )
        return estimator.fit(dm).predict(dm, split)
    raise DataError(
        f"run_dir {str(run_dir)!r} has predictions of the {TRAINED_SPLIT} split only and no "
        f"saved model to forecast the {split!r} split; evaluate split={TRAINED_SPLIT}"
    )


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
@friendly_errors
def _hydra_main(cfg: DictConfig) -> None:
    evaluate(cfg)


def main() -> None:
    """Console entry point (``geoclim-eval``)."""
    _hydra_main()


if __name__ == "__main__":
    main()
