"""The HTTP service: FastAPI around one or more :class:`~geoclim.serving.adapter.Forecaster`.

Routes::

    POST /v1/forecast          JSON point forecasts (one location or a batch)   auth
    POST /v1/forecast/netcdf   netCDF history upload -> netCDF forecast (grids)  auth
    POST /v1/explain           variable x lag attributions per lead (points)      auth
    GET  /v1/models            served models and their metadata                  auth
    GET  /v1/models/{name}     one model                                         auth
    GET  /health               liveness
    GET  /ready                readiness (models loaded and warmed up), else 503
    GET  /metrics              Prometheus exposition

Status codes: 200; 401 (no or bad credentials, with ``WWW-Authenticate``); 403 (the key
may not use that model); 404 (unknown model or route); 413 (body over the limit); 422
(schema or data problem, the message names the value and what was expected); 429 (rate
limit, with ``Retry-After``); 503 (not ready). Every error body is an
:class:`~geoclim.serving.schemas.ErrorResponse` carrying the request id. Inference runs in
FastAPI's thread pool (onnxruntime releases the GIL), so requests overlap.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route signatures'
# annotations at runtime, and those of routes defined inside create_app refer to its locals.
import contextlib
import functools
import gc
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import xarray as xr
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, Security, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ConfigDict, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

import geoclim
from geoclim import fileio
from geoclim.errors import GeoclimError
from geoclim.serving.adapter import Forecaster
from geoclim.serving.direct import DirectRoute
from geoclim.serving.docs import document_schema, forecast_openapi, mount_docs
from geoclim.serving.drift import install as install_drift
from geoclim.serving.observability import (
    BodyLimitMiddleware,
    Metrics,
    RequestContextMiddleware,
    flush_logs,
    request_id_var,
)
from geoclim.serving.records import forecast_records
from geoclim.serving.schemas import (
    ErrorResponse,
    ExplainRequest,
    ExplainResponse,
    ForecastRequest,
    ForecastResponse,
    ModelInfo,
)
from geoclim.serving.security import (
    JWTConfig,
    KeyStore,
    MetricsTokenMiddleware,
    Principal,
    RateLimiter,
    check_metrics_token,
)

log = logging.getLogger(__name__)

ANONYMOUS = Principal(
    "anonymous", ("*",), rate_per_minute=math.inf, burst=1 << 30, method="anonymous"
)
MAX_DECODED_BYTES = 512 * 1024 * 1024
"""Largest uncompressed size of an uploaded netCDF history."""
INLINE_LOCATIONS = 8
"""Point requests up to this size run on the event loop; larger ones in the thread pool."""
_JSON = TypeAdapter(Any, config=ConfigDict(ser_json_inf_nan="null"))
"""Writes the JSON answers: pydantic-core's serialiser, about 5x ``json.dumps`` on their
nested float lists. A value that is not finite (records already write None) becomes null."""
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (401, "Missing or invalid credentials"),
        (403, "Key may not use this model"),
        (404, "Unknown model"),
        (413, "Request body too large"),
        (422, "Invalid request"),
        (429, "Rate limit exceeded"),
    )
}


@dataclass
class ServedModel:
    """A loaded model and where it came from."""

    name: str
    forecaster: Forecaster
    path: str
    version: str | None = None


@dataclass
class ServeSettings:
    """Service settings.

    Attributes:
        keys: API keys; ``None`` with ``jwt`` ``None`` disables authentication (local use).
        jwt: accept HS256 bearer tokens.
        max_body_bytes: request size limit (413 above).
        max_missing: default accepted fraction of missing inputs (requests may lower or
            raise it).
        metrics_token: when set, ``/metrics`` needs ``Authorization: Bearer <token>``.
        drift_block: refuse (422) requests whose inputs drift from the training data
            (default: answer with a warning; see :mod:`geoclim.serving.drift`).
        freeze_heap: after the warm-up, collect once and move every object alive then
            (about 0.7 M: numpy, onnxruntime, pydantic, FastAPI) out of the garbage
            collector's reach (``gc.freeze``). A full collection of that heap takes
            0.1-0.25 s on the benchmark machine, a pause every queued request would wait
            out; later collections scan only what requests leave behind. For a server
            process (``geoclim serve`` sets it), not for an app inside a test process.

    """

    keys: KeyStore | None = None
    jwt: JWTConfig | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_missing: float = 0.0
    metrics_token: str | None = None
    drift_block: bool = False
    freeze_heap: bool = False

    def __post_init__(self) -> None:
        if self.metrics_token is not None:
            check_metrics_token(self.metrics_token)


class APIError(Exception):
    """An error answer with a status, a kind and a message."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.error, self.message, self.headers = status, error, message, headers


def _error_response(
    status: int,
    error: str,
    message: str,
    *,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(
        error=error, message=message, request_id=request_id_var.get(), detail=detail
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def create_app(models: list[ServedModel], settings: ServeSettings | None = None) -> FastAPI:
    """Build the app.

    Args:
        models: the models to serve; the first is the default.
        settings: security and limits (default: no authentication).

    Returns:
        The FastAPI application (run it with uvicorn).

    """
    if not models:
        raise GeoclimError("create_app needs at least one model to serve")
    settings = settings or ServeSettings()
    by_name = {m.name: m for m in models}
    metrics, limiter = Metrics(), RateLimiter()
    state = {"ready": False}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for m in models:
            m.forecaster.warmup()
        if settings.freeze_heap:
            gc.collect()
            gc.freeze()
        state["ready"] = True
        metrics.ready.set(1)
        log.info("serving models %s", list(by_name))
        yield
        state["ready"] = False
        metrics.ready.set(0)
        flush_logs()  # a worker process ends by a re-raised SIGTERM, without atexit

    app = FastAPI(
        title="geoclim forecast service",
        version=geoclim.__version__,
        lifespan=lifespan,
        description=__doc__.split("\n\n")[0],
        docs_url=None,
        redoc_url=None,
    )
    mount_docs(app)  # Swagger UI / ReDoc from local assets (work offline)
    install_drift(models, metrics.registry, block=settings.drift_block)
    app.add_middleware(DirectRoute, app=app, path="/v1/forecast")  # innermost: see direct.py
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.metrics_token is not None:
        app.add_middleware(MetricsTokenMiddleware, token=settings.metrics_token)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
    bearer = HTTPBearer(auto_error=False)

    async def authenticate(
        request: Request,
        key: Annotated[str | None, Security(api_key_header)] = None,
        token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
    ) -> Principal:
        return await admit(request, key, token.credentials if token is not None else None)

    async def admit(request: Request, key: str | None, token: str | None) -> Principal:
        """The caller's principal (401 without valid credentials, 429 over its rate)."""
        if settings.keys is None and settings.jwt is None:
            principal: Principal | None = ANONYMOUS
        elif key is not None and settings.keys is not None:
            principal = settings.keys.cached(key)
            if principal is None:  # first use of this key: scrypt, off the event loop
                principal = await run_in_threadpool(settings.keys.authenticate, key)
        elif token is not None and settings.jwt is not None:
            principal = settings.jwt.authenticate(token)
        else:
            principal = None
        if principal is None:
            raise APIError(
                401,
                "unauthorized",
                "missing or invalid credentials: send a valid "
                "X-API-Key header" + (" or Authorization: Bearer <JWT>" if settings.jwt else ""),
                headers={"WWW-Authenticate": 'Bearer, ApiKey header="X-API-Key"'},
            )
        request.state.principal = principal.id
        wait = limiter.acquire(principal)
        if wait > 0:
            raise APIError(
                429,
                "rate_limited",
                f"rate limit of {principal.rate_per_minute:g} requests/minute "
                f"exceeded for {principal.id!r}; retry in {wait:.1f} s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return principal

    def resolve(name: str | None, principal: Principal, request: Request) -> ServedModel:
        name = name or models[0].name
        if name not in by_name:
            raise APIError(
                404, "model_not_found", f"unknown model {name!r}; served models are {list(by_name)}"
            )
        if not principal.may_use(name):
            raise APIError(
                403,
                "forbidden",
                f"key {principal.id!r} may not use model {name!r}; "
                f"it may use {list(principal.models)}",
            )
        request.state.model = name
        return by_name[name]

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc.status, exc.error, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {
                "loc": [str(x) for x in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc'])}: {first['msg']}"
        if len(detail) > 1:
            message += f" (and {len(detail) - 1} more problem(s), see detail)"
        return _error_response(422, "validation_error", message, detail=detail[:20])

    @app.exception_handler(GeoclimError)
    async def _geoclim(request: Request, exc: GeoclimError) -> JSONResponse:
        return _error_response(422, "invalid_request", str(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # registered for HTTP errors only
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error_response(
            exc.status_code, kind, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    app.add_exception_handler(StarletteHTTPException, _http)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error_response(500, "internal_error", "internal error; quote the request id")

    auth = Depends(authenticate)
    example = models[0].forecaster.example_request()

    @app.post(
        "/v1/forecast",
        response_model=ForecastResponse,
        responses=_ERRORS,
        tags=["forecast"],
        summary="Point forecasts for one location or a batch",
        openapi_extra=forecast_openapi(example),
    )
    async def forecast(request: Request) -> Response:
        # JSON in the ForecastResponse schema (response_model documents it). The body and
        # the credentials are read here rather than declared (openapi_extra documents them
        # as FastAPI would): FastAPI's dependency solving and its json.loads + validation
        # cost about 0.2 ms per request, pydantic's JSON parser 20 us.
        principal = await admit(request, *_credentials(request))
        body = _forecast_request(await request.body(), request.headers.get("content-type"))
        served = resolve(body.model, principal, request)
        answer = functools.partial(
            _json_answer, forecast_records, served, body, settings, metrics, len(body.locations)
        )
        if len(body.locations) <= INLINE_LOCATIONS:  # 1-2 ms CPU: cheaper than a thread hop
            return answer()
        return await run_in_threadpool(answer)

    @app.post(
        "/v1/explain",
        response_model=ExplainResponse,
        responses=_ERRORS,
        tags=["explain"],
        summary="Attributions of point forecasts to each input variable and lag, per lead",
    )
    async def explain(
        request: Request, body: ExplainRequest, principal: Principal = auth
    ) -> Response:
        from geoclim.serving.explain import explain_records  # SHAP-style runs: on demand

        served = resolve(body.model, principal, request)  # many model runs: off the loop
        return await run_in_threadpool(
            _json_answer, explain_records, served, body, settings, metrics
        )

    @app.post(
        "/v1/forecast/netcdf",
        responses=_ERRORS
        | {
            200: {
                "content": {"application/x-netcdf": {}},
                "description": "Forecast Dataset (netCDF)",
            }
        },
        tags=["forecast"],
        summary="Gridded (or station) forecast from a netCDF history",
    )
    def forecast_netcdf(
        request: Request,
        file: Annotated[UploadFile, File(description="netCDF history in the canonical layout")],
        model: Annotated[str | None, Form(max_length=100)] = None,
        max_missing: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
        principal: Principal = auth,
    ) -> Response:
        served = resolve(model, principal, request)
        history = _read_netcdf(file)
        start = time.perf_counter()
        out = served.forecaster.predict(
            history, max_missing=settings.max_missing if max_missing is None else max_missing
        )
        metrics.inference.labels(served.name).observe(time.perf_counter() - start)
        metrics.locations.labels(served.name).inc(out.sizes.get("init_time", 1))
        warning = {"X-Geoclim-Warning": out.attrs["warnings"]} if "warnings" in out.attrs else None
        return Response(_to_netcdf(out), media_type="application/x-netcdf", headers=warning)

    @app.get(
        "/v1/models",
        response_model=list[ModelInfo],
        responses=_ERRORS,
        tags=["models"],
        summary="Served models",
    )
    async def list_models(principal: Principal = auth) -> list[ModelInfo]:
        return [_info(m) for m in models if principal.may_use(m.name)]

    @app.get(
        "/v1/models/{name}",
        response_model=ModelInfo,
        responses=_ERRORS,
        tags=["models"],
        summary="One served model",
    )
    async def get_model(name: str, request: Request, principal: Principal = auth) -> ModelInfo:
        return _info(resolve(name, principal, request))

    @app.get("/health", tags=["ops"], summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": geoclim.__version__}

    @app.get(
        "/ready",
        tags=["ops"],
        summary="Readiness",
        responses={503: {"model": ErrorResponse, "description": "Not ready"}},
    )
    async def ready() -> Any:
        if not state["ready"]:
            return _error_response(503, "not_ready", "models are still loading")
        return {"status": "ready", "models": list(by_name)}

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.metrics, app.state.models = metrics, by_name
    document_schema(app, ForecastRequest)
    return app


def _credentials(request: Request) -> tuple[str | None, str | None]:
    """``(X-API-Key, bearer token)`` of a request.

    Read as FastAPI's ``APIKeyHeader`` and ``HTTPBearer`` (``auto_error=False``) read them:
    empty or non-bearer values are ``None``.
    """
    headers = request.headers
    key = headers.get("x-api-key") or None
    scheme, token = get_authorization_scheme_param(headers.get("authorization"))
    return key, token if scheme.lower() == "bearer" and token else None


def _forecast_request(raw: bytes, content_type: str | None) -> ForecastRequest:
    """The validated ``POST /v1/forecast`` body; 422 as for a declared body otherwise.

    Raises:
        RequestValidationError: not JSON (by ``Content-Type`` or content), or not a valid
            :class:`~geoclim.serving.schemas.ForecastRequest` (``loc`` starts with ``body``).
    """
    if content_type is not None:
        kind = content_type.partition(";")[0].strip().lower()
        if kind != "application/json" and not (
            kind.startswith("application/") and kind.endswith("+json")
        ):
            raise RequestValidationError(
                [
                    {
                        "loc": ("body",),
                        "msg": f"expected a JSON body (Content-Type: application/json), "
                        f"got {kind!r}",
                        "type": "content_type",
                    }
                ]
            )
    try:
        return ForecastRequest.model_validate_json(raw)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def _info(m: ServedModel) -> ModelInfo:
    return ModelInfo(
        name=m.name,
        version=m.version,
        path=os.path.basename(m.path),
        metadata=m.forecaster.metadata.summary(),
    )


def _json_answer(
    records: Callable[..., dict[str, Any]],
    served: ServedModel,
    body: ForecastRequest | ExplainRequest,
    settings: ServeSettings,
    metrics: Metrics,
    locations: int = 0,
) -> Response:
    """Answer a JSON request with ``records(forecaster, body, ...)``, timed and counted.

    ``records`` is :func:`~geoclim.serving.records.forecast_records` or
    :func:`~geoclim.serving.explain.explain_records`; the request's ``max_missing`` wins
    over the service default. The answer is serialised here directly (``_JSON``, of plain
    lists) rather than through the response model: that halves the serving overhead of a
    one-location forecast.

    Args:
        records: builds the response document.
        served: the model.
        body: the validated request.
        settings: the service settings.
        metrics: the app's collectors (inference time; ``locations`` forecast, if any).
        locations: locations to count in ``geoclim_forecast_locations_total``.

    Returns:
        The JSON response.

    """
    start = time.perf_counter()
    payload = records(
        served.forecaster,
        body,
        name=served.name,
        version=served.version,
        max_missing=settings.max_missing if body.max_missing is None else body.max_missing,
    )
    metrics.inference.labels(served.name).observe(time.perf_counter() - start)
    if locations:
        metrics.locations.labels(served.name).inc(locations)
    return Response(_JSON.dump_json(payload), media_type="application/json")


def _read_netcdf(file: UploadFile) -> xr.Dataset:
    with fileio.NETCDF_LOCK, tempfile.NamedTemporaryFile(suffix=".nc") as tmp:
        tmp.write(file.file.read())
        tmp.flush()
        try:
            with xr.open_dataset(tmp.name) as ds:
                decoded = sum(v.nbytes for v in ds.variables.values())
                if decoded > MAX_DECODED_BYTES:  # compressed variables can expand a lot
                    raise APIError(
                        413,
                        "payload_too_large",
                        f"upload {file.filename!r} "
                        f"decodes to {decoded} bytes; the limit is "
                        f"{MAX_DECODED_BYTES}",
                    )
                return ds.load()
        except APIError:
            raise
        except Exception as err:  # noqa: BLE001 - netCDF/HDF5 backends raise many types
            raise APIError(
                422,
                "invalid_file",
                f"upload {file.filename!r} is not a readable netCDF file ({type(err).__name__})",
            ) from None


def _to_netcdf(ds: xr.Dataset) -> bytes:
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if isinstance(v, (str, int, float))}
    with fileio.NETCDF_LOCK, tempfile.TemporaryDirectory() as tmp:  # requests run in threads
        path = os.path.join(tmp, "forecast.nc")
        ds.to_netcdf(path)
        with open(path, "rb") as f:
            return f.read()
