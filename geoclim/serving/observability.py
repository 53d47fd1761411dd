"""Request IDs, structured JSON logs, Prometheus metrics and the request-size limit.

Two pure-ASGI middlewares (cheaper than Starlette's ``BaseHTTPMiddleware``):

* :class:`RequestContextMiddleware` -- takes ``X-Request-ID`` from the request when it is
  sane (<= 128 characters of ``[A-Za-z0-9._-]``) or makes a UUID4, exposes it in a
  context variable (every log record carries it) and in the response header, times the
  request, counts it in Prometheus and writes one JSON access-log line;
* :class:`BodyLimitMiddleware` -- answers 413 when ``Content-Length`` or the streamed body
  exceeds the limit, before the application parses anything.

Prometheus series (one :class:`prometheus_client.CollectorRegistry` per app)::

    geoclim_http_requests_total{method, route, status}
    geoclim_http_request_duration_seconds{method, route}      histogram
    geoclim_http_errors_total{route, status}                   4xx and 5xx
    geoclim_inference_duration_seconds{model}                  histogram (adapter + ORT)
    geoclim_forecast_locations_total{model}                    locations / grid samples
    geoclim_http_connections_cut_total{reason}                 slow clients, connection cap
    geoclim_ready                                              1 ready, 0 loading / draining

    geoclim_log_records_dropped_total                          log lines lost to a stalled sink

Logs are JSON lines on stdout (the container convention) or, with a log file, on a
size-rotated file (:func:`configure_logging`). A record is formatted where it is logged
(its request id, its traceback) but written by a background thread
(:class:`BackgroundLogHandler`): a log sink that stops reading -- a full pipe, a stalled
container log driver -- must not stop the event loop, so no request ever waits on log I/O.
While the sink is stalled, records queue (up to :data:`LOG_QUEUE_RECORDS`); beyond that they
are dropped and counted rather than blocking.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import queue
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from geoclim.errors import ConfigError

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
CLIENT_CLOSED = 499
"""Status logged for a request whose client left (or was cut) before the answer (nginx's)."""
LOG_QUEUE_RECORDS = 10_000
"""Log records held while the sink does not keep up (about 4 MB of access lines)."""
LOG_FLUSH_SECONDS = 5.0
"""Longest wait for queued records to be written when the process stops."""
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("geoclim.serving.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id, extras."""

    _SKIP = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
        "message",
        "color_message",
    }

    def format(self, record: logging.LogRecord) -> str:
        """Serialise ``record``."""
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        doc |= {k: v for k, v in record.__dict__.items() if k not in self._SKIP}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class BackgroundLogHandler(logging.handlers.QueueHandler):
    """Format in the logging thread, write in a background thread; never block the caller.

    The record is formatted at once (so the line carries the caller's request id and
    traceback) and the finished line is queued for ``target``, which a
    :class:`logging.handlers.QueueListener` thread writes. When ``max_records`` lines are
    waiting (the sink stopped reading), further records are dropped and counted in
    :attr:`dropped` instead of blocking.

    Args:
        target: the handler that writes (a stream or a rotating file); its formatter is
            replaced by one that writes the finished line as it is.
        max_records: lines held while the target does not keep up.

    """

    def __init__(self, target: logging.Handler, max_records: int = LOG_QUEUE_RECORDS):
        if max_records < 1:
            raise ConfigError(f"log queue max_records={max_records!r}: expected >= 1")
        super().__init__(queue.Queue(max_records))
        self.target, self.dropped = target, 0
        target.setFormatter(logging.Formatter("%(message)s"))
        self.listener = logging.handlers.QueueListener(self.queue, target)
        self.listener.start()
        self._writing = True

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:  # noqa: D102
        line = self.format(record)
        fields = {"name": record.name, "levelno": record.levelno, "msg": line}
        return logging.makeLogRecord(fields | {"levelname": record.levelname})

    def enqueue(self, record: logging.LogRecord) -> None:  # noqa: D102
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def wait_written(self, timeout: float = LOG_FLUSH_SECONDS) -> bool:
        """Wait until every queued line is written; ``False`` if ``timeout`` ran out first."""
        q = self.queue
        assert isinstance(q, queue.Queue)
        with q.all_tasks_done:  # the target flushes each line itself (and holds its lock
            # while a write is stuck): waiting for the queue is all there is to do
            return q.all_tasks_done.wait_for(lambda: q.unfinished_tasks == 0, timeout)

    def flush(self) -> None:
        """Wait (at most :data:`LOG_FLUSH_SECONDS`) until every queued line is written."""
        self.wait_written()

    def close(self) -> None:
        """Write what is queued (for at most :data:`LOG_FLUSH_SECONDS`), then stop."""
        if self._writing and self.wait_written():
            self.listener.stop()  # else the writer is stalled: a daemon, it ends with us
        self._writing = False
        self.target.close()
        super().close()


def flush_logs(timeout: float = LOG_FLUSH_SECONDS) -> None:
    """Write the queued log lines now (before a process ends by a re-raised signal)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BackgroundLogHandler):
            handler.wait_written(timeout)


def dropped_log_records() -> int:
    """Log records dropped in this process because the sink did not keep up."""
    handlers = logging.getLogger().handlers
    return sum(h.dropped for h in handlers if isinstance(h, BackgroundLogHandler))


def configure_logging(
    level: str = "INFO",
    file: str | None = None,
    max_bytes: int = 50 * 1024 * 1024,
    backups: int = 5,
) -> None:
    """Send every log record as one JSON line (UTC times) to stdout, or to a rotated file.

    The lines are written by a background thread (:class:`BackgroundLogHandler`); Python
    warnings become log records too.

    Args:
        level: root log level.
        file: log file; ``None`` logs to stdout (containers: the runtime collects it).
        max_bytes: with ``file``, size at which the file is rotated.
        backups: with ``file``, rotated files kept (``file.1`` ... ``file.<backups>``).

    """
    target: logging.Handler
    if file is None:
        target = logging.StreamHandler(sys.stdout)
    else:
        target = logging.handlers.RotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler = BackgroundLogHandler(target)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # replaced by geoclim.serving.access
    logging.captureWarnings(True)  # warnings as JSON records, not raw lines on stderr


class _DroppedLogRecords:
    """Prometheus collector of :func:`dropped_log_records` (process-wide, read on scrape)."""

    def collect(self) -> Any:  # noqa: D102
        yield CounterMetricFamily(
            "geoclim_log_records_dropped",
            "Log records dropped because the log sink did not keep up",
            value=dropped_log_records(),
        )


class Metrics:
    """The app's Prometheus collectors, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "geoclim_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "geoclim_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "geoclim_http_errors_total",
            "HTTP 4xx/5xx responses",
            ["route", "status"],
            registry=self.registry,
        )
        self.inference = Histogram(
            "geoclim_inference_duration_seconds",
            "Forecast time (validation, adapter and onnxruntime)",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.locations = Counter(
            "geoclim_forecast_locations_total",
            "Locations (or grids) forecast",
            ["model"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "geoclim_ready",
            "1 while the models are loaded and the server takes traffic, else 0",
            registry=self.registry,
        )
        self.connections_cut = Counter(
            "geoclim_http_connections_cut_total",
            "Connections closed by the server: header_timeout, body_timeout, connection_limit",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_DroppedLogRecords())


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    """Request ID, access log and request metrics (see the module docstring)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        status = 500
        disconnected = False

        async def receive_watch() -> Message:
            nonlocal disconnected
            message = await receive()
            disconnected = disconnected or message["type"] == "http.disconnect"
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive_watch, send_with_id)
        finally:
            if disconnected and status == 500:
                status = CLIENT_CLOSED  # gone before an answer: not a server error
            elapsed = time.perf_counter() - start
            route = _route_label(scope)
            method = scope.get("method", "")
            count, latency = self._series(method, route, status)
            count.inc()
            latency.observe(elapsed)
            if status >= 400:
                self.metrics.errors.labels(route, str(status)).inc()
            if access_log.isEnabledFor(logging.INFO):  # else skip building the record
                state = scope.get("state", {})
                access_log.info(
                    "%s %s %d",
                    method,
                    scope.get("path", ""),
                    status,
                    extra={
                        "method": method,
                        "path": scope.get("path", ""),
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1e3, 3),
                        "principal": state.get("principal"),
                        "model": state.get("model"),
                    },
                )
            request_id_var.reset(token)

    def _series(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram children of these labels.

        Kept once looked up: a ``labels()`` call takes a lock and builds a key every time.
        """
        key = (method, route, status)
        series = self._children.get(key)
        if series is None:
            m = self.metrics
            series = (
                m.requests.labels(method, route, str(status)),
                m.latency.labels(method, route),
            )
            self._children[key] = series
        return series


class BodyLimitMiddleware:
    """413 for request bodies larger than ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(send)
            return
        # Buffer the body up to the limit, then replay it: the app never sees a partial body.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client gone (or cut by the server's body deadline): nothing to answer
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._reject(send)
                return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": "payload_too_large",
                "message": f"request body exceeds {self.max_bytes} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
