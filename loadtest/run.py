"""A bounded, headless Locust run against ``geoclim serve`` on loopback; stats to a folder.

Builds a demo LSTM export (``DEMO_TASK`` of tests/support/demo_export.py, 24 h -> 24 h of NO2
on a 6 x 5 grid, with calendar-only known-future inputs so that netCDF uploads need no forcing;
untrained weights: speed does not depend on them), writes an API key whose rate limit the
load cannot reach and a netCDF history, starts ``geoclim serve`` on 127.0.0.1 only, runs
``loadtest/locustfile.py`` for ``--run-time`` with ``--users`` users spawned at
``--spawn-rate``, stops the server with SIGTERM and writes, under ``--out``:
``locust_stats.csv``, ``locust_stats_history.csv``, ``locust_failures.csv``,
``locust_exceptions.csv``, ``locust.json`` (Locust's own) and ``summary.json`` (the run's
settings, per-endpoint throughput and percentiles, the machine and its load average, the
server's exit status). The demo export is test support (``tests.support``), so run it from
the repository root as a module, like the scripts:

    python -m loadtest.run                         # 20 users, 5/s, 30 s
    python -m loadtest.run --users 5 --run-time 5s --out /tmp/locust
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from geoclim import fileio

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only, by design


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _demo():
    """``tests.support.demo_export`` (test support, importable from the repository root)."""
    try:
        from tests.support import demo_export
    except ImportError as err:
        raise SystemExit(
            f"loadtest/run.py needs the test support package ({err}); run it from the "
            "repository root as: python -m loadtest.run"
        ) from None
    return demo_export


def _task():
    from dataclasses import replace

    # POST /v1/forecast/netcdf takes a history only, no forecast meteorology over the
    # horizon: the known-future inputs are the calendar encodings
    return replace(_demo().DEMO_TASK, future_inputs=("hour_sin", "hour_cos"))


TASK = _task()


def prepare(tmp: Path) -> tuple[Path, str, Path]:
    """The demo export, a key file (returns the key) and a netCDF history."""
    from geoclim.serving.security import KeyStore, Principal, generate_key

    demo = _demo().demo_export(tmp / "lstm.onnx", model="lstm", task=TASK, days=16)
    history = demo.datamodule.ds.isel(time=slice(0, TASK.input_steps))
    history.to_netcdf(tmp / "history.nc")
    key = generate_key("locust")
    store = KeyStore()
    store.add(key, Principal("locust", rate_per_minute=1e9, burst=10**9), method="scrypt")
    store.to_file(tmp / "keys.json")
    return demo.path, key, tmp / "history.nc"


def start_server(model: Path, keys: Path, port: int, log: Path) -> subprocess.Popen:
    """``geoclim serve`` on loopback, once ready; its stdout and stderr go to ``log``.

    A file, not a pipe: a pipe that nobody reads during the run fills up.
    """
    with open(log, "w") as sink:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "geoclim.cli.main", "serve", str(model), "--keys", str(keys)]
            + ["--host", HOST, "--port", str(port), "--log-level", "WARNING"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://{HOST}:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise SystemExit(f"server not ready:\n{log.read_text()[-3000:]}")


def summarise(out: Path) -> list[dict]:
    """Per-endpoint rows of Locust's stats CSV."""
    rows = []
    with open(out / "locust_stats.csv") as f:
        for r in csv.DictReader(f):
            rows.append(
                {
                    "name": r["Name"],
                    "method": r["Type"],
                    "requests": int(r["Request Count"]),
                    "failures": int(r["Failure Count"]),
                    "rps": round(float(r["Requests/s"]), 1),
                    "p50_ms": float(r["50%"]),
                    "p95_ms": float(r["95%"]),
                    "p99_ms": float(r["99%"]),
                    "max_ms": round(float(r["Max Response Time"]), 1),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the load test; 0 unless Locust itself failed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--spawn-rate", type=float, default=5.0)
    p.add_argument("--run-time", default="30s")
    p.add_argument("--out", type=Path, default=ROOT / "experiments" / "bench_serving" / "locust")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model, key, history = prepare(tmp)
        port = free_port()
        server = start_server(model, tmp / "keys.json", port, tmp / "server.log")
        try:
            locust = subprocess.run(
                [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py")]
                + ["--headless", "--users", str(args.users), "--spawn-rate", str(args.spawn_rate)]
                + ["--run-time", args.run_time, "--stop-timeout", "5", "--only-summary"]
                + ["--host", f"http://{HOST}:{port}", "--netcdf", str(history)]
                + ["--csv", str(args.out / "locust"), "--json-file", str(args.out / "locust")]
                + ["--loglevel", "WARNING"],
                env={**os.environ, "GEOCLIM_API_KEY": key},
                capture_output=True,
                text=True,
                timeout=600,
            )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    rows = summarise(args.out)
    summary = {
        "command": "python -m loadtest.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "run_time": args.run_time,
        "locust_exit_code": locust.returncode,
        "server_exit_code": server.returncode,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "endpoints": rows,
    }
    fileio.write_text(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if locust.returncode not in (0, 1):  # 1: some requests failed (reported, not a crash)
        print(locust.stderr, file=sys.stderr)
        return locust.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
