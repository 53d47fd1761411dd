"""The onnxruntime side of serving: open an exported graph, check it, run it in chunks.

:func:`open_session` loads a ``.onnx`` file written by ``geoclim-export`` with the service's
session options (intra-op threads, the graph optimisation level of :func:`optimization_level`)
and reads its embedded :class:`~geoclim.export.metadata.ExportMetadata`;
:func:`check_graph` refuses a graph whose inputs do not match that metadata;
:func:`run_graph` feeds Batch arrays to it in chunks of :data:`RUN_CHUNK` samples. The
:class:`~geoclim.serving.adapter.Forecaster` builds everything around these calls.

Imports numpy and onnxruntime only -- never torch, Lightning or Hydra.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from geoclim.data.windows import WindowSpec
from geoclim.errors import ConfigError, SchemaError
from geoclim.export.metadata import ExportMetadata, ModelIO

RUN_CHUNK = 128
"""Samples per onnxruntime call of a network: measured on 2 CPU cores (batch 256, one
thread, ``scripts/bench_serving.py``), chunks of 64-128 ran the LSTM and the TFT as fast or
faster than whole batches (onnxruntime's kernels were seen to slow down past ~160 samples)."""

_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def optimization_level(choice: str, window: WindowSpec | None = None) -> ort.GraphOptimizationLevel:
    """The onnxruntime graph optimisation level for ``choice`` (and the export's window).

    ``"auto"``: ``all`` for spatial samples (the CNN: its layout transforms, NCHWc, serve
    convolutions; it ran 1.6x torch against 1.5x with ``basic``) and ``basic`` for point
    models (constant folding and redundant-node removal only: the TFT ran ~1.5x torch at
    batch 256 with ``basic`` and ~1.0-1.1x with ``extended`` / ``all``, whose fusions
    re-lay its many small matrix products; the LSTM ran the same under all three).

    Raises:
        ConfigError: for an unknown ``choice``.
    """
    if choice == "auto":
        choice = "basic" if window is None or window.patch == 1 else "all"
    if choice not in _LEVELS:
        raise ConfigError(
            f"unknown onnxruntime optimization {choice!r}; valid are auto, {', '.join(_LEVELS)}"
        )
    return _LEVELS[choice]


def open_session(
    path: str | os.PathLike,
    *,
    threads: int | None = None,
    providers: list[str] | None = None,
    optimization: str = "auto",
) -> tuple[ort.InferenceSession, ExportMetadata]:
    """Load an exported model's graph and its embedded metadata.

    Args:
        path: the .onnx file written by ``geoclim-export``.
        threads: onnxruntime intra-op threads (default: onnxruntime's choice); one
            inter-op thread when set.
        providers: onnxruntime execution providers (default CPU).
        optimization: ``"basic"``, ``"extended"``, ``"all"`` or ``"auto"`` (see
            :func:`optimization_level`; ``"auto"`` reads the export's window first).

    Returns:
        ``(session, metadata)``.

    Raises:
        ConfigError: no file at ``path``, or an unknown ``optimization``.
        SchemaError: the file is not a loadable ONNX model.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no exported model at {path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = optimization_level(optimization)
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = _session(path, options, providers)
    meta = ExportMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    level = optimization_level(optimization, meta.window)
    if level != options.graph_optimization_level:  # "auto" on a spatial model
        options.graph_optimization_level = level
        session = _session(path, options, providers)
    return session, meta


def check_graph(session: ort.InferenceSession, metadata: ExportMetadata) -> None:
    """Refuse a graph that its metadata does not describe, or that cannot be served.

    Raises:
        SchemaError: the graph's inputs differ from ``metadata.io.inputs``, it reads
            ``time_idx`` (a training-axis position), or a tree export claims patches.
    """
    graph_inputs = [i.name for i in session.get_inputs()]
    if metadata.io.kind == "tree" and metadata.window.patch != 1:
        raise SchemaError(
            "tree exports forecast points (window.patch = 1); metadata says "
            f"patch = {metadata.window.patch}"
        )
    if list(metadata.io.inputs) != graph_inputs:
        raise SchemaError(
            f"export metadata lists inputs {list(metadata.io.inputs)} but the "
            f"graph has {graph_inputs}"
        )
    if "time_idx" in graph_inputs:
        raise SchemaError(
            "the graph reads 'time_idx', a position on the training data's "
            "time axis, which has no meaning when serving"
        )


def run_graph(
    session: ort.InferenceSession, io: ModelIO, batch: dict[str, np.ndarray], chunk: int
) -> np.ndarray:
    """Run the graph on Batch arrays (normalised), ``chunk`` samples per call.

    Args:
        session: the graph's session.
        io: its inputs and outputs (``metadata.io``).
        batch: at least the graph's inputs, e.g. ``past (B, T_in, C_in, h, w)``.
        chunk: samples per onnxruntime call.

    Returns:
        The first output, ``(B, L, C_out[, Q], h, w)`` normalised prediction.
    """
    names = io.inputs
    n = len(batch[names[0]])
    out = []
    for start in range(0, max(n, 1), chunk):
        feed = {k: _dtype(k, batch[k][start : start + chunk]) for k in names}
        out.append(session.run([io.outputs[0]], feed)[0])
    return out[0] if len(out) == 1 else np.concatenate(out)


def _session(
    path: Path, options: ort.SessionOptions, providers: list[str] | None
) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(
            str(path), options, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own exception types
        raise SchemaError(f"{path}: not a loadable ONNX model ({err})") from None


def _dtype(name: str, values: np.ndarray) -> np.ndarray:
    kind = np.int64 if name.endswith("_idx") else np.float32
    return np.ascontiguousarray(values, dtype=kind)
