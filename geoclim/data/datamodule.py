"""``GeoDataModule``: canonical Dataset -> imputed, normalised arrays -> windows -> batches.

``setup`` runs the data path once: obtain and validate the dataset, cut the splits, fit the
imputer and the normaliser on the train block only, hold the arrays once, and index the
samples of each split. Point sampling (``window.patch: 1``, LSTM / TFT / trees) and spatial
sampling (``patch: k`` tiles or ``null`` for the whole grid, CNN) share the one Batch layout.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import calendar, categorical, folds, lazy, schema, timeaxis, variables
from geoclim.data.blocks import BlockReader
from geoclim.data.datasets import WindowDataset, batch_loader
from geoclim.data.fingerprint import data_fingerprint
from geoclim.data.normalize import Normalizer
from geoclim.data.task import SPLIT_NAMES, ForecastTask, TimeSplits, make_splits
from geoclim.data.timeaxis import TimeStep
from geoclim.data.windows import SampleIndex, WindowArrays, WindowSpec, build_index
from geoclim.errors import ConfigError
from geoclim.types import STATION, TIME

log = logging.getLogger(__name__)
_SLAB_BYTES = 1 << 23
"""Bytes of the channels-last dynamic array encoded at a time (about a cache's worth)."""

TARGET_SAMPLES = 16384
"""Training samples per epoch a derived window stride aims at (point samples)."""
TARGET_SPATIAL_SAMPLES = 1024
"""The same for spatial samples (tiles, whole grids), which carry many cells each."""


def cycle_length(times: np.ndarray) -> int:
    """Steps in the data's natural cycle: a day (sub-daily), a week (daily), a year (monthly).

    A derived stride is coprime with it, so init times rotate through the cycle. ``times``
    is a regular axis (datetime64 or cftime).
    """
    if len(times) < 2:
        return 1
    step = timeaxis.check_axis(times)
    if step.is_calendar:
        return 12 if (step.unit, step.count) == ("month", 1) else 1
    step_td, day = pd.Timedelta(step.timedelta), pd.Timedelta(days=1)
    if step_td < day and day % step_td == pd.Timedelta(0):
        return int(day // step_td)
    return 7 if step_td == day else 1


def derive_stride(n_inits: int, cycle: int = 1, target: int = TARGET_SAMPLES) -> int:
    """The smallest stride, coprime with ``cycle``, that cuts ``n_inits`` samples to ``target``.

    Args:
        n_inits: training samples at stride 1 (init times x space positions).
        cycle: steps of the data's natural cycle (:func:`cycle_length`).
        target: wanted samples per epoch.

    """
    stride = max(1, math.ceil(n_inits / target))
    while stride > 1 and math.gcd(stride, cycle) != 1:
        stride += 1
    return stride


def derive_batch_size(n_samples: int) -> int:
    """A power of two giving about 32 batches per epoch, within [8, 256]."""
    if n_samples < 1:
        return 8
    return int(min(256, max(8, 2 ** math.floor(math.log2(max(n_samples / 32, 1))))))


class GeoDataModule(L.LightningDataModule):
    """Serves windows of a canonical dataset for one :class:`ForecastTask`.

    Args:
        source: the dataset, or a zero-argument callable returning it (Hydra partial).
        task: the task, or its dict form.
        window: ``stride``, ``patch``, ``patch_stride`` (input and lead steps come from task).
            ``stride: None`` derives it from the data (:func:`derive_stride`).
        splits: ``fractions`` or ``boundaries`` for :func:`make_splits`.
        batch_size: samples per batch; ``None`` derives it from the number of training
            samples (:func:`derive_batch_size`).
        num_workers: DataLoader workers.
        imputer: fitted on train and applied before normalising (``None``: no imputation).
        exclude_imputed_targets: imputed target values do not count in loss or index.
        min_target_fraction: see :func:`build_index`.
        log_transform: variables to log-transform (default: registry choice).
        seed: shuffling seed.
        cv: the ``cv`` config group (:mod:`geoclim.data.folds`): one cross-validation fold.
        variables: ``data.variables`` declarations (``{name: {units, long_name}}``); the
            file source reads them (its config interpolates them), they are kept here so
            that they travel with the datamodule's config.
        backend: ``memory`` (arrays held once), ``lazy`` (time blocks read on demand,
            :mod:`geoclim.data.lazy`) or ``None``: lazy when the data is dask-backed.
        lazy: ``block_steps``, ``blocks_in_memory``, ``prefetch_blocks``, ``memory_gb``,
            ``direct`` and ``huge_pages`` of the lazy backend
            (:class:`~geoclim.data.blocks.BlockReader`).

    """

    def __init__(
        self,
        source: xr.Dataset | Callable[[], xr.Dataset],
        task: ForecastTask | dict[str, Any],
        window: dict[str, Any] | None = None,
        splits: dict[str, Any] | None = None,
        batch_size: int | None = 256,
        num_workers: int = 0,
        imputer: Any | None = None,
        exclude_imputed_targets: bool = True,
        min_target_fraction: float = 0.0,
        log_transform: list[str] | None = None,
        seed: int = 0,
        cv: dict[str, Any] | None = None,
        variables: dict[str, Any] | None = None,
        backend: str | None = None,
        lazy: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.source = source
        self.task = task if isinstance(task, ForecastTask) else ForecastTask.from_dict(dict(task))
        window = dict(window or {})
        unknown = sorted(set(window) - {"stride", "patch", "patch_stride"})
        if unknown:
            raise ConfigError(
                f"unknown data.window key(s) {unknown}; valid are ['patch', 'patch_stride', "
                "'stride'] (input and lead steps come from the task)"
            )
        self.derive_stride = "stride" in window and window["stride"] is None
        if self.derive_stride:
            window["stride"] = 1  # replaced in setup, once the data is known
        self.spec = WindowSpec(self.task.input_steps, self.task.horizon, **window)
        self.split_args = dict(splits or {})
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.imputer = imputer
        self.exclude_imputed_targets = exclude_imputed_targets
        self.min_target_fraction = min_target_fraction
        self.log_transform = tuple(log_transform) if log_transform is not None else None
        self.seed = seed
        self.cv = folds.parse_cv(cv)
        self.variables = dict(variables or {})
        self.backend, self.lazy_args = backend, dict(lazy or {})
        self.reader: BlockReader | None = None  # the lazy backend's blocks
        self.ds: xr.Dataset | None = None
        self.normalizer: Normalizer | None = None
        self.splits: TimeSplits | None = None
        self.arrays: WindowArrays | None = None
        self.index: dict[str, SampleIndex] = {}
        self.step: TimeStep | None = None

    @property
    def dims(self) -> dict[str, int]:
        """Channel counts and steps from the task (one-hot widths of CF flag inputs once set up)."""
        return self.task.dims

    def setup(self, stage: str | None = None) -> None:
        """Run the data path once (idempotent)."""
        if self.arrays is not None or self.reader is not None:
            return
        ds = self.source() if callable(self.source) else self.source
        task = self.task
        task.check_variables(ds)
        ds = schema.validate(
            ds, required=task.dynamic_variables + task.static_inputs, source="data.source"
        )
        self.step = schema.time_step(ds)
        self.task = task = self._with_categories(task, ds)
        self.splits = make_splits(ds[TIME].values, task, **self.split_args)
        if self.cv is not None and self.cv.name == "blocked_time":
            gap = task.input_steps + task.horizon
            self.splits = folds.blocked_time_splits(ds.sizes[TIME], self.cv, gap)
        keep = [*task.dynamic_variables, *task.static_inputs]
        keep += [variables.mask_name(v) for v in task.targets if variables.mask_name(v) in ds]
        ds = ds[keep]
        self.backend = lazy.choose_backend(self.backend, ds)
        if self.backend == "lazy" and self.imputer is not None:
            raise ConfigError(
                "data.imputer needs the data in memory; with data.backend = 'lazy' impute "
                "the store beforehand or set data.imputer=null"
            )
        if self.imputer is not None:
            start, stop = self.splits.train
            train_period = slice(ds[TIME].values[start], ds[TIME].values[stop - 1])
            self.imputer.fit(ds, period=train_period)
            ds = self.imputer.transform(ds)
        self.ds = ds
        self.normalizer = Normalizer.fit(
            ds,
            [v for v in (*task.dynamic_variables, *task.static_inputs) if v not in task.categories],
            time_range=self.splits.train,
            log=self.log_transform,
        )
        valid: Any  # (T, H, W) bool, bit-packed in the lazy backend
        if self.backend == "lazy":
            readers = max(1, self.num_workers)  # the processes that share data.lazy.memory_gb
            self.reader = BlockReader(
                ds, self._build_arrays, self.spec, processes=readers, **self.lazy_args
            )
            valid = self.reader.target_valid(task.targets, self._exclude_masks(ds))
        else:
            self.arrays = self._build_arrays(ds)
            valid = self.arrays.target_valid()
        if self.derive_stride:
            every = self._index(valid, ds.sizes[TIME], "train")
            target = TARGET_SAMPLES if self.spec.patch == 1 else TARGET_SPATIAL_SAMPLES
            stride = derive_stride(len(every), cycle_length(ds[TIME].values), target)
            self.spec = dataclasses.replace(self.spec, stride=stride)
            log.info(
                "window.stride = %d, derived from the data: %d training samples at stride 1, "
                "aiming at about %d per epoch (set data.window.stride to choose)",
                stride,
                len(every),
                target,
            )
        for name in SPLIT_NAMES:
            self.index[name] = self._index(valid, ds.sizes[TIME], name)
        if self.cv is not None and self.cv.name == "spatial_blocks":
            cells = int(np.prod(self.spec.patch_shape(self.grid_shape)))
            self.index = folds.leave_region_out(self.index, ds, self.cv, cells)
        if self.batch_size is None:
            self.batch_size = derive_batch_size(len(self.index["train"]))
            log.info(
                "data.batch_size = %d, derived from %d training samples (set it to choose)",
                self.batch_size,
                len(self.index["train"]),
            )
        log.info("samples per split: %s", {k: len(v) for k, v in self.index.items()})

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the arrays (``(S, 1)`` for stations)."""
        if self.reader is not None:
            return self.reader.grid_shape
        assert self.arrays is not None
        return self.arrays.grid_shape

    def _exclude_masks(self, ds: xr.Dataset) -> list[str]:
        masks = [variables.mask_name(v) for v in self.task.targets]
        return [m for m in masks if m in ds] if self.exclude_imputed_targets else []

    def _index(self, valid: Any, n_time: int, split: str) -> SampleIndex:
        assert self.splits is not None
        return build_index(
            valid,
            self.grid_shape,
            n_time,
            self.spec,
            self.splits[split],
            min_target_fraction=self.min_target_fraction,
        )

    @staticmethod
    def _with_categories(task: ForecastTask, ds: xr.Dataset) -> ForecastTask:
        """``task`` with the categories of its CF flag inputs, as the data describes them."""
        found = categorical.categories_of(ds, (*task.dynamic_variables, *task.static_inputs))
        declared = {k: v for k, v in task.categories.items() if k in found}
        for name, cats in declared.items():
            if cats != found[name]:
                raise ConfigError(
                    f"task.categories[{name!r}] = {cats} but the data's flags are {found[name]}"
                )
        return task if found == task.categories else replace(task, categories=found)

    def _encode(self, values: np.ndarray, name: str) -> np.ndarray:
        """``(..., width)`` normalised values, or the one-hot of a categorical input."""
        if name in self.task.categories:
            return categorical.one_hot(values, self.task.categories[name])
        assert self.normalizer is not None
        return self.normalizer.encode(values, name)[..., None]

    def _build_arrays(self, ds: xr.Dataset, out: np.ndarray | None = None) -> WindowArrays:
        """The normalised :class:`WindowArrays` of ``ds``.

        ``out``, when its shape and dtype fit, receives the dynamic array (the lazy reader
        reuses the arrays of blocks it has dropped instead of faulting in fresh memory).
        """
        task = self.task
        grid = schema.layout_of(ds) == "grid"
        space = schema.space_dims(ds)
        h = ds.sizes[space[0]]
        w = ds.sizes[space[1]] if grid else 1
        n_time = ds.sizes[TIME]
        # channels: each variable's normalised value, or one 0/1 channel per category
        first: dict[str, int] = {}  # first dynamic channel of each variable
        c = 0
        for name in task.dynamic_variables:
            first[name] = c
            c += len(task.channel_names(name))
        fits = out is not None and out.shape == (n_time, h, w, c) and out.dtype == np.float32
        dynamic: np.ndarray = (
            out if fits and out is not None else np.empty((n_time, h, w, c), np.float32)
        )
        # (T, H, W) values of each variable: views of the data (a lazy block is loaded already)
        raw = [ds[name].transpose(TIME, *space).values for name in task.dynamic_variables]
        # time slabs of all channels at once: each slab of the channels-last array is written
        # while it is in cache, not once per variable (and temporaries stay slab-sized)
        steps = max(1, _SLAB_BYTES // max(1, dynamic[:1].nbytes))
        for lo in range(0, n_time, steps):
            slab = dynamic[lo : lo + steps]  # (k, H, W, C_dyn), a view
            for name, values in zip(task.dynamic_variables, raw, strict=True):
                encoded = self._encode(values[lo : lo + steps], name)
                width = encoded.shape[-1]
                slab[..., first[name] : first[name] + width] = encoded.reshape(*slab.shape[:3], -1)
        static = np.empty((h, w, len(task.static_channels)), np.float32)
        c = 0
        for name in task.static_inputs:
            values = self._encode(ds[name].transpose(*space).values, name).reshape(h, w, -1)
            static[..., c : c + values.shape[-1]] = values
            c += values.shape[-1]
        cal_names = tuple(n for n in task.future_inputs if n in calendar.FEATURES)
        sources = tuple(
            ("calendar", cal_names.index(n))
            if n in calendar.FEATURES
            else ("dynamic", first[n] + j)
            for n in task.future_inputs
            for j in range(len(task.channel_names(n)))
        )
        exclude = None
        masks = [variables.mask_name(v) for v in task.targets]
        if self.exclude_imputed_targets and any(m in ds for m in masks):
            exclude = np.zeros((n_time, h, w, len(task.targets)), bool)
            for c, m in enumerate(masks):
                if m in ds:
                    exclude[..., c] = ds[m].transpose(TIME, *space).values.reshape(n_time, h, w)
        return WindowArrays(
            dynamic=dynamic,
            calendar=calendar.calendar_features(ds[TIME].values, cal_names, step=self.step),
            static=static,
            n_past=len(task.past_channels),
            n_targets=len(task.targets),
            known_sources=sources,
            exclude=exclude,
        )

    def dataset(self, split: str) -> WindowDataset | lazy.LazyWindowDataset:
        """The :class:`WindowDataset` of ``split`` (lazy backend: its block dataset)."""
        self.setup()
        if self.reader is not None:
            return lazy.LazyWindowDataset(self.reader, self.index[split], self.spec)
        assert self.arrays is not None
        return WindowDataset(self.arrays, self.index[split], self.spec)

    def loader(self, split: str, *, shuffle: bool, rank: int = 0, world_size: int = 1):
        """Whole batches of ``split`` for one rank (epoch-seeded order when shuffled)."""
        dataset = self.dataset(split)  # sets up, which derives a batch size left unset
        assert self.batch_size is not None
        return batch_loader(
            dataset,
            self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
        )

    def train_dataloader(self):
        """Shuffled training batches; under DDP, this rank's share of each global batch."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return self.loader("train", shuffle=True, rank=rank, world_size=world)

    def val_dataloader(self):
        """Validation batches in index order (the whole split on every rank)."""
        return self.loader("val", shuffle=False)

    def test_dataloader(self):
        """Test batches in index order."""
        return self.loader("test", shuffle=False)

    def predict_dataloader(self):
        """Test batches, for predictions."""
        return self.test_dataloader()

    @property
    def fingerprint(self) -> str:
        """sha256 of the train block of every variable the task reads (after imputation)."""
        self.setup()
        assert self.ds is not None and self.splits is not None
        names = (*self.task.dynamic_variables, *self.task.static_inputs)
        return data_fingerprint(self.ds, names, self.splits.train)

    @property
    def is_station(self) -> bool:
        """Whether the data is a station network."""
        return self.ds is not None and STATION in self.ds.dims
