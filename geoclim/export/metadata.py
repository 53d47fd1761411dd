"""The export bundle's metadata: everything the serving adapter needs, embedded in the .onnx.

An exported model is one ``.onnx`` file. Its ``metadata_props`` (string key -> string value)
carry one JSON document per key, all prefixed ``geoclim.``::

    geoclim.format_version   1
    geoclim.task             ForecastTask.to_dict()
    geoclim.window           WindowSpec fields + ``time_step`` (``{"count", "unit"}`` of a
                             :class:`~geoclim.data.timeaxis.TimeStep`: ``unit`` ``"ns"``
                             fixed, ``"month"`` / ``"year"`` calendar), ``time_calendar``
                             (CF calendar of the stamps) and, for fixed steps,
                             ``time_step_seconds`` (the only field of older exports, which
                             read back as a fixed step on the standard calendar)
    geoclim.normalizer       Normalizer.to_dict() (per-variable mean / std / log)
    geoclim.variables        {name: {units, long_name}} of every input and target
    geoclim.domain           layout, coordinates (grid axes or station ids / lat / lon) and
                             the static fields on them (physical units, base64 float32)
    geoclim.io               ONNX input names (Batch keys the net reads), output names,
                             whether H and W are dynamic, model kind and class
    geoclim.data_fingerprint sha256 of the training block the model was fitted on
    geoclim.scores           the run's metrics.json (test scores)
    geoclim.config           the composed Hydra config of the run
    geoclim.parity           the torch / onnxruntime parity report of this export
    geoclim.provenance       geoclim version, git commit, export time, run dir, extras
    geoclim.reference        per dynamic variable, train-block statistics for drift checks:
                             PSI quantile bins, min, max, missing rate
                             (:func:`geoclim.data.drift.reference_summary`; optional)

This module is torch-free and onnx-free: serving reads the same map back through
``onnxruntime.InferenceSession.get_modelmeta().custom_metadata_map``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from geoclim.data import calendar, variables
from geoclim.data.normalize import Normalizer
from geoclim.data.task import ForecastTask
from geoclim.data.timeaxis import TimeStep
from geoclim.data.windows import WindowSpec
from geoclim.errors import ConfigError, SchemaError
from geoclim.types import LATITUDE, LONGITUDE, STATION, Layout

FORMAT_VERSION = 1
PREFIX = "geoclim."
_REQUIRED = ("format_version", "task", "window", "normalizer", "variables", "domain", "io")


def encode_array(values: np.ndarray) -> dict[str, Any]:
    """Pack an array as JSON: ``{"dtype", "shape", "base64"}`` (little-endian float32)."""
    a = np.ascontiguousarray(values, dtype="<f4")
    return {
        "dtype": "float32",
        "shape": list(a.shape),
        "base64": base64.b64encode(a.tobytes()).decode("ascii"),
    }


def decode_array(data: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_array`."""
    try:
        raw = base64.b64decode(data["base64"])
        return np.frombuffer(raw, dtype="<f4").reshape(data["shape"]).astype(np.float32)
    except (KeyError, TypeError, ValueError) as err:
        raise SchemaError(f"malformed array in export metadata ({err})") from None


@dataclass(frozen=True)
class Domain:
    """Where the model was trained: coordinates and the static fields on them.

    Attributes:
        layout: ``"grid"`` or ``"station"``.
        latitude: ``(H,)`` grid rows, or ``(S,)`` station latitudes.
        longitude: ``(W,)`` grid columns, or ``(S,)`` station longitudes.
        station: ``(S,)`` station ids (empty for grids).
        static: physical static fields, ``(H, W)`` for grids and ``(S,)`` for stations.

    """

    layout: Layout
    latitude: np.ndarray
    longitude: np.ndarray
    station: tuple[str, ...] = ()
    static: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, static_names: tuple[str, ...] = ()) -> Domain:
        """Coordinates and ``static_names`` fields of a canonical dataset."""
        lat = np.asarray(ds[LATITUDE].values, dtype=np.float64)
        lon = np.asarray(ds[LONGITUDE].values, dtype=np.float64)
        if STATION in ds.dims:
            static = {
                n: np.asarray(ds[n].transpose(STATION).values, np.float32) for n in static_names
            }
            return cls("station", lat, lon, tuple(str(s) for s in ds[STATION].values), static)
        static = {
            n: np.asarray(ds[n].transpose(LATITUDE, LONGITUDE).values, np.float32)
            for n in static_names
        }
        return cls("grid", lat, lon, (), static)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "layout": self.layout,
            "latitude": self.latitude.tolist(),
            "longitude": self.longitude.tolist(),
            "station": list(self.station),
            "static": {k: encode_array(v) for k, v in self.static.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Domain:
        """Inverse of :meth:`to_dict`."""
        layout = data.get("layout")
        if layout not in ("grid", "station"):
            raise SchemaError(f"export domain has layout {layout!r}; expected 'grid' or 'station'")
        return cls(
            layout,
            np.asarray(data["latitude"], dtype=np.float64),
            np.asarray(data["longitude"], dtype=np.float64),
            tuple(str(s) for s in data.get("station", ())),
            {k: decode_array(v) for k, v in data.get("static", {}).items()},
        )


@dataclass(frozen=True)
class ModelIO:
    """The graph's interface.

    Attributes:
        inputs: ONNX input names, a subset of the Batch keys, in graph order.
        outputs: ONNX output names; the first is the prediction
            ``(B, L, C_out[, Q], h, w)`` in normalised space.
        dynamic_spatial: whether ``h`` and ``w`` are dynamic axes (CNN on any grid size).
        kind: ``"net"`` (a torch network) or ``"tree"`` (a tree baseline).
        model_class: dotted path of the exported model class (informational).
        quantized: whether weights are int8 (dynamic quantisation).
        output_space: ``"normalised"`` (nets) or ``"physical"`` (trees predict in units).
        nan_inputs: ``"fill"`` (NaN -> train mean before the graph, as in training),
            ``"pass"`` (the graph routes NaN itself: XGBoost, LightGBM) or ``"refuse"``
            (the graph cannot: complete inputs only).
        calendar: calendar encodings of the ``calendar`` input (trees), in order.

    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ("prediction",)
    dynamic_spatial: bool = False
    kind: str = "net"
    model_class: str = ""
    quantized: bool = False
    output_space: str = "normalised"
    nan_inputs: str = "fill"
    calendar: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        d["inputs"], d["outputs"] = list(self.inputs), list(self.outputs)
        d["calendar"] = list(self.calendar)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelIO:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["inputs"] = tuple(data["inputs"])
        data["outputs"] = tuple(data.get("outputs", ("prediction",)))
        data["calendar"] = tuple(data.get("calendar", ()))
        return cls(**data)


@dataclass(frozen=True)
class ExportMetadata:
    """Everything embedded in an exported model (see the module docstring for the keys)."""

    task: ForecastTask
    window: WindowSpec
    step: TimeStep
    normalizer: Normalizer
    domain: Domain
    io: ModelIO
    variables: dict[str, dict[str, str]] = field(default_factory=dict)
    data_fingerprint: str = ""
    scores: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    time_calendar: str = "standard"

    @property
    def time_step(self) -> np.timedelta64:
        """The fixed time step as ``timedelta64[ns]`` (a DataError for calendar steps)."""
        return self.step.timedelta

    @property
    def time_step_seconds(self) -> int:
        """The fixed time step in seconds (a DataError for calendar steps)."""
        return int(self.step.timedelta / np.timedelta64(1, "s"))

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` map: ``geoclim.<key>`` -> JSON string."""
        window = asdict(self.window) | _step_doc(self.step, self.time_calendar)
        docs: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "task": _task_doc(self.task),
            "window": window,
            "normalizer": self.normalizer.to_dict(),
            "variables": self.variables or variable_table(self.task),
            "domain": self.domain.to_dict(),
            "io": self.io.to_dict(),
            "data_fingerprint": self.data_fingerprint,
            "scores": self.scores,
            "config": self.config,
            "parity": self.parity,
            "provenance": self.provenance,
            "reference": self.reference,
        }
        return {
            PREFIX + k: json.dumps(v, sort_keys=True, default=_json_default)
            for k, v in docs.items()
        }

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ExportMetadata:
        """Inverse of :meth:`to_props`; raise naming the missing or malformed key."""
        docs: dict[str, Any] = {}
        for key, text in props.items():
            if key.startswith(PREFIX):
                try:
                    docs[key[len(PREFIX) :]] = json.loads(text)
                except json.JSONDecodeError as err:
                    raise SchemaError(f"export metadata {key!r} is not valid JSON: {err}") from None
        missing = [PREFIX + k for k in _REQUIRED if k not in docs]
        if missing:
            raise SchemaError(
                f"not a geoclim export: metadata lacks {missing} (has {sorted(props)})"
            )
        if docs["format_version"] != FORMAT_VERSION:
            raise SchemaError(
                f"export metadata format_version {docs['format_version']!r} is not supported; "
                f"this geoclim reads version {FORMAT_VERSION}"
            )
        window = dict(docs["window"])
        step, time_calendar = _read_step(window)
        return cls(
            task=ForecastTask.from_dict(docs["task"]),
            window=WindowSpec(**window),
            step=step,
            time_calendar=time_calendar,
            normalizer=Normalizer.from_dict(docs["normalizer"]),
            domain=Domain.from_dict(docs["domain"]),
            io=ModelIO.from_dict(docs["io"]),
            variables=docs["variables"],
            data_fingerprint=docs.get("data_fingerprint", ""),
            scores=docs.get("scores", {}),
            config=docs.get("config", {}),
            parity=docs.get("parity", {}),
            provenance=docs.get("provenance", {}),
            reference=docs.get("reference", {}),
        )

    def replace(self, **changes: Any) -> ExportMetadata:
        """A copy with ``changes`` applied."""
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return ExportMetadata(**(fields | changes))

    def summary(self) -> dict[str, Any]:
        """A short JSON description (for ``GET /v1/models``)."""
        return {
            "task": self.task.to_dict(),
            "time_step": str(self.step),
            "time_calendar": self.time_calendar,
            "layout": self.domain.layout,
            "patch": self.window.patch,
            "inputs": list(self.io.inputs),
            "kind": self.io.kind,
            "quantized": self.io.quantized,
            "variables": self.variables,
            "categories": self.task.categories,
            "data_fingerprint": self.data_fingerprint,
            "scores": self.scores,
            "provenance": self.provenance,
        } | ({} if self.step.is_calendar else {"time_step_seconds": self.time_step_seconds})


def _task_doc(task: ForecastTask) -> dict[str, Any]:
    """``task.to_dict()`` with each variable's categories as ``[[meaning, value], ...]``.

    The metadata JSON sorts dict keys; the categories' order is the one-hot channel order,
    so it travels as a list (``ForecastTask.from_dict`` reads both forms).
    """
    doc = task.to_dict()
    doc["categories"] = {k: [[m, v] for m, v in c.items()] for k, c in task.categories.items()}
    return doc


def _step_doc(step: TimeStep, time_calendar: str) -> dict[str, Any]:
    """The ``window`` entries describing the time axis (see the module docstring)."""
    doc: dict[str, Any] = {
        "time_step": {"count": step.count, "unit": step.unit},
        "time_calendar": time_calendar,
    }
    if not step.is_calendar:
        doc["time_step_seconds"] = int(step.timedelta / np.timedelta64(1, "s"))
    return doc


def _read_step(window: dict[str, Any]) -> tuple[TimeStep, str]:
    """Pop the time-axis entries of ``window``; older exports carry only seconds."""
    seconds = window.pop("time_step_seconds", None)
    doc = window.pop("time_step", None)
    time_calendar = str(window.pop("time_calendar", "standard"))
    try:
        if doc is not None:
            return TimeStep(int(doc["count"]), doc["unit"]), time_calendar
        if seconds is not None:
            return TimeStep(int(seconds) * 10**9, "ns"), time_calendar
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise SchemaError(f"export metadata 'geoclim.window' has a bad time step ({err})") from None
    raise SchemaError(
        "export metadata 'geoclim.window' has neither 'time_step' nor 'time_step_seconds'"
    )


def variable_table(task: ForecastTask, ds: Any = None) -> dict[str, dict[str, str]]:
    """``{name: {"units", "long_name"}}`` for every variable the task reads or predicts.

    Unregistered variables take theirs from ``ds`` (the training dataset) when given.
    """
    table = {}
    for name in (*task.past_variables, *task.future_inputs, *task.static_inputs):
        if name in calendar.FEATURES:
            table[name] = {"units": "1", "long_name": f"calendar feature {name}"}
        else:
            attrs = ds[name].attrs if ds is not None and name in ds else None
            var = variables.describe(name, attrs)
            table[name] = {"units": var.units, "long_name": var.long_name}
    return table


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
