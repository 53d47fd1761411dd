"""Optional int8 dynamic quantisation of an export, with its cost in skill and gain in speed.

``onnxruntime.quantization.quantize_dynamic`` stores MatMul / Gemm / LSTM / Conv weights as
int8 and quantises activations on the fly; no calibration data is needed. Whether that is
worth it is measured, not assumed: :func:`quantize_export` scores the float32 and the int8
graph on the same test batches (RMSE, MAE in physical units, and skill against persistence,
``1 - RMSE / RMSE_persistence``) and times both at batch sizes 1 and 256.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

from geoclim.data.normalize import Normalizer
from geoclim.data.quantiles import point_from_quantiles
from geoclim.data.task import ForecastTask
from geoclim.export.metadata import ExportMetadata
from geoclim.export.onnx import read_metadata, write_metadata

log = logging.getLogger(__name__)


def _session(path: str | os.PathLike) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def point_forecast(prediction: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """``(B, L, C[, Q], h, w)`` -> ``(B, L, C, h, w)``: the median rule of ``data.quantiles``."""
    if not quantiles:
        return prediction
    return point_from_quantiles(prediction, quantiles, axis=3)


def score_batches(
    session: ort.InferenceSession,
    batches: Sequence[dict[str, np.ndarray]],
    task: ForecastTask,
    normalizer: Normalizer,
) -> dict[str, dict[str, float]]:
    """RMSE, MAE (physical units) and skill vs persistence per target over ``batches``.

    Args:
        session: the graph.
        batches: numpy Batch dicts with ``target`` and ``target_mask``.
        task: gives the targets and quantiles.
        normalizer: de-normalises predictions and targets.

    Returns:
        ``{"rmse": {var: x}, "mae": {...}, "skill_vs_persistence": {...}}``.

    """
    names = [i.name for i in session.get_inputs()]
    sums = {name: np.zeros(4) for name in task.targets}  # se, ae, se_persistence, n
    for batch in batches:
        pred = point_forecast(session.run(None, {k: batch[k] for k in names})[0], task.quantiles)
        for c, name in enumerate(task.targets):
            mask = batch["target_mask"][:, :, c] > 0
            p = normalizer.decode(pred[:, :, c], name)[mask]
            t = normalizer.decode(batch["target"][:, :, c], name)[mask]
            last = np.broadcast_to(batch["past"][:, -1:, c], mask.shape)
            persistence = normalizer.decode(last, name)[mask]
            sums[name] += [
                ((p - t) ** 2).sum(),
                np.abs(p - t).sum(),
                ((persistence - t) ** 2).sum(),
                mask.sum(),
            ]
    out: dict[str, dict[str, float]] = {"rmse": {}, "mae": {}, "skill_vs_persistence": {}}
    for name, (se, ae, se_p, n) in sums.items():
        n = max(n, 1.0)
        rmse, rmse_p = float(np.sqrt(se / n)), float(np.sqrt(se_p / n))
        out["rmse"][name], out["mae"][name] = rmse, float(ae / n)
        out["skill_vs_persistence"][name] = 1.0 - rmse / rmse_p if rmse_p > 0 else float("nan")
    return out


def time_session(
    session: ort.InferenceSession,
    batch: dict[str, np.ndarray],
    batch_size: int,
    *,
    repeats: int = 30,
    warmup: int = 3,
) -> dict[str, float]:
    """Median and p95 latency (ms) of ``session`` on ``batch_size`` samples tiled from ``batch``."""
    names = [i.name for i in session.get_inputs()]
    n = batch[names[0]].shape[0]
    idx = np.arange(batch_size) % n
    feed = {k: np.ascontiguousarray(batch[k][idx]) for k in names}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))],
    }


def quantize_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Dynamic int8 quantisation of ``src`` into ``dst`` (metadata copied, ``quantized`` set)."""
    src, dst = Path(src).resolve(), Path(dst).resolve()
    # onnxruntime's symbolic shape inference leaves scratch files in the working directory
    # when it gives up (dynamic CNN grids): run it from a temporary one.
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        pre = Path(tmp) / "pre.onnx"
        try:  # shape inference lets more ops be quantised; dynamic CNN grids may defeat it
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - onnxruntime raises bare Exceptions here
            try:
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            except Exception:  # noqa: BLE001
                pre = src
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
    meta = read_metadata(src)
    write_metadata(dst, meta.replace(io=dataclasses.replace(meta.io, quantized=True)))
    return dst


def quantize_export(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    batches: Sequence[dict[str, np.ndarray]],
    *,
    batch_sizes: tuple[int, ...] = (1, 256),
    repeats: int = 30,
) -> dict[str, Any]:
    """Quantise an export and measure skill before/after and the speed-up.

    Args:
        src: the float32 export (with metadata).
        dst: where the int8 export goes.
        batches: test batches (numpy Batch dicts with targets).
        batch_sizes: batch sizes to time.
        repeats: timed runs per batch size.

    Returns:
        ``{"fp32": scores, "int8": scores, "latency": {...}, "speedup": {bs: x}}``; also
        embedded in the int8 file's ``geoclim.provenance["quantization"]``.

    """
    dst = quantize_file(src, dst)
    meta: ExportMetadata = read_metadata(src)
    fp32, int8 = _session(src), _session(dst)
    report: dict[str, Any] = {
        "method": "onnxruntime.quantization.quantize_dynamic (QInt8 weights)",
        "fp32": score_batches(fp32, batches, meta.task, meta.normalizer),
        "int8": score_batches(int8, batches, meta.task, meta.normalizer),
        "latency": {},
        "speedup": {},
    }
    for bs in batch_sizes:
        a = time_session(fp32, batches[0], bs, repeats=repeats)
        b = time_session(int8, batches[0], bs, repeats=repeats)
        report["latency"][str(bs)] = {"fp32": a, "int8": b}
        report["speedup"][str(bs)] = a["median_ms"] / b["median_ms"]
    int8_meta = read_metadata(dst)
    write_metadata(
        dst, int8_meta.replace(provenance=int8_meta.provenance | {"quantization": report})
    )
    log.info(
        "int8 speed-up %s; rmse fp32 %s -> int8 %s",
        report["speedup"],
        report["fp32"]["rmse"],
        report["int8"]["rmse"],
    )
    return report
