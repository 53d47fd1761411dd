"""Predict one split with a network and put the forecasts back on their coordinates.

The one predict-and-assemble path: :func:`geoclim.training.train.train` predicts the test
split with it after fitting, ``geoclim-eval ckpt_path=...`` any split of a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import lightning as L
import numpy as np
import torch
import xarray as xr

from geoclim.data.assemble import to_forecast_dataset
from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import DataError
from geoclim.models.module import ForecastModule


def evaluation_trainer(trainer_cfg: Mapping[str, Any] | None = None) -> L.Trainer:
    """A one-device, silent Trainer for validate / test / predict.

    Args:
        trainer_cfg: the run's trainer settings; only ``accelerator``, ``precision`` and
            ``deterministic`` are used (evaluation never runs distributed).

    """
    cfg = dict(trainer_cfg or {})
    return L.Trainer(
        accelerator=cfg.get("accelerator", "auto"),
        devices=1,
        precision=cfg.get("precision", "32-true"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=cfg.get("deterministic", False),
    )


def predict_split(
    module: ForecastModule, dm: GeoDataModule, split: str, trainer: L.Trainer | None = None
) -> xr.Dataset:
    """Forecasts of ``module`` for every sample of ``split``, in physical units.

    Args:
        module: the network (its ``predict_step`` returns predictions and sample positions).
        dm: the set-up datamodule the network was trained on.
        split: ``"train"``, ``"val"`` or ``"test"``.
        trainer: the Trainer to predict with (default :func:`evaluation_trainer`).

    Returns:
        The predictions Dataset ``(init_time, lead_time, <space>[, quantile])``.

    """
    trainer = trainer or evaluation_trainer()
    outputs = trainer.predict(module, dataloaders=dm.loader(split, shuffle=False))
    batches = cast(list[dict[str, torch.Tensor]], outputs or [])  # one dataloader: a flat list
    if not batches:
        raise DataError(f"the {split!r} split has no samples to predict")
    return assemble(batches, dm, module.quantiles)


def assemble(
    batches: list[dict[str, torch.Tensor]], dm: GeoDataModule, quantiles: Any = ()
) -> xr.Dataset:
    """Concatenate ``predict_step`` outputs and scatter them into the predictions Dataset."""

    def cat(key: str) -> torch.Tensor:
        return torch.cat([b[key].cpu() for b in batches])

    def positions(key: str) -> np.ndarray:
        return cat(key).numpy().astype(np.int64)  # (N,), never through float

    assert dm.ds is not None
    return to_forecast_dataset(
        cat("prediction").float().numpy(),  # (N, T_out, C_out[, Q], h, w), normalised
        positions("time_idx"),
        positions("lat_idx"),
        positions("lon_idx"),
        dm.ds,
        dm.task.targets,
        normalizer=dm.normalizer,
        quantiles=quantiles,
    )
