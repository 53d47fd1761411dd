"""Reference model: pytorch-forecasting's own ``TemporalFusionTransformer`` on a geoclim task.

``model=pf_tft`` trains the reference implementation on exactly the samples geoclim's
networks see and returns the same predictions Dataset, so it sits in the same leaderboard.

The adapter (:func:`to_frame` and :meth:`PFTemporalFusionTransformer.fit`):

* **one series per cell / station**: ``series = y * W + x``, ``time_idx`` = the position on
  the time axis, one row per (series, time step); cells that never hold a sample are dropped.
* **the same normalised values**: columns are taken from ``dm.arrays`` (imputed, normalised
  with the train-block statistics); pytorch-forecasting's own scalers and target normaliser
  are set to the identity, so both libraries learn the same numbers and the predictions are
  de-normalised by ``dm.normalizer`` like geoclim's. Missing values are 0 (the train mean),
  as in geoclim batches.
* **the same masking**: a ``weight`` column is 1 where every target counts
  (``target_mask``), 0 where a target is missing or imputed, and pytorch-forecasting
  weights its loss with it.
* **the same samples**: one ``TimeSeriesDataSet`` over all rows with fixed encoder and
  decoder lengths is filtered per split to the windows whose init time (last encoder step)
  and series are in ``dm.index[split]``.
* **inputs**: targets and past inputs are ``time_varying_unknown_reals``; calendar features
  and future variables are ``time_varying_known_reals`` (fed to the encoder and the
  decoder, as geoclim's TFT does with ``known_past`` / ``known_future``); static inputs are
  ``static_reals``; the
  relative time index is added as pytorch-forecasting's TFT expects.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data.assemble import to_forecast_dataset
from geoclim.data.calendar import FEATURES as CALENDAR
from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SERIES, TIME_IDX, WEIGHT = "series", "time_idx", "weight"
TRAINER_KEYS = (
    "accelerator",
    "max_epochs",
    "limit_train_batches",
    "limit_val_batches",
    "gradient_clip_val",
    "deterministic",
    "enable_progress_bar",
    "precision",
    "log_every_n_steps",
)


def to_frame(dm: GeoDataModule) -> pd.DataFrame:
    """The long DataFrame pytorch-forecasting reads: one row per (series, time step).

    Columns: ``series``, ``time_idx``, the targets and past inputs, the known-future inputs,
    the static inputs (normalised, NaN -> 0) and ``weight`` (1 where every target counts).
    """
    dm.setup()
    arrays, task = dm.arrays, dm.task
    assert arrays is not None
    n_time, (h, w) = arrays.dynamic.shape[0], arrays.grid_shape
    used = np.zeros(h * w, bool)
    for index in dm.index.values():
        _, y, x = index.decode()
        used[y * w + x] = True
    cells = np.flatnonzero(used)  # (S,) series kept
    ys, xs = np.divmod(cells, w)
    dyn = arrays.dynamic[:, ys, xs]  # (T, S, C_dyn)
    columns: dict[str, np.ndarray] = {
        SERIES: np.tile(cells, n_time).astype(np.int64),
        TIME_IDX: np.repeat(np.arange(n_time, dtype=np.int64), cells.size),
    }
    for c, name in enumerate(task.dynamic_variables):
        columns[name] = np.nan_to_num(dyn[..., c], nan=0.0).ravel()
    cal_names = [n for n in task.future_inputs if n in CALENDAR]
    for c, name in enumerate(cal_names):
        columns[name] = np.repeat(arrays.calendar[:, c], cells.size)
    for c, name in enumerate(task.static_inputs):
        columns[name] = np.tile(np.nan_to_num(arrays.static[ys, xs, c], nan=0.0), n_time)
    columns[WEIGHT] = arrays.target_valid()[:, ys, xs].astype(np.float32).ravel()
    frame = pd.DataFrame(columns)
    frame[SERIES] = frame[SERIES].astype(str)  # pytorch-forecasting wants categorical groups
    return frame


class PFTemporalFusionTransformer:
    """pytorch-forecasting's TFT behind the baseline protocol (``fit`` / ``predict``).

    Args:
        hidden_size: TFT width (``hidden_size`` in both libraries).
        attention_head_size: attention heads.
        dropout: dropout.
        hidden_continuous_size: embedding size of each real input.
        learning_rate: Adam learning rate.
        batch_size: samples per batch (default: the datamodule's).
        trainer: Lightning ``Trainer`` settings (``train()`` passes ``cfg.trainer``; only
            single-process keys are used).
        kind: config tag, ``"reference"``.

    """

    def __init__(
        self,
        hidden_size: int = 32,
        attention_head_size: int = 4,
        dropout: float = 0.1,
        hidden_continuous_size: int = 16,
        learning_rate: float = 3e-3,
        batch_size: int | None = None,
        trainer: dict[str, Any] | None = None,
        kind: str = "reference",
    ):
        if kind != "reference":
            raise ConfigError(f"model.kind is {kind!r} for pf_tft; expected 'reference'")
        self.hparams = dict(
            hidden_size=hidden_size,
            attention_head_size=attention_head_size,
            dropout=dropout,
            hidden_continuous_size=hidden_continuous_size,
            learning_rate=learning_rate,
        )
        self.batch_size = batch_size
        self.trainer_kwargs = {k: v for k, v in (trainer or {}).items() if k in TRAINER_KEYS}
        self.model: Any = None  # pytorch-forecasting's TemporalFusionTransformer, once fitted
        self.dataset: Any = None  # its TimeSeriesDataSet over every row, built once

    def _base_dataset(self, dm: GeoDataModule, frame: pd.DataFrame):
        from pytorch_forecasting import TimeSeriesDataSet
        from pytorch_forecasting.data.encoders import MultiNormalizer, TorchNormalizer

        task = dm.task
        targets = list(task.targets)
        known = [n for n in task.future_inputs if n in CALENDAR] + list(task.future_variables)
        unknown = [n for n in task.past_variables if n not in known]
        reals = unknown + known + list(task.static_inputs)
        identity = TorchNormalizer(method="identity", center=False)
        target_normalizer = (
            identity
            if len(targets) == 1
            else MultiNormalizer(
                [TorchNormalizer(method="identity", center=False) for _ in targets]
            )
        )
        return TimeSeriesDataSet(
            frame,
            time_idx=TIME_IDX,
            target=targets[0] if len(targets) == 1 else targets,
            group_ids=[SERIES],
            weight=WEIGHT,
            max_encoder_length=task.input_steps,
            min_encoder_length=task.input_steps,
            max_prediction_length=task.horizon,
            min_prediction_length=task.horizon,
            static_reals=list(task.static_inputs),
            time_varying_known_reals=known,
            time_varying_unknown_reals=unknown,
            add_relative_time_idx=True,
            add_target_scales=False,
            add_encoder_length=False,
            target_normalizer=target_normalizer,
            scalers={n: None for n in reals if n not in targets},  # None: identity
        )

    def split_dataset(self, dm: GeoDataModule, split: str):
        """The windows of ``dm.index[split]``, as a filtered ``TimeSeriesDataSet``."""
        if self.dataset is None:
            self.dataset = self._base_dataset(dm, to_frame(dm))
        t, y, x = dm.index[split].decode()
        assert dm.arrays is not None  # set up by to_frame
        w = dm.arrays.grid_shape[1]
        wanted = pd.MultiIndex.from_arrays([(y * w + x).astype(str), t + 1])

        def keep(index: pd.DataFrame) -> np.ndarray:
            keys = pd.MultiIndex.from_arrays(
                [index[SERIES].astype(str), index["time_idx_first_prediction"]]
            )
            return keys.isin(wanted)

        subset = self.dataset.filter(keep)
        if len(subset) != len(t):
            raise DataError(
                f"pytorch-forecasting holds {len(subset)} windows of split "
                f"{split!r}; geoclim's index has {len(t)}"
            )
        return subset

    def _loss(self, dm: GeoDataModule):
        from pytorch_forecasting.metrics import RMSE, MultiLoss, QuantileLoss

        q = list(dm.task.quantiles)
        single = QuantileLoss(q) if q else RMSE()
        n = len(dm.task.targets)
        return (
            single if n == 1 else MultiLoss([QuantileLoss(q) if q else RMSE() for _ in range(n)])
        ), (len(q) or 1)

    def fit(self, dm: GeoDataModule) -> PFTemporalFusionTransformer:
        """Train on the train split, keeping the weights of the best val loss."""
        from lightning.pytorch.callbacks import ModelCheckpoint
        from pytorch_forecasting import TemporalFusionTransformer

        dm.setup()
        batch = self.batch_size or dm.batch_size
        train, val = self.split_dataset(dm, "train"), self.split_dataset(dm, "val")
        loss, out = self._loss(dm)
        n = len(dm.task.targets)
        model = TemporalFusionTransformer.from_dataset(
            train,
            loss=loss,
            output_size=out if n == 1 else [out] * n,
            log_interval=-1,
            reduce_on_plateau_patience=1000,
            **self.hparams,
        )
        with tempfile.TemporaryDirectory(prefix="pf_tft_") as tmp:
            checkpoint = ModelCheckpoint(dirpath=tmp, monitor="val_loss", mode="min")
            trainer = L.Trainer(
                devices=1,
                logger=False,
                callbacks=[checkpoint],
                enable_model_summary=False,
                default_root_dir=tmp,
                **self.trainer_kwargs,
            )
            trainer.fit(
                model,
                train_dataloaders=train.to_dataloader(train=True, batch_size=batch),
                val_dataloaders=val.to_dataloader(train=False, batch_size=batch),
            )
            best = checkpoint.best_model_path
            self.model = TemporalFusionTransformer.load_from_checkpoint(best) if best else model
        return self

    def predict(self, dm: GeoDataModule, split: str) -> xr.Dataset:
        """Predict the samples ``dm.index[split]``: the predictions Dataset, physical units."""
        if self.model is None:
            raise ConfigError("pf_tft.predict called before fit")
        data = self.split_dataset(dm, split)
        q = list(dm.task.quantiles)
        loader = data.to_dataloader(train=False, batch_size=self.batch_size or dm.batch_size)
        result = self.model.predict(
            loader,
            mode="quantiles" if q else "prediction",
            return_index=True,
            trainer_kwargs=dict(
                accelerator=self.trainer_kwargs.get("accelerator", "auto"),
                devices=1,
                logger=False,
                enable_progress_bar=False,
            ),
        )
        outputs = result.output if isinstance(result.output, list | tuple) else [result.output]
        outputs = [o.detach().cpu().numpy() for o in outputs]  # each (N, L[, Q])
        prediction = np.stack(outputs, axis=2)  # (N, L, C[, Q])
        prediction = prediction[..., None, None]  # (N, L, C[, Q], 1, 1)
        series = result.index[SERIES].astype(int).to_numpy()
        assert dm.arrays is not None
        w = dm.arrays.grid_shape[1]
        y, x = np.divmod(series, w)
        t = result.index[TIME_IDX].to_numpy().astype(np.int64) - 1  # init = last input step
        assert dm.ds is not None
        out = to_forecast_dataset(
            prediction, t, y, x, dm.ds, dm.task.targets, normalizer=dm.normalizer, quantiles=q
        )
        out.attrs["model"] = "pf_tft"
        return out
