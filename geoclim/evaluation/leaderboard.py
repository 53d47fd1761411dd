"""Leaderboards of run directories: find runs, load their records, rank them.

A run directory (one Hydra job of ``geoclim-train``) is recognised by ``metrics.json`` and
``.hydra/config.yaml`` and read by :mod:`geoclim.training.rundir`; ``predictions.nc`` and
``scores.nc`` are used when present. A
multirun directory is searched recursively. Every run contributes one row::

    rank  run  model  params  data  <sort key>  rmse/<var> [+ CI]  mae/<var>
    skill_persistence/<var>  skill_climatology/<var>  [crps/<var>]
    vs/<var>  rmse_diff_best/<var> [+ CI]                         (paired, vs the best baseline)
    rmse/<var>/lead_<k> [+ CI]  skill_<ref>/<var>/lead_<k> [+ CI]
    rmse_diff_best/<var>/lead_<k> [+ CI]  dm_pvalue_best/<var>/lead_<k>  ...

Runs are ranked by the direction the metric table (:mod:`geoclim.evaluation.table`) gives
the sort metric: lower, higher, closest to nominal (coverage) or smallest magnitude (bias).
``vs/<var>`` names the best baseline of the run's references (lowest lead-mean
``rmse_<ref>``); ``rmse_diff_best`` is the paired RMSE difference to it (negative: the run
is better) with its paired bootstrap interval, ``dm_pvalue_best`` the Diebold-Mariano
p-value. Interval bounds are ``<column>`` with ``_ci_lower`` / ``_ci_upper`` after the
metric name (``rmse_ci_lower/no2/lead_3``); the CSV has them all, the table and markdown
show ``value [lower, upper]`` (:mod:`geoclim.evaluation.render` writes these text forms).
Cross-validation folds are summarised by :func:`aggregate_folds` (mean, spread and each fold).

``data`` identifies the data a run was scored on: ``data_fingerprint`` from ``scores.nc``
attributes or ``metrics.json`` when the run recorded one, else ``cfg:<hash>``, a hash of the
resolved ``data`` and ``task`` config sections (the recipe that produced the data). Runs are
only comparable within one ``data`` value.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import xarray as xr
from omegaconf import OmegaConf

from geoclim.errors import DataError
from geoclim.evaluation import table
from geoclim.training import rundir
from geoclim.types import LEAD_TIME

log = logging.getLogger(__name__)

CONFIG = rundir.CONFIG
HEADLINE = ("rmse", "mae", "skill_persistence", "skill_climatology", "crps")
PER_LEAD = ("rmse", "skill_persistence", "skill_climatology")
BOUNDS = ("ci_lower", "ci_upper")
_SKIP_PARAMS = ("_target_", "_partial_", "kind", "window", "calendar")
_LOADER_KEYS = ("batch_size", "num_workers", "seed")


@dataclass
class RunRecord:
    """What the leaderboard knows about one run directory."""

    path: Path
    model: str
    config: dict[str, Any]
    metrics: dict[str, float]
    data_id: str
    overrides: list[str] = field(default_factory=list)
    scored: xr.Dataset | None = None  # scores on a common mask (geoclim.evaluation.common)

    @property
    def scores_path(self) -> Path:
        """``scores.nc`` of the run (may not exist)."""
        return self.path / "scores.nc"

    @property
    def predictions_path(self) -> Path:
        """``predictions.nc`` of the run (may not exist)."""
        return self.path / "predictions.nc"

    def scores(self) -> xr.Dataset | None:
        """The run's scores (common-mask ones if rescored), ``None`` without ``scores.nc``."""
        if self.scored is not None:
            return self.scored
        if not self.scores_path.is_file():
            return None
        with xr.open_dataset(self.scores_path) as ds:
            return ds.load()

    @property
    def params(self) -> dict[str, Any]:
        """Flattened scalar hyper-parameters of the model config."""
        return flatten_params(self.config.get("model") or {})


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds ``metrics.json`` and ``.hydra/config.yaml``."""
    return rundir.is_scored_run(path)


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories among ``paths`` and, recursively, below them (sorted, unique).

    Raises:
        DataError: naming a path that does not exist or holds no run directory.

    """
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if not path.exists():
            raise DataError(f"{path}: no such run or multirun directory")
        if is_run_dir(path):
            found.append(path)
            continue
        below = sorted(p.parent for p in path.rglob("metrics.json") if is_run_dir(p.parent))
        if not below:
            raise DataError(
                f"{path}: no run directory found (a run directory holds metrics.json and {CONFIG})"
            )
        found.extend(below)
    return sorted(set(found), key=lambda p: (str(p.parent), _natural(p.name)))


def _natural(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def load_run(path: str | Path) -> RunRecord:
    """Read one run directory's config, metrics and identity."""
    path = Path(path)
    if not is_run_dir(path):
        raise DataError(f"{path}: not a run directory (needs metrics.json and {CONFIG})")
    cfg = rundir.read_config(path)
    config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))  # a DictConfig
    raw = rundir.read_metrics(path, required=True)
    metrics = {
        k: (math.nan if v is None else float(v))
        for k, v in raw.items()
        if isinstance(v, (int, float)) or v is None
    }
    return RunRecord(
        path=path,
        model=rundir.model_name(path, config),
        config=config,
        metrics=metrics,
        data_id=_data_id(path, config, raw),
        overrides=rundir.read_overrides(path),
    )


def _short(fingerprint: str) -> str:
    """``sha256:<12 hex>``: enough to tell data sets apart in a table."""
    algo, _, digest = fingerprint.partition(":")
    return f"{algo}:{digest[:12]}" if digest else fingerprint[:19]


def _data_id(path: Path, config: dict[str, Any], raw_metrics: dict[str, Any]) -> str:
    if isinstance(raw_metrics.get("data_fingerprint"), str):
        return _short(raw_metrics["data_fingerprint"])
    if (path / "scores.nc").is_file():
        with xr.open_dataset(path / "scores.nc") as ds:
            if "data_fingerprint" in ds.attrs:
                return _short(str(ds.attrs["data_fingerprint"]))
    data = {k: v for k, v in (config.get("data") or {}).items() if k not in _LOADER_KEYS}
    recipe = json.dumps(
        {"data": data, "task": config.get("task"), "seed": config.get("seed")},
        sort_keys=True,
        default=str,
    )
    return "cfg:" + hashlib.sha256(recipe.encode()).hexdigest()[:10]


def flatten_params(model: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar leaves of a model config as ``{"net.hidden_size": 32, ...}``."""
    out: dict[str, Any] = {}
    for key, value in model.items():
        if key in _SKIP_PARAMS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = "[" + ",".join(map(str, value)) + "]"
        elif value is not None:
            out[name] = value
    return out


def direction(key: str) -> str:
    """The metric table's direction of a full key ``split/metric/var[/lead_k]``."""
    return table.direction(key.split("/")[1])


def describe_direction(key: str) -> str:
    """Words for the header: ``lower is better``, ``closest to 0.8 is best``, ..."""
    row, nominal = table.lookup(key.split("/")[1])
    if row.direction == "nominal":
        return f"closest to {nominal:g} is best"
    return {
        "lower": "lower is better",
        "higher": "higher is better",
        "magnitude": "smallest magnitude is best",
    }[row.direction]


def targets_of(runs: Sequence[RunRecord], split: str = "test") -> list[str]:
    """Target variables scored in the runs, in first-seen order."""
    names: list[str] = []
    for run in runs:
        for key in run.metrics:
            parts = key.split("/")
            if (
                len(parts) == 3
                and parts[0] == split
                and parts[1] == "rmse"
                and parts[2] not in names
            ):
                names.append(parts[2])
    return names


def resolve_key(
    sort_by: str, runs: Sequence[RunRecord], split: str = "test", lead: int | None = None
) -> str:
    """Full metric key from ``rmse``, ``rmse/no2`` or ``test/rmse/no2`` (+ ``/lead_<k>``)."""
    parts = sort_by.split("/")
    if len(parts) == 1:
        targets = targets_of(runs, split)
        if not targets:
            raise DataError(f"no {split}/rmse/<var> metric in the runs; cannot sort by {sort_by!r}")
        parts = [split, parts[0], targets[0]]
    elif len(parts) == 2:
        parts = [split, *parts]
    key = "/".join(parts[:3])
    if lead is not None:
        key = f"{key}/lead_{lead}"
    known = sorted({k for r in runs for k in r.metrics})
    if key not in known:
        valid = sorted(
            {k.split("/")[1] for k in known if k.startswith(f"{split}/") and k.count("/") >= 2}
        )
        raise DataError(
            f"unknown sort metric {key!r}; the runs have {split} metrics "
            f"{valid} (give metric, metric/var or split/metric/var"
            f"{'' if lead is None else '; per-lead keys exist for ' + str(HEADLINE)})"
        )
    return key


def leaderboard(
    runs: Sequence[RunRecord],
    *,
    sort_by: str = "rmse",
    lead: int | None = None,
    split: str = "test",
    root: Path | None = None,
    masks: Mapping[Path, str] | None = None,
) -> pd.DataFrame:
    """One row per run, ranked by ``sort_by`` (best first, in the metric table's direction).

    Args:
        runs: run records (:func:`load_run`).
        sort_by: ``metric``, ``metric/var`` or a full key; a bare metric uses the first
            target.
        lead: rank by the score at this lead (steps) instead of the lead mean.
        split: the scored split the metrics were prefixed with.
        root: paths are shown relative to it.
        masks: the points each run was scored on, by run path (``mask`` column, e.g.
            ``common/9 runs/26 inits/69168 pts`` from :mod:`geoclim.evaluation.common`);
            ``None``: no such column (each run on its own mask).

    Returns:
        DataFrame with ``rank``, ``run``, ``label``, ``model``, ``params``, ``data``, the
        sort column (the key without its split prefix), the columns of the module
        docstring, per-lead columns ordered by lead. ``df.attrs`` holds ``sort_key``,
        ``sort_column``, ``direction`` and ``higher_is_better``.

    """
    if not runs:
        raise DataError("no runs to rank")
    key = resolve_key(sort_by, runs, split, lead)
    column = key.split("/", 1)[1]  # columns drop the split prefix
    targets = targets_of(runs, split)
    labels = run_labels(runs)
    rows = []
    for run in runs:
        shown = run.path.relative_to(root) if root and run.path.is_relative_to(root) else run.path
        row: dict[str, Any] = {
            "run": str(shown),
            "label": labels[run.path],
            "model": run.model,
            "params": " ".join(f"{k}={v}" for k, v in run.params.items()),
            "data": run.data_id,
            **({"mask": masks.get(run.path, "own")} if masks is not None else {}),
            column: run.metrics.get(key, math.nan),
        }
        for var in targets:
            row.update(_headline(run.metrics, runs, split, var))
            row.update(_versus_best(run.metrics, split, var))
            for metric in PER_LEAD:
                for name in (metric, *(f"{metric}_{b}" for b in BOUNDS)):
                    row.update(_per_lead(run.metrics, f"{split}/{name}/{var}"))
        rows.append(row)
    df = pd.DataFrame(rows)
    lead_cols = sorted(
        (c for c in df.columns if "/lead_" in c and c != column),
        key=lambda c: (c.split("/")[1], _base(c), int(c.rsplit("_", 1)[1]), c),
    )
    fixed = [c for c in df.columns if c not in lead_cols]
    df = df[fixed + lead_cols]
    order = np.argsort(
        table.sort_value(key.split("/")[1], df[column].to_numpy(float)), kind="stable"
    )
    df = df.iloc[order].reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df.attrs.update(
        sort_key=key,
        sort_column=column,
        split=split,
        direction=direction(key),
        higher_is_better=direction(key) == "higher",
        lead_step=lead_step(runs),
    )
    return df


def fold_of(run: RunRecord) -> tuple[str, int] | None:
    """``(cv name, fold)`` of a cross-validation run, ``None`` for other runs."""
    cv = run.config.get("cv") or {}
    if str(cv.get("name", "none")) == "none" or cv.get("fold") is None:
        return None
    return str(cv["name"]), int(cv["fold"])


def aggregate_folds(df: pd.DataFrame, runs: Sequence[RunRecord]) -> pd.DataFrame | None:
    """Cross-validation summary: one row per configuration, over its folds.

    Runs are grouped by directory parent, model, params and Hydra overrides other than
    ``cv.fold``. For the sort column and each lead-mean headline column: the mean and the
    standard deviation (``ddof=1``) over folds, and the sort column of every fold.

    Returns:
        The summary, best mean first (metric table direction), or ``None`` without folds.

    """
    by_path = {str(r.path): r for r in runs}
    column = df.attrs["sort_column"]
    groups: dict[tuple, list[tuple[int, pd.Series]]] = {}
    for _, row in df.iterrows():
        run = next((r for p, r in by_path.items() if p.endswith(str(row["run"]))), None)
        fold = fold_of(run) if run is not None else None
        if run is None or fold is None:
            continue
        others = tuple(sorted(o for o in run.overrides if not o.startswith("cv.fold=")))
        key = (str(run.path.parent), run.model, row["params"], fold[0], others)
        groups.setdefault(key, []).append((fold[1], row))
    if not groups:
        return None
    headline = [c for c in df.columns if c.split("/")[0] in HEADLINE and c.count("/") == 1]
    out = []
    for (parent, model, params, cv, _), members in groups.items():
        members.sort(key=lambda m: m[0])
        entry: dict[str, Any] = {"model": model, "params": params, "cv": cv, "folds": len(members)}
        for col in dict.fromkeys([column, *headline]):
            values = np.array([float(r[col]) for _, r in members])
            entry[f"{col} mean"] = float(np.nanmean(values))
            entry[f"{col} std"] = float(np.nanstd(values, ddof=1)) if len(values) > 1 else math.nan
        entry[f"{column} per fold"] = " ".join(f"{k}:{float(r[column]):.4g}" for k, r in members)
        entry["runs"] = parent
        out.append(entry)
    summary = pd.DataFrame(out)
    order = np.argsort(
        table.sort_value(df.attrs["sort_key"].split("/")[1], summary[f"{column} mean"].to_numpy()),
        kind="stable",
    )
    return summary.iloc[order].reset_index(drop=True)


def _base(column: str) -> str:
    """``rmse_ci_lower/no2/lead_3`` -> ``rmse`` (orders a value before its bounds)."""
    name = column.split("/")[0]
    for bound in BOUNDS:
        name = name.removesuffix(f"_{bound}")
    return name


def _headline(metrics: dict[str, float], runs, split: str, var: str) -> dict[str, float]:
    out = {}
    for metric in HEADLINE:
        for name in (metric, *(f"{metric}_{b}" for b in BOUNDS)):
            full = f"{split}/{name}/{var}"
            if any(full in r.metrics for r in runs):
                out[f"{name}/{var}"] = metrics.get(full, math.nan)
    return out


def best_reference(metrics: dict[str, float], split: str, var: str) -> str | None:
    """The reference with the lowest lead-mean RMSE among ``rmse_<ref>`` keys."""
    refs = {}
    for k, v in metrics.items():
        parts = k.split("/")
        if len(parts) == 3 and parts[0] == split and parts[2] == var:
            name = parts[1]
            if name.startswith("rmse_") and not name.startswith(("rmse_diff", "rmse_ci")):
                refs[name.removeprefix("rmse_")] = v
    refs = {k: v for k, v in refs.items() if np.isfinite(v)}
    return min(refs, key=refs.__getitem__) if refs else None


def _versus_best(metrics: dict[str, float], split: str, var: str) -> dict[str, Any]:
    """Paired comparison with the best baseline: lead mean, CI and per-lead columns."""
    ref = best_reference(metrics, split, var)
    if ref is None:
        return {}
    out: dict[str, Any] = {f"vs/{var}": ref}
    for suffix in ("", *(f"_{b}" for b in BOUNDS)):
        out[f"rmse_diff_best{suffix}/{var}"] = metrics.get(
            f"{split}/rmse_diff_{ref}{suffix}/{var}", math.nan
        )
        lead = _per_lead(metrics, f"{split}/rmse_diff_{ref}{suffix}/{var}")
        out.update({k.replace(f"rmse_diff_{ref}", "rmse_diff_best"): v for k, v in lead.items()})
    lead = _per_lead(metrics, f"{split}/dm_pvalue_{ref}/{var}")
    out.update({k.replace(f"dm_pvalue_{ref}", "dm_pvalue_best"): v for k, v in lead.items()})
    return out


def run_labels(runs: Sequence[RunRecord]) -> dict[Path, str]:
    """Unique short labels: the model name, plus as much of the path as tells runs apart.

    Two runs of one model get their directory names (``lstm (0)``); if those repeat too
    (jobs of different sweeps), more of the path (``lstm (sweep_a/0)``), up to the full
    path.
    """
    labels: dict[Path, str] = {}
    by_model: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_model.setdefault(run.model, []).append(run)
    for model, group in by_model.items():
        if len(group) == 1:
            labels[group[0].path] = model
            continue
        depth = max(len(r.path.parts) for r in group)
        for n in range(1, depth + 1):
            tails = ["/".join(r.path.parts[-n:]) for r in group]
            if len(set(tails)) == len(tails):
                break
        else:
            tails = [str(r.path) for r in group]
        labels.update({r.path: f"{model} ({t})" for r, t in zip(group, tails, strict=True)})
    return labels


def lead_step(runs: Sequence[RunRecord]) -> str:
    """The time step leads are counted in (``"1h"``, ``"1 month"``), from the runs' scores.

    ``lead_<k>`` columns count steps of the data; this names the step (``"mixed"`` when the
    runs differ, ``""`` when no run has a ``scores.nc`` recording it).
    """
    steps = set()
    for run in runs:
        if run.scores_path.is_file():
            with xr.open_dataset(run.scores_path) as ds:
                steps.add(str(ds[LEAD_TIME].attrs.get("time_step", "")))
    steps.discard("")
    return steps.pop() if len(steps) == 1 else ("mixed" if steps else "")


def _per_lead(metrics: dict[str, float], base: str) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if k.startswith(base + "/lead_"):
            out[k.split("/", 1)[1]] = v
    return out
