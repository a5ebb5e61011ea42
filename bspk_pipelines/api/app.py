"""The REST service: the Extraction API, the Platform API and the import upload, from the same
warehouse and drop folders as the pipelines. `bspk serve` runs it with uvicorn.

Every request under /api/ passes the gate first: a Bearer key (401 without a valid one; 429 after
too many failed authentications, see `auth`), then the key's rate limit (429 over it), then, for
an upload, its declared size (413 over the limit), before any body is read. The key's brand
scopes everything the routes do. Errors are `{"error": {"status", "message"}}`; an unexpected
failure is logged here and answered with a plain 500, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from bspk_pipelines.api import extraction, imports, platform, shopify
from bspk_pipelines.api.auth import Refusal
from bspk_pipelines.api.deps import Service
from bspk_pipelines.api.responses import error_response
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.brand_file import load_brands
from bspk_pipelines.outbound.settings import WebhookSettings
from bspk_pipelines.settings import ApiSettings, Settings
from bspk_pipelines.shopify.webhooks import Pulls
from bspk_pipelines.warehouse.engine import engine_for

log = logging.getLogger("bspk.api")

API_PREFIX = "/api/"
IMPORTS_PATH = "/api/platform/v1/imports"
# Room for the multipart envelope around an upload of the largest allowed size.
MULTIPART_ALLOWANCE = 64 * 1024


class Gate:
    """ASGI middleware: authentication, rate limit and upload size, before a route runs."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        try:
            key = await self.service.auth.authenticate(headers.get("authorization", ""), scope.get("client"))
        except Exception:
            log.exception("API key check failed")
            return await error_response(500, "internal error")(scope, receive, send)
        if isinstance(key, Refusal):
            return await error_response(key.status, key.message, key.headers)(scope, receive, send)
        allowance = self.service.limiter.hit(key.key_id)
        limit_headers = allowance.headers()
        if not allowance.allowed:
            return await error_response(
                429, f"rate limit of {allowance.limit} requests per {self.service.settings.rate_window:g} s exceeded; "
                     f"retry in {limit_headers['Retry-After']} s", limit_headers)(scope, receive, send)
        if scope["method"] == "POST" and scope["path"].rstrip("/") == IMPORTS_PATH:
            refused = self._upload_refused(headers)
            if refused:
                return await error_response(*refused, limit_headers)(scope, receive, send)
        scope.setdefault("state", {})["api_key"] = key

        async def send_with_limits(message):
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in limit_headers.items():
                    out[name] = value
            await send(message)

        await self.app(scope, receive, send_with_limits)

    def _upload_refused(self, headers: Headers) -> tuple[int, str] | None:
        """An upload's Content-Length must be declared and within the limit: the body is never read past it."""
        length = headers.get("content-length")
        limit = self.service.settings.max_upload_bytes
        if length is None:
            return 411, "an upload needs a Content-Length header"
        if not length.isdigit():
            return 400, "Content-Length is not a number"
        if int(length) > limit + MULTIPART_ALLOWANCE:
            return 413, f"the upload is larger than the limit of {limit} bytes"
        return None


class PublicHost:
    """ASGI middleware: the URLs the service writes about itself (Link headers, slash redirects)
    name its public base, never the Host header a client chose: the app sees the host (and
    scheme) of `public_url` when one is set, else the address the connection reached, which is
    the socket's own and no header's."""

    def __init__(self, app, public_url: str | None):
        self.app = app
        parts = urlsplit(public_url) if public_url else None
        self.scheme, self.host = (parts.scheme, parts.netloc) if parts else (None, None)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = (self.host or own_address(scope)).encode("ascii")
            headers = [(name, value) for name, value in scope["headers"] if name != b"host"]
            scope = {**scope, "scheme": self.scheme or scope["scheme"], "headers": [*headers, (b"host", host)]}
        await self.app(scope, receive, send)


DEFAULT_PORTS = {"http": 80, "https": 443}


def own_address(scope) -> str:
    """host[:port] of the server's end of the connection, the port left out when it is the scheme's."""
    host, port = scope.get("server") or ("localhost", None)
    if ":" in host:
        host = f"[{host}]"
    return host if port in (None, DEFAULT_PORTS.get(scope["scheme"])) else f"{host}:{port}"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header", "form")]
        where = ".".join(loc)
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            return error_response(400, "the body is not valid JSON")
        return error_response(422, _validation_message(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal error")


def create_app(engine: sa.Engine | None = None, brands: list[Brand] | None = None, data_dir: str | Path | None = None,
               settings: ApiSettings | None = None) -> FastAPI:
    """The service over `engine` and the brands' drop folders under `data_dir`; each argument left
    out comes from the deployment's settings (`bspk_pipelines.settings`), as the pipelines take
    them. Every setting is read before anything is done: a mistake in one (a SettingError) stops
    the service before it touches the warehouse."""
    deployment = Settings.from_env()
    settings = settings or ApiSettings.from_env()
    webhooks = WebhookSettings.from_env()
    service = Service(
        engine=engine if engine is not None else engine_for(deployment.warehouse),
        brands={b.brand: b for b in (brands if brands is not None else load_brands(deployment.mappings_dir))},
        layout=Layout(Path(data_dir).resolve() if data_dir is not None else deployment.data_dir),
        settings=settings,
    )
    pulls = Pulls(service.engine, service.layout, service.brands)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pulls.close()  # the pulls Shopify's webhooks asked for end with the service

    app = FastAPI(
        lifespan=lifespan,
        title="BSPK data-integration API",
        version="1.0.0",
        description=(
            "The Extraction API (`/api/extraction/v1/`), the Platform API (`/api/platform/v1/`) and the import "
            "upload, served from the warehouse the pipelines fill. Authenticate with `Authorization: Bearer <key>` "
            "(keys from `bspk api-keys create`); every key sees only its own brand. Each key may make "
            f"{service.settings.rate_limit} requests per {service.settings.rate_window:g} s (X-RateLimit-Limit, "
            "X-RateLimit-Remaining; 429 beyond). Failed authentications are limited too: "
            f"{service.settings.auth_per_address} per client address and {service.settings.auth_per_key} per key id "
            f"per {service.settings.auth_window:g} s (429 with Retry-After). "
            "Errors are `{\"error\": {\"status\", \"message\"}}`."
        ),
        docs_url="/docs",
        redoc_url=None,
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.service = service
    install_error_handlers(app)
    app.include_router(extraction.router())
    app.include_router(platform.router(webhooks))
    app.include_router(imports.router())
    app.include_router(shopify.router(pulls))
    app.add_middleware(Gate, service=service)
    app.add_middleware(PublicHost, public_url=service.settings.public_url)  # outermost: before anything builds a URL
    return app
