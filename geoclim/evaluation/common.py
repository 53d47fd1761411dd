"""Like-for-like comparison of the runs of a sweep: every run scored on one common mask.

Each run scores itself on its own mask (truth observed, its forecast and the references
defined). Runs of one sweep can differ there: a model with another window stride has other
init times, a model that needs complete lag features forecasts fewer cells. Their own
scores are then averages over different points and not comparable. :func:`rescore` scores
every run of a comparable group again on the **common mask**: the init times, leads and
locations where every run of the group has a point forecast (and, as in every score, the
truth is observed and the references are defined)::

    mask[i, k, s] = AND_runs isfinite(point_r[i, k, s])        (inner join of coordinates)

Runs are comparable when they were scored on the same data (``data`` of the leaderboard)
and, for cross-validation, the same fold. A group of one run, or one in which a run lacks
``predictions.nc``, keeps its own scores; :class:`MaskInfo` says which mask each run's row
was scored on so the table can state it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from geoclim.errors import DataError
from geoclim.evaluation import leaderboard as lb
from geoclim.evaluation.metrics import point_forecast
from geoclim.types import INIT_TIME

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskInfo:
    """Which points a run's leaderboard row was scored on.

    Attributes:
        kind: ``"common"`` (shared with the other runs of its group) or ``"own"``.
        runs: runs sharing the mask (1 for ``own``).
        inits: init times in the mask (``own``: the run's own forecast init times).
        points: forecast values in the mask, all targets together, before the truth and
            reference masks (``own``: the run's defined forecast values).

    """

    kind: str
    runs: int
    inits: int
    points: int

    def describe(self) -> str:
        """``common/9 runs/26 inits/69168 pts`` or ``own``: the table's ``mask`` column."""
        if self.kind == "own":
            return "own"
        return f"common/{self.runs} runs/{self.inits} inits/{self.points} pts"


def common_mask(forecasts: Sequence[xr.Dataset], names: Sequence[str]) -> xr.Dataset:
    """Where every forecast has a point value, on the coordinates all of them share.

    Args:
        forecasts: prediction Datasets ``(init_time, lead_time, <space>[, quantile])``.
        names: target variables (each forecast must have them).

    Returns:
        Boolean Dataset of ``names`` on the inner join of the forecasts' coordinates.

    Raises:
        DataError: when a forecast lacks a target or the forecasts share no point.

    """
    if not forecasts:
        raise DataError("common_mask needs at least one forecast")
    points = []
    for i, fc in enumerate(forecasts):
        missing = [n for n in names if n not in fc.data_vars]
        if missing:
            raise DataError(
                f"forecast {i} ({fc.attrs.get('model', '?')}) lacks target(s) {missing}; "
                f"it has {sorted(map(str, fc.data_vars))}"
            )
        points.append(point_forecast(fc[list(names)]).notnull())
    aligned = xr.align(*points, join="inner")
    mask = aligned[0]
    for other in aligned[1:]:
        mask = mask & other
    if not any(bool(mask[n].any()) for n in names):
        raise DataError(
            "the forecasts share no point (init time, lead and location where all of them "
            "are defined): their windows or strides differ; give them one data.window.stride "
            "or compare with --mask own"
        )
    return mask


def comparable_groups(runs: Sequence[lb.RunRecord]) -> dict[tuple, list[lb.RunRecord]]:
    """Runs grouped by the data they were scored on and their cross-validation fold."""
    groups: dict[tuple, list[lb.RunRecord]] = {}
    for run in runs:
        groups.setdefault((run.data_id, lb.fold_of(run)), []).append(run)
    return groups


def _load(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def rescore(
    runs: Sequence[lb.RunRecord], *, split: str = "test", n_boot: int = 200, seed: int = 0
) -> tuple[list[lb.RunRecord], dict[Path, MaskInfo]]:
    """Score every comparable group of runs again on its common mask.

    Args:
        runs: run records (:func:`geoclim.evaluation.leaderboard.load_run`).
        split: the scored split (``test``); its metrics are replaced.
        n_boot: bootstrap replicates of the intervals (stationary bootstrap over inits).
        seed: bootstrap seed.

    Returns:
        The records in input order, those of groups of two or more runs with their
        ``split`` metrics and scores replaced by the common-mask ones, and the mask each
        run was scored on.

    """
    out = {run.path: run for run in runs}
    info: dict[Path, MaskInfo] = {}
    for group in comparable_groups(runs).values():
        lacking = [r for r in group if not r.predictions_path.is_file()]
        if len(group) < 2 or lacking:
            if lacking and len(group) > 1:
                log.warning(
                    "own masks for the runs of data %s: %s has no predictions.nc",
                    group[0].data_id,
                    lacking[0].path,
                )
            info.update({r.path: _own(r) for r in group})
            continue
        for run, scored, mask_info in _rescore_group(group, split, n_boot, seed):
            out[run.path] = scored
            info[run.path] = mask_info
    return [out[r.path] for r in runs], info


def _own(run: lb.RunRecord) -> MaskInfo:
    if not run.predictions_path.is_file():
        return MaskInfo("own", 1, 0, 0)
    fc = _load(run.predictions_path)
    defined = point_forecast(fc).notnull()
    return MaskInfo(
        "own", 1, fc.sizes.get(INIT_TIME, 0), int(sum(defined[n].sum() for n in defined))
    )


def _rescore_group(group: Sequence[lb.RunRecord], split: str, n_boot: int, seed: int):
    """Yield ``(run, rescored run, MaskInfo)`` for the runs of one comparable group."""
    from geoclim.baselines.references import reference_forecasts
    from geoclim.evaluation.score import metrics_summary, score_run
    from geoclim.training.rundir import load_datamodule

    forecasts = [_load(r.predictions_path) for r in group]
    names = list(group[0].config.get("task", {}).get("targets") or [])
    mask = common_mask(forecasts, names)
    info = MaskInfo(
        "common", len(group), mask.sizes[INIT_TIME], int(sum(mask[n].sum() for n in names))
    )
    log.info("scoring %d runs of data %s on %s", len(group), group[0].data_id, info.describe())
    # every run's samples cover the common mask, so the first run's references cover it too
    dm = load_datamodule(group[0].path)
    references = reference_forecasts(dm, split)
    for run, fc in zip(group, forecasts, strict=True):
        scores = score_run(
            fc, dm, split, references=references, n_boot=n_boot, seed=seed, mask=mask
        )
        scores.attrs["mask"] = info.describe()
        kept = {k: v for k, v in run.metrics.items() if not k.startswith(f"{split}/")}
        metrics = {**kept, **metrics_summary(scores, split)}
        yield run, dataclasses.replace(run, metrics=metrics, scored=scores), info
