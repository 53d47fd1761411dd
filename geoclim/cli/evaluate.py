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
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import xarray as xr
from omegaconf import DictConfig, OmegaConf

from geoclim.cli.config import CONFIG_PATH
from geoclim.errors import ConfigError, DataError, GeoclimError

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule

log = logging.getLogger(__name__)

RUN_CONFIG = Path(".hydra") / "config.yaml"


def run_config(run_dir: str | Path) -> DictConfig:
    """The composed config a run was trained with (``<run_dir>/.hydra/config.yaml``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run_dir {str(run_dir)!r}: no such directory")
    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise DataError(
            f"run_dir {str(run_dir)!r} is not a run directory: it has no "
            f"{RUN_CONFIG} (pass the directory of one geoclim-train job)"
        )
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig) or "data" not in cfg or "task" not in cfg:
        raise DataError(f"{path}: not a geoclim-train config (needs 'data' and 'task')")
    return cfg


def run_datamodule(run_dir: str | Path) -> GeoDataModule:
    """Re-create and set up the datamodule of a run from its saved config."""
    from geoclim.training.instantiate import build_datamodule

    dm = build_datamodule(run_config(run_dir))
    dm.setup()
    return dm


def find_run_dir(ckpt_path: Path) -> Path:
    """The run directory above a checkpoint (the first parent with ``.hydra/config.yaml``)."""
    for parent in ckpt_path.resolve().parents:
        if (parent / RUN_CONFIG).is_file():
            return parent
    raise DataError(
        f"ckpt_path {str(ckpt_path)!r}: no run directory (with {RUN_CONFIG}) "
        "above it; pass run_dir=... too"
    )


def predict_checkpoint(ckpt_path: Path, dm: GeoDataModule, split: str) -> xr.Dataset:
    """Predictions of a network checkpoint on the samples of ``split`` (physical units)."""
    import numpy as np
    import torch

    from geoclim.data.assemble import to_forecast_dataset
    from geoclim.models.module import ForecastModule
    from geoclim.training.loaders import make_loader

    module = ForecastModule.from_checkpoint(ckpt_path)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("p", "t", "y", "x")}
    with torch.no_grad():
        for batch in make_loader(dm, split, shuffle=False):
            parts["p"].append(module(batch)["prediction"].float().numpy())
            for key, name in (("t", "time_idx"), ("y", "lat_idx"), ("x", "lon_idx")):
                parts[key].append(batch[name].numpy())
    p, t, y, x = (np.concatenate(parts[k]) for k in ("p", "t", "y", "x"))
    assert dm.ds is not None
    return to_forecast_dataset(
        p, t, y, x, dm.ds, dm.task.targets, normalizer=dm.normalizer, quantiles=module.quantiles
    )


def evaluate(cfg: DictConfig) -> Path:
    """Score what ``cfg`` points at; return the path of the scores file written."""
    from geoclim.data.sources import write_netcdf
    from geoclim.evaluation.score import metrics_summary, score_run

    ckpt = Path(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if ckpt is not None and not ckpt.is_file():
        raise DataError(f"ckpt_path {str(ckpt)!r}: no such checkpoint file")
    if cfg.get("run_dir"):
        run_dir = Path(cfg.run_dir)
    elif ckpt is not None:
        run_dir = find_run_dir(ckpt)
    else:
        raise ConfigError(
            "nothing to evaluate: give run_dir=<run directory> or ckpt_path=<checkpoint>"
        )
    split = str(cfg.split)
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; valid splits are ['train', 'val', 'test']")
    dm = run_datamodule(run_dir)
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
        forecast, dm, split, n_boot=int(cfg.n_boot), by_location=bool(cfg.by_location)
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


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def _hydra_main(cfg: DictConfig) -> None:
    from geoclim.cli.train import user_error

    try:
        evaluate(cfg)
    except Exception as err:
        user = user_error(err)
        if user is None:
            raise
        _exit_with(user)


def _exit_with(err: GeoclimError) -> None:
    sys.stdout.flush()
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    """Console entry point (``geoclim-eval``)."""
    _hydra_main()


if __name__ == "__main__":
    main()
