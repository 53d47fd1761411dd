r"""Locust load test of ``geoclim serve``: forecasts, batches, netCDF uploads, model lists.

Each simulated user sends, with its API key in ``X-API-Key``:

* ``POST /v1/forecast``, one location (weight 10) -- the request body is the served
  model's own OpenAPI example (``GET /openapi.json``), so it fits any model;
* ``POST /v1/forecast``, a batch of ``--batch-size`` locations (weight 3);
* ``POST /v1/forecast/netcdf``, the history file ``--netcdf`` (weight 1; skipped without);
* ``GET /v1/models`` (weight 1, and once when the user starts).

A 429 (rate limit) counts as a failure: size the key's rate for the load. Run it bounded and
headless, e.g. (``python -m loadtest.run`` starts a server and does all of this)::

    locust -f loadtest/locustfile.py --headless --users 20 --spawn-rate 5 --run-time 30s \
        --host http://127.0.0.1:8000 --api-key "$GEOCLIM_API_KEY" --netcdf history.nc \
        --csv out/locust --json-file out/locust
"""

from __future__ import annotations

import copy
from pathlib import Path

from locust import HttpUser, between, events, task


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument(
        "--api-key", env_var="GEOCLIM_API_KEY", default="", help="X-API-Key to send"
    )
    parser.add_argument(
        "--netcdf",
        env_var="GEOCLIM_LOADTEST_NETCDF",
        default="",
        help="netCDF history for POST /v1/forecast/netcdf (that task is skipped without)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="locations per batch request")


_EXAMPLE: dict = {}


def _example(client) -> dict:
    """The one-location example of the served default model (fetched once per process)."""
    if not _EXAMPLE:
        spec = client.get("/openapi.json", name="/openapi.json").json()
        body = spec["paths"]["/v1/forecast"]["post"]["requestBody"]["content"]
        _EXAMPLE.update(body["application/json"]["examples"]["one_location"]["value"])
    return copy.deepcopy(_EXAMPLE)


class ForecastUser(HttpUser):
    """One client of the forecast service."""

    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:  # noqa: D102
        options = self.environment.parsed_options
        self.client.headers["X-API-Key"] = options.api_key
        self.one = _example(self.client)
        self.batch = copy.deepcopy(self.one)
        self.batch["locations"] = self.one["locations"] * options.batch_size
        path = options.netcdf
        self.netcdf = Path(path).read_bytes() if path else None
        self.models()  # a client looks up what is served first

    @task(10)
    def forecast(self) -> None:  # noqa: D102
        self.client.post("/v1/forecast", json=self.one, name="/v1/forecast [1]")

    @task(3)
    def batch_forecast(self) -> None:  # noqa: D102
        self.client.post("/v1/forecast", json=self.batch, name="/v1/forecast [batch]")

    @task(1)
    def netcdf_forecast(self) -> None:  # noqa: D102
        if self.netcdf is None:
            return
        files = {"file": ("history.nc", self.netcdf, "application/x-netcdf")}
        self.client.post("/v1/forecast/netcdf", files=files, name="/v1/forecast/netcdf")

    @task(1)
    def models(self) -> None:  # noqa: D102
        self.client.get("/v1/models")
