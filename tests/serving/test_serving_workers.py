"""Several workers: a burst of connections is shared out, the cap and the drain still hold."""

import asyncio
import contextlib
import json
import math
import os
import select
import signal
import socket
import time

import pytest

from geoclim.serving.adapter import Forecaster
from geoclim.serving.balance import ABSENT, BalancedListener, ConnectionBoard

from .test_serving_server import connect, post_head, read_all, response_status


@pytest.fixture(scope="module")
def body(station_export):
    return json.dumps(Forecaster.from_onnx(station_export.path).example_request(1)).encode()


def test_board_lets_a_worker_accept_up_to_one_above_the_least_loaded():
    board = ConnectionBoard(3)
    assert list(board.counts) == [ABSENT] * 3
    assert board.may_accept(0, 100)  # alone on the board: no one to balance with
    board.set(1, 4)
    board.set(2, 7)
    assert board.may_accept(0, 5)  # 5 <= min(4, 7) + 1
    assert not board.may_accept(0, 6)
    assert board.may_accept(1, 8)  # slot 1's own count is not its competitor
    assert not board.may_accept(1, 9)
    board.set(1, ABSENT)  # slot 1 stops: only slot 2 counts
    assert board.may_accept(0, 8) and not board.may_accept(0, 9)


class _State:
    def __init__(self):
        self.connections = set()


class _Held(asyncio.Protocol):
    """In ``state.connections`` while open, as uvicorn's protocols are; publishes on close
    as the server's guarded protocols do."""

    def __init__(self, state, listeners, slot):
        self.state, self.listeners, self.slot = state, listeners, slot

    def connection_made(self, transport):
        self.state.connections.add(self)

    def connection_lost(self, exc):
        self.state.connections.discard(self)
        self.listeners[self.slot].publish()


def test_two_listeners_share_a_burst_of_connections():
    """Two accept loops on one socket (two descriptors, as two workers have), one board."""

    async def main():
        loop = asyncio.get_running_loop()
        server = socket.create_server(("127.0.0.1", 0), backlog=128)
        server.setblocking(False)
        port = server.getsockname()[1]
        board = ConnectionBoard(2)
        states = [_State(), _State()]
        socks = [server, server.dup()]
        listeners = []
        for slot, (sock, state) in enumerate(zip(socks, states, strict=True)):
            factory = lambda st=state, sl=slot: _Held(st, listeners, sl)  # noqa: E731
            listeners.append(BalancedListener(loop, factory, sock, None, board, slot, state))
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        for _ in range(200):  # until all 40 are connections of one listener or the other
            await asyncio.sleep(0.01)
            if sum(len(s.connections) for s in states) == 40:
                break
        counts = [len(s.connections) for s in states]
        assert list(board.counts) == counts
        for c in clients[:10]:
            c.close()
        await asyncio.sleep(0.2)
        after_close = list(board.counts)
        for listener in listeners:
            listener.close()
        assert list(board.counts) == [ABSENT, ABSENT]
        for c in clients[10:]:
            c.close()
        for sock in socks:
            sock.close()
        return counts, after_close

    counts, after_close = asyncio.run(main())
    assert sum(counts) == 40
    assert max(counts) <= 21  # 20 each, give or take the one connection of slack
    assert sum(after_close) == 30  # closed connections leave the board at once


async def _hello(scope, receive, send):
    assert scope["type"] == "http"
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_a_worker_serves_through_its_listener_and_leaves_the_board_at_shutdown(http):
    """Guards what the worker takes from uvicorn beyond its documented API.

    ``Server.startup(sockets=[])`` runs the lifespan and opens no listener; the protocol
    class takes ``config``, ``server_state``, ``app_state`` and ``_loop``; ``shutdown``
    calls ``close`` and ``wait_closed`` on each of ``Server.servers``. If a uvicorn
    release changes any of these, this test fails.
    """
    from geoclim.serving.server import (
        LISTENER_ATTR,
        SEAT_ATTR,
        DrainingServer,
        ServerLimits,
        build_config,
    )

    limits = ServerLimits(drain_seconds=0)
    config = build_config(_hello, limits, http=http, lifespan="off", log_config=None)
    board = ConnectionBoard(2)
    setattr(config, SEAT_ATTR, (board, 1, os.getppid()))
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    server = DrainingServer(config, limits)

    async def main():
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        assert [type(s) for s in server.servers] == [BalancedListener]
        assert getattr(config, LISTENER_ATTR) is server.servers[0]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and await reader.readexactly(5) == b"hello"
        assert list(board.counts) == [ABSENT, 1]  # its one connection, on its own slot
        writer.close()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if board.counts[1] == 0:
                break
        assert list(board.counts) == [ABSENT, 0]  # the closed connection left the board
        server.should_exit = True
        await serving

    asyncio.run(main())
    assert list(board.counts) == [ABSENT, ABSENT]  # shut down: no longer accepting
    assert sock.fileno() == -1  # uvicorn closed the socket it was given


def _worker_connections(parent_pid, port):
    """Established connections to ``port`` held by each child of ``parent_pid``."""
    psutil = pytest.importorskip("psutil")
    held = {}
    for child in psutil.Process(parent_pid).children():
        with contextlib.suppress(psutil.Error):
            held[child.pid] = sum(
                1
                for c in child.net_connections(kind="tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
            )
    return held


def _wait_for_held(server, total, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = _worker_connections(server.proc.pid, server.port)
        if sum(held.values()) == total:
            return held
        time.sleep(0.05)
    raise AssertionError(f"workers hold {held}, expected {total} connections in all")


def _both_accepting(server, timeout=60.0):
    """Wait until both workers accept (``/ready`` answers as soon as the first one does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = [connect(server.port) for _ in range(6)]
        held = _wait_for_held(server, 6)
        for s in probe:
            s.close()
        _wait_for_held(server, 0)
        if max(held.values()) <= 4:  # one worker alone would have taken all six
            return server
    raise AssertionError("the second worker never accepted")


@pytest.mark.slow
def test_a_burst_of_connections_is_shared_between_two_workers(station_export, serve_process):
    server = _both_accepting(serve_process(station_export.path, "--no-auth", "--workers", "2"))
    n = 40
    for _ in range(3):  # three bursts, each after the last one closed
        burst = [connect(server.port) for _ in range(n)]  # all at once, before any is served
        held = _wait_for_held(server, n)
        assert sum(held.values()) == n  # (the spawn resource tracker is a child too)
        assert max(held.values()) <= math.ceil(n / 2) + 2, held
        for s in burst:
            s.sendall(b"GET /health HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        assert [response_status(read_all(s)) for s in burst] == [200] * n
        for s in burst:
            s.close()
        _wait_for_held(server, 0)


@pytest.mark.slow
def test_each_of_two_workers_caps_its_connections(station_export, serve_process):
    cap = 10
    server = _both_accepting(
        serve_process(station_export.path, "--no-auth", "--workers", "2", "--max-connections", cap)
    )
    conns = [connect(server.port) for _ in range(2 * cap + 4)]
    time.sleep(1.0)
    refused = [s for s in conns if select.select([s], [], [], 0)[0]]  # answered unasked
    assert len(refused) >= 4  # at most 2 * cap held: 10 per worker
    for s in refused:
        answer = read_all(s)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"too_many_connections" in answer
    kept = [s for s in conns if s not in refused]
    assert len(kept) <= 2 * cap
    held = _worker_connections(server.proc.pid, server.port)
    assert max(held.values()) <= cap
    for s in kept[:2]:  # held connections are served
        s.sendall(b"GET /health HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        assert response_status(read_all(s)) == 200


@pytest.mark.slow
def test_sigterm_drains_both_workers_and_answers_requests_in_flight(
    station_export, serve_process, body
):
    server = _both_accepting(
        serve_process(
            station_export.path,
            "--no-auth",
            "--workers",
            "2",
            "--drain-seconds",
            "1",
            "--body-timeout",
            "10",
        )
    )
    in_flight = [connect(server.port) for _ in range(8)]
    for s in in_flight:
        s.sendall(post_head(len(body)) + body[:20])  # requests under way at SIGTERM
    held = _wait_for_held(server, 8)
    assert sorted(held.values())[-2:] in ([4, 4], [3, 5])  # both workers have some in flight
    os.kill(server.proc.pid, signal.SIGTERM)
    time.sleep(0.3)
    ready = connect(server.port)  # still listening during the drain, but not ready
    ready.sendall(b"GET /ready HTTP/1.1\r\nhost: test\r\n\r\n")
    assert response_status(read_all(ready)) == 503
    for s in in_flight[:4]:  # finished during the drain
        s.sendall(body[20:])
    time.sleep(1.2)  # the drain is over: the listener is closed
    with pytest.raises(OSError):
        connect(server.port)
    for s in in_flight[4:]:  # finished after the drain
        s.sendall(body[20:])
    answers = [read_all(s) for s in in_flight]
    assert [response_status(a) for a in answers] == [200] * 8
    assert all(b"connection: close" in a.lower() for a in answers)
    rc, records, _ = server.stop()
    assert rc == 0
    forecasts = [r for r in records if r.get("route") == "/v1/forecast"]
    assert len(forecasts) == 8 and {r["status"] for r in forecasts} == {200}
    assert sum("draining" in r["message"] for r in records) == 2  # one line per worker


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_takes_its_share_again(station_export, serve_process):
    psutil = pytest.importorskip("psutil")
    server = _both_accepting(serve_process(station_export.path, "--no-auth", "--workers", "2"))
    probe = [connect(server.port) for _ in range(10)]
    held = _wait_for_held(server, 10)
    victim = max(held, key=held.get)  # a worker holding connections (not the tracker)
    os.kill(victim, signal.SIGKILL)
    for s in probe:  # the victim's clients see their connection end
        s.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = {p.pid for p in psutil.Process(server.proc.pid).children()}
        if victim not in pids and len(pids) == len(held):
            break
        time.sleep(0.1)
    assert victim not in pids and len(pids) == len(held)  # replaced in its slot
    _both_accepting(server)  # the new worker accepts its share
    rc, records, _ = server.stop()
    assert rc == 0
    assert any("exited (-9): restarting" in r["message"] for r in records)
