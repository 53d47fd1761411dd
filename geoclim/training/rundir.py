"""A run directory: what a run leaves in it (written atomically) and the one reader of it.

Writers (used by :func:`geoclim.training.train.train`): :func:`write_metrics`,
:func:`write_data_files`, :func:`write_predictions`, :func:`score`, :func:`write_model`.
Reader (used by evaluation, the leaderboard, export and the CLIs): :func:`read_config`,
:func:`read_metrics`, :func:`read_task`, :func:`read_normalizer`, :func:`model_name`,
:func:`load_datamodule`. The reader is torch-free: only :func:`load_datamodule` imports the
training stack, when called.

::

    <run dir>/
      .hydra/            composed config, overrides (Hydra)
      checkpoints/       best.ckpt, last.ckpt (networks)
      csv/metrics.csv    per-epoch log (CSV logger)
      metrics.json       flat {name: value}: val/test metrics and the scores summary
      predictions.nc     test-split predictions Dataset (physical units)
      scores.nc          scores Dataset (geoclim.evaluation.score)
      task.json          the ForecastTask
      normalizer.json    the fitted Normalizer
      model/             fitted tree baselines, in their library's own format
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xarray as xr
import yaml
from omegaconf import DictConfig, OmegaConf

from geoclim.data.normalize import Normalizer
from geoclim.data.sources import write_netcdf
from geoclim.data.task import ForecastTask
from geoclim.errors import DataError
from geoclim.fileio import write_text

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule

log = logging.getLogger(__name__)

CONFIG = Path(".hydra") / "config.yaml"
METRICS = "metrics.json"
TASK = "task.json"
NORMALIZER = "normalizer.json"
MODEL_DIR = "model"


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Scalars (tensors, numpy numbers) as plain floats, sorted by name."""
    out = {}
    for name, value in metrics.items():
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            continue
    return dict(sorted(out.items()))


def write_metrics(run_dir: Path, metrics: Mapping[str, float]) -> Path:
    """``metrics.json``: flat ``{name: value}``; non-finite values are written as ``null``."""
    clean = {k: (v if math.isfinite(v) else None) for k, v in to_floats(metrics).items()}
    return write_text(run_dir / "metrics.json", json.dumps(clean, indent=2) + "\n")


def write_data_files(run_dir: Path, dm: GeoDataModule) -> None:
    """``task.json`` and ``normalizer.json``."""
    write_text(run_dir / "task.json", json.dumps(dm.task.to_dict(), indent=2) + "\n")
    if dm.normalizer is not None:
        write_text(run_dir / "normalizer.json", dm.normalizer.to_json() + "\n")


def write_predictions(run_dir: Path, predictions: xr.Dataset) -> Path:
    """``predictions.nc`` (CF netCDF, atomic)."""
    return write_netcdf(predictions, run_dir / "predictions.nc")


def score(
    run_dir: Path,
    predictions: xr.Dataset,
    dm: GeoDataModule,
    split: str = "test",
    regions: dict | None = None,
) -> dict[str, float]:
    """Score ``predictions`` with :mod:`geoclim.evaluation.score`; write ``scores.nc``.

    ``regions`` (the config's ``regions`` mapping) adds per-region scores.

    Returns:
        The flat summary (``test/rmse/no2``, ``test/skill_persistence/no2``, ...).

    """
    from geoclim.baselines.references import reference_forecasts
    from geoclim.evaluation.regions import parse_regions
    from geoclim.evaluation.score import metrics_summary, score_run

    refs = reference_forecasts(dm, split)
    scores = score_run(predictions, dm, split, references=refs, regions=parse_regions(regions))
    scores.attrs["data_fingerprint"] = dm.fingerprint  # the leaderboard groups runs by it
    write_netcdf(scores, run_dir / "scores.nc")
    return to_floats(metrics_summary(scores, prefix=split))


def write_model(run_dir: Path, estimator: Any) -> Path | None:
    """Save a fitted baseline that can be saved (``estimator.save(dir)``) under ``model/``.

    Returns:
        The model directory, or ``None`` for baselines with nothing fitted to keep.

    """
    save = getattr(estimator, "save", None)
    if save is None:
        return None
    return save(run_dir / MODEL_DIR)


# -- the reader ---------------------------------------------------------------------------
def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a composed config (``.hydra/config.yaml``)."""
    return (Path(path) / CONFIG).is_file()


def is_scored_run(path: str | Path) -> bool:
    """Whether ``path`` is a run directory that finished (it has ``metrics.json``)."""
    return is_run_dir(path) and (Path(path) / METRICS).is_file()


def find_run_dir(path: str | Path) -> Path:
    """The run directory holding ``path`` (a checkpoint, an export...): the first parent up.

    Raises:
        DataError: if no parent holds ``.hydra/config.yaml``.

    """
    path = Path(path)
    for parent in (path, *path.resolve().parents):
        if is_run_dir(parent):
            return parent
    raise DataError(f"{str(path)!r}: no run directory (with {CONFIG}) above it; pass run_dir=...")


def read_config(run_dir: str | Path) -> DictConfig:
    """The composed config a run was trained with (``<run_dir>/.hydra/config.yaml``).

    Raises:
        DataError: naming the directory when it is missing, is not a run directory or its
            config is not a ``geoclim-train`` config (needs ``data``, ``task`` and ``model``).

    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run_dir {str(run_dir)!r}: no such directory")
    path = run_dir / CONFIG
    if not path.is_file():
        raise DataError(
            f"run_dir {str(run_dir)!r} is not a run directory: it has no {CONFIG} "
            "(pass the directory of one geoclim-train job)"
        )
    try:
        cfg = OmegaConf.load(path)
    except (yaml.YAMLError, ValueError) as err:
        raise DataError(f"{path}: unreadable config ({err})") from None
    keys = cfg.keys() if isinstance(cfg, DictConfig) else ()
    missing = [k for k in ("data", "task", "model") if k not in keys]
    if missing:
        raise DataError(f"{path}: not a geoclim-train config (it has no {missing})")
    assert isinstance(cfg, DictConfig)
    return cfg


def read_metrics(run_dir: str | Path, *, required: bool = False) -> dict[str, Any]:
    """``metrics.json`` as written (``null`` for non-finite values); ``{}`` when absent.

    Raises:
        DataError: if the file is unreadable, or absent while ``required``.

    """
    path = Path(run_dir) / METRICS
    if not path.is_file():
        if required:
            raise DataError(f"run_dir {str(run_dir)!r} has no {METRICS} (the run did not finish)")
        return {}
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: unreadable metrics ({err})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object of metrics, got {type(raw).__name__}")
    return raw


def read_task(run_dir: str | Path) -> ForecastTask:
    """The run's :class:`ForecastTask` (``task.json``)."""
    return ForecastTask.from_dict(_read_json(Path(run_dir) / TASK))


def read_normalizer(run_dir: str | Path) -> Normalizer | None:
    """The run's fitted :class:`Normalizer` (``normalizer.json``), ``None`` if it had none."""
    path = Path(run_dir) / NORMALIZER
    return Normalizer.from_dict(_read_json(path)) if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: missing (written by geoclim-train at the end of a run)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: unreadable ({err})") from None


def read_overrides(run_dir: str | Path) -> list[str]:
    """The command-line overrides of the run (``.hydra/overrides.yaml``), if recorded."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def model_name(run_dir: str | Path, cfg: DictConfig | Mapping[str, Any]) -> str:
    """The ``model`` option the run chose (``lstm``, ``xgboost``...), else its class name."""
    hydra_file = Path(run_dir) / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        hydra_cfg = yaml.safe_load(hydra_file.read_text()) or {}
        choices = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
        if choices.get("model"):
            return str(choices["model"])
    model = cfg.get("model") or {}
    target = (model.get("net") or {}).get("_target_") or model.get("_target_") or "model"
    return str(target).rsplit(".", 1)[-1]


def load_datamodule(run_dir: str | Path, cfg: DictConfig | None = None) -> GeoDataModule:
    """Re-create and set up the datamodule of a run from its composed config.

    When the run saved its normaliser, the rebuilt one must match it (to 1e-5): otherwise the
    source data changed since the run and nothing computed from it would be the run's.

    Raises:
        DataError: naming the run when the rebuilt data is not the data the run saw.

    """
    from geoclim.training.instantiate import build_datamodule

    cfg = read_config(run_dir) if cfg is None else cfg
    dm = build_datamodule(cfg)
    dm.setup()
    saved = read_normalizer(run_dir)
    if saved is not None and dm.normalizer is not None and not saved.matches(dm.normalizer):
        raise DataError(
            f"the data rebuilt from {Path(run_dir) / CONFIG} is not the data the run was "
            f"trained on: its normaliser differs from {NORMALIZER} (source data changed?)"
        )
    return dm
