"""The Platform API: create or update a client, manage webhook endpoints.

`POST clients` (and its newer name `POST shoppers`) upserts by shopper_ref through the same write
path as the associates' edits (`Platform.upsert_client`), so a change is recorded field by field
and its `client.created` / `client.updated` event is written in the same transaction. Values are
checked by the same rules as a SHOPPER file row (`validate`), after the API's spellings are
turned into the file's: consents "true"/"false" (or JSON booleans) become TRUE/FALSE.

Our choices where the reference is silent:
- attributes left out of the body are unchanged; `null` or `""` clears one (the files'
  blank-resets rule); `ignore_columns` (a `;` list) names attributes left unchanged even when
  sent, so a sender that always sends every attribute can protect the ones associates maintain.
  On creation they are left empty. An unknown name in it is a 422, not silently ignored.
- 201 with the client on creation, 200 on update; the body is the client as the Extraction API's
  `clients` endpoint shows it. A client deleted on the platform cannot be upserted (422).
- Webhook endpoints made here (origin `api`) get a fresh `whsec_` secret, returned once by the
  create call and stored encrypted (`outbound.encryption`). A target on an internal network
  (loopback, private, link-local, metadata, ...: `outbound.targets`) is a 422, unless the
  deployment allows that network; a target given by name is checked when sent. Endpoints
  from the brand's YAML (origin `config`) are listed and readable but not changed here (409):
  the YAML would put them back. PATCH `is_enabled: true` also clears a `disabled_reason` (a
  410 Gone). DELETE removes the endpoint and its deliveries (204).
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Annotated, Any

import polars as pl
import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse

from bspk_pipelines.api.deps import Key, service_of
from bspk_pipelines.api.keys import ApiKey
from bspk_pipelines.api.models import (
    Client,
    ClientBody,
    ClientFields,
    ShopperBody,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from bspk_pipelines.api.responses import (
    BAD_BODY,
    CONFLICT,
    ERRORS,
    LIMIT_HEADERS,
    NOT_FOUND,
)
from bspk_pipelines.engagement.activity import Platform
from bspk_pipelines.engagement.clients import ClientError
from bspk_pipelines.model.entities import LINE, SHOPPERS, Kind
from bspk_pipelines.outbound.events import iso
from bspk_pipelines.outbound.settings import WebhookSettings
from bspk_pipelines.outbound.targets import RefusedTarget, TargetPolicy
from bspk_pipelines.outbound.views import VIEWS
from bspk_pipelines.ingest.rules import validate
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.platform import (
    CLIENT_FIELDS,
    webhook_deliveries,
    webhook_endpoints,
)
from bspk_pipelines.warehouse.engine import writing

PREFIX = "/api/platform/v1"
EndpointId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the endpoint's id")]


# --- clients ---------------------------------------------------------------------------------

def ignored(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(";") if n.strip()]
    unknown = [n for n in names if n not in CLIENT_FIELDS]
    if unknown:
        raise HTTPException(422, f"ignore_columns: unknown attribute(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(CLIENT_FIELDS)}")
    return names


def _as_file_text(name: str, value: Any) -> str | None:
    """The value as a SHOPPER file would carry it: blank for null or "", TRUE/FALSE for consents."""
    if value is None or value == "":
        return None
    if SHOPPERS.column(name).kind is Kind.BOOL:
        return "TRUE" if value is True or str(value).lower() == "true" else "FALSE"
    return str(value)


def checked_values(fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(shopper_ref, typed attribute values) by the SHOPPER file rules, or a 422 naming each problem."""
    text = {name: [_as_file_text(name, v) if name != "shopper_ref" else v] for name, v in fields.items()}
    frame = pl.DataFrame({**text, LINE: [1]}, schema={**{n: pl.Utf8 for n in text}, LINE: pl.Int64})
    checked = validate(SHOPPERS, frame)
    if checked.rejects:
        raise HTTPException(422, "; ".join(
            f"{p.column}: {p.message}" + (f" (found {p.value!r})" if p.value else "") for p in checked.rejects))
    row = checked.rows.row(0, named=True)
    return row["shopper_ref"], {n: row[n] for n in fields if n != "shopper_ref"}


def client_record(conn: sa.Connection, brand: str, shopper_ref: str) -> dict[str, Any]:
    view = VIEWS["clients"]
    row = conn.execute(view.filtered(brand, client_ids=[shopper_ref])).mappings().one()
    return view.shape(dict(row))


def upsert(request: Request, key: ApiKey, fields: ClientFields) -> JSONResponse:  # type: ignore[valid-type]
    data = fields.model_dump(exclude_unset=True)
    ignore = ignored(data.pop("ignore_columns", None))
    shopper_ref, values = checked_values(data)
    service = service_of(request)
    platform = Platform(service.engine, key.brand)
    for attempt in range(2):
        try:
            created = platform.upsert_client(shopper_ref, values, by=f"api-key:{key.key_id}", ignore=ignore)
            break
        except ClientError as e:
            raise HTTPException(422, str(e)) from None
        except sa.exc.IntegrityError:
            # Two requests created the same new client at once: the second one is an update.
            if attempt:
                raise
    with service.engine.connect() as conn:
        record = client_record(conn, key.brand, shopper_ref)
    return JSONResponse(record, status_code=201 if created else 200)


UPSERT_RESPONSES = {
    200: {"model": Client, "description": "updated", "headers": LIMIT_HEADERS},
    201: {"model": Client, "description": "created", "headers": LIMIT_HEADERS},
    **ERRORS, **BAD_BODY,
}


# --- webhook endpoints -----------------------------------------------------------------------

def _endpoint_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "target_url": row["target_url"], "events": json.loads(row["events"]),
        "is_enabled": bool(row["is_enabled"]), "origin": row["origin"], "disabled_reason": row["disabled_reason"],
        "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
    }


def _find(conn: sa.Connection, brand: str, endpoint_id: int) -> dict[str, Any]:
    e = webhook_endpoints.c
    row = conn.execute(sa.select(webhook_endpoints).where(e.brand == brand, e.id == endpoint_id)).mappings().first()
    if row is None:
        raise HTTPException(404, f"no webhook endpoint {endpoint_id}")
    return dict(row)


def _editable(conn: sa.Connection, brand: str, endpoint_id: int) -> dict[str, Any]:
    row = _find(conn, brand, endpoint_id)
    if row["origin"] != "api":
        raise HTTPException(409, f"webhook endpoint {endpoint_id} comes from the brand's configuration file; "
                                 "change it there")
    return row


def _url_taken(conn: sa.Connection, brand: str, url: str, but: int | None = None) -> None:
    e = webhook_endpoints.c
    query = sa.select(e.id).where(e.brand == brand, e.target_url == url)
    if but is not None:
        query = query.where(e.id != but)
    if conn.execute(query).first():
        raise HTTPException(409, f"the brand already has a webhook endpoint for {url}")


def _reachable(targets: TargetPolicy, url: str) -> None:
    try:
        targets.check_url(url)
    except RefusedTarget as e:
        raise HTTPException(422, f"target_url: {e}; webhooks are sent to public addresses only") from None


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def router(settings: WebhookSettings | None = None) -> APIRouter:
    """The Platform API's routes; webhook `settings` (keys, allowed networks) default to the environment's."""
    settings = settings or WebhookSettings.from_env()
    api = APIRouter(prefix=PREFIX, tags=["Platform API"])

    @api.post("/clients", status_code=201, response_model=Client, responses=UPSERT_RESPONSES,
              summary="Create or update a client")
    def upsert_client(body: ClientBody, request: Request, key: Key) -> JSONResponse:
        """Create the client if its shopper_ref is new for the brand, else update it (see ignore_columns)."""
        return upsert(request, key, body.client)

    @api.post("/shoppers", status_code=201, response_model=Client, responses=UPSERT_RESPONSES,
              summary="Create or update a shopper")
    def upsert_shopper(body: ShopperBody, request: Request, key: Key) -> JSONResponse:
        """The newer name of `POST clients`: the same fields under `shopper`."""
        return upsert(request, key, body.shopper)

    ok = {"headers": LIMIT_HEADERS}

    @api.get("/webhook_endpoints", response_model=list[WebhookEndpoint], summary="List webhook endpoints",
             responses={200: {"description": "the brand's endpoints, API-made and from its configuration", **ok},
                        **ERRORS})
    def list_endpoints(request: Request, key: Key) -> JSONResponse:
        e = webhook_endpoints.c
        with service_of(request).engine.connect() as conn:
            rows = conn.execute(sa.select(webhook_endpoints).where(e.brand == key.brand).order_by(e.id)).mappings()
            return JSONResponse([_endpoint_object(dict(r)) for r in rows])

    @api.post("/webhook_endpoints", status_code=201, response_model=WebhookEndpointWithSecret,
              summary="Create a webhook endpoint",
              responses={201: {"description": "created; `secret` is shown this once", **ok}, **ERRORS, **BAD_BODY, **CONFLICT})
    def create_endpoint(body: WebhookEndpointCreate, request: Request,
                        key: Key) -> JSONResponse:
        """The answer carries the endpoint's signing `secret`: the only time it is shown."""
        _reachable(settings.targets, body.target_url)
        at = now()
        secret = new_secret()
        with writing(service_of(request).engine) as conn:
            _url_taken(conn, key.brand, body.target_url)
            endpoint_id = conn.execute(webhook_endpoints.insert().values(
                brand=key.brand, target_url=body.target_url, events=json.dumps(list(dict.fromkeys(body.events))),
                is_enabled=body.is_enabled, origin="api", secret=settings.box.encrypt(secret), created_at=at, updated_at=at,
            )).inserted_primary_key[0]
            created = {**_endpoint_object(_find(conn, key.brand, endpoint_id)), "secret": secret}
        return JSONResponse(created, status_code=201)

    @api.get("/webhook_endpoints/{endpoint_id}", response_model=WebhookEndpoint, summary="Get a webhook endpoint",
             responses={200: ok, **ERRORS, **NOT_FOUND})
    def get_endpoint(endpoint_id: EndpointId, request: Request, key: Key) -> JSONResponse:
        with service_of(request).engine.connect() as conn:
            return JSONResponse(_endpoint_object(_find(conn, key.brand, endpoint_id)))

    @api.patch("/webhook_endpoints/{endpoint_id}", response_model=WebhookEndpoint,
               summary="Update a webhook endpoint",
               responses={200: ok, **ERRORS, **BAD_BODY, **NOT_FOUND, **CONFLICT})
    def update_endpoint(endpoint_id: EndpointId, body: WebhookEndpointUpdate, request: Request,
                        key: Key) -> JSONResponse:
        """Fields left out stay as they are; `is_enabled: true` also clears a disabled_reason."""
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        if "target_url" in changes:
            _reachable(settings.targets, changes["target_url"])
        with writing(service_of(request).engine) as conn:
            _editable(conn, key.brand, endpoint_id)
            if "target_url" in changes:
                _url_taken(conn, key.brand, changes["target_url"], but=endpoint_id)
            if "events" in changes:
                changes["events"] = json.dumps(list(dict.fromkeys(changes["events"])))
            if changes.get("is_enabled"):
                changes["disabled_reason"] = None
            if changes:
                conn.execute(webhook_endpoints.update().where(webhook_endpoints.c.id == endpoint_id)
                             .values(**changes, updated_at=now()))
            updated = _endpoint_object(_find(conn, key.brand, endpoint_id))
        return JSONResponse(updated)

    @api.delete("/webhook_endpoints/{endpoint_id}", status_code=204, response_class=Response,
                summary="Delete a webhook endpoint",
                responses={204: {"description": "deleted", **ok}, **ERRORS, **NOT_FOUND, **CONFLICT})
    def delete_endpoint(endpoint_id: EndpointId, request: Request, key: Key) -> Response:
        """The endpoint and its deliveries (pending or not) go; nothing more is sent to it."""
        with writing(service_of(request).engine) as conn:
            _editable(conn, key.brand, endpoint_id)
            conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.brand == key.brand,
                                                           webhook_deliveries.c.endpoint_id == endpoint_id))
            conn.execute(webhook_endpoints.delete().where(webhook_endpoints.c.id == endpoint_id))
        return Response(status_code=204)

    return api
