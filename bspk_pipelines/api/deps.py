"""What the routes share: the service they work with (engine, brands, layout, limits) and the
verified key of the request, as FastAPI dependencies. `app` assembles the routers and the gate
around them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bspk_pipelines.api.auth import Authenticator
from bspk_pipelines.api.keys import ApiKey, KeyStore
from bspk_pipelines.api.ratelimit import RateLimiter
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.model.brand import Brand


@dataclass(frozen=True)
class ApiSettings:
    """Limits of the service; `from_env` reads them from BSPK_API_* variables."""

    rate_limit: int = 30  # requests per key per window, as the platform's example headers show
    rate_window: float = 10.0  # seconds
    max_upload_bytes: int = 100 * 1024 * 1024
    auth_per_address: int = 10  # failed authentications per client address per auth window
    auth_per_key: int = 30  # failed authentications per key id per auth window
    auth_window: float = 60.0  # seconds
    public_url: str | None = None  # scheme://host[:port] the Link URLs and redirects name (see app.PublicHost)

    def __post_init__(self) -> None:
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if not self.public_url.isascii() or parts.scheme not in ("http", "https") or not parts.hostname \
                    or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
                raise ValueError(f"BSPK_API_PUBLIC_URL: expected http(s)://host[:port] in ASCII (an international "
                                 f"name in its xn-- form), got {self.public_url!r}")

    @classmethod
    def from_env(cls) -> ApiSettings:
        env = os.environ
        return cls(
            rate_limit=int(env.get("BSPK_API_RATE_LIMIT", cls.rate_limit)),
            rate_window=float(env.get("BSPK_API_RATE_WINDOW", cls.rate_window)),
            max_upload_bytes=int(float(env.get("BSPK_API_MAX_UPLOAD_MB", 100)) * 1024 * 1024),
            auth_per_address=int(env.get("BSPK_API_AUTH_LIMIT_PER_ADDRESS", cls.auth_per_address)),
            auth_per_key=int(env.get("BSPK_API_AUTH_LIMIT_PER_KEY", cls.auth_per_key)),
            auth_window=float(env.get("BSPK_API_AUTH_WINDOW", cls.auth_window)),
            public_url=env.get("BSPK_API_PUBLIC_URL") or None,
        )


@dataclass
class Service:
    """What the routes work with; one per app, on `app.state.service`."""

    engine: sa.Engine
    brands: dict[str, Brand]
    layout: Layout
    settings: ApiSettings
    auth: Authenticator = field(init=False)
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.auth = Authenticator(KeyStore(self.engine), s.auth_per_address, s.auth_per_key, s.auth_window)
        self.limiter = RateLimiter(s.rate_limit, s.rate_window)


bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey", description="`Authorization: Bearer bspk_...`, "
                                                                         "a key from `bspk api-keys create`")


def current_key(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> ApiKey:
    """The verified key of the request: the gate checked it and put it there (`bearer` only
    declares the scheme in the OpenAPI document)."""
    return request.state.api_key


Key = Annotated[ApiKey, Depends(current_key)]


def service_of(request: Request) -> Service:
    """The service of the app the request reached."""
    return request.app.state.service
