"""``train(cfg)``: one Hydra job, from the composed config to a complete run directory.

Networks (``model.kind: network``) are fitted by Lightning (single process or DDP), then the
best checkpoint is validated, tested and run on the test split by rank 0 alone. Baselines
(``kind: baseline``) and reference models (``kind: reference``) are fitted and predict the
test samples through their own ``fit(dm)`` / ``predict(dm, split)``. Either way the
predictions Dataset is scored by :mod:`geoclim.evaluation.score` and the run directory
(:mod:`geoclim.training.rundir`) is written. ``train`` returns the flat metrics dict; the CLI
returns ``metrics[cfg.optimized_metric]`` to a sweeper.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import xarray as xr
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from omegaconf import DictConfig

from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import ConfigError
from geoclim.evaluation.report import score_table
from geoclim.training import rundir
from geoclim.training.distributed import (
    hydra_job_launcher,
    launch_environment,
    release_process_group,
)
from geoclim.training.instantiate import (
    build_callbacks,
    build_datamodule,
    build_estimator,
    build_loggers,
    build_module,
    config_dict,
    model_kind,
)
from geoclim.training.loaders import WindowLoaders
from geoclim.training.predict import evaluation_trainer, predict_split

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train (or fit) the configured model, predict and score the test split.

    Args:
        cfg: the composed ``conf/train.yaml``.

    Returns:
        Flat metrics (``val/loss``, ``val/rmse/<var>``, ``test/...``, the scores summary).
        Ranks other than 0 of a DDP run return an empty dict.

    """
    start = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    dm = build_datamodule(cfg)
    dm.setup()
    log.info("data: %s samples per split", {k: len(v) for k, v in dm.index.items()})
    if model_kind(cfg) == "network":
        result = _fit_network(cfg, dm)
        if result is None:  # a DDP rank other than 0: rank 0 writes the run directory
            return {}
        metrics, predictions, loggers = result
    else:
        estimator = build_estimator(cfg)
        fit_start = time.perf_counter()
        estimator.fit(dm)
        metrics = {"time/fit_s": time.perf_counter() - fit_start}
        predictions = estimator.predict(dm, "test")
        rundir.write_model(run_dir, estimator)
        loggers = build_loggers(cfg)
    predictions.attrs.setdefault("model", _model_name(cfg))
    metrics.update(_write_outputs(run_dir, dm, predictions, cfg.get("regions")))
    metrics["time/total_s"] = time.perf_counter() - start
    rundir.write_metrics(run_dir, metrics)
    _finish_loggers(loggers, metrics)
    log.info("run directory %s", run_dir)
    floats = rundir.to_floats(metrics)
    log.info("%s", score_table(floats, "test", title=f"{_model_name(cfg)} ({run_dir})"))
    return floats


def _fit_network(cfg: DictConfig, dm: GeoDataModule):
    """Fit with Lightning; on rank 0 evaluate the best checkpoint and predict the test split.

    Returns:
        ``(metrics, predictions, loggers)`` on rank 0, ``None`` on other ranks.

    """
    if dm.is_station and dm.spec.patch != 1:
        raise ConfigError(
            f"model needs spatial samples (window.patch = {dm.spec.patch}) but the data is a "
            "station network; use a point model (lstm, tft) or gridded data"
        )
    module = build_module(cfg, dm)
    callbacks = build_callbacks(cfg)
    loggers = build_loggers(cfg)
    if not loggers:  # nothing to monitor the learning rate into
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer_cfg = config_dict(cfg.trainer)
    if not trainer_cfg.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    overfit = trainer_cfg.pop("overfit_batches", 0) or 0
    if overfit:  # Lightning's own overfit_batches would replace our batch sampler
        trainer_cfg.update(limit_train_batches=overfit, limit_val_batches=overfit)
    trainer: L.Trainer = instantiate(
        trainer_cfg,
        callbacks=callbacks,
        logger=loggers or False,
        use_distributed_sampler=False,
        _convert_="all",
    )
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path {ckpt_path!r}: no such checkpoint file")
    loaders = WindowLoaders(dm, shuffle=not overfit, val_split="train" if overfit else "val")
    fit_start = time.perf_counter()
    with launch_environment(), hydra_job_launcher():
        trainer.fit(module, datamodule=loaders, ckpt_path=ckpt_path)
        if trainer.world_size > 1:
            release_process_group()
    fit_seconds = time.perf_counter() - fit_start
    if trainer.global_rank != 0:
        return None

    best = _best_checkpoint(trainer)
    metrics: dict[str, Any] = {
        "train/epochs": trainer.current_epoch,
        "train/steps": trainer.global_step,
        "time/fit_s": fit_seconds,
    }
    if best is not None:  # evaluate the best weights, not the last
        state = torch.load(best, map_location="cpu", weights_only=False)
        module.load_state_dict(state["state_dict"])
        metrics["checkpoint/best_epoch"] = state["epoch"]
    evaluator = evaluation_trainer(trainer_cfg)
    for stage, split in (("validate", "val"), ("test", "test")):
        loader = dm.loader(split, shuffle=False)
        outputs = getattr(evaluator, stage)(module, dataloaders=loader, verbose=False)
        metrics.update(outputs[0] if outputs else {})
    return metrics, predict_split(module, dm, "test", evaluator), loggers


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    """Path of the best checkpoint, if one was written (else the weights in memory are used)."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    return path if path and Path(path).is_file() else None


def _write_outputs(
    run_dir: Path, dm: GeoDataModule, predictions: xr.Dataset, regions: Any = None
) -> dict[str, float]:
    """Write task, normaliser, predictions and scores; return the scores summary."""
    rundir.write_data_files(run_dir, dm)
    rundir.write_predictions(run_dir, predictions)
    return rundir.score(run_dir, predictions, dm, "test", regions=regions)


def _model_name(cfg: DictConfig) -> str:
    """The ``model`` option chosen (``lstm``, ``persistence``...), or the target's class."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.choices["model"])
    except (ValueError, KeyError):
        target = cfg.model.get("net", cfg.model).get("_target_", "model")
        return str(target).rsplit(".", 1)[-1]


def _finish_loggers(loggers: list, metrics: dict[str, Any]) -> None:
    """Log the final metrics to every logger and close them (one W&B run per job)."""
    final = {k: v for k, v in rundir.to_floats(metrics).items() if np.isfinite(v)}
    for logger in loggers:
        logger.log_metrics(final)
        logger.finalize("success")
        if type(logger).__name__ == "WandbLogger":
            import wandb

            wandb.finish()
