"""What the routes share: the service they work with (engine, brands, layout, limits) and the
verified key of the request, as FastAPI dependencies. `app` assembles the routers and the gate
around them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bspk_pipelines.api.auth import Authenticator
from bspk_pipelines.api.keys import ApiKey, KeyStore
from bspk_pipelines.api.ratelimit import RateLimiter
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.settings import ApiSettings


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
