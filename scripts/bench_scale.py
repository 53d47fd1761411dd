"""Out-of-core training: a synthetic zarr larger than memory, the CNN and the LSTM trained from it.

1. Writes a synthetic zarr of ``--gb`` GB (``--nlat x --nlon`` cells, 8 registered variables,
   hourly, chunked in time) chunk by chunk, so the writer holds one chunk at a time.
2. Trains the CNN (tiles of ``--patch`` cells) and the LSTM (point samples) from it for
   ``--batches`` batches each through ``GeoDataModule`` with the lazy backend (dask-backed
   store, DataLoader workers), reporting setup time (normaliser statistics and sample index,
   out of core), training samples/s and the peak resident memory of the process and its
   workers together (sampled from /proc).
3. On the first ``--subset-gb`` GB of the same store, which fits in memory, measures the
   in-memory backend and the lazy backend side by side: training samples/s and loader-only
   samples/s (batches drawn without a model), printing lazy / in-memory ratios.
4. The loader alone once more on the subset, paired: ``--rounds`` epochs of one in-memory and
   one lazy loader, alternating, the same batches drawn from each; the printed loader ratio
   is the median over rounds of lazy / in-memory in the same round (round 0 cold).

    .venv/bin/python scripts/bench_scale.py --gb 1 --dir /tmp/bench_scale     # a check
    .venv/bin/python scripts/bench_scale.py --gb 12 --save                    # the record

``--save`` writes ``experiments/bench_scale/results_<gb>gb.json`` and a line for the README.
The store is deleted at the end unless ``--keep``; a complete store already under ``--dir``
(same size) is reused instead of written again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import dask.array as da
import lightning as L
import numpy as np
import pandas as pd
import torch
import xarray as xr
import zarr
from hydra import compose, initialize_config_dir

from geoclim import fileio
from geoclim.data.blocks import MEMORY_GB
from geoclim.data.datamodule import GeoDataModule
from geoclim.data.sources import open_dataset
from geoclim.training.instantiate import build_module
from geoclim.training.loaders import WindowLoaders

ROOT = Path(__file__).resolve().parents[1]
COMPLETE = "bench_scale_complete"
WRITE_RECORD = "bench_scale_write"  # seconds and writer peak RSS, kept with the store
RUNS = {  # model -> window (and batch size), batches trained, batches drawn by the loader alone
    # a block holds ~2,300 CNN tiles (72 batches) and ~103,000 LSTM points (400 batches) here
    "cnn": {
        "window": {"patch": 32, "stride": 1, "batch_size": 32},
        "batches": 10,
        "loader_batches": 300,
    },
    "lstm": {
        "window": {"patch": 1, "stride": 23, "batch_size": 256},
        "batches": 30,
        "loader_batches": 3200,
    },
}
log = logging.getLogger("bench_scale")

VARIABLES = {  # name: (units, mean, diurnal amplitude, noise)
    "pm25": ("ug m-3", 2.5, 0.4, 0.5),  # log-normal: exp of this
    "o3": ("ppb", 30.0, 10.0, 4.0),
    "no2": ("ppb", 15.0, 6.0, 3.0),
    "t2m": ("K", 285.0, 5.0, 1.5),
    "u10": ("m s-1", 1.0, 1.0, 2.0),
    "v10": ("m s-1", 0.5, 1.0, 2.0),
    "blh": ("m", 800.0, 400.0, 100.0),
    "ssrd": ("W m-2", 150.0, 150.0, 30.0),
}
TASK = dict(
    targets=["pm25"],
    past_inputs=["no2", "o3", "t2m", "u10", "v10", "blh", "ssrd"],
    future_inputs=["hour_sin", "hour_cos", "t2m", "u10", "v10"],
    input_steps=24,
    horizon=12,
)


class PeakRSS:
    """Peak memory of this process plus its children (DataLoader workers), summed as PSS."""

    def __init__(self, every: float = 0.1):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(pid: int) -> int:
        """Proportional set size: pages shared with forked workers are counted once overall."""
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    @staticmethod
    def _children(pid: int) -> list[int]:
        out = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return out

    def now(self) -> int:
        """Bytes resident now, this process and its descendants."""
        pids, total = [os.getpid()], 0
        while pids:
            pid = pids.pop()
            total += self._rss(pid)
            pids += self._children(pid)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> PeakRSS:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def write_store(path: Path, n_time: int, nlat: int, nlon: int, chunk: int, seed: int) -> None:
    """A synthetic hourly zarr, written a few time chunks at a time (metadata first)."""
    times = pd.date_range("2020-01-01", periods=n_time, freq="h")
    lat, lon = np.linspace(30, 50, nlat), np.linspace(-110, -80, nlon)
    template = xr.Dataset(coords={"time": times, "latitude": lat, "longitude": lon})
    for name, (units, *_) in VARIABLES.items():
        template[name] = (
            ("time", "latitude", "longitude"),
            da.zeros((n_time, nlat, nlon), dtype=np.float32, chunks=(chunk, nlat, nlon)),
            {"units": units, "long_name": name},
        )
    encoding = {name: {"compressors": None} for name in VARIABLES}
    template.to_zarr(path, compute=False, zarr_format=2, encoding=encoding, mode="w")
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (len(VARIABLES), nlat, nlon)).astype(np.float32)
    # whole chunks per region write, about 64 MB at a time (one call per chunk is slow)
    step = chunk * max(1, int(64e6 // (chunk * nlat * nlon * len(VARIABLES) * 4)))
    for lo in range(0, n_time, step):
        hi = min(n_time, lo + step)
        hour = (np.arange(lo, hi) % 24).astype(np.float32)[:, None, None]  # (t, 1, 1)
        block = {}
        for k, (name, (_, mean, amp, noise)) in enumerate(VARIABLES.items()):
            wave = np.sin(2 * np.pi * hour / 24 + phase[k])  # (t, lat, lon)
            v = mean + amp * wave + noise * rng.standard_normal(wave.shape, np.float32)
            block[name] = (("time", "latitude", "longitude"), np.exp(v) if name == "pm25" else v)
        xr.Dataset(block).to_zarr(path, region={"time": slice(lo, hi)})
    zarr.open_group(path, mode="r+").attrs[COMPLETE] = n_time  # marks a finished write
    log.info("wrote %s", path)


def is_complete(path: Path, n_time: int) -> bool:
    """Whether ``path`` holds a finished :func:`write_store` of ``n_time`` steps (reusable)."""
    try:
        return zarr.open_group(path, mode="r").attrs.get(COMPLETE) == n_time
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return False


def trainer(batches: int, accelerator: str) -> L.Trainer:
    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def model_cfg(model: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"model={model}", "paths.output_dir=/tmp/bench_scale"])


def datamodule(source, window: dict, args, backend: str) -> GeoDataModule:
    return GeoDataModule(
        source,
        TASK,
        window=window,
        splits={"fractions": [0.8, 0.1, 0.1]},
        batch_size=window.pop("batch_size"),
        num_workers=args.workers if backend == "lazy" else 0,
        backend=backend,
        seed=0,
        lazy={
            "prefetch_blocks": args.prefetch_blocks,
            "memory_gb": args.memory_gb,
            "direct": not args.dask_reads,
            "huge_pages": args.huge_pages,
        },
    )


def draw(loader, n: int, epoch: int) -> float:
    """Seconds to draw ``n`` batches of ``epoch`` from ``loader`` (first batch included)."""
    loader.sampler.set_epoch(epoch)
    t0 = time.perf_counter()
    for i, _ in enumerate(loader):
        if i + 1 == n:
            break
    return time.perf_counter() - t0


def loader_rounds(sources: dict, model: str, window: dict, args) -> dict:
    """The loader alone, in-memory then lazy, over ``--rounds`` epochs of one loader each.

    Round ``r`` draws the same batches (epoch ``r``) from both, back to back, so both meet the
    same load; round 0 starts cold (the lazy workers' start and first block reads), later
    rounds are later epochs of the same loaders (persistent workers, as in training).
    """
    dms = {b: datamodule(src, dict(window), args, b) for b, src in sources.items()}
    loaders = {b: dm.loader("train", shuffle=True) for b, dm in dms.items()}
    batch = dms["memory"].batch_size
    n = min(args.loader_batches or RUNS[model]["loader_batches"], len(loaders["memory"]))
    rates: dict[str, list[float]] = {b: [] for b in dms}
    for r in range(args.rounds):
        for b, loader in loaders.items():
            rates[b].append(n * batch / draw(loader, n, r))
    ratios = [lz / mem for lz, mem in zip(rates["lazy"], rates["memory"], strict=True)]
    out = {
        "model": model,
        "batches": n,
        "batch_size": batch,
        "memory_samples_per_s": rates["memory"],
        "lazy_samples_per_s": rates["lazy"],
        "ratio_per_round": ratios,
        "ratio_median": float(np.median(ratios)),
        "block_steps": dms["lazy"].reader.block_steps,
        "direct_variables": sorted(dms["lazy"].reader.plain),
    }
    log.info("%s", json.dumps(out))
    return out


def run(source, model: str, window: dict, args, backend: str, *, train: bool = True) -> dict:
    """Set up, draw batches from the loader alone, then train a few batches.

    Every timing starts cold (first batch included): the lazy loader's numbers carry its
    workers' first block reads, and enough batches are drawn to span several blocks per worker.
    """
    with PeakRSS() as peak:
        dm = datamodule(source, dict(window), args, backend)
        t0 = time.perf_counter()
        dm.setup()
        setup_s = time.perf_counter() - t0
        n_all = len(dm.loader("train", shuffle=True))
        n = min(args.batches or RUNS[model]["batches"], n_all)
        n_loader = min(args.loader_batches or RUNS[model]["loader_batches"], n_all)
        samples = n * dm.batch_size
        loader_s = draw(dm.loader("train", shuffle=True), n_loader, 0)
        train_s = float("nan")
        if train:
            torch.manual_seed(0)
            module = build_module(model_cfg(model), dm)
            t0 = time.perf_counter()
            trainer(n, args.accelerator).fit(module, datamodule=WindowLoaders(dm))
            train_s = time.perf_counter() - t0
    out = {
        "model": model,
        "backend": backend,
        "setup_s": setup_s,
        "train_samples_in_index": len(dm.index["train"]),
        "batches": n,
        "batch_size": dm.batch_size,
        "loader_batches": n_loader,
        "loader_samples_per_s": n_loader * dm.batch_size / loader_s,
        "train_samples_per_s": samples / train_s,
        "peak_rss_gb": peak.peak / 1e9,  # PSS of the process and its workers
        "block_steps": dm.reader.block_steps if dm.reader is not None else None,
        "direct_variables": sorted(dm.reader.plain) if dm.reader is not None else None,
    }
    log.info("%s", json.dumps(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where the store goes (default: a temp dir)")
    parser.add_argument("--gb", type=float, default=12.0, help="store size in GB (1e9 bytes)")
    parser.add_argument("--nlat", type=int, default=128)
    parser.add_argument("--nlon", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=24, help="time steps per zarr chunk")
    parser.add_argument("--subset-gb", type=float, default=0.5, help="in-memory comparison size")
    parser.add_argument("--batches", type=int, help="batches trained per model (RUNS)")
    parser.add_argument(
        "--loader-batches", type=int, help="batches drawn by the loader alone (RUNS)"
    )
    parser.add_argument("--models", default="cnn,lstm", help="comma-separated: cnn, lstm")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (lazy)")
    parser.add_argument(
        "--prefetch-blocks", type=int, help="data.lazy.prefetch_blocks (default: its default)"
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=MEMORY_GB,
        help=f"data.lazy.memory_gb, the block arrays' budget (default {MEMORY_GB})",
    )
    parser.add_argument(
        "--dask-reads", action="store_true", help="data.lazy.direct=false: every read via dask"
    )
    parser.add_argument(
        "--huge-pages", action="store_true", help="data.lazy.huge_pages=true (numpy's THP hint)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="paired loader-alone rounds")
    parser.add_argument(
        "--phases", default="full,subset,rounds", help="comma-separated: full, subset, rounds"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--save", action="store_true", help="record under experiments/")
    parser.add_argument("--keep", action="store_true", help="keep the store")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "geoclim"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")  # library chatter (zarr v2 format, lightning tips)
    torch.set_num_threads(args.threads)

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    root.mkdir(parents=True, exist_ok=True)
    store = root / "synthetic.zarr"
    per_step = args.nlat * args.nlon * len(VARIABLES) * 4
    n_time = int(args.gb * 1e9 // per_step)
    n_sub = int(args.subset_gb * 1e9 // per_step)
    log.info(
        "store %s: %d x %d cells x %d variables x %d h = %.2f GB (disk free %.0f GB)",
        store,
        args.nlat,
        args.nlon,
        len(VARIABLES),
        n_time,
        n_time * per_step / 1e9,
        shutil.disk_usage(root).free / 1e9,
    )
    results: dict = {"load_average_start": os.getloadavg()}
    try:
        if is_complete(store, n_time):  # written by an earlier run with --keep
            log.info("reusing the complete store %s", store)
        else:
            with PeakRSS() as peak:
                t0 = time.perf_counter()
                write_store(store, n_time, args.nlat, args.nlon, args.chunk, seed=0)
            record = {"s": time.perf_counter() - t0, "peak_rss_gb": peak.peak / 1e9}
            zarr.open_group(store, mode="r+").attrs[WRITE_RECORD] = record
            log.info("written in %.0f s, writer peak RSS %.2f GB", *record.values())
        results["write"] = zarr.open_group(store, mode="r").attrs.get(WRITE_RECORD)

        def full():
            return open_dataset(store, chunks={})

        def subset_lazy():
            return open_dataset(store, chunks={}).isel(time=slice(0, n_sub))

        def subset_memory():  # only the subset is read; loaded inside its run, freed after
            return subset_lazy().load()

        windows = {m: RUNS[m]["window"] for m in args.models.split(",")}
        phases = args.phases.split(",")
        results["full"] = [
            run(full, m, w, args, "lazy") for m, w in windows.items() if "full" in phases
        ]
        results["subset"] = []
        for m, w in windows.items() if "subset" in phases else ():
            results["subset"].append(run(subset_memory, m, w, args, "memory"))
            results["subset"].append(run(subset_lazy, m, w, args, "lazy"))
        sources = {"memory": subset_memory, "lazy": subset_lazy}
        results["rounds"] = [
            loader_rounds(sources, m, w, args) for m, w in windows.items() if "rounds" in phases
        ]
    finally:
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
    results.update(
        gb=n_time * per_step / 1e9,
        subset_gb=n_sub * per_step / 1e9,
        shape={"time": n_time, "latitude": args.nlat, "longitude": args.nlon},
        variables=list(VARIABLES),
        chunk=args.chunk,
        workers=args.workers,
        prefetch_blocks=args.prefetch_blocks,
        memory_gb=args.memory_gb,
        direct_reads=not args.dask_reads,
        huge_pages=args.huge_pages,
        paired_rounds=args.rounds,
        threads=args.threads,
        machine=f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        load_average_end=os.getloadavg(),
    )
    report(results)
    if args.save:
        name = f"results_{results['gb']:.0f}gb_{args.models.replace(',', '_')}"
        name += ".json" if args.workers == 2 else f"_workers{args.workers}.json"
        out = ROOT / "experiments" / "bench_scale" / name
        fileio.write_text(out, json.dumps(results, indent=2) + "\n")
        log.info("saved %s", out)


def report(results: dict) -> None:
    log.info(
        "%-5s %-7s %-7s %9s %12s %12s %9s",
        "model",
        "data",
        "backend",
        "setup_s",
        "loader/s",
        "train/s",
        "peak GB",
    )
    for where in ("full", "subset"):
        for r in results[where]:
            log.info(
                "%-5s %-7s %-7s %9.1f %12.0f %12.0f %9.2f",
                r["model"],
                where,
                r["backend"],
                r["setup_s"],
                r["loader_samples_per_s"],
                r["train_samples_per_s"],
                r["peak_rss_gb"],
            )
    for r in results["rounds"]:
        log.info(
            "%s loader alone, %d rounds of %d batches (memory | lazy samples/s): %s",
            r["model"],
            len(r["ratio_per_round"]),
            r["batches"],
            ", ".join(
                f"{m:.0f} | {z:.0f}"
                for m, z in zip(r["memory_samples_per_s"], r["lazy_samples_per_s"], strict=True)
            ),
        )
        log.info(
            "%s: loader alone lazy / in-memory on the %.2f GB subset: median %.2f (rounds: %s)",
            r["model"],
            results["subset_gb"],
            r["ratio_median"],
            ", ".join(f"{x:.2f}" for x in r["ratio_per_round"]),
        )
    if not (results["full"] and results["subset"]):
        return
    for model in {r["model"] for r in results["full"]}:
        mem, lz = (
            next(r for r in results["subset"] if r["model"] == model and r["backend"] == b)
            for b in ("memory", "lazy")
        )
        full = next(r for r in results["full"] if r["model"] == model)
        log.info(
            "%s: lazy / in-memory on the %.2f GB subset: train %.2f, loader (one cold pass) %.2f; "
            "full %.1f GB store lazy / in-memory subset: train %.2f; peak RSS %.2f GB",
            model,
            results["subset_gb"],
            lz["train_samples_per_s"] / mem["train_samples_per_s"],
            lz["loader_samples_per_s"] / mem["loader_samples_per_s"],
            results["gb"],
            full["train_samples_per_s"] / mem["train_samples_per_s"],
            full["peak_rss_gb"],
        )


if __name__ == "__main__":
    main()
