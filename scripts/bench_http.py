"""HTTP load run of ``geoclim serve`` on loopback: throughput and latency under concurrency.

Starts the real service (``geoclim serve``, uvicorn, API-key auth) in a subprocess bound
to 127.0.0.1 only, serving the demo LSTM export (24 h -> 24 h), waits for ``/ready``, then
``--clients`` concurrent clients (asyncio, keep-alive HTTP/1.1) post single-location
forecasts for ``--seconds`` seconds. Every request has a 10 s timeout and the run a hard
wall-clock bound. Reports throughput, p50 / p95 / p99 latency and every non-200 answer or
transport error (the target is none). Client and server share this machine's cores, so the
numbers are a lower bound for a dedicated server. Nothing is written unless ``--save``
(then ``experiments/bench_serving/http.json``). ``--url`` loads a server that is already
running instead (plain HTTP; the body is the example of its ``/openapi.json``, the key from
``--key`` or ``$GEOCLIM_API_KEY``). The server's CPU time per answered request (all its
processes, read with psutil before and after the load) and the load generator's are
reported too: with closed-loop clients, throughput is about the cores' time over that cost.

``--in-process N`` skips sockets and uvicorn: N requests of the same shape go straight
through the app's ASGI callable (middleware, auth, validation, adapter, onnxruntime, JSON)
in this process, which prints the CPU time per request; ``--profile`` adds the functions
that take it (cProfile, by own time).

    python -m scripts.bench_http                        # 50 clients, 30 s, print only
    python -m scripts.bench_http --clients 10 --seconds 5 --save
    python -m scripts.bench_http --in-process 3000 --profile
    GEOCLIM_API_KEY=... python -m scripts.bench_http --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

from geoclim.fileio import write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "bench_serving"
HOST = "127.0.0.1"  # loopback only, by design


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def prepare(tmp: Path) -> tuple[Path, str, dict]:
    """The demo LSTM export, a key file beside it (scrypt) and a one-location body."""
    from geoclim.serving.adapter import Forecaster
    from geoclim.serving.security import KeyStore, Principal, generate_key
    from tests.support.demo_export import demo_export

    demo = demo_export(tmp / "lstm.onnx", model="lstm", days=16)
    body = Forecaster.from_onnx(demo.path).example_request(1)
    key = generate_key("bench")
    store = KeyStore()
    store.add(key, Principal("bench", rate_per_minute=1e9, burst=10**9), method="scrypt")
    store.to_file(tmp / "keys.json")
    return demo.path, key, body


def start_server(
    tmp: Path, threads: int, workers: int = 1
) -> tuple[subprocess.Popen, str, str, dict]:
    path, key, body = prepare(tmp)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "geoclim.cli.main",
            "serve",
            str(path),
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


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) of process ``pid`` and its children; ``None`` unknown."""
    split = process_cpu_split(pid)
    return None if split is None else sum(split.values())


def process_cpu_split(pid: int | None) -> dict[int, float] | None:
    """``{pid: CPU seconds}`` of process ``pid`` and each of its children; ``None`` unknown."""
    if pid is None:
        return None
    try:
        import psutil
    except ImportError:
        return None
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:  # the process is gone (or not ours)
        return None
    out = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
    return out


def worker_shares(before: dict[int, float] | None, after: dict[int, float] | None) -> list:
    """Each server process's share of the server CPU over the run (largest first)."""
    if not before or not after:
        return []
    used = {k: after[k] - before.get(k, 0.0) for k in after}
    total = sum(used.values()) or 1.0
    return sorted((round(v / total, 3) for v in used.values() if v > 0.01 * total), reverse=True)


async def in_process(
    body: dict, path: Path, key: str, n: int, profile: bool
) -> tuple[float, str | None]:
    """CPU ms per ``POST /v1/forecast`` through the app's ASGI callable (no sockets)."""
    from geoclim.serving.adapter import Forecaster
    from geoclim.serving.app import ServedModel, ServeSettings, create_app
    from geoclim.serving.security import KeyStore

    model = ServedModel(path.stem, Forecaster.from_onnx(path, threads=1), str(path))
    app = create_app([model], ServeSettings(keys=KeyStore.from_file(path.parent / "keys.json")))
    _, _, request = build_request("http://127.0.0.1:80", key, body)
    head, payload = request.split(b"\r\n\r\n", 1)
    headers = [
        tuple(x.strip().lower() if i == 0 else x.strip() for i, x in enumerate(h.split(b":", 1)))
        for h in head.split(b"\r\n")[1:]
    ]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1"}
    scope |= {"method": "POST", "scheme": "http", "path": "/v1/forecast", "query_string": b""}
    scope |= {"root_path": "", "headers": headers, "client": (HOST, 1), "server": (HOST, 80)}
    status: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async with app.router.lifespan_context(app):
        for _ in range(200):  # warm-up (and the key's one scrypt check)
            await app(dict(scope), receive, send)
        if set(status) != {200}:
            raise SystemExit(f"in-process requests answered {sorted(set(status))}")
        prof = cProfile.Profile() if profile else None
        start = time.process_time()
        if prof is not None:
            prof.enable()
        for _ in range(n):
            await app(dict(scope), receive, send)
        if prof is not None:
            prof.disable()
        cpu = (time.process_time() - start) / n * 1e3
    if prof is None:
        return cpu, None
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
    return cpu, out.getvalue()


def freeze_heap() -> None:
    """Keep the load generator's start-up heap out of its garbage collector's reach.

    Building the demo export imports torch and Lightning into this process (about 1 M
    objects); a full collection of them takes up to 0.6 s here, during which none of the
    clients reads an answer, and every latency in flight would include that pause.
    """
    gc.collect()
    gc.freeze()


class Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator must cost little CPU, since
    it shares the machine with the server (httpx spends ~1 ms of CPU per request)."""

    def __init__(self, port: int, request: bytes, host: str = HOST):
        self.port, self.request, self.host = port, request, host
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self) -> int:
        if self.writer is None:
            await self.connect()
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


def split_url(url: str) -> tuple[str, int]:
    parsed = urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise SystemExit(f"--url {url!r}: expected http://HOST[:PORT] (plain HTTP)")
    return parsed.hostname, parsed.port or 80


def build_request(url: str, key: str, body: dict) -> tuple[str, int, bytes]:
    payload = json.dumps(body).encode()
    host, port = split_url(url)
    auth = f"X-API-Key: {key}\r\n" if key else ""
    head = (
        f"POST /v1/forecast HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return host, port, head.encode() + payload


def remote_body(url: str) -> dict:
    """The example request of a running server's OpenAPI document."""
    try:
        spec = httpx.get(f"{url}/openapi.json", timeout=10).raise_for_status().json()
        content = spec["paths"]["/v1/forecast"]["post"]["requestBody"]["content"]
        return content["application/json"]["examples"]["one_location"]["value"]
    except (httpx.HTTPError, KeyError, ValueError) as err:
        raise SystemExit(f"{url}: no forecast example in /openapi.json ({err})") from None


async def client(
    target: tuple[str, int, bytes],
    stop: float,
    latencies: list[float],
    errors: dict[str, int],
    conn: Connection | None = None,
) -> list[float]:
    host, port, request = target
    conn = conn or Connection(port, request, host)
    own: list[float] = []  # this connection's latencies
    try:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                status = str(await asyncio.wait_for(conn.post(), timeout=10.0))
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as err:
                status = type(err).__name__
                conn.close()
                conn = Connection(port, request, host)
            if status == "200":
                own.append((time.perf_counter() - t0) * 1e3)
            else:
                errors[status] = errors.get(status, 0) + 1
    finally:
        conn.close()
        latencies.extend(own)
    return own


async def load(
    url: str,
    key: str,
    body: dict,
    clients: int,
    seconds: float,
    server_pid: int | None = None,
    stagger: bool = False,
) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    target = build_request(url, key, body)
    conns = [Connection(target[1], target[2], target[0]) for _ in range(clients)]
    if stagger:  # one connection at a time, each answered once, before the timed load
        for c in conns:
            await c.connect()
            await c.post()
            await asyncio.sleep(0.005)
    split0, client0 = process_cpu_split(server_pid), time.process_time()
    start = time.perf_counter()
    stop = start + seconds
    tasks = [client(target, stop, latencies, errors, c) for c in conns]
    own = await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 30)
    elapsed = time.perf_counter() - start
    client_cpu, split1 = time.process_time() - client0, process_cpu_split(server_pid)
    server0 = None if split0 is None else sum(split0.values())
    server1 = None if split1 is None else sum(split1.values())
    lat = np.asarray(latencies)
    per = 1e3 / max(len(latencies), 1)
    means = sorted(float(np.mean(o)) for o in own if o)  # per connection: who waits longer
    return {
        "server_cpu_shares": worker_shares(split0, split1),
        "connection_mean_ms": {
            "min": round(means[0], 1) if means else None,
            "median": round(float(np.median(means)), 1) if means else None,
            "max": round(means[-1], 1) if means else None,
        },
        "server_cpu_ms_per_request": None
        if server0 is None or server1 is None
        else round((server1 - server0) * per, 3),
        "client_cpu_ms_per_request": round(client_cpu * per, 3),
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
    parser.add_argument(
        "--save", action="store_true", help=f"record the result in {OUT.relative_to(ROOT)}"
    )
    parser.add_argument("--url", help="load this running server instead of starting one")
    parser.add_argument("--key", default=os.environ.get("GEOCLIM_API_KEY"), help="API key")
    parser.add_argument("--json", type=Path, help="record the result in this file instead")
    parser.add_argument("--note", help="a remark stored with the result (e.g. a shared machine)")
    parser.add_argument(
        "--in-process", type=int, metavar="N", help="N requests through the ASGI app, no sockets"
    )
    parser.add_argument("--profile", action="store_true", help="with --in-process: cProfile")
    parser.add_argument(
        "--stagger",
        action="store_true",
        help="open the connections one at a time (each answered once) before the timed load",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    if args.in_process:
        with tempfile.TemporaryDirectory() as tmp:
            path, key, body = prepare(Path(tmp))
            cpu, table = asyncio.run(in_process(body, path, key, args.in_process, args.profile))
        print(
            f"{args.in_process} requests in process: {cpu:.3f} ms CPU per request "
            f"(load average {load_before:.2f} before)"
        )
        if table:
            print(table)
        return
    if args.url:
        url = args.url.rstrip("/")
        body = remote_body(url)
        asyncio.run(load(url, args.key, body, min(args.clients, 4), 2.0))  # warm-up
        freeze_heap()
        result = asyncio.run(
            load(url, args.key, body, args.clients, args.seconds, stagger=args.stagger)
        )
        result["url"] = url
    else:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url, key, body = start_server(Path(tmp), args.threads, args.workers)
            try:
                asyncio.run(load(url, key, body, min(args.clients, 4), 2.0))  # warm-up
                freeze_heap()
                result = asyncio.run(
                    load(
                        url,
                        key,
                        body,
                        args.clients,
                        args.seconds,
                        server_pid=proc.pid,
                        stagger=args.stagger,
                    )
                )
            finally:
                proc.terminate()
                proc.wait(timeout=20)
    result |= {
        "cpu_count": os.cpu_count(),
        "load_average_1m_before": load_before,
        "load_average_1m_after": os.getloadavg()[0],
        "server_threads": args.threads,
        "server_workers": args.workers,
        "staggered_connect": args.stagger,
        "payload": "one location, 24 h history, 24 h forecast (LSTM)",
    }
    if args.note:
        result["note"] = args.note
    print(
        f"{result['clients']} clients, {result['seconds']} s: "
        f"{result['throughput_rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
        f"p95 {result['p95_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
        f"errors {result['errors'] or 'none'}; server CPU "
        f"{result['server_cpu_ms_per_request']} ms, client CPU "
        f"{result['client_cpu_ms_per_request']} ms per request; load average "
        f"{load_before:.2f} -> {result['load_average_1m_after']:.2f}; server CPU shares "
        f"{result['server_cpu_shares']}, mean latency per connection "
        f"{result['connection_mean_ms']}"
    )
    if args.save or args.json:
        target = args.json or OUT / "http.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text(target, json.dumps(result, indent=2) + "\n")
        print(f"saved {target}")
    if result["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
