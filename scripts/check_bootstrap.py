"""Coverage of geoclim's bootstrap intervals on simulated forecast errors with a known RMSE.

Each simulation draws errors ``e[i, s]`` for ``--inits`` init times and ``--cells`` cells
(independent across cells, marginal variance 1, so the true RMSE is 1) and asks whether the
95 % interval of :func:`geoclim.evaluation.bootstrap.bootstrap_scores` (stationary
bootstrap, block length from the autocorrelation, widened intervals) contains 1. The
same goes for the paired RMSE difference against a reference whose error adds independent
noise of the same kind (true difference ``1 - sqrt(1 + r^2)``). Scenarios:

- ``iid``: independent errors over init times;
- ``ar1``: AR(1) errors over init times, ``e[i] = phi e[i-1] + sqrt(1 - phi^2) eta[i]``
  with ``phi = 0.8``;
- ``few``: independent errors over only 15 init times.

The target is 0.93-0.97 for ``iid`` and at least 0.90 for ``ar1``. Prints a JSON summary;
``--save`` also writes it to ``experiments/bootstrap/coverage.json`` (nothing is written
without it)::

    python scripts/check_bootstrap.py                    # 400 simulations per scenario
    python scripts/check_bootstrap.py --sims 1000 --save
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from geoclim import fileio
from geoclim.evaluation import bootstrap, table
from geoclim.evaluation import metrics as m

OUT = Path(__file__).resolve().parents[1] / "experiments" / "bootstrap" / "coverage.json"
REF_NOISE = 0.6  # reference error = model error + REF_NOISE * independent noise


def simulate(rng: np.random.Generator, n_init: int, n_cells: int, phi: float) -> np.ndarray:
    """``(n_init, n_cells)`` errors, AR(1) over init with coefficient ``phi``, variance 1."""
    eta = rng.normal(size=(n_init, n_cells))
    e = np.empty_like(eta)
    e[0] = eta[0]
    for i in range(1, n_init):
        e[i] = phi * e[i - 1] + np.sqrt(1.0 - phi**2) * eta[i]
    return e


def one_run(
    rng: np.random.Generator, n_init: int, n_cells: int, phi: float, n_boot: int, seed: int
) -> dict[str, object]:
    """Intervals of one simulated sample: does each contain its true value?"""
    e = simulate(rng, n_init, n_cells, phi)
    noise = simulate(rng, n_init, n_cells, phi) * REF_NOISE
    dims = ("init_time", "lead_time", "station")
    coords = {
        "init_time": pd.date_range("2024-01-01", periods=n_init, freq="D"),
        "lead_time": pd.to_timedelta([1], unit="D"),
    }

    def ds(values: np.ndarray) -> xr.Dataset:
        return xr.Dataset({"x": (dims, values[:, None, :])}, coords=coords)

    inputs = table.Inputs(
        forecast=ds(e),
        point=ds(e),
        truth=ds(np.zeros_like(e)),
        reduce_dims=["init_time", "station"],
        references={"ref": ds(e + noise)},
    )
    rows = [r for r in table.ci_rows() if r.name in ("rmse", "rmse_diff")]
    samples = bootstrap.bootstrap_scores(inputs, n_boot=n_boot, seed=seed, rows=rows)
    estimate = xr.concat(
        [m.rmse(ds(e), ds(0 * e), reduce_dims=["init_time", "station"]),
         m.rmse(ds(e), ds(0 * e), reduce_dims=["init_time", "station"])
         - m.rmse(ds(e + noise), ds(0 * e), reduce_dims=["init_time", "station"])],
        dim=samples["metric"],
    )  # fmt: skip
    ci = bootstrap.confidence_interval(samples, estimate)["x"].isel(lead_time=0)
    truth = {"rmse": 1.0, "rmse_diff_ref": 1.0 - np.sqrt(1.0 + REF_NOISE**2)}
    hit = {
        k: bool(ci.sel(metric=k, bound="lower") <= v <= ci.sel(metric=k, bound="upper"))
        for k, v in truth.items()
    }
    return {"hit": hit, "block_length": float(samples.attrs["block_length"])}


def scenario(name: str, n_init: int, phi: float, args: argparse.Namespace) -> dict[str, object]:
    """Coverage of ``args.sims`` simulations of one scenario."""
    rng = np.random.default_rng(args.seed)
    runs = [one_run(rng, n_init, args.cells, phi, args.boot, k) for k in range(args.sims)]
    cover = {
        k: float(np.mean([r["hit"][k] for r in runs]))  # type: ignore[index]
        for k in ("rmse", "rmse_diff_ref")
    }
    half = 1.96 * np.sqrt(0.95 * 0.05 / args.sims)
    return {
        "scenario": name,
        "n_init": n_init,
        "phi": phi,
        "coverage": cover,
        "monte_carlo_95_halfwidth": round(float(half), 4),
        "mean_block_length": float(np.mean([r["block_length"] for r in runs])),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the three scenarios, print the JSON summary, write it with ``--save``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sims", type=int, default=400, help="simulations per scenario")
    p.add_argument("--boot", type=int, default=500, help="bootstrap replicates per interval")
    p.add_argument("--inits", type=int, default=100, help="init times (iid and ar1)")
    p.add_argument("--cells", type=int, default=4, help="independent cells per init")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", action="store_true", help=f"write {OUT.relative_to(OUT.parents[2])}")
    args = p.parse_args(argv)
    start = time.perf_counter()
    results = [
        scenario("iid", args.inits, 0.0, args),
        scenario("ar1", args.inits, 0.8, args),
        scenario("few", 15, 0.0, args),
    ]
    summary = {
        "command": "python scripts/check_bootstrap.py " + " ".join(argv or sys.argv[1:]),
        "sims": args.sims,
        "boot": args.boot,
        "cells": args.cells,
        "level": 0.95,
        "results": results,
        "seconds": round(time.perf_counter() - start, 1),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.save:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        fileio.write_text(OUT, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
