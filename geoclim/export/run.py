"""Export a training run directory: checkpoint -> parity-checked, self-describing .onnx.

:func:`export_run` is what ``geoclim-export <run dir>`` does:

1. rebuild the network from the checkpoint alone (``ForecastModule.from_checkpoint``) and
   the datamodule from the run's composed config (``.hydra/config.yaml``), and check the
   datamodule's normaliser is the checkpoint's (the data the run saw is still the data);
2. export ``module.net`` -- the bare network -- with a real test batch
   (:func:`geoclim.export.onnx.export_net`);
3. check torch/onnxruntime parity on held-out test batches; raise if out of tolerance;
4. embed the metadata (task, variables + units, normaliser, domain and static fields,
   window, data fingerprint, test scores from ``metrics.json``, composed config, parity
   report, geoclim version, git commit);
5. optionally quantise to int8 and measure skill and speed before/after.

Output (default ``<run dir>/export/``): ``model.onnx``, ``model.int8.onnx`` with
``--quantize``, and ``export.json`` (the report).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import onnx
import onnxruntime as ort
import torch
from omegaconf import DictConfig, OmegaConf

import geoclim
from geoclim import fileio
from geoclim.data import drift, schema, timeaxis
from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import ConfigError
from geoclim.export.metadata import Domain, ExportMetadata, ModelIO, variable_table
from geoclim.export.onnx import ExportResult, export_net, write_metadata
from geoclim.export.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport, check_parity
from geoclim.training import rundir
from geoclim.types import TIME

log = logging.getLogger(__name__)


@dataclass
class LoadedRun:
    """A run directory brought back to life.

    Attributes:
        run_dir: the directory.
        cfg: its composed config.
        module: the ForecastModule rebuilt from the checkpoint (eval mode).
        datamodule: the set-up datamodule of the run's data and task.
        checkpoint: the checkpoint file used.
        metrics: the run's ``metrics.json`` (empty if absent).

    """

    run_dir: Path
    cfg: DictConfig
    module: Any
    datamodule: GeoDataModule
    checkpoint: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def net(self) -> torch.nn.Module:
        """The bare network."""
        return self.module.net


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best") -> LoadedRun:
    """Rebuild network and datamodule of a run directory.

    Args:
        run_dir: a ``geoclim-train`` run directory.
        checkpoint: ``"best"``, ``"last"`` or a path to a ``.ckpt`` file.

    Raises:
        ConfigError: naming the missing file, or when the data no longer matches the run.

    """
    from geoclim.models.module import ForecastModule
    from geoclim.training.instantiate import model_kind

    run_dir = Path(run_dir)
    cfg = rundir.read_config(run_dir)
    if model_kind(cfg) != "network":
        raise ConfigError(
            f"{run_dir} trained a {cfg.model.kind!r} model; geoclim-export exports "
            "networks (tree baselines: geoclim.export.trees)"
        )
    ckpt = (
        Path(checkpoint)
        if checkpoint not in ("best", "last")
        else run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    )
    if not ckpt.is_file():
        found = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
        raise ConfigError(f"checkpoint {ckpt} not found; the run has {found}")
    module = ForecastModule.from_checkpoint(ckpt).eval()
    dm = rundir.load_datamodule(run_dir, cfg)
    if (
        module.normalizer
        and dm.normalizer is not None
        and dm.normalizer.to_dict() != module.normalizer
    ):
        raise ConfigError(
            f"the data rebuilt from {run_dir / rundir.CONFIG} is not the data the run was "
            "trained on: its normaliser differs from the checkpoint's (source data changed?)"
        )
    return LoadedRun(run_dir, cfg, module, dm, ckpt, rundir.read_metrics(run_dir))


def test_batches(dm: GeoDataModule, n: int | None, split: str = "test") -> list[dict]:
    """The first ``n`` batches (all if ``None``) of ``split``, as dicts of tensors."""
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    return list(itertools.islice(loader, n))


def git_commit(path: Path | None = None) -> str | None:
    """``HEAD`` of the repository holding ``path`` (geoclim's source by default), if any."""
    where = path or Path(geoclim.__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty.strip() else "")


def build_metadata(
    dm: GeoDataModule,
    net: torch.nn.Module,
    result: ExportResult,
    parity: ParityReport,
    *,
    scores: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> ExportMetadata:
    """Everything the serving adapter needs, from a set-up datamodule and the export.

    Args:
        dm: the datamodule the network was trained with (set up).
        net: the exported network.
        result: what :func:`export_net` produced.
        parity: the parity report.
        scores: test scores (the run's ``metrics.json``).
        config: the composed config.
        provenance: extra provenance entries (run dir, checkpoint...).

    Returns:
        The metadata.

    """
    task, ds = dm.task, dm.ds
    assert ds is not None and dm.splits is not None and dm.normalizer is not None
    step = schema.time_step(ds)  # fixed, or calendar months / years
    start, stop = dm.splits.train
    reference = drift.reference_summary(ds.isel({TIME: slice(start, stop)}), task.dynamic_variables)
    return ExportMetadata(
        task=task,
        window=dm.spec,
        step=step,
        time_calendar=timeaxis.calendar_name(ds[TIME].values),
        normalizer=dm.normalizer,
        domain=Domain.from_dataset(ds, task.static_inputs),
        variables=variable_table(task, ds),
        io=ModelIO(
            inputs=result.inputs,
            dynamic_spatial=result.dynamic_spatial,
            kind="net",
            model_class=f"{type(net).__module__}.{type(net).__qualname__}",
        ),
        data_fingerprint=dm.fingerprint,
        scores=dict(scores or {}),
        config=dict(config or {}),
        parity=parity.to_dict(),
        provenance={
            "geoclim_version": geoclim.__version__,
            "git_commit": git_commit(),
            "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "exporter": result.exporter,
            "opset": result.opset,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "time_range": [str(ds[TIME].values[0]), str(ds[TIME].values[-1])],
            "splits": dm.splits.to_dict(),
        }
        | dict(provenance or {}),
        reference=reference,
    )


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    checkpoint: str = "best",
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    parity_batches: int | None = 8,
    quantize: bool = False,
    dynamic_spatial: bool | None = None,
    exporter: str = "auto",
) -> dict[str, Any]:
    """Export a run directory (see the module docstring).

    Args:
        run_dir: the run directory.
        out: the .onnx path (default ``<run dir>/export/model.onnx``).
        checkpoint: ``"best"``, ``"last"`` or a ``.ckpt`` path.
        atol: parity tolerance, absolute (normalised units).
        rtol: parity tolerance, relative.
        parity_batches: test batches compared (``None``: the whole test split).
        quantize: also write ``model.int8.onnx`` and measure it.
        dynamic_spatial: force dynamic (or fixed) ``h``/``w``; default: try when spatial.
        exporter: ``"auto"``, ``"dynamo"`` or ``"torchscript"``.

    Returns:
        The export report (also written as ``export.json`` next to the model).

    Raises:
        ParityError: if onnxruntime and torch disagree beyond the tolerance.

    """
    run = load_run(run_dir, checkpoint)
    out = Path(out) if out is not None else run.run_dir / "export" / "model.onnx"
    batches = test_batches(run.datamodule, parity_batches)
    if not batches:
        raise ConfigError(f"{run_dir}: the test split has no samples to check parity on")
    result = export_net(
        run.net, batches[0], out, dynamic_spatial=dynamic_spatial, exporter=exporter
    )
    parity = check_parity(run.net, out, batches, atol=atol, rtol=rtol, max_batches=None)
    log.info("%s", parity)
    meta = build_metadata(
        run.datamodule,
        run.net,
        result,
        parity,
        scores=run.metrics,
        # a DictConfig converts to a str-keyed dict; OmegaConf types it as any container
        config=cast(dict[str, Any], OmegaConf.to_container(run.cfg, resolve=False)),
        provenance={
            "run_dir": str(run.run_dir.resolve()),
            "checkpoint": str(run.checkpoint.resolve()),
        },
    )
    write_metadata(out, meta)
    report: dict[str, Any] = {
        "model": str(out.resolve()),
        "inputs": list(result.inputs),
        "dynamic_spatial": result.dynamic_spatial,
        "exporter": result.exporter,
        "opset": result.opset,
        "graph_rewrites": list(result.rewrites),
        "parity": parity.to_dict(),
        "data_fingerprint": meta.data_fingerprint,
        "size_bytes": out.stat().st_size,
    }
    if quantize:
        from geoclim.export.quantize import quantize_export

        numpy_batches = [
            {k: v.numpy() for k, v in b.items()} for b in test_batches(run.datamodule, None)
        ]
        q_out = out.with_name(out.stem + ".int8.onnx")
        report["quantization"] = quantize_export(out, q_out, numpy_batches)
        report["quantization"]["model"] = str(q_out.resolve())
    fileio.write_text(out.parent / "export.json", json.dumps(report, indent=2, default=str) + "\n")
    return report
