"""Best network against the best tree model and persistence, per lead, with paired intervals.

Reads the run directories of one multirun (``geoclim-train -m experiment=skill_...``) or of
several on the same data, scores every run on their **common mask** (the points where all
of them and the references have a forecast, :mod:`geoclim.evaluation.common`), picks the
network and the tree model with the lowest lead-mean test RMSE there, and re-scores the
network on that mask with the tree's forecast as one more reference. Every number comes
from :func:`geoclim.evaluation.score.score_run`: the paired RMSE difference with its
stationary-bootstrap interval over the same inits, the Diebold-Mariano p-value and the skill
against persistence with its interval.

    python scripts/skill_versus.py /tmp/study/naps_grid            # prints a markdown table
    python scripts/skill_versus.py /tmp/study/naps_grid --json out.json
    python scripts/skill_versus.py SWEEP_A SWEEP_B      # runs of both, on one common mask

Writes nothing unless ``--json`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import xarray as xr

from geoclim.baselines.references import reference_forecasts
from geoclim.evaluation import common
from geoclim.evaluation import leaderboard as lb
from geoclim.evaluation.score import score_run
from geoclim.training import rundir

TREE_TARGET = "geoclim.baselines.trees."


def _kind(run: lb.RunRecord) -> str:
    model = run.config.get("model", {})
    if model.get("kind") == "network":
        return "network"
    return "tree" if str(model.get("_target_", "")).startswith(TREE_TARGET) else "other"


def _best(runs: list[lb.RunRecord], kind: str, var: str) -> lb.RunRecord:
    pool = [r for r in runs if _kind(r) == kind and f"test/rmse/{var}" in r.metrics]
    if not pool:
        raise SystemExit(f"no {kind} run with test/rmse/{var}")
    return min(pool, key=lambda r: r.metrics[f"test/rmse/{var}"])


def _fmt(value: float, lo: float | None = None, hi: float | None = None) -> str:
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{value:.3f}"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def _load(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def compare(multiruns: list[Path], n_boot: int, seed: int) -> dict:
    """The per-lead comparison of every target of the runs' task, on their common mask."""
    runs = [lb.load_run(p) for p in lb.find_runs(multiruns)]
    if len({r.data_id for r in runs}) > 1:
        data = sorted({r.data_id for r in runs})
        raise SystemExit(f"the runs were scored on different data sets {data}; give one")
    targets = list(runs[0].config["task"]["targets"])
    rescored, info = common.rescore(runs, n_boot=0)
    mask = common.common_mask([_load(r.predictions_path) for r in runs], targets)
    described = next(iter(info.values())).describe()
    out: dict = {"multirun": [str(m) for m in multiruns], "mask": described, "targets": {}}
    dm = rundir.load_datamodule(runs[0].path)
    for var in targets:
        net, tree = _best(rescored, "network", var), _best(rescored, "tree", var)
        forecast, tree_forecast = _load(net.predictions_path), _load(tree.predictions_path)
        refs = {**reference_forecasts(dm, "test"), "tree": tree_forecast}
        scores = score_run(
            forecast, dm, "test", references=refs, n_boot=n_boot, seed=seed, mask=mask
        )
        da = scores[var]

        def series(metric: str, da=da) -> list[float]:
            return [float(v) for v in da.sel(metric=metric).values]

        steps = [int(k) for k in range(1, da.sizes["lead_time"] + 1)]
        out["targets"][var] = {
            "network": net.model,
            "tree": tree.model,
            "lead": steps,
            **{
                key: series(key)
                for key in (
                    "rmse",
                    "rmse_tree",
                    "rmse_diff_tree",
                    "rmse_diff_tree_ci_lower",
                    "rmse_diff_tree_ci_upper",
                    "dm_pvalue_tree",
                    "skill_persistence",
                    "skill_persistence_ci_lower",
                    "skill_persistence_ci_upper",
                )
            },
        }
    return out


def markdown(result: dict) -> str:
    """One table per target: lead, RMSEs, paired difference, DM p-value, skill."""
    lines = []
    for var, r in result["targets"].items():
        lines += [
            f"### {var}: best network `{r['network']}` vs best tree `{r['tree']}`",
            "",
            f"Scored on the common mask of every run ({result['mask']}).",
            "",
            "| lead | RMSE net | RMSE tree | net - tree [95 % CI] | DM p | skill vs persistence"
            " [95 % CI] |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for i, k in enumerate(r["lead"]):
            lines.append(
                f"| {k} | {r['rmse'][i]:.3f} | {r['rmse_tree'][i]:.3f} | "
                + _fmt(
                    r["rmse_diff_tree"][i],
                    r["rmse_diff_tree_ci_lower"][i],
                    r["rmse_diff_tree_ci_upper"][i],
                )
                + f" | {r['dm_pvalue_tree'][i]:.3f} | "
                + _fmt(
                    r["skill_persistence"][i],
                    r["skill_persistence_ci_lower"][i],
                    r["skill_persistence_ci_upper"][i],
                )
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "multirun", type=Path, nargs="+", help="multirun directories of one data set"
    )
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    result = compare(args.multirun, args.n_boot, args.seed)
    print(markdown(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
