"""Export a fitted tree baseline as ONNX, checked against the baseline's own predictions.

The graph is built by :mod:`geoclim.export.tree_graph` and written with its metadata.

Converter limits, found by the parity check rather than assumed: scikit-learn's
missing-value routing is not converted, so random-forest exports refuse NaN inputs
(``nan_inputs = "refuse"``, parity checked on complete rows); XGBoost multi-quantile models
(``reg:quantileerror`` with several levels) are not converted faithfully, so their export
fails loudly.

:func:`export_tree_run` exports the trees a run saved under ``<run dir>/model`` (see
:meth:`geoclim.baselines.trees.TreeBaseline.save`): the model that was scored, not a refit.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnxruntime as ort

from geoclim import fileio
from geoclim.data.tree_inputs import tree_inputs
from geoclim.errors import ConfigError
from geoclim.export.metadata import ExportMetadata, ModelIO
from geoclim.export.parity import ParityError
from geoclim.export.tree_graph import OPSET, estimators, tree_model
from geoclim.training import rundir
from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME


def _expected(baseline: Any, dm: Any, t: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The baseline's own predictions ``(N, L, C, Q)`` for point samples (physical)."""
    pred = baseline.predict(dm, "test")  # the reference is the baseline's own predict
    out = []
    times = dm.ds["time"].values[t]
    for name in dm.task.targets:
        da = pred[name].sel(init_time=times)
        v = da.values  # (N_init, L, <space>[, Q])
        if "station" in da.dims:
            v = v[np.arange(t.size), :, y]
        else:
            v = v[np.arange(t.size), :, y, x]
        out.append(v if v.ndim == 3 else v[..., None])  # (N, L, Q)
    return np.stack(out, axis=2).astype(np.float64)


def tree_parity(
    session: ort.InferenceSession,
    baseline: Any,
    dm: Any,
    meta: ExportMetadata,
    *,
    max_samples: int = 2000,
    rtol: float = 1e-4,
) -> dict[str, Any]:
    """Compare the graph, fed the inputs the serving adapter builds, with the baseline.

    Rows with a NaN input are skipped when the graph refuses NaN (random forest).

    Raises:
        ParityError: if any compared value differs by more than
            ``rtol * (1 + |expected|)`` (physical units).

    """
    t, y, x = dm.index["test"].decode(slice(0, max_samples))
    ds = dm.ds
    feed = tree_inputs(
        dm.arrays,
        meta.task,
        meta.io.calendar,
        ds[TIME].values,
        ds[LATITUDE].values,
        ds[LONGITUDE].values,
        (t, y, x),
        stations=STATION in ds.dims,
    )
    feed = {k: np.ascontiguousarray(feed[k]) for k in meta.io.inputs}
    got = session.run(None, feed)[0].astype(np.float64)
    got = got[..., 0, 0] if got.ndim >= 5 else got
    got = got.reshape(*got.shape[:3], -1)  # (N, L, C, Q)
    want = _expected(baseline, dm, t, y, x)
    keep = np.ones(t.size, bool)
    if meta.io.nan_inputs == "refuse":
        keep = np.all([np.isfinite(v).reshape(t.size, -1).all(1) for v in feed.values()], 0)
    err = np.abs(got - want)[keep]
    bound = rtol * (1.0 + np.abs(want[keep]))
    report = {
        "n_samples": int(keep.sum()),
        "n_skipped_nan": int((~keep).sum()),
        "max_abs": float(err.max()) if err.size else 0.0,
        "max_rel": float((err / np.maximum(np.abs(want[keep]), 1e-6)).max()) if err.size else 0.0,
        "rtol": rtol,
        "passed": bool(err.size and (err <= bound).all()),
    }
    if not report["passed"]:
        raise ParityError(
            f"tree export differs from {baseline.name}: {report}; this converter "
            "does not reproduce the model faithfully (see geoclim.export.trees)"
        )
    return report


def export_tree(
    baseline: Any,
    dm: Any,
    out: str | os.PathLike,
    *,
    scores: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export a fitted tree baseline (point samples) with metadata; parity-checked.

    Args:
        baseline: the fitted baseline.
        dm: its set-up datamodule.
        out: destination .onnx file.
        scores: test scores to embed.
        config: composed config to embed.
        provenance: extra provenance entries.

    Returns:
        The export report.

    """
    from geoclim.export.onnx import ExportResult, write_metadata
    from geoclim.export.parity import ParityReport
    from geoclim.export.run import build_metadata

    if dm.spec.patch != 1:
        raise ConfigError(
            f"tree exports serve point samples (window.patch = 1); the run has "
            f"patch = {dm.spec.patch}"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model, used = tree_model(baseline, dm.task, dm.normalizer)
    fileio.write_bytes(out, model.SerializeToString())
    sklearn = any(
        type(e).__module__.startswith("sklearn")
        for ests in estimators(baseline).values()
        for e in ests
    )
    io = ModelIO(
        inputs=used,
        kind="tree",
        output_space="physical",
        nan_inputs="refuse" if sklearn else "pass",
        calendar=tuple(baseline.features.calendar_names),
        model_class=f"{type(baseline).__module__}.{type(baseline).__qualname__}",
    )
    placeholder = ParityReport(0, 0, (), 0.0, 0.0, 0.0, 0.0, True, {})
    meta = build_metadata(
        dm,
        baseline,
        ExportResult(out, used, False, "onnxmltools/skl2onnx", OPSET),
        placeholder,
        scores=scores,
        config=config,
        provenance=provenance,
    )
    task = dm.task
    if tuple(baseline.quantiles) != task.quantiles:  # e.g. quantiles: [] on a quantile task
        task = dataclasses.replace(task, quantiles=tuple(baseline.quantiles))
    meta = meta.replace(io=io, task=task)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    parity = tree_parity(session, baseline, dm, meta)
    write_metadata(out, meta.replace(parity=parity))
    return {
        "model": str(out.resolve()),
        "inputs": list(used),
        "kind": "tree",
        "nan_inputs": io.nan_inputs,
        "parity": parity,
        "size_bytes": out.stat().st_size,
    }


def export_tree_run(
    run_dir: str | os.PathLike, out: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Export the fitted trees a tree-baseline run saved and scored (``<run dir>/model``).

    Args:
        run_dir: a ``geoclim-train model=xgboost|lightgbm|random_forest`` run directory.
        out: the .onnx path (default ``<run dir>/export/model.onnx``).

    Returns:
        The export report.

    Raises:
        ConfigError: if the run did not train a tree baseline or saved no model (runs of
            geoclim before models were saved: train again).

    """
    from omegaconf import OmegaConf

    from geoclim.baselines.trees import TreeBaseline
    from geoclim.training.instantiate import model_kind

    run_dir = Path(run_dir)
    cfg = rundir.read_config(run_dir)
    if model_kind(cfg) != "baseline" or "trees" not in str(cfg.model.get("_target_", "")):
        raise ConfigError(
            f"{run_dir} did not train a tree baseline (model: {cfg.model.get('_target_')})"
        )
    model_dir = run_dir / rundir.MODEL_DIR
    if not model_dir.is_dir():
        raise ConfigError(
            f"{run_dir} has no saved tree model ({model_dir} is missing): the run predates "
            "saved models or was interrupted; train it again to export what is scored"
        )
    dm = rundir.load_datamodule(run_dir, cfg)
    baseline = TreeBaseline.load(model_dir, dm)
    out = Path(out) if out is not None else run_dir / "export" / "model.onnx"
    report = export_tree(
        baseline,
        dm,
        out,
        scores=rundir.read_metrics(run_dir),
        # a DictConfig converts to a str-keyed dict; OmegaConf types it as any container
        config=cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False)),
        provenance={
            "run_dir": str(run_dir.resolve()),
            "model_dir": str(model_dir.resolve()),
        },
    )
    fileio.write_text(out.parent / "export.json", json.dumps(report, indent=2) + "\n")
    return report
