"""Leaderboards of run directories: find runs, load their records, rank them.

A run directory (one Hydra job of ``geoclim-train``) is recognised by ``metrics.json`` and
``.hydra/config.yaml``; ``predictions.nc`` and ``scores.nc`` are used when present. A
multirun directory is searched recursively. Every run contributes one row::

    rank  run  model  params  data  <sort key>  rmse/<var>  mae/<var>  skill_persistence/<var>
    skill_climatology/<var>  [crps/<var>]  skill_persistence/<var>/lead_<k> ...

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from geoclim.errors import DataError
from geoclim.types import LEAD_TIME

log = logging.getLogger(__name__)

CONFIG = Path(".hydra") / "config.yaml"
HEADLINE = ("rmse", "mae", "skill_persistence", "skill_climatology", "crps")
HIGHER_IS_BETTER = ("skill", "corr", "acc", "coverage")
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

    @property
    def scores_path(self) -> Path:
        """``scores.nc`` of the run (may not exist)."""
        return self.path / "scores.nc"

    @property
    def predictions_path(self) -> Path:
        """``predictions.nc`` of the run (may not exist)."""
        return self.path / "predictions.nc"

    def scores(self) -> xr.Dataset | None:
        """The run's scores Dataset, or ``None`` without ``scores.nc``."""
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
    return (path / "metrics.json").is_file() and (path / CONFIG).is_file()


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
    try:
        config = yaml.safe_load((path / CONFIG).read_text()) or {}
        raw = json.loads((path / "metrics.json").read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable run files ({err})") from None
    metrics = {
        k: (math.nan if v is None else float(v))
        for k, v in raw.items()
        if isinstance(v, (int, float)) or v is None
    }
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    record = RunRecord(
        path=path,
        model=_model_name(path, config),
        config=config,
        metrics=metrics,
        data_id=_data_id(path, config, raw),
        overrides=list(overrides or []),
    )
    return record


def _model_name(path: Path, config: dict[str, Any]) -> str:
    hydra_file = path / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        hydra_cfg = yaml.safe_load(hydra_file.read_text()) or {}
        choice = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("choices", {})
        if choice.get("model"):
            return str(choice["model"])
    model = config.get("model") or {}
    target = (model.get("net") or {}).get("_target_") or model.get("_target_") or "model"
    return str(target).rsplit(".", 1)[-1]


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


def higher_is_better(key: str) -> bool:
    """Orientation of a metric name (skill, correlation, coverage: higher is better)."""
    metric = key.split("/")[1] if key.count("/") >= 2 else key.split("/")[0]
    return metric.startswith(HIGHER_IS_BETTER)


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
) -> pd.DataFrame:
    """One row per run, ranked by ``sort_by`` (best first).

    Args:
        runs: run records (:func:`load_run`).
        sort_by: ``metric``, ``metric/var`` or a full key; a bare metric uses the first
            target.
        lead: rank by the score at this lead (steps) instead of the lead mean.
        split: the scored split the metrics were prefixed with.
        root: paths are shown relative to it.

    Returns:
        DataFrame with ``rank``, ``run``, ``model``, ``params``, ``data``, the sort
        column (the key without its split prefix), headline lead-mean scores per target
        (``rmse/<var>``...) and ``skill_persistence/<var>/lead_<k>`` columns ordered by
        lead. ``df.attrs`` holds ``sort_key``, ``sort_column`` and ``higher_is_better``.

    """
    if not runs:
        raise DataError("no runs to rank")
    key = resolve_key(sort_by, runs, split, lead)
    column = key.split("/", 1)[1]  # columns drop the split prefix
    rows = []
    for run in runs:
        shown = run.path.relative_to(root) if root and run.path.is_relative_to(root) else run.path
        row: dict[str, Any] = {
            "run": str(shown),
            "model": run.model,
            "params": " ".join(f"{k}={v}" for k, v in run.params.items()),
            "data": run.data_id,
            column: run.metrics.get(key, math.nan),
        }
        for var in targets_of(runs, split):
            for metric in HEADLINE:
                name = f"{split}/{metric}/{var}"
                if any(name in r.metrics for r in runs):
                    row[f"{metric}/{var}"] = run.metrics.get(name, math.nan)
            row.update(_per_lead(run.metrics, f"{split}/skill_persistence/{var}"))
        rows.append(row)
    df = pd.DataFrame(rows)
    lead_cols = sorted(
        (c for c in df.columns if "/lead_" in c and c != column),
        key=lambda c: (c.rsplit("/lead_", 1)[0], int(c.rsplit("_", 1)[1])),
    )
    fixed = [c for c in df.columns if c not in lead_cols]
    df = df[fixed + lead_cols]
    values = df[column].to_numpy(dtype=float)
    order = np.argsort(
        np.where(np.isnan(values), np.inf, -values if higher_is_better(key) else values),
        kind="stable",
    )
    df = df.iloc[order].reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df.attrs.update(
        sort_key=key,
        sort_column=column,
        split=split,
        higher_is_better=higher_is_better(key),
        lead_step=lead_step(runs),
    )
    return df


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


FORMATS = ("table", "markdown", "csv")
_ABBREV = (
    ("skill_persistence", "skill_pers"),
    ("skill_climatology", "skill_clim"),
    ("/lead_", "@"),
)


def compact(
    df: pd.DataFrame, *, max_leads: int = 6, lead: int | None = None, params_width: int = 48
) -> pd.DataFrame:
    """A narrower copy for reading: a few per-lead columns, short names and params.

    Keeps the per-lead columns of ``lead`` if given, else at most ``max_leads`` evenly
    spaced leads (first and last included).
    """
    key = df.attrs.get("sort_column")
    lead_cols = [c for c in df.columns if "/lead_" in c and c != key]
    leads = sorted({int(c.rsplit("_", 1)[1]) for c in lead_cols})
    if lead is not None:
        keep = {lead}
    elif len(leads) > max_leads:
        keep = {leads[int(round(i))] for i in np.linspace(0, len(leads) - 1, max_leads)}
    else:
        keep = set(leads)
    out = df.drop(columns=[c for c in lead_cols if int(c.rsplit("_", 1)[1]) not in keep])
    out["params"] = [
        p if len(p) <= params_width else p[: params_width - 3] + "..." for p in out["params"]
    ]
    renamed = {}
    for col in out.columns:
        short = col
        for long, abbrev in _ABBREV:
            short = short.replace(long, abbrev)
        renamed[col] = short
    return out.rename(columns=renamed)


def _cells(df: pd.DataFrame) -> list[list[str]]:
    def fmt(value: Any) -> str:
        if isinstance(value, float | np.floating):
            return "nan" if math.isnan(value) else f"{value:.4g}"
        return str(value)

    return [[fmt(v) for v in row] for row in df.itertuples(index=False)]


def to_table(df: pd.DataFrame) -> str:
    """Aligned plain-text table (numbers right-aligned)."""
    header = [str(c) for c in df.columns]
    body = _cells(df)
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)
    ]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def to_markdown(df: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table."""
    header = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if n else ":---" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _cells(df)]
    return "\n".join(lines)


def render(df: pd.DataFrame, fmt: str = "table", *, lead: int | None = None) -> str:
    """The leaderboard as ``table`` / ``markdown`` (compact) or ``csv`` (every column)."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; valid formats are {list(FORMATS)}")
    if fmt == "csv":
        return df.to_csv(index=False, float_format="%.6g")
    small = compact(df, lead=lead)
    text = to_table(small) if fmt == "table" else to_markdown(small)
    step = df.attrs.get("lead_step")
    if step and any("@" in str(c) for c in small.columns):
        sep = "\n" if fmt == "table" else "\n\n"
        text += f"{sep}@k: lead k, in steps of {step}"
    return text
