"""``ForecastModule``: the one LightningModule, wrapping any forecasting network.

The network is a plain ``nn.Module`` whose ``forward(batch)`` returns a dict with
``"prediction"`` shaped ``(B, T_out, C_out[, Q], H, W)`` in normalised space. This module owns
what is common to every architecture:

* the masked loss (:class:`~geoclim.models.losses.ForecastLoss`), computed in normalised
  space so every target weighs the same;
* torchmetrics per stage, ``val/rmse/<var>`` and ``val/mae/<var>`` (and ``test/...``), in
  **physical units**, and ``val/rmse`` (their mean over targets, which checkpoints and
  early stopping watch by default): the point forecast and the target are de-normalised with the
  normaliser's statistics (``x * std + mean``, then ``expm1`` for log-transformed variables)
  and only entries with ``target_mask == 1`` count;
* the optimiser and scheduler, given as Hydra partials (``_partial_: true``);
* ``predict_step``, returning the normalised prediction and the sample positions for
  :func:`geoclim.data.assemble.to_forecast_dataset`;
* the task, normaliser and network config in every checkpoint, so that
  :meth:`ForecastModule.from_checkpoint` (and an export) needs nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
import torchmetrics
from torch import Tensor, nn

from geoclim.models.losses import ForecastLoss, point_forecast
from geoclim.types import Batch

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]

METRIC_STAGES = ("val", "test")


class ForecastModule(L.LightningModule):
    """Loss, metrics, optimiser and de-normalisation around a forecasting network.

    Args:
        net: the network, or its Hydra config (a dict with ``_target_`` and its sizes) to
            build it from.
        task: the :class:`~geoclim.data.task.ForecastTask` as a dict (targets, quantiles...).
        normalizer: the fitted :class:`~geoclim.data.normalize.Normalizer` as a dict; without
            it metrics are reported in normalised units.
        loss: ``"mse"``, ``"mae"``, ``"quantile"`` or ``"auto"`` (quantile when the task has
            quantiles, else MSE).
        optimizer: partial taking the parameters (default ``AdamW(lr=1e-3)``).
        scheduler: optional partial taking the optimiser.
        scheduler_monitor: metric a plateau scheduler watches.
        net_config: the network's Hydra config with its sizes, stored in checkpoints so the
            network can be rebuilt (taken from ``net`` when that is a config).

    """

    # (C_out,) buffers of _register_target_stats
    target_mean: Tensor
    target_std: Tensor
    target_log: Tensor

    def __init__(
        self,
        net: nn.Module | dict[str, Any],
        task: dict[str, Any],
        normalizer: dict[str, Any] | None = None,
        loss: str = "auto",
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_monitor: str = "val/loss",
        net_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        if not isinstance(net, nn.Module):
            net_config = dict(net)
            net = build_net(net_config)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.task = dict(task)
        self.targets: tuple[str, ...] = tuple(self.task["targets"])
        self.quantiles: tuple[float, ...] = tuple(self.task.get("quantiles") or ())
        self.normalizer = dict(normalizer) if normalizer else None
        if loss == "auto":
            loss = "quantile" if self.quantiles else "mse"
        self.loss_fn = ForecastLoss(loss, self.quantiles if loss == "quantile" else ())
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_monitor = scheduler_monitor
        self._register_target_stats()
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        f"{kind}_{name}": (
                            torchmetrics.MeanSquaredError(squared=False)
                            if kind == "rmse"
                            else torchmetrics.MeanAbsoluteError()
                        )
                        for name in self.targets
                        for kind in ("rmse", "mae")
                    }
                )
                for stage in METRIC_STAGES
            }
        )

    def _register_target_stats(self) -> None:
        """Buffers ``(C_out,)`` mean, std and log flag of each target (identity if unknown)."""
        stats = [(self.normalizer or {}).get(name) for name in self.targets]
        self.register_buffer(
            "target_mean",
            torch.tensor([s["mean"] if s else 0.0 for s in stats], dtype=torch.float32),
            persistent=False,
        )
        self.register_buffer(
            "target_std",
            torch.tensor([s["std"] if s else 1.0 for s in stats], dtype=torch.float32),
            persistent=False,
        )
        self.register_buffer(
            "target_log",
            torch.tensor([bool(s and s["log"]) for s in stats], dtype=torch.bool),
            persistent=False,
        )

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Run the network; ``"prediction"`` is ``(B, T_out, C_out[, Q], H, W)`` normalised."""
        return self.net(batch)

    def denormalize(self, values: Tensor) -> Tensor:
        """Normalised ``(B, T_out, C_out, H, W)`` targets or point forecasts -> physical units."""
        shape = (1, 1, -1, 1, 1)
        x = values * self.target_std.view(shape) + self.target_mean.view(shape)
        return torch.where(self.target_log.view(shape), torch.expm1(x), x)

    def _shared_step(self, batch: Batch, stage: str) -> Tensor:
        """Loss (and, for val/test, metric updates) on one batch."""
        prediction = self(batch)["prediction"]  # (B, T_out, C_out[, Q], H, W)
        loss = self.loss_fn(prediction, batch["target"], batch["target_mask"])
        batch_size = batch["target"].shape[0]
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=stage != "test",
            on_step=stage == "train",
            on_epoch=True,
            batch_size=batch_size,
            sync_dist=stage != "train",
        )
        if stage in METRIC_STAGES:
            self._update_metrics(prediction.detach(), batch, stage)
        return loss

    def _update_metrics(self, prediction: Tensor, batch: Batch, stage: str) -> None:
        point = self.denormalize(point_forecast(prediction, self.quantiles))  # (B,T,C,H,W)
        truth = self.denormalize(batch["target"])
        mask = batch["target_mask"] > 0
        for c, name in enumerate(self.targets):
            m = mask[:, :, c]
            if not bool(m.any()):
                continue
            p, t = point[:, :, c][m], truth[:, :, c][m]  # (n_valid,)
            for kind in ("rmse", "mae"):
                metric = self._metric(stage, f"{kind}_{name}")
                metric.update(p, t)
                self.log(f"{stage}/{kind}/{name}", metric, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        """Log ``val/rmse``: the de-normalised RMSE, averaged over targets (checkpoint metric).

        Checkpoints and early stopping watch what users read, the RMSE in physical units,
        not the normalised (possibly log-space) loss. With several targets of different
        units, monitor one of them (``monitor=val/rmse/<var>``) if the average is not wanted.
        """
        self._log_mean_rmse("val")

    def on_test_epoch_end(self) -> None:
        """Log ``test/rmse`` like ``val/rmse``."""
        self._log_mean_rmse("test")

    def _log_mean_rmse(self, stage: str) -> None:
        metrics = [self._metric(stage, f"rmse_{name}") for name in self.targets]
        values = [m.compute() for m in metrics if m.update_count > 0]
        if values:
            self.log(f"{stage}/rmse", torch.stack(values).mean(), sync_dist=False)

    def _metric(self, stage: str, key: str) -> torchmetrics.Metric:
        """The ``stage``'s metric ``key`` (``"rmse_<target>"``); ModuleDicts type as Module."""
        return cast(torchmetrics.Metric, cast(nn.ModuleDict, self.metrics[stage])[key])

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """One optimisation step."""
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Validation loss and metrics."""
        self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Test loss and metrics."""
        self._shared_step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        """Normalised prediction ``(B, T_out, C_out[, Q], H, W)`` plus sample positions."""
        return {
            "prediction": self(batch)["prediction"],
            "time_idx": batch["time_idx"],
            "lat_idx": batch["lat_idx"],
            "lon_idx": batch["lon_idx"],
        }

    def configure_optimizers(self) -> Any:
        """Optimiser from its partial (``AdamW(lr=1e-3)`` by default), optional scheduler."""
        factory = self.optimizer_factory or (lambda p: torch.optim.AdamW(p, lr=1e-3))
        optimizer = factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": self.scheduler_monitor,
                "interval": "epoch",
            },
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store task, normaliser and net config as JSON so a checkpoint is self-contained."""
        checkpoint["geoclim"] = {
            "task": json.dumps(self.task),
            "normalizer": json.dumps(self.normalizer),
            "net_config": json.dumps(self.hparams.get("net_config")),
        }

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str = "cpu") -> ForecastModule:
        """Rebuild the module, network included, from a checkpoint alone."""
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
        meta = ckpt["geoclim"]
        net_config = json.loads(meta["net_config"])
        if net_config is None:
            raise ValueError(f"{path}: checkpoint has no net_config; cannot rebuild the network")
        hp = ckpt.get("hyper_parameters", {})
        module = cls(
            net=net_config,
            task=json.loads(meta["task"]),
            normalizer=json.loads(meta["normalizer"]),
            loss=hp.get("loss", "auto"),
        )
        module.load_state_dict(ckpt["state_dict"])
        return module.eval()


def build_net(config: dict[str, Any]) -> nn.Module:
    """Instantiate a network from its Hydra config (``_target_`` plus keyword sizes)."""
    from hydra.utils import instantiate

    return instantiate(config)
