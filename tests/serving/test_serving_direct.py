import gc

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient

from geoclim.errors import ConfigError, DataError, GeoclimError
from geoclim.serving.adapter import Forecaster
from geoclim.serving.app import ServedModel, ServeSettings, create_app
from geoclim.serving.direct import DirectRoute
from geoclim.serving.security import KeyStore, Principal

KEY = "direct.k1"


class Unhandled(RuntimeError):
    pass


class Recorder:  # outside the direct route: what it left in the scope
    def __init__(self, app, seen):
        self.app, self.seen = app, seen

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.seen["route"] = getattr(scope.get("route"), "path", None)
            self.seen["endpoint"] = scope.get("endpoint")


def _tiny_app() -> tuple[FastAPI, dict]:
    seen: dict = {}
    app = FastAPI()

    @app.post("/x")
    async def x(request: Request) -> Response:
        kind = (await request.body()).decode()
        if kind == "geoclim":
            raise GeoclimError("generic")
        if kind == "data":
            raise DataError("bad data")
        if kind == "unhandled":
            raise Unhandled("boom")
        return JSONResponse({"ok": kind})

    @app.exception_handler(GeoclimError)
    async def _geoclim(request: Request, exc: GeoclimError) -> JSONResponse:
        return JSONResponse({"handler": "geoclim", "msg": str(exc)}, status_code=422)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        return JSONResponse({"handler": "data", "msg": str(exc)}, status_code=400)

    app.add_middleware(DirectRoute, app=app, path="/x")
    app.add_middleware(Recorder, seen=seen)
    return app, seen


def test_direct_route_answers_without_the_router_and_sets_the_route():
    app, seen = _tiny_app()
    with TestClient(app) as c:
        r = c.post("/x", content=b"fine")
    assert r.status_code == 200 and r.json() == {"ok": "fine"}
    assert seen["route"] == "/x"
    assert seen["endpoint"] is None  # FastAPI's router sets scope["endpoint"]; it was skipped


def test_direct_route_uses_the_most_specific_exception_handler():
    app, _ = _tiny_app()
    with TestClient(app) as c:
        data = c.post("/x", content=b"data")
        generic = c.post("/x", content=b"geoclim")
    assert data.status_code == 400 and data.json() == {"handler": "data", "msg": "bad data"}
    assert generic.status_code == 422 and generic.json()["handler"] == "geoclim"


def test_direct_route_lets_an_unhandled_error_reach_the_server_error_middleware():
    app, _ = _tiny_app()
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.post("/x", content=b"unhandled").status_code == 500
    with TestClient(app) as c, pytest.raises(Unhandled):
        c.post("/x", content=b"unhandled")


def test_other_methods_and_paths_go_through_the_router():
    app, seen = _tiny_app()
    with TestClient(app) as c:
        assert c.get("/x").status_code == 405
        assert seen["endpoint"] is not None  # the router matched the path, not the method
        assert c.post("/y").status_code == 404


@pytest.mark.parametrize(
    ("path", "endpoint", "match"),
    [
        ("/missing", None, r"has 0 routes POST /missing"),
        ("/extra", "extra", r"must take only the Request, it takes \['request', 'n'\]"),
    ],
    ids=["no-such-route", "endpoint-with-parameters"],
)
def test_direct_route_refuses_a_route_it_cannot_call(path, endpoint, match):
    app = FastAPI()
    if endpoint:

        @app.post("/extra")
        async def extra(request: Request, n: int = 0) -> Response:
            return Response()

    app.add_middleware(DirectRoute, app=app, path=path)
    with pytest.raises(ConfigError, match=match), TestClient(app) as c:
        c.get("/")


@pytest.fixture(scope="module")
def station_model(station_export):
    return ServedModel(
        "no2_station", Forecaster.from_onnx(station_export.path), str(station_export.path), "3"
    )


def _forecast_app(model: ServedModel, direct: bool) -> FastAPI:
    keys = KeyStore()
    keys.add(KEY, Principal("direct"), method="sha256")
    app = create_app([model], ServeSettings(keys=keys))
    if not direct:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not DirectRoute]
    return app


@pytest.mark.parametrize(
    "case", ["ok", "no_key", "bad_body", "bad_value", "get"], ids=lambda c: c.replace("_", "-")
)
def test_forecast_answers_as_through_the_router(station_model, case):
    body = station_model.forecaster.example_request(2)
    if case == "bad_value":
        body["locations"][0]["latitude"] = 123.0
    requests = {
        "ok": ("POST", body, {"X-API-Key": KEY}),
        "no_key": ("POST", body, {}),
        "bad_body": ("POST", {"locations": "none"}, {"X-API-Key": KEY}),
        "bad_value": ("POST", body, {"X-API-Key": KEY}),
        "get": ("GET", None, {"X-API-Key": KEY}),
    }
    method, payload, headers = requests[case]
    answers = []
    for direct in (True, False):
        with TestClient(_forecast_app(station_model, direct)) as c:
            r = c.request(method, "/v1/forecast", json=payload, headers=headers)
            metrics = c.get("/metrics").text
        out = r.json()
        out.pop("request_id", None)
        route = [ln for ln in metrics.splitlines() if ln.startswith("geoclim_http_requests_total{")]
        answers.append((r.status_code, out, dict(r.headers).get("www-authenticate"), route))
    assert answers[0] == answers[1]
    assert answers[0][0] == {"ok": 200, "no_key": 401, "bad_body": 422, "bad_value": 422}.get(
        case, 405
    )


def test_serve_settings_freeze_heap_freezes_after_warmup(station_model):
    keys = KeyStore()
    keys.add(KEY, Principal("direct"), method="sha256")
    app = create_app([station_model], ServeSettings(keys=keys, freeze_heap=True))
    gc.unfreeze()
    try:
        with TestClient(app):
            frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    assert frozen > 10_000  # numpy, onnxruntime, FastAPI, this test process
    with TestClient(create_app([station_model], ServeSettings(keys=keys))):
        assert gc.get_freeze_count() == 0


def test_json_answers_write_non_finite_values_as_null():
    from geoclim.serving.app import _JSON

    body = {"values": [float("nan"), 1.5, float("inf")], "model": "m", "v": None}
    assert _JSON.dump_json(body) == b'{"values":[null,1.5,null],"model":"m","v":null}'
