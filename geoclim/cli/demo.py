"""``make demo``: the main job on the embedded real data, end to end.

1. data: load the NAPS hourly NO2 network (196 Canadian stations, 2023), validate it, fill
   short gaps (linear in time, at most 3 h, fitted on the train block only), grid it onto
   0.5 degree cells over the Windsor-Quebec corridor with a coverage mask, and summarise.
2. models: one Hydra multirun of ``geoclim-train`` on the gridded network trains the LSTM,
   CNN-spatial and TFT, pytorch-forecasting's TFT as a reference, the tree models (XGBoost,
   LightGBM, random forest) and fits persistence and climatology, each into its own run
   directory; their validation and test scores are printed side by side.
3. leaderboard: ``geoclim compare`` ranks the runs on the test split, per lead time, and
   saves its table and plots.
4. serving: the best network is exported to ONNX (parity-checked), registered as
   ``production``, served over HTTP on loopback, and asked for a forecast with an API key.
5. explanations: attribution datasets and plots (``geoclim-explain``) for the best network
   and the best tree model, and one explanation from the served model (``/v1/explain`` for
   point models; the exported grid model explained over onnxruntime otherwise).

Everything is written under ``--out`` (default ``outputs/demo``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from geoclim.cli.errors import friendly_errors
from geoclim.cli.help import HelpFormatter
from geoclim.errors import GeoclimError

log = logging.getLogger("geoclim.demo")

NETWORKS = ("lstm", "cnn", "tft")
REFERENCE = ("pf_tft",)
BASELINES = ("xgboost", "lightgbm", "random_forest", "persistence", "climatology")
TARGET = "no2"


def banner(text: str) -> None:
    """Print a section title."""
    print(f"\n== {text} " + "=" * max(0, 76 - len(text)), flush=True)


def data_stage() -> None:
    """Load, validate, impute and grid the embedded NO2 network; print summaries."""
    from geoclim.data import grid, samples, schema
    from geoclim.data.impute import Imputer
    from geoclim.data.impute import report as impute_report
    from geoclim.data.summary import format_summary

    banner("1. Embedded real data: validate, impute, grid")
    stations = schema.validate(samples.load("naps_no2"), ["no2"], source="naps_no2")
    print(format_summary("naps_no2 (as measured)", stations))

    train_end = stations.time.values[int(stations.sizes["time"] * 0.7)]
    imputer = Imputer(method="interpolate", max_gap=3, variables=["no2"])
    filled = imputer.fit(stations, period=slice(None, train_end)).transform(stations)
    rep = impute_report(filled, ["no2"])
    print(
        "imputation (linear in time, gaps <= 3 h): "
        f"{float(rep.missing_before.sel(variable='no2')):.2f} % missing -> "
        f"{float(rep.imputed.sel(variable='no2')):.2f} % imputed, "
        f"{float(rep.missing_after.sel(variable='no2')):.2f} % still missing"
    )

    lat, lon = grid.regular_grid(**samples.NAPS_GRID_BOX)
    gridded = grid.stations_to_grid(filled, lat, lon, **samples.NAPS_GRID_OPTIONS)
    schema.validate(gridded, ["no2", "coverage"], source="gridded NO2")
    print(format_summary("NO2 network on a 0.5 deg grid (IDW, 75 km)", gridded))

    london = samples.load("london")
    print(format_summary("london (Marylebone Road)", london))


#: console scripts (pyproject.toml [project.scripts]) of the modules the demo runs
CONSOLE_SCRIPTS = {
    "geoclim.cli.main": "geoclim",
    "geoclim.cli.train": "geoclim-train",
    "geoclim.cli.evaluate": "geoclim-eval",
    "geoclim.cli.export": "geoclim-export",
    "geoclim.cli.explain": "geoclim-explain",
}


def shell_command(cmd: list[str]) -> str:
    """``cmd`` as a user would type it: ``python -m geoclim.cli.train`` -> ``geoclim-train``.

    Arguments are quoted for a POSIX shell (:func:`shlex.join`), so the line can be pasted.
    """
    if cmd[:2] == [sys.executable, "-m"] and len(cmd) > 2:
        cmd = [CONSOLE_SCRIPTS.get(cmd[2], f"python -m {cmd[2]}"), *cmd[3:]]
        head, rest = cmd[0], cmd[1:]
        return " ".join([head, shlex.join(rest)]) if rest else head
    return shlex.join(cmd)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a geoclim command, echoing it; a failure stops the demo with its message."""
    print(shell_command(cmd), flush=True)
    proc = subprocess.run(cmd, **kwargs)
    if proc.returncode != 0:
        raise GeoclimError(f"command failed with status {proc.returncode}: {shell_command(cmd)}")
    return proc


def train_stage(out: Path, models: tuple[str, ...], overrides: tuple[str, ...] = ()) -> Path:
    """Train every model in one multirun; print validation and test scores side by side."""
    banner("2. Forecasters and baselines on the gridded NO2 network")
    sweep = out / "models"
    # the console shows warnings and errors; each run's train.log keeps the full log
    run(
        [
            sys.executable,
            "-m",
            "geoclim.cli.train",
            "-m",
            "experiment=demo",
            f"model={','.join(models)}",
            f"hydra.sweep.dir={sweep}",
            "+hydra.job_logging.handlers.console.level=WARNING",
            *overrides,
        ]
    )
    from geoclim.evaluation.leaderboard import find_runs, load_run

    keys = [
        f"val/rmse/{TARGET}",
        f"test/rmse/{TARGET}",
        f"test/skill_persistence/{TARGET}",
        f"test/skill_climatology/{TARGET}",
    ]
    print("\nscores (RMSE in ppb; skill = 1 - MSE/MSE_reference; val: networks only)")
    print(f"{'model':<15}" + "".join(f"{k:>30}" for k in keys))
    for record in map(load_run, find_runs([sweep])):
        cells = "".join(
            f"{record.metrics[k]:>30.3f}" if k in record.metrics else f"{'-':>30}" for k in keys
        )
        print(f"{record.model:<15}{cells}")
    return sweep


def leaderboard_stage(sweep: Path, out: Path) -> None:
    """Rank the runs on the test split and save the table and plots."""
    from geoclim.cli.compare import compare_main

    banner("3. Leaderboard (test split)")
    compare_main([str(sweep), "--out", str(out / "leaderboard")])
    print(f"leaderboard files and plots: {out / 'leaderboard'}")


def best_network(sweep: Path) -> Path:
    """The run directory of the exportable network with the lowest test RMSE."""
    from geoclim.evaluation.leaderboard import find_runs, load_run

    key = f"test/rmse/{TARGET}"
    runs = [  # networks by their config (model.kind), whatever conf/model names them
        r
        for r in map(load_run, find_runs([sweep]))
        if (r.config.get("model") or {}).get("kind") == "network" and key in r.metrics
    ]
    if not runs:
        raise GeoclimError(f"no network (model.kind: network) ran in {sweep}")
    best = min(runs, key=lambda r: r.metrics[key])
    print(
        f"best network on the test split: {best.model} ({key} = {best.metrics[key]:.3f}) "
        f"in {best.path}"
    )
    return best.path


TREES = ("xgboost", "lightgbm", "random_forest")


def explain_stage(sweep: Path, out: Path) -> None:
    """Attribution datasets and plots for the best network and the best tree model."""
    from geoclim.evaluation.leaderboard import find_runs, load_run

    banner("Explanations: attributions of the best network and the best tree model")
    key = f"test/rmse/{TARGET}"
    records = [r for r in map(load_run, find_runs([sweep])) if key in r.metrics]
    picks = [best_network(sweep)]
    trees = [r for r in records if r.model in TREES]
    if trees:
        picks.append(min(trees, key=lambda r: r.metrics[key]).path)
    for run_dir in picks:
        target = out / "explain" / Path(run_dir).name
        run(
            [
                sys.executable,
                "-m",
                "geoclim.cli.explain",
                f"run_dir={run_dir}",
                f"out={target}",
                "max_samples=128",
                "progress=false",
            ]
        )
        files = sorted(p.name for p in target.glob("*"))
        print(f"{Path(run_dir).name}: {len(files)} files in {target} ({', '.join(files[:4])}, ...)")


def served_explanation(base: str, key: str, run_dir: Path, history: Path, out: Path) -> None:
    """Ask the served model why it forecasts what it does (one explanation)."""
    import json

    from geoclim.serving.adapter import Forecaster

    report = json.loads((Path(run_dir) / "export" / "export.json").read_text())
    forecaster = Forecaster.from_onnx(report["model"], max_missing=1.0)
    if forecaster.metadata.window.patch == 1:
        body = json.dumps(_busiest_cell_request(forecaster, history)).encode()
        req = urllib.request.Request(
            f"{base}/v1/explain",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "X-API-Key": key},
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            answer = json.loads(resp.read())
        attr = answer["explanations"][0]["attributions"][0]  # lead 1: [variable][lag]
        totals = {
            v: sum(abs(a) for a in row if a is not None)
            for v, row in zip(answer["input_variables"], attr, strict=True)
        }
        print(f"POST {base}/v1/explain -> 200; lead 1, |attribution| by input ({answer['units']}):")
    else:  # whole-grid model: explained over onnxruntime in-process, as the service would
        import xarray as xr

        with xr.open_dataset(history) as ds:
            explained = forecaster.explain(ds.load(), method="ablation", max_missing=1.0)
        from geoclim.data.sources import write_netcdf

        write_netcdf(explained, out / "served_explanation.nc")
        lead1 = abs(explained["attribution"]).isel(lead_time=0).mean("sample")
        totals = lead1.sum("lag", skipna=True).to_series().to_dict()
        print(
            "grid model: explained over onnxruntime (Forecaster.explain), lead 1, mean "
            f"|attribution| by input ({explained.attrs['units']}); "
            f"saved {out / 'served_explanation.nc'}"
        )
    for name, value in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<14} {value:8.4f}")


def _busiest_cell_request(forecaster, history: Path) -> dict:
    """A ``/v1/explain`` body: the real history of the cell with the most NO2."""
    import numpy as np
    import xarray as xr

    body = forecaster.example_request(1)
    task = forecaster.task
    with xr.open_dataset(history) as ds:
        ds = ds.load()
    if task.future_variables or any(v not in ds for v in task.past_variables):
        return body  # forecast forcing is not in the history file: train means instead
    mean = ds[TARGET].mean("time")
    if "coverage" in ds:
        coverage = ds["coverage"]
        mean = mean.where((coverage.max("time") if "time" in coverage.dims else coverage) > 0)
    complete = ds[TARGET].isel(time=slice(-task.input_steps, None)).notnull().all("time")
    if bool(complete.any()):  # prefer a cell whose recent history is complete
        mean = mean.where(complete)
    cell = mean.where(mean == mean.max(), drop=True)
    lat, lon = float(cell.latitude[0]), float(cell.longitude[0])
    point = ds.sel(latitude=lat, longitude=lon).isel(time=slice(-task.input_steps, None))
    past = {
        v: [None if not np.isfinite(x) else round(float(x), 3) for x in point[v].values]
        for v in task.past_variables
    }
    init = str(point.time.values[-1])[:19] + "Z"
    loc = {"station": "busiest-cell", "latitude": lat, "longitude": lon, "past": past}
    return {"init_time": init, "locations": [loc]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_stage(sweep: Path, out: Path) -> None:
    """Export the best network, register it, serve it on loopback, request a forecast."""
    banner("4. Export the best network, serve it, ask for a forecast")
    run_dir = best_network(sweep)
    registry, keys = out / "registry", out / "keys.json"
    run(
        [
            sys.executable,
            "-m",
            "geoclim.cli.export",
            str(run_dir),
            "--register",
            str(registry),
            "--name",
            f"{TARGET}_best",
            "--stage",
            "production",
        ]
    )
    keys.unlink(missing_ok=True)
    key = run(
        [sys.executable, "-m", "geoclim.cli.main", "serve", "keygen", "demo", "--keys", str(keys)],
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "geoclim.cli.main",
            "serve",
            f"{TARGET}_best@production",
            "--registry",
            str(registry),
            "--keys",
            str(keys),
            "--host",
            "127.0.0.1",
            # cells far from every station (coverage 0) have no history at all: the service
            # fills missing inputs with the train mean, exactly as training did
            "--port",
            str(port),
            "--max-missing",
            "1.0",
            "--log-level",
            "WARNING",
        ]
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, server)
        history = _history_file(run_dir, out)
        forecast = _post_netcdf(f"{base}/v1/forecast/netcdf", history, key)
        _print_forecast(forecast, history)
        served_explanation(base, key, run_dir, history, out)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_ready(base: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise GeoclimError(f"the service exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=2) as resp:
                if resp.status == 200:
                    print(f"service ready at {base} (GET /ready -> 200)")
                    return
        except OSError:
            time.sleep(0.5)
    raise GeoclimError(f"the service at {base} was not ready within {timeout:.0f} s")


def _history_file(run_dir: Path, out: Path) -> Path:
    """The last days of the embedded gridded NO2 as a netCDF upload."""
    from geoclim.data import samples, sources

    ds = samples.load("naps_no2_grid")
    history = ds[["no2", "coverage"]].isel(time=slice(-72, None))
    return sources.write_netcdf(history, out / "history.nc")


def _post_netcdf(url: str, path: Path, key: str) -> Path:
    boundary = "geoclim-demo-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: application/x-netcdf\r\n\r\n'
    ).encode()
    body += path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "X-API-Key": key},
    )
    print(f"POST {url} with an X-API-Key ({path.stat().st_size / 1024:.0f} kB netCDF history)")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            print(f"-> {resp.status}, request id {resp.headers.get('X-Request-ID')}")
            target = path.with_name("forecast.nc")
            target.write_bytes(resp.read())
    except urllib.error.HTTPError as err:
        raise GeoclimError(f"the service answered {err.code}: {err.read().decode()}") from None
    return target


def _print_forecast(path: Path, history: Path) -> None:
    import xarray as xr

    with xr.open_dataset(path) as fc, xr.open_dataset(history) as hist:
        fc, covered = fc.load(), hist["coverage"].load() > 0
    print(fc)
    da = fc[TARGET].isel(init_time=-1).where(covered)
    spatial = [d for d in da.dims if d not in ("lead_time", "quantile")]
    mean = da.mean(spatial)
    leads = [1, 6, 12, 24]
    print(f"forecast issued {str(fc.init_time.values[-1])[:16]} UTC, mean over covered cells:")
    for lead in leads:
        if lead <= mean.sizes["lead_time"]:
            print(f"  +{lead:>2} h  {float(mean.isel(lead_time=lead - 1)):6.2f} ppb")


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    """Run the demo stages."""
    parser = argparse.ArgumentParser(
        prog="geoclim demo",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog="examples:\n  geoclim demo debug=smoke        # minutes on a laptop\n"
        "  geoclim demo --models lstm,persistence,climatology\n  geoclim demo --data-only",
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument(
        "--models",
        default=",".join(NETWORKS + REFERENCE + BASELINES),
        help="comma-separated model configs to train",
    )
    parser.add_argument("--data-only", action="store_true", help="stop after stage 1")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="extra geoclim-train overrides, e.g. debug=smoke",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("WANDB_MODE", "offline")
    start = time.monotonic()
    data_stage()
    if not args.data_only:
        args.out.mkdir(parents=True, exist_ok=True)
        sweep = train_stage(args.out, tuple(args.models.split(",")), tuple(args.overrides))
        leaderboard_stage(sweep, args.out)
        explain_stage(sweep, args.out)
        serve_stage(sweep, args.out)
    print(f"\ndemo finished in {time.monotonic() - start:.0f} s; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
