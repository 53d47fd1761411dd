"""A direct way into one route: its requests skip Starlette's routing and exception layers.

The point forecast (``POST /v1/forecast``) is the request the service answers most, and at
about 1 ms of CPU per request Starlette's router (a regular-expression match per route),
its exception middleware, FastAPI's exit-stack middleware and request handler (dependency
solving for a route that declares none) cost a noticeable share. :class:`DirectRoute` is a
pure ASGI middleware placed just outside Starlette's exception middleware (inside the
request-context and body-limit middlewares, so request ids, access logs, metrics and the
body limit apply as before). For a request of exactly that method and path it calls the
route's endpoint itself:

* ``scope["route"]`` is the route, as the router sets it (the metrics' ``route`` label);
* an exception raised by the endpoint goes to the app's handler for its class (the most
  specific in its MRO; an HTTP error's status first), as Starlette's exception middleware
  does; one without a handler
  (and ``Exception`` itself) propagates to the server-error middleware, as before;
* everything else (other methods, paths, a ``root_path``) goes the ordinary way, so 405,
  404 and the OpenAPI document are Starlette's and FastAPI's own.

The endpoint must take the :class:`~starlette.requests.Request` alone and return a
:class:`~starlette.responses.Response`: it reads its own body and credentials (see
``create_app``'s forecast route), so FastAPI has nothing to inject or serialise.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from geoclim.errors import ConfigError

Endpoint = Callable[[Request], Awaitable[Response]]


class DirectRoute:
    """Serve ``method path`` of ``app`` without the router (see the module docstring).

    Args:
        inner: the next ASGI app (Starlette's exception middleware and the router).
        app: the FastAPI app whose route and exception handlers are used; read when the
            middleware stack is built (the first request), after every route is added.
        path: the route's path, e.g. ``"/v1/forecast"``.
        method: its method.

    Raises:
        ConfigError: ``app`` has no such route, or its endpoint takes more than the request.

    """

    def __init__(self, inner: ASGIApp, app: FastAPI, path: str, method: str = "POST"):
        self.inner, self.path, self.method = inner, path, method
        routes = [
            r
            for r in app.routes
            if isinstance(r, APIRoute) and r.path == path and method in (r.methods or ())
        ]
        if len(routes) != 1:
            raise ConfigError(f"DirectRoute: the app has {len(routes)} routes {method} {path}")
        self.route = routes[0]
        params = list(inspect.signature(self.route.endpoint).parameters.values())
        if len(params) != 1 or params[0].annotation not in (Request, "Request"):
            raise ConfigError(
                f"DirectRoute: {method} {path}'s endpoint must take only the Request, "
                f"it takes {[p.name for p in params]}"
            )
        self.endpoint: Endpoint = self.route.endpoint
        self.handlers: dict[Any, Callable[..., Any]] = {
            k: v for k, v in app.exception_handlers.items() if k is not Exception
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if (
            scope["type"] != "http"
            or scope["path"] != self.path
            or scope["method"] != self.method
            or scope.get("root_path")
        ):
            await self.inner(scope, receive, send)
            return
        scope["route"] = self.route
        request = Request(scope, receive, send)
        try:
            response = await self.endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable[..., Any] | None:
        """The app's handler for ``exc``: the first of its classes (MRO order) with one."""
        if isinstance(exc, HTTPException) and exc.status_code in self.handlers:
            return self.handlers[exc.status_code]
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None
