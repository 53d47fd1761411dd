"""Benchmark: geoclim's window loader against pytorch-forecasting's TimeSeriesDataSet.

Both serve the same task from the same synthetic field, in one process: one series per grid
cell (the field flattened to ``cells x hours x variables``), 48 steps in, 24 out, batch 256,
target ``pm25`` with ``o3``, ``no2``, ``t2m`` as past inputs and hour-of-day sin/cos as
known-future inputs. Measured for each: build time (for pytorch-forecasting this includes the
long-format DataFrame it needs), peak traced memory (tracemalloc: numpy and pandas
allocations) during build, and training-batch throughput (shuffled, ``num_workers=0``,
best of 3 rounds each).
The limit is measured in the same run: a strided-view gather (one fancy index into
``sliding_window_view`` of the dynamic array) of the same windows, in the same batches, each
round right after the loader's, with no layout, missing-value or tensor work; the loader's
distance to it is printed as a ratio.
A second case, 4,096 cells x 8,760 hours x 8 variables, is run with geoclim alone.

    python scripts/bench_windows.py            # full run, prints only
    python scripts/bench_windows.py --save     # also writes experiments/bench_windows/
    python scripts/bench_windows.py --quick    # a small smoke version
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from geoclim.data import schema
from geoclim.data.datamodule import GeoDataModule
from geoclim.data.synthetic import make_dataset
from geoclim.fileio import write_text

TARGET, PAST = "pm25", ["o3", "no2", "t2m"]
OUT = Path(__file__).resolve().parents[1] / "experiments" / "bench_windows"
ROUNDS = 3
LIMIT_ROUNDS = 10
"""Rounds of geoclim's loader and the limit, interleaved (cheap; more rounds tame the load)."""


def build_traced(build):
    """Build a loader under tracemalloc: ``(loader, n_samples, build seconds, peak bytes)``."""
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    loader, n_samples = build()
    build_s = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return loader, n_samples, build_s, peak


def measure(build, n_batches: int, rounds: int = ROUNDS):
    """Build a loader under tracemalloc, then time ``rounds`` runs of ``n_batches`` batches.

    The best round counts: other jobs on a shared machine only ever slow a round down.
    """
    loader, n_samples, build_s, peak = build_traced(build)
    it = iter(loader)
    next(it)  # warm-up
    rate = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        seen = 0
        for _ in range(n_batches):
            batch = next(it)
            x = batch["past"] if isinstance(batch, dict) else batch[0]["encoder_cont"]
            seen += x.shape[0]
        rate = max(rate, seen / (time.perf_counter() - t0))
    return {
        "build_s": build_s,
        "peak_mb": peak / 2**20,
        "samples_per_s": rate,
        "n_samples": n_samples,
    }


def measure_with_limit(build, n_batches: int, rounds: int = LIMIT_ROUNDS) -> dict:
    """:func:`measure` for geoclim, each loader round followed by the limit on its batches.

    The limit is a strided-view gather: one fancy index per batch into a
    ``sliding_window_view`` over time of the dynamic array, copying every window (inputs and
    leads, all channels) once, with no layout, missing-value or tensor work. Round ``r`` of
    the limit gathers exactly the windows the loader served in its round ``r`` (the sampler's
    rows, decoded before the clock starts), right after it: both meet the same load, and the
    limit, running second, finds whatever the loader left in the caches. Rates are the best
    round of each; the distance to the limit is the median over rounds of the paired ratio
    (limit / loader in the same round), which a load spike in one round cannot move.
    """
    loader, n_samples, build_s, peak = build_traced(build)
    dataset = loader.dataset
    arrays, spec = dataset.arrays, dataset.spec
    span = spec.input_steps + spec.lead_steps
    view = np.lib.stride_tricks.sliding_window_view(arrays.dynamic, span, axis=0)
    # view (T - span + 1, H, W, C, span): entry s is the window starting at step s
    served, rows = iter(loader), iter(loader.sampler)  # the same epoch, the same batches
    next(served), next(rows)  # warm-up
    pairs = []  # (loader, limit) samples/s of each round
    for _ in range(rounds):
        decoded = [dataset.index.decode(np.asarray(next(rows))) for _ in range(n_batches)]
        t0 = time.perf_counter()
        seen = sum(next(served)["past"].shape[0] for _ in range(n_batches))
        rate = seen / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        seen = sum(view[t + 1 - spec.input_steps, y, x].shape[0] for t, y, x in decoded)
        pairs.append((rate, seen / (time.perf_counter() - t0)))
    rates, limits = np.array(pairs).T
    return {
        "build_s": build_s,
        "peak_mb": peak / 2**20,
        "samples_per_s": float(rates.max()),
        "n_samples": n_samples,
        "strided_limit_samples_per_s": float(limits.max()),
        "limit_over_loader_per_round": (limits / rates).tolist(),
        "limit_over_loader_median": float(np.median(limits / rates)),
    }


def geoclim_builder(ds: xr.Dataset, past: list[str]):
    def build():
        dm = GeoDataModule(
            ds,
            dict(
                targets=[TARGET],
                past_inputs=past,
                future_inputs=["hour_sin", "hour_cos"],
                input_steps=48,
                horizon=24,
            ),
            splits={"fractions": (0.8, 0.1, 0.1)},
            batch_size=256,
        )
        dm.setup()
        return dm.train_dataloader(), len(dm.index["train"])

    return build


def pf_builder(ds: xr.Dataset, train_stop: int):
    from pytorch_forecasting import TimeSeriesDataSet

    def build():
        sub = ds[[TARGET, *PAST]].isel(time=slice(0, train_stop))
        frame = sub.stack(cell=("latitude", "longitude")).to_dataframe()[[TARGET, *PAST]]
        frame = frame.reset_index()
        frame["cell"] = frame["latitude"].astype(str) + "_" + frame["longitude"].astype(str)
        frame["time_idx"] = (frame["time"] - frame["time"].min()) // pd.Timedelta("1h")
        hour = frame["time"].dt.hour.to_numpy()
        frame["hour_sin"] = np.sin(2 * np.pi * hour / 24).astype(np.float32)
        frame["hour_cos"] = np.cos(2 * np.pi * hour / 24).astype(np.float32)
        frame = frame.drop(columns=["time", "latitude", "longitude"])
        tsd = TimeSeriesDataSet(
            frame,
            time_idx="time_idx",
            target=TARGET,
            group_ids=["cell"],
            max_encoder_length=48,
            min_encoder_length=48,
            max_prediction_length=24,
            min_prediction_length=24,
            time_varying_unknown_reals=[TARGET, *PAST],
            time_varying_known_reals=["hour_sin", "hour_cos"],
        )
        return tsd.to_dataloader(train=True, batch_size=256, num_workers=0), len(tsd)

    return build


def random_field(n_lat: int, n_lon: int, hours: int, names: list[str], seed: int = 0):
    """A cheap AR(1) field for the large case (loader cost does not depend on the physics)."""
    rng = np.random.default_rng(seed)
    data = {}
    for name in names:
        v = np.empty((hours, n_lat, n_lon), np.float32)
        v[0] = rng.gamma(2.0, 5.0, (n_lat, n_lon))
        for t in range(1, hours):
            v[t] = 0.95 * v[t - 1] + rng.gamma(0.5, 0.5, (n_lat, n_lon)).astype(np.float32)
        data[name] = (("time", "latitude", "longitude"), v)
    ds = xr.Dataset(
        data,
        coords={
            "time": pd.date_range("2023-01-01", periods=hours, freq="h"),
            "latitude": np.linspace(30, 50, n_lat),
            "longitude": np.linspace(-120, -70, n_lon),
        },
    )
    return schema.annotate(ds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (never saved)")
    parser.add_argument(
        "--save", action="store_true", help="write experiments/bench_windows/results.json"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", module="pytorch_forecasting")  # its own pandas notices
    torch.set_num_threads(1)
    side, days, n_batches = (8, 60, 5) if args.quick else (32, 2000 / 24, 40)

    ds = make_dataset(variables=[TARGET, *PAST], nlat=side, nlon=side, days=days, seed=0)
    ds = ds[[TARGET, *PAST]].load()
    raw_mb = sum(ds[v].nbytes for v in ds.data_vars) / 2**20
    print(
        f"field: {side * side} cells x {ds.sizes['time']} hours x {len(ds.data_vars)} vars, "
        f"raw float32 {raw_mb:.1f} MB"
    )

    geo = measure_with_limit(geoclim_builder(ds, PAST), n_batches)
    limit_ratio = geo["limit_over_loader_median"]
    gc.collect()  # free the loader before the reference builds its own
    train_stop = int(round(ds.sizes["time"] * 0.8))
    ref = measure(pf_builder(ds, train_stop), max(3, n_batches // 4))
    ratio = geo["samples_per_s"] / ref["samples_per_s"]
    rows = {"geoclim": geo, "pytorch-forecasting": ref}
    header = ("loader", "samples", "build s", "peak MB", "x raw", "samples/s")
    print("{:<22}{:>10}{:>10}{:>10}{:>8}{:>12}".format(*header))
    for name, r in rows.items():
        print(
            f"{name:<22}{r['n_samples']:>10}{r['build_s']:>10.2f}{r['peak_mb']:>10.1f}"
            f"{r['peak_mb'] / raw_mb:>8.2f}{r['samples_per_s']:>12.0f}"
        )
    print(
        f"strided-view gather limit: {geo['strided_limit_samples_per_s']:.0f} samples/s; "
        f"limit / geoclim (median of paired rounds): {limit_ratio:.2f}x (aim <= 2); "
        f"best round over best round: "
        f"{geo['strided_limit_samples_per_s'] / geo['samples_per_s']:.2f}x"
    )
    print(f"throughput ratio geoclim / pytorch-forecasting: {ratio:.1f}x (aim >= 100)")
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")

    result = {
        "case": {
            "cells": side * side,
            "hours": int(ds.sizes["time"]),
            "variables": 4,
            "input_steps": 48,
            "horizon": 24,
            "batch": 256,
            "raw_mb": raw_mb,
        },
        "results": rows,
        "ratio_samples_per_s": ratio,
        "limit_over_geoclim": limit_ratio,
        "load_average_after_small_case": os.getloadavg(),
    }
    if not args.quick:
        big = random_field(64, 64, 8760, [TARGET, "o3", "no2", "t2m", "u10", "v10", "blh", "rh"])
        big_mb = sum(big[v].nbytes for v in big.data_vars) / 2**20
        large = measure(
            geoclim_builder(big, ["o3", "no2", "t2m", "u10", "v10", "blh", "rh"]), n_batches
        )
        print(
            f"large: 4096 cells x 8760 hours x 8 vars, raw {big_mb:.0f} MB: build "
            f"{large['build_s']:.1f} s, peak {large['peak_mb']:.0f} MB "
            f"({large['peak_mb'] / big_mb:.2f}x raw), {large['samples_per_s']:.0f} samples/s, "
            f"{large['n_samples']} train samples"
        )
        result["large"] = {"raw_mb": big_mb, **large}
        result["machine"] = {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            "load_average_at_end": os.getloadavg(),
        }
    if args.save and not args.quick:
        OUT.mkdir(parents=True, exist_ok=True)
        write_text(OUT / "results.json", json.dumps(result, indent=2) + "\n")
        print(f"wrote {OUT / 'results.json'}")


if __name__ == "__main__":
    main()
