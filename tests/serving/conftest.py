"""Fixtures: untrained demo exports (the real export path), built once per session."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from geoclim.data.task import ForecastTask

TASK = ForecastTask(
    targets=("no2",),
    past_inputs=("o3", "t2m", "u10"),
    future_inputs=("hour_sin", "hour_cos", "u10"),
    static_inputs=("elevation", "emissions"),
    input_steps=12,
    horizon=6,
)
POINT_TASK = ForecastTask(
    targets=("no2",),
    past_inputs=("t2m",),
    future_inputs=("hour_sin", "hour_cos"),
    static_inputs=("elevation",),
    input_steps=12,
    horizon=6,
    quantiles=(0.1, 0.5, 0.9),
)
EXPORTER = "torchscript"
"""The serving fixtures' exporter: the adapter reads the same graph contract from either
exporter, and TorchScript exports these networks in about 0.5 s against about 15 s with
dynamo (the default of ``geoclim-export``, covered in tests/export and the CLI tests)."""


@pytest.fixture(scope="session")
def grid_export(tmp_path_factory):
    from tests.support.demo_export import demo_export

    return demo_export(
        tmp_path_factory.mktemp("grid") / "lstm.onnx",
        model="lstm",
        task=TASK,
        grid=(4, 3),
        hidden_size=16,
        exporter=EXPORTER,
    )


@pytest.fixture(scope="session")
def station_export(tmp_path_factory):
    from tests.support.demo_export import demo_export

    return demo_export(
        tmp_path_factory.mktemp("station") / "lstm_q.onnx",
        model="lstm",
        task=POINT_TASK,
        layout="station",
        grid=(5, 1),
        hidden_size=8,
        exporter=EXPORTER,
    )


@pytest.fixture(scope="session")
def cnn_export(tmp_path_factory):
    from tests.support.demo_export import demo_export

    return demo_export(
        tmp_path_factory.mktemp("cnn") / "cnn.onnx",
        model="cnn",
        task=TASK,
        grid=(6, 5),
        exporter=EXPORTER,
    )


class ServeProcess:
    """``geoclim serve`` in a subprocess on a free loopback port; JSON logs on stdout."""

    def __init__(self, args, env=None):
        import os
        import socket
        import subprocess
        import sys

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "geoclim.cli.main", "serve", *map(str, args)]
            + ["--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout=60.0):
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.communicate()[1]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("server not ready in time")

    def stop(self, timeout=30.0):
        """SIGTERM, wait; returns (returncode, stdout JSON records, stderr)."""
        import json
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        return self.proc.returncode, records, err


@pytest.fixture
def serve_process():
    started = []

    def start(*args, env=None):
        started.append(ServeProcess(args, env))
        return started[-1].wait_ready()

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.communicate()


@pytest.fixture(scope="session")
def serve_class():
    return ServeProcess


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import xarray as xr
    from fastapi.testclient import TestClient
    import geoclim.export.metadata, geoclim.export.registry, geoclim.serving.server
    from geoclim.cli.serve import _build_app, build_parser

    app = _build_app(build_parser().parse_args([sys.argv[1], "--no-auth"]))
    f = app.state.models["m"].forecaster
    out = f.predict(xr.open_dataset(sys.argv[2]).load(), max_missing=1.0)
    assert out.sizes["station"] == 5
    with TestClient(app) as client:
        assert client.post("/v1/forecast", json=f.example_request()).status_code == 200
    heavy = sorted(m for m in ("torch", "lightning", "hydra", "omegaconf", "sklearn",
                               "xgboost", "lightgbm") if m in sys.modules)
    files = sorted(
        m.__file__ for name, m in list(sys.modules.items())
        if name.startswith("geoclim") and getattr(m, "__file__", None)
    )
    print(json.dumps({"heavy": heavy, "files": files}))
""")


@pytest.fixture(scope="session")
def fresh_serving_process(station_export, tmp_path_factory):
    """``geoclim serve``'s app built, forecasting and answering HTTP in a new interpreter.

    Returns ``{"heavy": [...], "files": [...]}``: the heavy packages that process imported
    and the geoclim module files it loaded (for the no-torch and image-requirements tests).
    """
    tmp = tmp_path_factory.mktemp("fresh")
    history = tmp / "history.nc"
    station_export.datamodule.ds.isel(time=slice(20, 32)).to_netcdf(history)
    model = tmp / "m.onnx"
    model.write_bytes(Path(station_export.path).read_bytes())
    out = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(model), str(history)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tft_export(tmp_path_factory):
    """A small TFT: its encoder reads the known inputs at the input steps (``known_past``)."""
    from tests.support.demo_export import demo_export

    return demo_export(
        tmp_path_factory.mktemp("tft") / "tft.onnx",
        model="tft",
        task=TASK,
        grid=(4, 3),
        hidden_size=8,
        attention_heads=2,
        hidden_continuous_size=4,
        exporter=EXPORTER,
    )
