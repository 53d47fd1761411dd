"""``Forecaster``: an exported .onnx file -> forecasts as ``xr.Dataset`` (or numpy).

The ONNX graph is the bare network in normalised space; this adapter does everything around
it with the statistics embedded in the file (the export bundle needs nothing else):

    raw history (physical units)                          forecast (physical units)
        -> validate against the embedded task              ^ de-normalise (Normalizer.decode)
        -> normalise (Normalizer.encode)                   | scatter on coordinates
        -> windows.gather -> Batch arrays -> onnxruntime --+   (assemble.to_forecast_dataset)

Normalisation lives here, not in the graph, on purpose: the graph stays exactly the network
whose torch/onnxruntime parity was checked, int8 quantisation never touches the statistics,
and the batch is built by the same numpy code (``Normalizer.encode``,
``calendar.calendar_features``, ``windows.gather``) that built the training batches, so
serving cannot drift from training. Accepted gaps (up to ``max_missing``, a fraction per
variable and location / cell) are filled with the train mean (0 in normalised space), exactly
as training batches are; forecasts of locations with more missing, or with no real past value,
are masked (NaN, ``forecast_valid`` False) rather than presented as forecasts, and a request
with nothing valid is an error.

Imports numpy, pandas, xarray and onnxruntime only -- never torch, Lightning or Hydra.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import xarray as xr

from geoclim.data import calendar
from geoclim.data.assemble import to_forecast_dataset
from geoclim.data.calendar import calendar_on_axis
from geoclim.data.categorical import encode_channels
from geoclim.data.tree_inputs import tree_inputs
from geoclim.data.windows import WindowArrays, gather, patch_origins
from geoclim.errors import ConfigError, SchemaError
from geoclim.export.metadata import ExportMetadata
from geoclim.serving import inputs as request
from geoclim.serving import validity
from geoclim.serving.drift import InputDrift
from geoclim.serving.examples import example_request
from geoclim.serving.inputs import Inputs
from geoclim.serving.points import PointPlan, point_batch
from geoclim.serving.session import RUN_CHUNK, check_graph, open_session, run_graph
from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME


@dataclass
class RawForecast:
    """Network output with the sample positions it belongs to.

    Attributes:
        prediction: ``(N, L, C_out[, Q], h, w)``, normalised unless ``physical``.
        time_idx, lat_idx, lon_idx: ``(N,)`` init positions and patch origins on the request.
        physical: the graph predicts physical units (tree exports).
        valid: ``(N_init, H, W)`` per init (in request order) and location / cell: the
            inputs were complete enough (see ``max_missing``); forecasts elsewhere are masked.
        filled: ``(N_init, H, W)`` number of missing input values filled with the train mean.

    """

    prediction: np.ndarray
    time_idx: np.ndarray
    lat_idx: np.ndarray
    lon_idx: np.ndarray
    physical: bool = False
    valid: np.ndarray | None = None
    filled: np.ndarray | None = None
    warnings: tuple[str, ...] = ()

    def values(self, normalizer, targets: tuple[str, ...]) -> np.ndarray:
        """``(N, L, C_out[, Q], h, w)`` in physical units."""
        if self.physical:
            return self.prediction
        out = np.empty_like(self.prediction)
        for c, name in enumerate(targets):
            out[:, :, c] = normalizer.decode(self.prediction[:, :, c], name)
        return out


@dataclass
class PointForecast:
    """Point forecasts of one init time, in request order.

    Attributes:
        values: ``{target: (S, L[, Q])}`` physical forecasts, NaN where masked.
        valid_time: ``(L,)`` valid times.
        valid: ``(S,)`` the location had enough real inputs (else masked).
        filled: ``(S,)`` missing input values filled with the train mean.
        inputs: the validated request.
        warnings: input drift warnings (see :mod:`geoclim.serving.drift`).

    """

    values: dict[str, np.ndarray]
    valid_time: np.ndarray
    valid: np.ndarray
    filled: np.ndarray
    inputs: Inputs
    warnings: tuple[str, ...] = ()


class Forecaster:
    """Runs an exported geoclim model on raw histories.

    Args:
        session: an onnxruntime session of the exported graph.
        metadata: the export metadata (see :mod:`geoclim.export.metadata`).
        name: a label for logs and the HTTP API.
        max_missing: largest fraction of NaN per variable in one location's (cell's) inputs
            that is filled (``0``: any gap masks the location; ``1``: fill everything like
            training does, except locations without a single real past value).
        max_batch: samples gathered at once (memory bound of one request).
        run_chunk: samples per onnxruntime call of a network (see
            :data:`~geoclim.serving.session.RUN_CHUNK`); ``None``: ``max_batch``.

    """

    def __init__(
        self,
        session: ort.InferenceSession,
        metadata: ExportMetadata,
        *,
        name: str = "model",
        max_missing: float = 0.0,
        max_batch: int = 4096,
        run_chunk: int | None = None,
    ):
        if not 0.0 <= max_missing <= 1.0:
            raise ConfigError(f"max_missing must be within [0, 1], got {max_missing}")
        self.session, self.metadata, self.name = session, metadata, name
        self.max_missing, self.max_batch = max_missing, max_batch
        if run_chunk is None:  # tree ensembles evaluate whole batches as fast per sample
            run_chunk = RUN_CHUNK if metadata.io.kind != "tree" else max_batch
        if run_chunk < 1:
            raise ConfigError(f"run_chunk must be >= 1 sample, got {run_chunk}")
        self.run_chunk = run_chunk
        self.drift: InputDrift | None = None  # set by the app (geoclim.serving.drift)
        check_graph(session, metadata)
        task = metadata.task
        self._cal_names = tuple(n for n in task.future_inputs if n in calendar.FEATURES)
        first, c = {}, 0  # first dynamic channel of each variable (one-hot ones are wider)
        for name in task.dynamic_variables:
            first[name], c = c, c + len(task.channel_names(name))
        self._known_sources = tuple(
            ("calendar", self._cal_names.index(n))
            if n in calendar.FEATURES
            else ("dynamic", first[n] + j)
            for n in task.future_inputs
            for j in range(len(task.channel_names(n)))
        )
        # point requests of plain nets: one pass to the graph's inputs (geoclim.serving.points)
        self.point_plan = PointPlan.build(metadata, self._cal_names, self._known_sources)
        self._validity_plan = validity.ValidityPlan(task, "known_past" in metadata.io.inputs)

    @classmethod
    def from_onnx(
        cls,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        threads: int | None = None,
        providers: list[str] | None = None,
        max_missing: float = 0.0,
        max_batch: int = 4096,
        run_chunk: int | None = None,
        optimization: str = "auto",
    ) -> Forecaster:
        """Load an exported model.

        Args:
            path: the .onnx file written by ``geoclim-export``.
            name: label (default: the file stem).
            threads: onnxruntime intra-op threads (default: onnxruntime's choice).
            providers: onnxruntime execution providers (default CPU).
            max_missing: see the class docstring.
            max_batch: samples gathered at once.
            run_chunk: samples per onnxruntime call (default
                :data:`~geoclim.serving.session.RUN_CHUNK` for networks).
            optimization: onnxruntime graph optimisation level, ``"basic"``,
                ``"extended"``, ``"all"`` or ``"auto"`` (see
                :func:`~geoclim.serving.session.optimization_level`; an unknown value raises
                :class:`~geoclim.errors.ConfigError`).

        """
        session, meta = open_session(
            path, threads=threads, providers=providers, optimization=optimization
        )
        return cls(
            session,
            meta,
            name=name or Path(path).stem,
            max_missing=max_missing,
            max_batch=max_batch,
            run_chunk=run_chunk,
        )

    @property
    def task(self):
        """The embedded :class:`~geoclim.data.task.ForecastTask`."""
        return self.metadata.task

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Run the graph on Batch arrays (normalised), in chunks of ``run_chunk`` samples.

        Args:
            batch: at least the graph's inputs, e.g. ``past (B, T_in, C_in, h, w)``.

        Returns:
            ``(B, L, C_out[, Q], h, w)`` normalised prediction.

        """
        return run_graph(self.session, self.metadata.io, batch, self.run_chunk)

    def forecast(self, inputs: Inputs, *, max_missing: float | None = None) -> RawForecast:
        """Normalise validated inputs, gather every sample, run the graph."""
        meta = self.metadata
        valid, filled = self.input_validity(inputs, max_missing)
        warnings = tuple(self.drift.check(inputs)) if self.drift is not None else ()
        t, y, x = self._samples(inputs)
        plan = self.point_plan
        if plan is not None and t.size <= self.max_batch and plan.covers(inputs):
            preds = [self.run(point_batch(plan, inputs))]  # the samples are the points
        else:
            arrays, preds = self.window_arrays(inputs), []
            for s in range(0, t.size, self.max_batch):
                sl = slice(s, s + self.max_batch)
                preds.append(self.run(self.graph_batch(inputs, arrays, t[sl], y[sl], x[sl])))
        return RawForecast(
            np.concatenate(preds),
            t,
            y,
            x,
            physical=meta.io.output_space == "physical",
            valid=valid,
            filled=filled,
            warnings=warnings,
        )

    def input_validity(
        self, inputs: Inputs, max_missing: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`~geoclim.serving.validity.input_validity` under this model's rules.

        Checks the request's grid against the model's, takes the forecaster's ``max_missing``
        unless given (0 for graphs that cannot route NaN, e.g. a random forest) and counts
        the known inputs at the input steps when the graph reads them (the TFT's encoder).

        Returns:
            ``valid (N, H, W)`` and ``filled (N, H, W)``.
        """
        meta = self.metadata
        self._check_grid(inputs)
        if max_missing is None:
            max_missing = self.max_missing
        if meta.io.nan_inputs == "refuse":  # the graph cannot route NaN (e.g. random forest)
            max_missing = 0.0
        return validity.input_validity(
            self.task,
            inputs,
            max_missing,
            known_past="known_past" in meta.io.inputs,
            plan=self._validity_plan,
        )

    def graph_batch(
        self,
        inputs: Inputs,
        arrays: WindowArrays,
        t: np.ndarray,
        y: np.ndarray,
        x: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """The graph's inputs for samples ``(t, y, x)`` of a request (Batch layout, numpy).

        Windows gathered as in training, plus the tree features of tree exports and the
        domain positions of the cells for nets that read ``lat_idx`` / ``lon_idx``.
        """
        meta = self.metadata
        batch = gather(arrays, meta.window, t, y, x)
        if meta.io.kind == "tree":
            batch |= tree_inputs(
                arrays,
                self.task,
                meta.io.calendar,
                inputs.times,
                inputs.latitude,
                inputs.longitude,
                (t, y, x),
                stations=inputs.layout == "station",
            )
        if inputs.domain_rows is not None and inputs.domain_cols is not None:
            batch["lat_idx"] = inputs.domain_rows[y, x].astype(np.int64)
            batch["lon_idx"] = inputs.domain_cols[y, x].astype(np.int64)
        return batch

    def window_arrays(self, inputs: Inputs) -> WindowArrays:
        """The request as the training datamodule's arrays: normalised, flags one-hot.

        Returns:
            ``dynamic (T, H, W, C_dyn_channels)``, ``static (H, W, C_static_channels)``
            and the calendar encodings of the request's axis (fixed or calendar step).

        """
        task = self.task
        cats, encode = task.categories, self.metadata.normalizer.encode
        return WindowArrays(
            dynamic=encode_channels(inputs.dynamic, task.dynamic_variables, cats, encode),
            calendar=calendar_on_axis(inputs.times, self._cal_names),
            static=encode_channels(inputs.static, task.static_inputs, cats, encode),
            n_past=len(task.past_channels),
            n_targets=len(task.targets),
            known_sources=self._known_sources,
        )

    def predict(
        self,
        history: xr.Dataset,
        *,
        future: xr.Dataset | None = None,
        init_times: np.ndarray | list | None = None,
        max_missing: float | None = None,
    ) -> xr.Dataset:
        """Forecast from an xarray history (physical units).

        Args:
            history: past inputs over at least ``input_steps`` steps, station or grid layout
                (see :func:`geoclim.serving.inputs.from_dataset`).
            future: known-future variables over the lead times, when the task has any.
            init_times: init times (default: the last time of ``history``).
            max_missing: overrides the forecaster's ``max_missing``.

        Returns:
            Forecast Dataset, dims ``(init_time, lead_time, <space>[, quantile])``,
            ``valid_time`` coordinate, physical units.

        """
        inputs = request.from_dataset(self.metadata, history, future, init_times)
        raw = self.forecast(inputs, max_missing=max_missing)
        out = to_forecast_dataset(
            raw.prediction,
            raw.time_idx,
            raw.lat_idx,
            raw.lon_idx,
            _template(inputs),
            self.task.targets,
            normalizer=None if raw.physical else self.metadata.normalizer,
            quantiles=self.task.quantiles,
        ).assign_attrs(model=self.name, data_fingerprint=self.metadata.data_fingerprint)
        assert raw.valid is not None and raw.filled is not None
        out = validity.mask_invalid(out, raw.valid, raw.filled, inputs, self.task.targets)
        return out.assign_attrs(warnings="; ".join(raw.warnings)) if raw.warnings else out

    def predict_arrays(
        self,
        init_time: np.datetime64 | str,
        past: dict[str, np.ndarray],
        *,
        latitude: np.ndarray | list[float],
        longitude: np.ndarray | list[float],
        station: list[str] | None = None,
        future: dict[str, np.ndarray] | None = None,
        static: dict[str, np.ndarray] | None = None,
        units: dict[str, str] | None = None,
        max_missing: float | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Forecast a batch of points from numpy arrays (the fast path, no xarray).

        Args:
            init_time: time of the last history value.
            past: ``{name: (S, T)}`` physical past inputs.
            latitude: ``(S,)`` point latitudes.
            longitude: ``(S,)`` point longitudes.
            station: ``(S,)`` ids.
            future: ``{name: (S, L)}`` known-future variables.
            static: ``{name: (S,)}`` static inputs (default: looked up on the domain).
            units: units of variables sent in non-canonical units.
            max_missing: overrides the forecaster's ``max_missing``.

        Returns:
            ``{target: (S, L[, Q])}`` physical forecasts (NaN where masked, see
            :meth:`predict_points`) and ``(L,)`` valid times.

        """
        points = self.predict_points(
            init_time,
            past,
            latitude=latitude,
            longitude=longitude,
            station=station,
            future=future,
            static=static,
            units=units,
            max_missing=max_missing,
        )
        return points.values, points.valid_time

    def predict_points(
        self,
        init_time: np.datetime64 | str,
        past: dict[str, np.ndarray],
        *,
        latitude: np.ndarray | list[float],
        longitude: np.ndarray | list[float],
        station: list[str] | None = None,
        future: dict[str, np.ndarray] | None = None,
        static: dict[str, np.ndarray] | None = None,
        units: dict[str, str] | None = None,
        max_missing: float | None = None,
    ) -> PointForecast:
        """:meth:`predict_arrays` with the per-location validity mask and filled counts.

        Locations with more than ``max_missing`` of a variable's values missing, or no real
        past value at all, are masked (NaN forecasts, ``valid`` False), never filled and
        presented as forecasts; a request where every location is masked is an error.
        """
        if self.metadata.window.patch != 1:
            raise ConfigError(
                f"model {self.name!r} forecasts spatial patches (window.patch = "
                f"{self.metadata.window.patch}); send a gridded xarray/netCDF history instead "
                "of point series"
            )
        inputs = request.from_arrays(
            self.metadata,
            init_time,
            past,
            latitude=np.asarray(latitude),
            longitude=np.asarray(longitude),
            station=station,
            future=future,
            static=static,
            units=units,
        )
        raw = self.forecast(inputs, max_missing=max_missing)
        # one init time and patch 1: samples are the locations, in request order
        pred = raw.values(self.metadata.normalizer, self.task.targets)[..., 0, 0]
        assert raw.valid is not None
        pred[~raw.valid[0, :, 0]] = np.nan  # masked: too few real inputs
        values = {name: pred[:, :, c] for c, name in enumerate(self.task.targets)}
        t0 = inputs.inits[0]
        valid_time = inputs.times[t0 + 1 : t0 + 1 + self.task.horizon]  # the request's axis
        assert raw.filled is not None
        return PointForecast(
            values, valid_time, raw.valid[0, :, 0], raw.filled[0, :, 0], inputs, raw.warnings
        )

    def predict_records(self, body: dict, *, max_missing: float | None = None) -> dict:
        """Forecast from JSON records, answering exactly as ``POST /v1/forecast`` would.

        Args:
            body: the request body (see :class:`~geoclim.serving.schemas.ForecastRequest`).
            max_missing: overrides the body's and the forecaster's ``max_missing``.

        Returns:
            The response dict (see :func:`geoclim.serving.records.forecast_records`).

        """
        from geoclim.serving.records import forecast_records

        if max_missing is None and body.get("max_missing") is None:
            max_missing = self.max_missing
        return forecast_records(self, body, max_missing=max_missing)

    def explain(
        self,
        history: xr.Dataset,
        *,
        future: xr.Dataset | None = None,
        init_times: np.ndarray | list | None = None,
        method: str = "ablation",
        variable: str | None = None,
        quantile: float | None = None,
        max_missing: float | None = None,
        **options,
    ) -> xr.Dataset:
        """Attribute the forecasts of an xarray history to its inputs, without torch.

        Args:
            history: as for :meth:`predict`.
            future: as for :meth:`predict`.
            init_times: as for :meth:`predict`.
            method: ``"ablation"``, ``"occlusion"`` (grids) or ``"shap"`` (points); see
                :mod:`geoclim.serving.explain`.
            variable: explained target (default: the first).
            quantile: explained quantile level, any level of a quantile model (default: the
                median, or the level nearest 0.5; the ``target_quantile`` attribute says
                which); must stay ``None`` for point models.
            max_missing: overrides the forecaster's ``max_missing``.
            **options: ``block`` (occlusion), ``max_evals`` and ``seed`` (shap),
                ``category_baseline`` (``{variable: meaning}`` of categorical inputs).

        Returns:
            Attribution Dataset, dims ``(sample, lead_time, input_variable, lag)``
            (occlusion: ``(sample, lead_time, input_variable, latitude, longitude)``);
            categorical inputs are summed under their variable, with the per-category
            breakdown in ``category_attribution`` (``category`` = ``<variable>=<meaning>``).

        """
        from geoclim.serving.explain import explain_inputs

        inputs = request.from_dataset(self.metadata, history, future, init_times)
        return explain_inputs(
            self,
            inputs,
            method=method,
            variable=variable,
            quantile=quantile,
            max_missing=max_missing,
            **options,
        )

    def example_request(self, n_locations: int = 1) -> dict:
        """A valid ``POST /v1/forecast`` body (see :mod:`geoclim.serving.examples`)."""
        return example_request(self.metadata, n_locations)

    def warmup(self) -> None:
        """Run one all-zero sample through the graph (first-call latency, readiness)."""
        task, win = self.task, self.metadata.window
        h, w = (1, 1)
        if win.patch is None:
            h, w = _domain_shape(self.metadata)
        elif win.patch > 1:
            h = w = win.patch
        shapes = {
            "past": (1, task.input_steps, len(task.past_channels), h, w),
            "known_future": (1, task.horizon, len(task.known_channels), h, w),
            "known_past": (1, task.input_steps, len(task.known_channels), h, w),
            "static": (1, len(task.static_channels), h, w),
        }
        shapes |= {
            "calendar": (1, task.horizon, len(self.metadata.io.calendar), h, w),
            "coordinates": (1, 2, h, w),
        }
        batch = {
            k: np.zeros(shapes.get(k, (1,)), np.float32 if k in shapes else np.int64)
            for k in self.metadata.io.inputs
        }
        self.run(batch)

    def _samples(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = inputs.grid_shape
        spec = self.metadata.window
        ph, pw = spec.patch_shape((h, w))
        ys = np.arange(h) if ph == 1 else patch_origins(h, ph, spec.patch_stride or ph)
        xs = np.arange(w) if pw == 1 else patch_origins(w, pw, spec.patch_stride or pw)
        # every (init, y, x), inits slowest: meshgrid(inits, ys, xs, indexing="ij") raveled
        n, ny, nx = inputs.inits.size, ys.size, xs.size
        t = np.repeat(inputs.inits.astype(np.int64), ny * nx)
        y = np.tile(np.repeat(ys.astype(np.int64), nx), n)
        return t, y, np.tile(xs.astype(np.int64), n * ny)

    def _check_grid(self, inputs: Inputs) -> None:
        meta = self.metadata
        if meta.window.patch is None and not meta.io.dynamic_spatial:
            expected = _domain_shape(meta)
            if inputs.grid_shape != expected:
                raise SchemaError(
                    f"model {self.name!r} was exported for the whole {expected[0]} x "
                    f"{expected[1]} training grid; the request grid is {inputs.grid_shape[0]} "
                    f"x {inputs.grid_shape[1]}"
                )


def _domain_shape(meta: ExportMetadata) -> tuple[int, int]:
    d = meta.domain
    return (d.latitude.size, d.longitude.size) if d.layout == "grid" else (d.latitude.size, 1)


def _template(inputs: Inputs) -> xr.Dataset:
    coords: dict = {TIME: inputs.times}
    if inputs.layout == "station":
        coords[STATION] = list(inputs.station)
        coords[LATITUDE] = (STATION, inputs.latitude)
        coords[LONGITUDE] = (STATION, inputs.longitude)
    else:
        coords[LATITUDE], coords[LONGITUDE] = inputs.latitude, inputs.longitude
    return xr.Dataset(coords=coords)
