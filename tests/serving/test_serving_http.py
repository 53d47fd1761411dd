import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import numpy as np
import pytest
import xarray as xr
from fastapi.testclient import TestClient

from geoclim.serving.adapter import Forecaster
from geoclim.serving.app import ServedModel, ServeSettings, create_app
from geoclim.serving.observability import JsonFormatter
from geoclim.serving.security import JWTConfig, KeyStore, Principal, hash_key, verify_key

ALICE, BOB, CAROL = "alice.k1", "bob.k2", "carol.k3"
SECRET = "a-test-secret-that-is-at-least-32-bytes-long"


@pytest.fixture(scope="module")
def models(grid_export, station_export):
    return [
        ServedModel(
            "no2_grid",
            Forecaster.from_onnx(grid_export.path, name="no2_grid"),
            str(grid_export.path),
            "1",
        ),
        ServedModel(
            "no2_station",
            Forecaster.from_onnx(station_export.path, name="no2_station"),
            str(station_export.path),
            "3",
        ),
    ]


@pytest.fixture(scope="module")
def client(models):
    keys = KeyStore()
    keys.add(ALICE, Principal("alice"), method="sha256")
    keys.add(BOB, Principal("bob", models=("no2_station",)), method="scrypt")
    keys.add(CAROL, Principal("carol", rate_per_minute=1, burst=2), method="sha256")
    settings = ServeSettings(keys=keys, jwt=JWTConfig(SECRET), max_body_bytes=256_000)
    with TestClient(create_app(models, settings)) as c:
        yield c


@pytest.fixture
def body(models):
    return models[0].forecaster.example_request(2)


def auth(key=ALICE):
    return {"X-API-Key": key}


def test_forecast_200_for_a_batch_of_locations(client, body):
    r = client.post("/v1/forecast", json=body, headers=auth())
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "no2_grid" and out["version"] == "1"
    assert len(out["forecasts"]) == 2 and len(out["forecasts"][0]["values"]["no2"]) == 6
    assert out["units"] == {"no2": "ppb"} and out["lead_time_hours"][0] == 1.0
    assert out["valid_time"][0].startswith("2024-06-01T13:00:00")
    assert r.headers["x-request-id"]


def test_forecast_agrees_with_the_adapter(client, body, models):
    f = models[0].forecaster
    loc = body["locations"][0]
    values, _ = f.predict_arrays(
        np.datetime64("2024-06-01T12:00"),
        {k: np.array([v]) for k, v in loc["past"].items()},
        future={k: np.array([v]) for k, v in loc["future"].items()},
        latitude=[loc["latitude"]],
        longitude=[loc["longitude"]],
    )
    got = client.post("/v1/forecast", json=body, headers=auth()).json()
    np.testing.assert_allclose(got["forecasts"][0]["values"]["no2"], values["no2"][0], rtol=1e-6)


def test_quantile_model_returns_quantiles_and_median(client, models):
    body = models[1].forecaster.example_request(1) | {"model": "no2_station"}
    r = client.post("/v1/forecast", json=body, headers=auth(BOB))
    assert r.status_code == 200, r.text
    fc = r.json()["forecasts"][0]
    assert set(fc["quantiles"]["no2"]) == {"0.1", "0.5", "0.9"}
    assert fc["values"]["no2"] == fc["quantiles"]["no2"]["0.5"]


def test_401_without_or_with_a_wrong_key(client, body):
    for headers in ({}, auth("alice.wrong"), auth("nobody.x"), auth("no-dot")):
        r = client.post("/v1/forecast", json=body, headers=headers)
        assert r.status_code == 401 and "WWW-Authenticate" in r.headers
        assert r.json()["error"] == "unauthorized"
    assert client.get("/v1/models").status_code == 401


def test_jwt_bearer_tokens(client, body):
    token = jwt.encode({"sub": "svc", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    r = client.post("/v1/forecast", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    expired = jwt.encode({"sub": "svc", "exp": time.time() - 5}, SECRET, algorithm="HS256")
    forged = jwt.encode({"sub": "svc", "exp": time.time() + 60}, SECRET[::-1], algorithm="HS256")
    for t in (expired, forged):
        r = client.post("/v1/forecast", json=body, headers={"Authorization": f"Bearer {t}"})
        assert r.status_code == 401
    limited = jwt.encode(
        {"sub": "svc2", "exp": time.time() + 60, "models": ["no2_station"]},
        SECRET,
        algorithm="HS256",
    )
    r = client.post("/v1/forecast", json=body, headers={"Authorization": f"Bearer {limited}"})
    assert r.status_code == 403


def test_403_when_the_key_may_not_use_the_model(client, body):
    r = client.post("/v1/forecast", json=body | {"model": "no2_grid"}, headers=auth(BOB))
    assert r.status_code == 403 and "may not use model 'no2_grid'" in r.json()["message"]
    assert [m["name"] for m in client.get("/v1/models", headers=auth(BOB)).json()] == [
        "no2_station"
    ]


def test_404_for_unknown_models_and_routes(client, body):
    r = client.post("/v1/forecast", json=body | {"model": "pm25_tft"}, headers=auth())
    assert r.status_code == 404 and "served models are ['no2_grid', 'no2_station']" in r.text
    assert client.get("/v1/models/zzz", headers=auth()).status_code == 404
    assert client.get("/v2/nothing").json()["error"] == "not_found"


def test_413_for_large_bodies(client):
    big = b'{"locations": [' + b" " * 300_000 + b"]}"
    r = client.post(
        "/v1/forecast", content=big, headers=auth() | {"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

    def chunks():  # no Content-Length: streamed
        for _ in range(60):
            yield b" " * 5000

    r = client.post("/v1/forecast", content=chunks(), headers=auth())
    assert r.status_code == 413


@pytest.mark.parametrize(
    "edit,match",
    [
        pytest.param(
            lambda b: b | {"extra": 1}, "Extra inputs are not permitted", id="extra-field"
        ),
        pytest.param(lambda b: b | {"init_time": "yesterday"}, "init_time", id="bad-time"),
        pytest.param(lambda b: b | {"locations": []}, "at least 1 item", id="no-location"),
        pytest.param(
            lambda b: {**b, "locations": [{**b["locations"][0], "latitude": 91}]},
            "less than or equal to 90",
            id="latitude",
        ),
        pytest.param(
            lambda b: {**b, "locations": [{**b["locations"][0], "latitude": "41"}]},
            "valid number",
            id="string-number",
        ),
        pytest.param(
            lambda b: {**b, "locations": [{**b["locations"][0], "past": {"no2": [1.0]}}]},
            r"lacks variable\(s\)",
            id="missing-variable",
        ),
        pytest.param(
            lambda b: {
                **b,
                "locations": [
                    {**b["locations"][0], "past": {**b["locations"][0]["past"], "no2": [1.0] * 3}}
                ],
            },
            "different lengths",
            id="lengths",
        ),
        pytest.param(
            lambda b: {
                **b,
                "locations": [
                    {**b["locations"][0], "past": {**b["locations"][0]["past"], "no2": [None] * 12}}
                ],
            },
            "missing",
            id="all-null",
        ),
        pytest.param(lambda b: b | {"units": {"t2m": "bananas"}}, "unknown units", id="units"),
        pytest.param(
            lambda b: b | {"init_time": "0001-01-01T00:00:00"}, "between 1900", id="ancient"
        ),
        pytest.param(
            lambda b: {
                **b,
                "locations": [{**b["locations"][0], "latitude": 0.0, "longitude": 0.0}],
            },
            "outside the training grid",
            id="outside-domain",
        ),
    ],
)
def test_422_names_the_problem(client, body, edit, match):
    r = client.post("/v1/forecast", json=edit(body), headers=auth())
    assert r.status_code == 422, r.text
    assert r.json()["error"] in ("validation_error", "invalid_request")
    assert __import__("re").search(match, r.text), r.text


def test_422_for_non_finite_numbers_and_broken_json(client, body):
    raw = json.dumps(body).replace('"latitude": ', '"latitude": NaN, "x": ', 1)
    r = client.post(
        "/v1/forecast", content=raw, headers=auth() | {"content-type": "application/json"}
    )
    assert r.status_code == 422
    r = client.post(
        "/v1/forecast", content=b"{not json", headers=auth() | {"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_429_with_retry_after_per_key(client):
    codes = [client.get("/v1/models", headers=auth(CAROL)).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[2:] == [429, 429]
    r = client.get("/v1/models", headers=auth(CAROL))
    assert int(r.headers["Retry-After"]) >= 1 and "requests/minute" in r.json()["message"]
    assert client.get("/v1/models", headers=auth()).status_code == 200  # other keys unaffected


def test_netcdf_upload_for_a_grid(client, grid_export, tmp_path):
    ds = grid_export.datamodule.ds.isel(time=slice(100, 118))
    ds.to_netcdf(tmp_path / "history.nc")
    files = {"file": ("history.nc", (tmp_path / "history.nc").read_bytes(), "application/x-netcdf")}
    r = client.post("/v1/forecast/netcdf", files=files, data={"max_missing": "1"}, headers=auth())
    assert r.status_code == 200, r.text
    (tmp_path / "forecast.nc").write_bytes(r.content)
    with xr.open_dataset(tmp_path / "forecast.nc") as out:
        assert dict(out.sizes)["latitude"] == 4 and "no2" in out
    bad = {"file": ("x.nc", b"not netcdf", "application/x-netcdf")}
    r = client.post("/v1/forecast/netcdf", files=bad, headers=auth())
    assert r.status_code == 422 and r.json()["error"] == "invalid_file"


def test_netcdf_uploads_at_once_are_all_answered_alike(client, grid_export, tmp_path):
    # requests run in FastAPI's threads; netCDF (HDF5) is not thread-safe: without the lock
    # around reading the upload and writing the answer, overlapping uploads corrupt HDF5
    ds = grid_export.datamodule.ds.isel(time=slice(100, 118))
    ds.to_netcdf(tmp_path / "history.nc")
    payload = (tmp_path / "history.nc").read_bytes()

    def post(i):
        files = {"file": (f"h{i}.nc", payload, "application/x-netcdf")}
        r = client.post(
            "/v1/forecast/netcdf", files=files, data={"max_missing": "1"}, headers=auth()
        )
        assert r.status_code == 200, r.text
        return r.content

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post, range(24)))
    values = []
    for i, content in enumerate(answers):  # decoded here, in one thread
        (tmp_path / f"forecast{i}.nc").write_bytes(content)
        with xr.open_dataset(tmp_path / f"forecast{i}.nc") as answer:
            values.append(answer.no2.values)
    for other in values[1:]:
        np.testing.assert_array_equal(other, values[0])


def test_health_ready_metrics_and_request_ids(client, body):
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json() == {"status": "ready", "models": ["no2_grid", "no2_station"]}
    r = client.post("/v1/forecast", json=body, headers=auth() | {"X-Request-ID": "req-42"})
    assert r.headers["x-request-id"] == "req-42"
    r = client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"
    assert client.post("/v1/forecast", json=body).status_code == 401  # counted as an error
    text = client.get("/metrics").text
    assert 'geoclim_http_requests_total{method="POST",route="/v1/forecast",status="200"}' in text
    assert "geoclim_inference_duration_seconds_bucket" in text
    assert 'geoclim_http_errors_total{route="/v1/forecast",status="401"}' in text
    assert 'geoclim_forecast_locations_total{model="no2_grid"}' in text


def test_openapi_has_examples_and_security_schemes(client):
    spec = client.get("/openapi.json").json()
    assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])
    post = spec["paths"]["/v1/forecast"]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    example = examples["one_location"]["value"]
    assert client.post("/v1/forecast", json=example, headers=auth()).status_code == 200
    assert {"401", "403", "404", "413", "422", "429"} <= set(post["responses"])


def test_access_log_is_json_with_the_request_id(client, body, caplog):
    with caplog.at_level(logging.INFO, logger="geoclim.serving.access"):
        client.post("/v1/forecast", json=body, headers=auth() | {"X-Request-ID": "log-1"})
    record = next(r for r in caplog.records if r.name == "geoclim.serving.access")
    doc = json.loads(JsonFormatter().format(record))
    assert doc["status"] == 200 and doc["route"] == "/v1/forecast"
    assert doc["principal"] == "alice" and doc["model"] == "no2_grid"
    assert doc["duration_ms"] > 0


def test_keys_are_hashed_at_rest(tmp_path):
    store = KeyStore()
    store.add("dave.secret", Principal("dave"))
    store.to_file(tmp_path / "keys.json")
    text = (tmp_path / "keys.json").read_text()
    assert "dave.secret" not in text and "scrypt$" in text
    loaded = KeyStore.from_file(tmp_path / "keys.json")
    assert loaded.authenticate("dave.secret").id == "dave"
    assert loaded.authenticate("dave.other") is None
    assert verify_key("k", hash_key("k", "sha256")) and not verify_key("k", "md5$x")


def test_a_burst_of_first_uses_of_a_valid_key_hashes_it_once(monkeypatch):
    # a fresh worker meeting 30 clients at once: before, each hashed the key and the
    # attempt budget (3 a minute) turned the valid key's later checks into 401s
    import geoclim.serving.security as security

    real, calls = security.verify_key, []
    monkeypatch.setattr(
        security, "verify_key", lambda key, stored: calls.append(key) or real(key, stored)
    )
    store = KeyStore(failed_per_minute=3)
    store.add("fred.right", Principal("fred"), method="scrypt")
    start = threading.Barrier(30)

    def first_use(_):
        start.wait()
        return store.authenticate("fred.right")

    with ThreadPoolExecutor(30) as pool:
        principals = list(pool.map(first_use, range(30)))
    assert [p.id if p else None for p in principals] == ["fred"] * 30
    assert calls == ["fred.right"]
    assert store.authenticate("fred.wrong") is None and store.cached("fred.wrong") is None
    assert store._checking == {}  # no gate kept per checked key


def test_guessing_secrets_of_a_known_key_id_is_throttled():
    store = KeyStore(failed_per_minute=3)
    store.add("erin.right", Principal("erin"), method="sha256")
    assert [store.authenticate(f"erin.wrong{i}") for i in range(3)] == [None] * 3
    assert store.authenticate("erin.right") is None  # attempts exhausted for this id
    fresh = KeyStore(failed_per_minute=3)
    fresh.add("erin.right", Principal("erin"), method="sha256")
    assert fresh.authenticate("erin.right").id == "erin"
    assert all(fresh.authenticate("erin.right") for _ in range(10))  # cached, never throttled
