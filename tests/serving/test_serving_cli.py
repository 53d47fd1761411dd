import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

from geoclim.cli.serve import serve_main
from geoclim.export.registry import ModelRegistry
from geoclim.serving.security import KeyStore


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_keygen_prints_the_key_once_and_stores_its_hash(tmp_path, capsys):
    keys = tmp_path / "keys.json"
    assert (
        serve_main(
            ["keygen", "alice", "--keys", str(keys), "--models", "a,b", "--method", "sha256"]
        )
        == 0
    )
    key = capsys.readouterr().out.strip()
    assert key.startswith("alice.") and key not in keys.read_text()
    principal = KeyStore.from_file(keys).authenticate(key)
    assert principal.id == "alice" and principal.models == ("a", "b")
    with pytest.raises(SystemExit):
        serve_main(["keygen", "alice", "--keys", str(keys)])
    assert "exists" in capsys.readouterr().err


def test_serving_without_credentials_needs_no_auth(grid_export, capsys):
    with pytest.raises(SystemExit) as exc:
        serve_main([str(grid_export.path)])
    assert exc.value.code == 2 and "--no-auth" in capsys.readouterr().err


def test_registry_names_need_a_registry(capsys, monkeypatch):
    monkeypatch.delenv("GEOCLIM_REGISTRY", raising=False)
    with pytest.raises(SystemExit):
        serve_main(["no2_lstm", "--no-auth"])
    assert "--registry" in capsys.readouterr().err


def test_uvicorn_serves_a_registered_model_on_loopback(grid_export, tmp_path):
    registry = tmp_path / "registry"
    ModelRegistry(registry).register("no2", grid_export.path, stage="production")
    keys = tmp_path / "keys.json"
    assert serve_main(["keygen", "ci", "--keys", str(keys), "--method", "sha256"]) == 0
    key = json.loads(keys.read_text())["keys"][0]["id"]
    assert key == "ci"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from geoclim.cli.serve import serve_main; import sys; "
            "sys.exit(serve_main(sys.argv[1:]))",
            "no2",
            "--registry",
            str(registry),
            "--no-auth",
            "--port",
            str(port),
            "--drain-seconds",  # the drain itself: test_serving_server.py
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # startup imports take > 10 s on a loaded machine
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        models = httpx.get(f"{url}/v1/models").json()
        assert models[0]["name"] == "no2" and models[0]["version"] == "1"
        body = json.loads(json.dumps(grid_export_body(grid_export)))
        r = httpx.post(f"{url}/v1/forecast", json=body)
        assert r.status_code == 200, r.text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in out.splitlines()]  # JSON lines on stdout only
    access = [d for d in lines if d["logger"] == "geoclim.serving.access"]
    assert any(d["route"] == "/v1/forecast" and d["status"] == 200 for d in access)


def grid_export_body(demo):
    from geoclim.serving.adapter import Forecaster

    return Forecaster.from_onnx(demo.path).example_request()


def test_registry_promote_and_rollback_from_the_command_line(tmp_path, capsys, grid_export):
    reg = ModelRegistry(tmp_path)
    reg.register("no2", grid_export.path, stage="production")
    reg.register("no2", grid_export.path)
    assert serve_main(["registry", "promote", "no2", "--registry", str(tmp_path)]) == 0
    assert "no2:2 is now production" in capsys.readouterr().out
    assert serve_main(["registry", "rollback", "no2", "--registry", str(tmp_path)]) == 0
    assert "no2:1 is now production" in capsys.readouterr().out
    serve_main(["registry", "list", "--registry", str(tmp_path)])
    assert "no2:2\tarchived" in capsys.readouterr().out
