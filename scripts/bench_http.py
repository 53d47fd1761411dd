"""HTTP load run of ``geoclim serve`` on loopback: throughput and latency under concurrency.

Starts the real service (``geoclim serve``, uvicorn, API-key auth) in a subprocess bound
to 127.0.0.1 only, serving the demo LSTM export (24 h -> 24 h), waits for ``/ready``, then
``--clients`` concurrent clients (asyncio, keep-alive HTTP/1.1) post single-location
forecasts for ``--seconds`` seconds. Every request has a 10 s timeout and the run a hard
wall-clock bound. Reports throughput, p50 / p95 / p99 latency and every non-200 answer or
transport error (the target is none). Client and server share this machine's cores, so the
numbers are a lower bound for a dedicated server. Results go to
``experiments/bench_serving/http.json``.

    python -m scripts.bench_http                        # 50 clients, 30 s
    python -m scripts.bench_http --clients 10 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "bench_serving"
HOST = "127.0.0.1"  # loopback only, by design


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(
    tmp: Path, threads: int, workers: int = 1
) -> tuple[subprocess.Popen, str, str, dict]:
    from geoclim.serving.adapter import Forecaster
    from geoclim.serving.security import KeyStore, Principal, generate_key
    from tests.support.demo_export import demo_export

    demo = demo_export(tmp / "lstm.onnx", model="lstm", days=16)
    body = Forecaster.from_onnx(demo.path).example_request(1)
    key = generate_key("bench")
    store = KeyStore()
    store.add(key, Principal("bench", rate_per_minute=1e9, burst=10**9), method="scrypt")
    store.to_file(tmp / "keys.json")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "geoclim.cli.main",
            "serve",
            str(demo.path),
            "--keys",
            str(tmp / "keys.json"),
            "--host",
            HOST,
            "--port",
            str(port),
            "--threads",
            str(threads),
            "--workers",
            str(workers),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://{HOST}:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return proc, url, key, body
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not become ready: {proc.stderr.read() if proc.stderr else ''}")


class Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator must cost little CPU, since
    it shares the machine with the server (httpx spends ~1 ms of CPU per request)."""

    def __init__(self, port: int, request: bytes):
        self.port, self.request = port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def build_request(url: str, key: str, body: dict) -> tuple[int, bytes]:
    payload = json.dumps(body).encode()
    port = int(url.rsplit(":", 1)[1])
    head = (
        f"POST /v1/forecast HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-API-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return port, head.encode() + payload


async def client(
    port: int, request: bytes, stop: float, latencies: list[float], errors: dict[str, int]
) -> None:
    conn = Connection(port, request)
    try:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                status = str(await asyncio.wait_for(conn.post(), timeout=10.0))
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as err:
                status = type(err).__name__
                conn.close()
                conn = Connection(port, request)
            if status == "200":
                latencies.append((time.perf_counter() - t0) * 1e3)
            else:
                errors[status] = errors.get(status, 0) + 1
    finally:
        conn.close()


async def load(url: str, key: str, body: dict, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    start = time.perf_counter()
    stop = start + seconds
    port, request = build_request(url, key, body)
    tasks = [client(port, request, stop, latencies, errors) for _ in range(clients)]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 30)
    elapsed = time.perf_counter() - start
    lat = np.asarray(latencies)
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests_ok": int(lat.size),
        "errors": errors,
        "throughput_rps": lat.size / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "max_ms": float(lat.max()) if lat.size else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1, help="server onnxruntime threads")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key, body = start_server(Path(tmp), args.threads, args.workers)
        try:
            asyncio.run(load(url, key, body, min(args.clients, 4), 2.0))  # warm-up
            result = asyncio.run(load(url, key, body, args.clients, args.seconds))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    result |= {
        "cpu_count": os.cpu_count(),
        "load_average_1m_after": os.getloadavg()[0],
        "server_threads": args.threads,
        "server_workers": args.workers,
        "payload": "one location, 24 h history, 24 h forecast (LSTM)",
    }
    print(
        f"{result['clients']} clients, {result['seconds']} s: "
        f"{result['throughput_rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
        f"p95 {result['p95_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
        f"errors {result['errors'] or 'none'}"
    )
    if not args.no_save:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "http.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
