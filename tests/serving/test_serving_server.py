import contextlib
import json
import os
import select
import signal
import socket
import time

import httpx
import pytest

from geoclim.serving.adapter import Forecaster

TIMEOUT = 1.0  # the server's header and body deadlines in these tests (s)
CAP = 30  # its connection cap


@pytest.fixture(scope="module")
def guarded(station_export, serve_class):
    """A server whose stdout (its JSON log) is a pipe that no one reads until it stops."""
    server = serve_class(
        [
            station_export.path,
            "--no-auth",
            "--header-timeout",
            TIMEOUT,
            "--body-timeout",
            TIMEOUT,
            "--max-connections",
            CAP,
            "--drain-seconds",
            0,
        ]
    ).wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def body(station_export):
    return json.dumps(Forecaster.from_onnx(station_export.path).example_request(1)).encode()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def read_all(s):
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def post_head(body_len):
    return (
        f"POST /v1/forecast HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        f"content-length: {body_len}\r\n\r\n"
    ).encode()


def cut_count(url, reason):
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f'geoclim_http_connections_cut_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


def unread_bytes(fd):
    termios = pytest.importorskip("termios")
    fcntl = pytest.importorskip("fcntl")
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4), "little")


def test_a_log_sink_that_stops_reading_does_not_stall_the_server(guarded, body):
    # First in this module: the tests below then run with the log pipe full, as they did
    # when a blocking log write on the event loop left them without answers.
    fcntl = pytest.importorskip("fcntl")
    pipe = guarded.proc.stdout.fileno()
    capacity = fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ)
    long_id = {"x-request-id": "r" * 128}  # longer access lines fill the pipe sooner
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        for _ in range(capacity // 100):  # each access line is longer than 100 bytes
            assert client.get("/health", headers=long_id).status_code == 200
            if unread_bytes(pipe) >= capacity - select.PIPE_BUF:
                break
        assert unread_bytes(pipe) >= capacity - select.PIPE_BUF  # no room for another line
        for _ in range(20):  # each logs a line the pipe cannot take: all answered anyway
            r = client.post(
                "/v1/forecast", content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code == 200, r.text
    assert unread_bytes(pipe) >= capacity - select.PIPE_BUF


def none_answered(socks):
    """No server answer (a 408) is waiting on any of ``socks`` yet."""
    return not select.select(socks, [], [], 0)[0]


def test_headers_that_never_finish_are_cut_while_other_clients_are_served(guarded, body):
    before = cut_count(guarded.url, "header_timeout")
    start = time.monotonic()  # before connecting: no cut can come before start + TIMEOUT
    slow = [connect(guarded.port) for _ in range(20)]
    for s in slow:
        s.sendall(b"POST /v1/forecast HTTP/1.1\r\nhost: test\r\ncontent-le")
    served = served_while_held = 0
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        while time.monotonic() - start < TIMEOUT * 0.8:  # within the slow clients' window
            r = client.post(
                "/v1/forecast", content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code == 200, r.text
            served += 1
            served_while_held += none_answered(slow)  # answered, the 20 still held
    assert served_while_held >= 2, (served, served_while_held)
    answers = [read_all(s) for s in slow]  # each ends: 408 then the server closes
    waited = time.monotonic() - start
    assert all(a.startswith(b"HTTP/1.1 408 ") and b"connection: close" in a for a in answers)
    assert b"request headers not received within 1 s" in answers[0]
    assert waited >= TIMEOUT * 0.9  # not cut early (the upper bound is the socket timeout)
    assert cut_count(guarded.url, "header_timeout") - before == 20


def test_a_silent_connection_is_cut_after_the_header_timeout(guarded):
    start = time.monotonic()
    s = connect(guarded.port)
    answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in answer
    assert time.monotonic() - start >= TIMEOUT * 0.9


def test_a_stalled_body_is_cut_and_a_complete_one_is_served(guarded, body):
    before = cut_count(guarded.url, "body_timeout")
    stalled, slow_ok = connect(guarded.port), connect(guarded.port)
    stalled.sendall(post_head(len(body)) + body[:10])
    slow_ok.sendall(post_head(len(body)) + body[:10])
    time.sleep(TIMEOUT / 4)
    slow_ok.sendall(body[10:])  # the whole body well within the deadline: answered
    answer = slow_ok.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    cut = read_all(stalled)
    assert cut.startswith(b"HTTP/1.1 408 ") and b"request body not received within 1 s" in cut
    assert cut_count(guarded.url, "body_timeout") - before == 1
    access = httpx.get(f"{guarded.url}/metrics").text
    assert (
        'geoclim_http_requests_total{method="POST",route="/v1/forecast",status="500"}' not in access
    )
    slow_ok.close()


def health_within(url, seconds):
    """``/health`` answers 200 within ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health").status_code == 200:
                return True
        time.sleep(0.05)
    return False


def test_connections_above_the_cap_get_503(guarded):
    before = cut_count(guarded.url, "connection_limit")
    held = [connect(guarded.port) for _ in range(CAP)]
    extra = connect(guarded.port)  # accepted after the held ones (the accept queue is FIFO)
    answer = read_all(extra)
    assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer
    assert b"too_many_connections" in answer
    for s in held:
        s.close()
    assert health_within(guarded.url, 10)  # below the cap again: served
    assert cut_count(guarded.url, "connection_limit") - before >= 1  # 2 if a closed one lingered


def response_status(raw):
    return int(raw[9:12])


def test_sigterm_drains_in_flight_requests_and_logs_json(station_export, serve_process, body):
    server = serve_process(
        station_export.path, "--no-auth", "--drain-seconds", "0.5", "--body-timeout", "10"
    )
    keep_alive = httpx.Client(base_url=server.url)
    assert keep_alive.get("/ready").status_code == 200  # an idle keep-alive connection
    in_flight = [connect(server.port) for _ in range(6)]
    for s in in_flight:
        s.sendall(post_head(len(body)) + body[:20])  # requests under way at SIGTERM
    time.sleep(0.2)
    os.kill(server.proc.pid, signal.SIGTERM)
    time.sleep(0.1)
    ready = keep_alive.get("/ready")  # draining: not ready, and the connection is closed
    assert ready.status_code == 503 and ready.headers["connection"] == "close"
    for s in in_flight[:3]:  # finished during the drain
        s.sendall(body[20:])
    time.sleep(0.6)  # the drain is over: the listener is closed
    with pytest.raises(OSError):
        connect(server.port)
    for s in in_flight[3:]:  # finished after the drain
        s.sendall(body[20:])
    answers = [read_all(s) for s in in_flight]
    assert [response_status(a) for a in answers] == [200] * 6
    assert all(b"connection: close" in a.lower() for a in answers)
    rc, records, _ = server.stop()
    assert rc in (0, -signal.SIGTERM)
    access = [r for r in records if r["logger"] == "geoclim.serving.access"]
    forecasts = [r for r in access if r["route"] == "/v1/forecast"]
    assert len(forecasts) == 6
    for r in forecasts:
        assert r["status"] == 200 and r["model"] == "lstm_q"
        assert len(r["request_id"]) == 32 and r["duration_ms"] > 0
    assert any("draining" in r["message"] for r in records)


def test_sigterm_handler_only_sets_flags_and_the_loop_logs_the_drain(caplog):
    """The handler interrupts arbitrary code: logging there could deadlock on the log queue.

    A SIGTERM that arrived while the main thread was inside the log queue's ``put`` used to
    hang the server for good (the handler logged, and waited on the lock it interrupted).
    """
    import asyncio
    import logging

    import uvicorn

    from geoclim.serving.server import DrainingServer, ServerLimits

    config = uvicorn.Config(app=None)
    config.loaded_app = None
    server = DrainingServer(config, ServerLimits(drain_seconds=30))
    with caplog.at_level(logging.DEBUG):
        server.handle_exit(signal.SIGTERM, None)
        assert server.draining and not server.should_exit
        assert caplog.records == []  # nothing logged from the signal handler
        assert asyncio.run(server.on_tick(1)) is False  # still serving: the drain runs
    ours = [r.getMessage() for r in caplog.records if r.name == "geoclim.serving.server"]
    assert ours == ["SIGTERM: draining for 30 s (readiness 503, Connection: close)"]
    server.handle_exit(signal.SIGTERM, None)  # a second signal ends the drain early
    assert server.should_exit


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_responses_are_not_held_back_by_nagle_on_the_asyncio_loop(http):
    # uvicorn writes head and body separately; on asyncio's loop an accepted connection of
    # uvicorn's socket (protocol 0) had TCP_NODELAY off, and every keep-alive response waited
    # ~40 ms for the client's delayed ACK. The server sets it on every connection.
    import asyncio

    from geoclim.serving.server import DrainingServer, ServerLimits, build_config

    async def hello(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})

    limits = ServerLimits(drain_seconds=0)
    config = build_config(hello, limits, http=http, loop="asyncio", lifespan="off", log_config=None)
    server = DrainingServer(config, limits)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # as uvicorn binds: protocol 0
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def main():
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):  # keep-alive requests on one connection
            writer.write(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            await reader.readuntil(b"hello")
        (connection,) = server.server_state.connections
        accepted = connection.transport.get_extra_info("socket")
        no_delay = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
        server.should_exit = True
        await serving
        return no_delay

    assert asyncio.run(main()) != 0
