"""A seed ensemble from runs of one model: mean forecast, spread as uncertainty, scored.

The members are run directories of the same model and data trained with different seeds
(one multirun, ``geoclim-train -m experiment=... seed=0,1,2``). The ensemble is written as
a run directory of its own, so ``geoclim compare`` ranks it beside its members on their
common mask::

    predictions.nc   <var>: member mean; <var>_spread: standard deviation over members
    metrics.json     the scores of the mean (as every run), plus
                     test/spread_skill/<var>: sqrt(mean spread^2) / RMSE of the mean
                     (about 1 for a calibrated ensemble, < 1 under-dispersed) and
                     ensemble/members
    scores.nc, task.json, normalizer.json, .hydra/ (the first member's config)

    python scripts/skill_ensemble.py /tmp/ens/0 /tmp/ens/1 /tmp/ens/2 --out /tmp/ens/mean

The members are averaged where all of them have a forecast (inner join of their
coordinates); their spread is not an interval of any calibrated level.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from geoclim.evaluation import leaderboard as lb
from geoclim.evaluation.metrics import point_forecast
from geoclim.training import rundir

MEMBER = "member"


def ensemble(forecasts: list[xr.Dataset], names: list[str]) -> xr.Dataset:
    """Member mean of ``names`` and ``<name>_spread`` (std over members, ``ddof=1``)."""
    points = xr.align(*(point_forecast(f[names]) for f in forecasts), join="inner")
    stacked = xr.concat(points, dim=MEMBER)  # (member, init_time, lead_time, <space>)
    mean = stacked.mean(MEMBER, skipna=False, keep_attrs=True)
    spread = stacked.std(MEMBER, ddof=1, skipna=False)
    out = mean.copy()
    for name in names:
        out[f"{name}_spread"] = spread[name].assign_attrs(
            units=forecasts[0][name].attrs.get("units", ""),
            long_name=f"{name} ensemble spread (standard deviation over {len(forecasts)} seeds)",
        )
    out.attrs.update(forecasts[0].attrs, members=len(forecasts))
    return out


def build(members: list[Path], out: Path, name: str | None) -> dict[str, float]:
    """Write the ensemble's run directory into ``out`` and return its metrics."""
    runs = [lb.load_run(p) for p in members]
    if len(runs) < 2:
        raise SystemExit("an ensemble needs at least two member runs")
    if len({r.data_id for r in runs}) > 1:
        raise SystemExit(f"members were scored on different data: {[r.data_id for r in runs]}")
    names = list(runs[0].config["task"]["targets"])
    forecasts = []
    for run in runs:
        with xr.open_dataset(run.predictions_path) as ds:
            forecasts.append(ds.load())
    predictions = ensemble(forecasts, names)
    name = name or f"{runs[0].model}_ens{len(runs)}"
    predictions.attrs["model"] = name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(runs[0].path / ".hydra", out / ".hydra", dirs_exist_ok=True)
    hydra_file = out / ".hydra" / "hydra.yaml"
    hydra = yaml.safe_load(hydra_file.read_text())
    hydra["hydra"]["runtime"]["choices"]["model"] = name
    hydra_file.write_text(yaml.safe_dump(hydra))
    dm = rundir.load_datamodule(runs[0].path)
    rundir.write_data_files(out, dm)
    rundir.write_predictions(out, predictions)
    metrics = rundir.score(out, predictions, dm, "test")
    for var in names:
        spread = float(np.sqrt(np.nanmean(predictions[f"{var}_spread"].values ** 2)))
        metrics[f"test/spread_skill/{var}"] = spread / metrics[f"test/rmse/{var}"]
    metrics["ensemble/members"] = float(len(runs))
    rundir.write_metrics(out, metrics)
    return metrics


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("members", type=Path, nargs="+", help="member run directories")
    parser.add_argument("--out", type=Path, required=True, help="the ensemble's run directory")
    parser.add_argument("--name", default=None, help="model name (default <model>_ens<N>)")
    args = parser.parse_args()
    metrics = build(args.members, args.out, args.name)
    for key in sorted(k for k in metrics if k.count("/") == 2 and k.startswith("test/")):
        if key.split("/")[1] in ("rmse", "skill_persistence", "spread_skill"):
            print(f"{key}: {metrics[key]:.4f}")


if __name__ == "__main__":
    main()
