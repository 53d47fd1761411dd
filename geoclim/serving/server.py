"""Run the app under uvicorn with client deadlines, a connection cap and a graceful drain.

uvicorn alone keeps a connection open for as long as a client takes to send its headers or
its body, so a few hundred slow clients (slowloris, slow POST) hold the server's sockets
indefinitely, and on SIGTERM it closes keep-alive connections at once. :func:`run` adds, per
connection, at the protocol level (before any ASGI code runs):

* **header deadline** -- the request line and headers must arrive within
  ``header_timeout`` seconds of the connection opening (or, on a keep-alive connection, of
  the first byte of the next request); otherwise the client gets ``408`` and the connection
  is closed. The idle time between requests stays uvicorn's ``timeout_keep_alive``;
* **body deadline** -- the whole body must arrive within ``body_timeout`` seconds of the
  headers; a stalled upload gets ``408`` and is closed (the app never sees a partial body);
* **connection cap** -- above ``max_connections`` open connections a new one is answered
  ``503`` with ``Retry-After`` and closed.

**Drain on SIGTERM.** For ``drain_seconds`` the server keeps serving while ``/ready``
answers 503 (so a load balancer or Kubernetes stops routing here) and every response carries
``Connection: close`` (so keep-alive clients reconnect elsewhere instead of meeting a closed
socket). Then it stops listening, closes idle connections and waits up to
``graceful_timeout`` seconds for the requests still in flight. SIGINT (Ctrl+C) skips the
drain; a second signal ends the drain early.

**Several workers take turns.** With ``workers > 1`` the processes share one listening
socket, and each accepts only while it holds no more than one connection above the least
loaded worker (:mod:`geoclim.serving.balance`), so a burst of clients is shared evenly.

uvicorn's own supervisor cannot give its workers that accept loop (it runs a plain
``uvicorn.Server`` in each), so :func:`run` supervises them itself (:func:`supervise`): it
binds the socket, starts the workers (``spawn``), restarts one that dies (and stops if one
fails to start), and passes SIGTERM or SIGINT on to them as SIGTERM. Each worker is a
:class:`DrainingServer`, so every worker enforces the deadlines and its own connection cap
and runs the SIGTERM drain; one whose supervisor was killed stops by itself. uvicorn's
hung-worker pings and its SIGHUP / SIGTTIN / SIGTTOU handling are not kept.

Works with uvicorn's httptools and h11 protocols. Torch-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol

from geoclim.errors import ConfigError
from geoclim.serving.balance import ABSENT, BalancedListener, ConnectionBoard
from geoclim.serving.observability import flush_logs

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional in uvicorn: fall back to h11
    HttpToolsProtocol = H11Protocol  # type: ignore[misc, assignment]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    """Connection-level limits and shutdown timing (seconds).

    Attributes:
        header_timeout: time allowed for the request line and headers.
        body_timeout: time allowed for the whole body after the headers.
        keep_alive_timeout: idle time kept between two requests on one connection.
        max_connections: open connections above which new ones get 503.
        drain_seconds: serving time after SIGTERM with readiness 503 and
            ``Connection: close`` (0: no drain).
        graceful_timeout: wait for in-flight requests after the drain, then cancel them.

    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 1000
    drain_seconds: float = 5.0
    graceful_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout", "graceful_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"server limit {name}={getattr(self, name)!r}: expected > 0")
        if self.drain_seconds < 0:
            raise ConfigError(f"server limit drain_seconds={self.drain_seconds!r}: expected >= 0")
        if self.max_connections < 1:
            raise ConfigError(
                f"server limit max_connections={self.max_connections!r}: expected >= 1"
            )


ClientEvent = Callable[[str], None]
"""Called with ``"header_timeout"``, ``"body_timeout"`` or ``"connection_limit"``."""
LIMITS_ATTR = "geoclim_limits"
"""Attribute of the ``uvicorn.Config`` carrying the limits (it travels to worker processes)."""
EVENTS_ATTR = "geoclim_on_event"
SEAT_ATTR = "geoclim_seat"
"""Attribute of a worker's ``uvicorn.Config``: ``(ConnectionBoard, slot, supervisor pid)``."""
LISTENER_ATTR = "geoclim_listener"
"""Attribute of a worker's ``uvicorn.Config``: its :class:`BalancedListener`."""


def _raw_response(status: int, reason: str, error: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": error, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """Send each write at once (``TCP_NODELAY``) on a TCP connection.

    uvicorn writes a response's head and body separately. uvicorn binds its socket with
    protocol number 0, and asyncio (uvicorn's ``--loop asyncio``, or wherever uvloop is not
    installed) sets ``TCP_NODELAY`` only on sockets whose protocol is TCP, so the body then
    waits for the client's delayed ACK: about 40 ms on every keep-alive response. uvloop
    sets it by itself; setting it again costs one system call per connection.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # a connection already reset
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Deadlines:
    """Mixin over a uvicorn HTTP protocol class: header / body deadlines, connection cap.

    It reads only what both of uvicorn's HTTP/1.1 protocols keep: ``cycle`` (the current
    request, created once its headers are parsed), ``cycle.more_body``,
    ``cycle.response_started`` / ``response_complete``, ``transport`` and ``server_state``.
    """

    cycle: Any
    transport: Any
    server_state: Any
    client: Any

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]
        self.limits: ServerLimits = getattr(config, LIMITS_ATTR, None) or ServerLimits()
        if not hasattr(config, EVENTS_ATTR):  # once per process: the app's Prometheus counter
            metrics = _find_metrics(config.loaded_app)
            counter = metrics.connections_cut if metrics is not None else None
            setattr(config, EVENTS_ATTR, (lambda e: counter.labels(e).inc()) if counter else None)
        self.on_event: ClientEvent | None = getattr(config, EVENTS_ATTR)
        self.listener: BalancedListener | None = getattr(config, LISTENER_ATTR, None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self._timer: asyncio.TimerHandle | None = None
        self._phase: str | None = None
        self._seen_cycle: Any = None
        _no_delay(transport)
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.server_state.connections) > self.limits.max_connections:
            self._cut(
                "connection_limit",
                _raw_response(
                    503,
                    "Service Unavailable",
                    "too_many_connections",
                    f"the server holds {self.limits.max_connections} connections; retry",
                    "retry-after: 1\r\n",
                ),
            )
            return
        self._arm("header")

    def data_received(self, data: bytes) -> None:  # noqa: D102
        idle = self.cycle is None or self.cycle.response_complete
        if self._phase is None and idle:
            self._arm("header")  # first bytes of the next request on a keep-alive connection
        super().data_received(data)  # type: ignore[misc]
        cycle = self.cycle
        if self._phase == "header" and cycle is not None and cycle is not self._seen_cycle:
            self._seen_cycle = cycle  # headers complete: the app task exists
            self._disarm()
            if cycle.more_body:
                self._arm("body")
        elif self._phase == "body" and (cycle is None or not cycle.more_body):
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]
        if self.listener is not None:
            self.listener.publish()  # one fewer: the other workers see it now

    def _arm(self, phase: str) -> None:
        self._disarm()
        delay = self.limits.header_timeout if phase == "header" else self.limits.body_timeout
        self._phase = phase
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire, phase)

    def _disarm(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()  # type: ignore[union-attr]
        self._timer, self._phase = None, None

    def _expire(self, phase: str) -> None:
        self._timer = None
        cycle = self.cycle
        if phase == "header" and not (cycle is None or cycle.response_complete):
            return  # headers arrived in the meantime
        if phase == "body" and (cycle is None or cycle.response_started):
            return  # the body arrived, or the app already answered
        what = "headers" if phase == "header" else "body"
        seconds = self.limits.header_timeout if phase == "header" else self.limits.body_timeout
        self._cut(
            f"{phase}_timeout",
            _raw_response(
                408,
                "Request Timeout",
                "request_timeout",
                f"request {what} not received within {seconds:g} s",
            ),
        )

    def _cut(self, event: str, response: bytes) -> None:
        log.warning(
            "closing connection: %s",
            event,
            extra={"event": event, "client": ":".join(map(str, self.client or ("-", "-")))},
        )
        if self.on_event is not None:
            self.on_event(event)
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


class GuardedHttpToolsProtocol(_Deadlines, HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`ServerLimits` enforced."""


class GuardedH11Protocol(_Deadlines, H11Protocol):
    """uvicorn's h11 protocol with :class:`ServerLimits` enforced."""


class DrainMiddleware:
    """While the server drains: ``/ready`` answers 503, other responses close the connection.

    The check is made when a response starts, so requests that arrived before the drain
    and answer during it close their connection too.
    """

    def __init__(self, app: Any, server: DrainingServer):
        self.app, self.server = app, server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.server.draining and scope.get("path") == "/ready":
            body = json.dumps({"error": "not_ready", "message": "draining for shutdown"}).encode()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start" and self.server.draining:
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message["headers"] = [*kept, (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive, closing)


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` whose first SIGTERM starts a drain (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, limits: ServerLimits):
        super().__init__(config)
        self.limits = limits
        self.draining = False
        self._drain_until = 0.0
        self._signal: int | None = None
        self._marked = False

    async def startup(self, sockets: Any = None) -> None:
        """Wrap the loaded app in :class:`DrainMiddleware`, then start as uvicorn does.

        A worker of :func:`run` (its config has a seat on a :class:`ConnectionBoard`)
        listens on ``sockets`` through :class:`BalancedListener` instead of uvicorn's
        ``loop.create_server``.
        """
        config = self.config
        config.loaded_app = DrainMiddleware(config.loaded_app, self)
        seat = getattr(config, SEAT_ATTR, None)
        if sockets is None or seat is None:
            await super().startup(sockets=sockets)
            return
        await super().startup(sockets=[])  # the app's lifespan; no listener
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:  # what uvicorn's startup builds for each connection
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=loop,
            )

        board, slot, _ = seat
        listeners = [
            BalancedListener(loop, protocol, sock, config.ssl, board, slot, self.server_state)
            for sock in sockets
        ]
        setattr(config, LISTENER_ATTR, listeners[0] if listeners else None)
        self.servers = listeners  # type: ignore[assignment]  # uvicorn calls close, wait_closed

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Uvicorn's signal capture, with the queued log lines written before it re-raises.

        After a graceful stop uvicorn raises the captured SIGTERM again, which ends the
        process without ``atexit``: the log lines still queued for the background writer
        (the drain, the last requests) are written first.
        """
        with super().capture_signals():
            try:
                yield
            finally:
                flush_logs()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start the drain on the first SIGTERM; otherwise shut down as uvicorn does.

        This runs in the signal handler, between any two bytecodes of the main thread, so
        it only sets flags: logging or metrics here could wait forever on a lock that the
        interrupted code holds (the log queue's, a counter's).
        """
        if sig == signal.SIGTERM and not self.draining and self.limits.drain_seconds > 0:
            self.draining, self._signal = True, sig
            self._drain_until = time.monotonic() + self.limits.drain_seconds
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """Mark the app not ready once the drain starts; end the drain when its time is up.

        A worker whose supervisor is gone (killed with SIGKILL) stops as on SIGTERM, rather
        than serve on as an orphan.
        """
        seat = getattr(self.config, SEAT_ATTR, None)
        if seat is not None and not self.should_exit and os.getppid() != seat[2]:
            log.warning("the supervisor [%d] is gone: stopping", seat[2])
            super().handle_exit(signal.SIGTERM, None)
        if self.draining and not self._marked:  # on the event loop, not in the signal handler
            self._marked = True
            log.info(
                "SIGTERM: draining for %g s (readiness 503, Connection: close)",
                self.limits.drain_seconds,
            )
            metrics = _find_metrics(self.config.loaded_app)
            if metrics is not None:
                metrics.ready.set(0)
        if self.draining and self._signal is not None and time.monotonic() >= self._drain_until:
            log.info(
                "drain over: closing listeners, waiting for %d connection(s)",
                len(self.server_state.connections),
            )
            super().handle_exit(self._signal, None)
            self._signal = None
        return await super().on_tick(counter)


def _find_metrics(app: Any) -> Any:
    """The geoclim ``Metrics`` of ``app`` under uvicorn's wrapping middlewares, if any."""
    for _ in range(16):
        metrics = getattr(getattr(app, "state", None), "metrics", None)
        if metrics is not None:
            return metrics
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def build_config(app: Any, limits: ServerLimits, **options: Any) -> uvicorn.Config:
    """A ``uvicorn.Config`` whose HTTP protocol enforces ``limits``.

    Args:
        app: the ASGI app, or an import string (with ``factory=True`` for a factory).
        limits: see :class:`ServerLimits`.
        **options: further ``uvicorn.Config`` options (host, port, workers, log_config, ...).

    Returns:
        The config.

    """
    http = "h11" if options.pop("http", "auto") == "h11" else "httptools"
    protocol = GuardedH11Protocol if http == "h11" else GuardedHttpToolsProtocol
    config = uvicorn.Config(
        app,
        http=f"{__name__}:{protocol.__name__}",
        timeout_keep_alive=limits.keep_alive_timeout,  # type: ignore[arg-type]
        timeout_graceful_shutdown=limits.graceful_timeout,  # type: ignore[arg-type]
        **options,
    )
    setattr(config, LIMITS_ATTR, limits)
    return config


def run(app: Any, limits: ServerLimits, **options: Any) -> None:
    """Serve ``app`` until SIGTERM / SIGINT, then drain and stop (blocks).

    Args:
        app: the ASGI app, or with ``workers > 1`` an import string of an app factory
            (``factory=True``): each worker process builds its own app (see
            :func:`supervise`). Every worker enforces the deadlines and the connection cap
            (``max_connections`` per worker), takes its turn at accepting connections and
            runs the SIGTERM drain (in Kubernetes, still prefer one worker per pod).
        limits: see :class:`ServerLimits`.
        **options: further ``uvicorn.Config`` options (host, port, workers, log_config, ...).

    """
    config = build_config(app, limits, **options)
    if config.workers > 1:
        supervise(config)
    else:
        DrainingServer(config, limits).run()


def _worker(config: uvicorn.Config, sock: socket.socket, board: ConnectionBoard, slot: int) -> None:
    """One worker process: a :class:`DrainingServer` with seat ``slot`` on ``board``."""
    config.configure_logging()
    setattr(config, SEAT_ATTR, (board, slot, os.getppid()))
    DrainingServer(config, getattr(config, LIMITS_ATTR, None) or ServerLimits()).run([sock])


def supervise(config: uvicorn.Config, poll: float = 0.1) -> None:
    """Run ``config.workers`` balanced worker processes until SIGTERM / SIGINT (blocks).

    The socket is bound and listening (``config.backlog``) before any worker starts, so
    clients queue while the workers load the app. A worker that exits is started again in
    its slot; one that fails to start (uvicorn's exit code 3) stops them all. A signal is
    passed on to every worker as SIGTERM, as uvicorn's supervisor does: each drains and
    finishes its requests (one that got the terminal's SIGINT itself skips the drain); a
    second signal ends their drain early. On the first signal this process closes its copy
    of the socket, so the port closes once the workers stop listening.

    Raises:
        SystemExit: with code 3 when a worker failed to start.

    """
    ctx = multiprocessing.get_context("spawn")
    sock = config.bind_socket()
    sock.listen(config.backlog)
    board = ConnectionBoard(config.workers, ctx)
    received: list[int] = []
    handlers = {
        sig: signal.signal(sig, lambda sig, frame: received.append(sig))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }

    def start(slot: int) -> Any:
        board.set(slot, ABSENT)
        process = ctx.Process(target=_worker, args=(config, sock, board, slot), daemon=False)
        process.start()
        return process

    failed = False
    try:
        workers = [start(slot) for slot in range(config.workers)]
        log.info("started %d workers: %s", len(workers), [w.pid for w in workers])
        passed = 0
        while not received or any(w.is_alive() for w in workers):
            time.sleep(poll)
            arrived = received[passed:]  # (a signal may add one while this runs)
            passed += len(arrived)
            for _ in arrived:
                for w in workers:
                    if w.is_alive():
                        os.kill(w.pid, signal.SIGTERM)
                sock.close()  # no restarts now: the port closes with the workers' listeners
            for slot, w in enumerate(workers):
                if received or w.exitcode is None:
                    continue
                board.set(slot, ABSENT)
                if w.exitcode == STARTUP_FAILURE:
                    log.error("worker %d [%d] failed to start: stopping", slot, w.pid)
                    failed = True
                    received.append(signal.SIGTERM)
                    break
                log.warning("worker %d [%d] exited (%s): restarting", slot, w.pid, w.exitcode)
                workers[slot] = start(slot)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        sock.close()
    if failed:
        raise SystemExit(STARTUP_FAILURE)
