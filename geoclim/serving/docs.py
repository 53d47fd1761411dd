"""The API's documents: Swagger UI and ReDoc from local assets, and the OpenAPI additions.

:func:`mount_docs` serves ``/docs`` and ``/redoc`` offline. The forecast route parses its own
body (``ForecastRequest.model_validate_json``), so FastAPI would not document it:
:func:`forecast_openapi` declares its body and security and :func:`document_schema` adds the
request model to the document's components.

The JavaScript / CSS come from the ``fastapi-offline`` package (the ``serve`` extra), served
under :data:`ASSETS`; FastAPI's own pages would load them from a CDN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

ASSETS = "/docs-assets"
"""URL prefix of the local Swagger UI / ReDoc files."""


def asset_dir() -> Path:
    """The folder holding ``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js``."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def mount_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/docs/oauth2-redirect`` and ``/redoc`` using local assets.

    The app must be created with ``docs_url=None, redoc_url=None``.
    """
    app.mount(ASSETS, StaticFiles(directory=asset_dir()), name="docs-assets")
    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def forecast_openapi(example: dict[str, Any]) -> dict[str, Any]:
    """The forecast route's request body and security, as FastAPI documents declared ones."""
    return {
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/ForecastRequest"},
                    "examples": {
                        "one_location": {
                            "summary": "One location, default model",
                            "value": example,
                        }
                    },
                }
            },
            "required": True,
        },
        "security": [{"APIKeyHeader": []}, {"HTTPBearer": []}],
    }


def document_schema(app: FastAPI, model: type[BaseModel]) -> None:
    """Add ``model`` (and the models it refers to) to the OpenAPI components of ``app``."""
    base = app.openapi

    done: dict[str, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        if "spec" not in done:
            spec = base()  # FastAPI's document (also cached in app.openapi_schema)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in doc.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas.setdefault(model.__name__, doc)
            spec["components"]["schemas"] = dict(sorted(schemas.items()))
            done["spec"] = spec
        return done["spec"]

    app.openapi = openapi  # type: ignore[method-assign]
