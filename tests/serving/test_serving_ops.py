import io
import json
import logging
import threading

import pytest
from fastapi.testclient import TestClient

from geoclim.cli.serve import build_parser, serve_main
from geoclim.errors import ConfigError
from geoclim.serving.adapter import Forecaster
from geoclim.serving.app import ServedModel, ServeSettings, create_app
from geoclim.serving.observability import (
    BackgroundLogHandler,
    JsonFormatter,
    configure_logging,
    request_id_var,
)
from geoclim.serving.server import ServerLimits, build_config

TOKEN = "metrics-token-0123456789"


@pytest.fixture(scope="module")
def served(station_export):
    f = Forecaster.from_onnx(station_export.path, name="st")
    return [ServedModel("st", f, str(station_export.path))]


def test_metrics_token_guards_metrics_only(served):
    with TestClient(create_app(served, ServeSettings(metrics_token=TOKEN))) as c:
        r = c.get("/metrics")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["message"]
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "geoclim_http_requests_total" in ok.text
        assert c.get("/health").status_code == 200
        assert 'status="401"' in ok.text  # the rejections are counted


def test_a_short_metrics_token_is_refused():
    with pytest.raises(ConfigError, match="at least 16"):
        ServeSettings(metrics_token="short")


def test_metrics_token_env_must_be_set(station_export, monkeypatch, capsys):
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        serve_main([str(station_export.path), "--no-auth", "--metrics-token-env", "NO_SUCH_TOKEN"])
    assert "--metrics-token-env NO_SUCH_TOKEN" in capsys.readouterr().err


def test_log_file_rotates_and_every_line_is_json(tmp_path):
    path = tmp_path / "serve.log"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("INFO", str(path), max_bytes=2000, backups=2)
    try:
        log = logging.getLogger("geoclim.serving.access")
        for i in range(60):
            log.info("GET /health 200", extra={"status": 200, "n": i})
    finally:  # close the file's writer and give the root logger back as it was
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    files = sorted(tmp_path.glob("serve.log*"))
    assert [f.name for f in files] == ["serve.log", "serve.log.1", "serve.log.2"]
    for f in files:
        assert f.stat().st_size <= 2000
        for line in f.read_text().splitlines():
            assert json.loads(line)["status"] == 200


def test_log_file_with_several_workers_is_refused(station_export, capsys, tmp_path):
    with pytest.raises(SystemExit):
        serve_main([str(station_export.path), "--no-auth", "--workers", "2", "--log-file", "x.log"])
    assert "--log-file with --workers > 1" in capsys.readouterr().err


def test_options_default_from_the_environment(monkeypatch):
    monkeypatch.setenv("GEOCLIM_SERVE_HEADER_TIMEOUT", "2.5")
    monkeypatch.setenv("GEOCLIM_SERVE_NO_AUTH", "true")
    args = build_parser().parse_args(["m.onnx"])
    assert args.header_timeout == 2.5 and args.no_auth is True
    assert build_parser().parse_args(["m.onnx", "--header-timeout", "4"]).header_timeout == 4


def test_a_bad_environment_value_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("GEOCLIM_SERVE_MAX_CONNECTIONS", "many")
    with pytest.raises(SystemExit):
        serve_main(["m.onnx", "--no-auth"])
    assert "GEOCLIM_SERVE_MAX_CONNECTIONS='many': expected int" in capsys.readouterr().err


def test_bad_flag_values_are_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["m.onnx", "--header-timeout", "0"])
    assert "--header-timeout: '0': expected a value > 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "field,value",
    [("header_timeout", 0), ("body_timeout", -1), ("drain_seconds", -1), ("max_connections", 0)],
)
def test_server_limits_check_their_values(field, value):
    with pytest.raises(ConfigError, match=field):
        ServerLimits(**{field: value})


def test_the_config_uses_the_guarded_protocol_and_the_limits(served):
    limits = ServerLimits(keep_alive_timeout=7, graceful_timeout=9)
    config = build_config(create_app(served), limits, http="h11")
    config.load()
    assert config.http_protocol_class.__name__ == "GuardedH11Protocol"
    assert config.timeout_keep_alive == 7 and config.timeout_graceful_shutdown == 9
    assert config.geoclim_limits is limits


class GatedStream(io.StringIO):
    """A log sink whose writes wait until ``gate`` opens (a pipe no one reads)."""

    def __init__(self):
        super().__init__()
        self.entered, self.gate = threading.Event(), threading.Event()

    def write(self, text):
        self.entered.set()
        self.gate.wait(10)
        return super().write(text)


@pytest.fixture
def gated_log():
    stream = GatedStream()
    handler = BackgroundLogHandler(logging.StreamHandler(stream), max_records=3)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("tests.gated")
    log.propagate, log.handlers[:] = False, [handler]
    log.setLevel(logging.INFO)
    yield log, handler, stream
    stream.gate.set()
    handler.close()
    log.handlers[:] = []


def test_a_stalled_log_sink_drops_and_counts_instead_of_blocking(gated_log):
    log, handler, stream = gated_log
    log.info("first", extra={"n": 0})
    assert stream.entered.wait(10)  # the writer thread is stuck writing record 0
    token = request_id_var.set("req-1")
    try:
        for n in range(1, 11):  # 3 fit in the queue, 7 are dropped; none blocks
            log.info("more", extra={"n": n})
    finally:
        request_id_var.reset(token)
    assert handler.dropped == 7
    assert handler.wait_written(timeout=0.05) is False  # still stalled
    stream.gate.set()
    assert handler.wait_written() is True
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [d["n"] for d in lines] == [0, 1, 2, 3]
    assert [d["request_id"] for d in lines] == ["-", "req-1", "req-1", "req-1"]  # caller's


def test_background_log_lines_keep_the_traceback(gated_log):
    log, handler, stream = gated_log
    stream.gate.set()
    try:
        raise ZeroDivisionError("no rate")
    except ZeroDivisionError:
        log.exception("boom")
    assert handler.wait_written()
    (doc,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert doc["message"] == "boom" and doc["level"] == "ERROR"
    assert "ZeroDivisionError: no rate" in doc["exception"]


def test_a_log_queue_without_room_is_refused():
    with pytest.raises(ConfigError, match="max_records=0: expected >= 1"):
        BackgroundLogHandler(logging.StreamHandler(io.StringIO()), max_records=0)


def test_dropped_log_records_are_exported(served):
    with TestClient(create_app(served)) as c:
        assert "geoclim_log_records_dropped_total 0.0" in c.get("/metrics").text
