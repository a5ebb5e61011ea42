"""The Extraction API: `GET /api/extraction/v1/<view>` for each view of `outbound.views`.

Rules, from the platform's reference and our choices where it is silent:

- `client_ids` or `sales_associate_ids` (comma lists), not both (422); a parameter the endpoint
  does not take (`client_ids` on slices and sales_associates, `page` on ideabook_actions, any
  unknown name) is a 422 too, rather than silently ignored.
- `from` / `to` bound the record's **updated** time, both inclusive (the endpoint pages say
  updated; the OpenAPI intro's "created" would miss later edits). A time without an offset is UTC.
- Order is (updated time, id), oldest first. `page` (default 1) and `per_page` (default 30, at
  most 100); `X-Total-Count`; `Link` with `next` and `last`; a weak `ETag` honoured by
  `If-None-Match` (304). `ideabook_actions` is not paginated: all matching records, no
  pagination headers.

Stable pages. A listing is a snapshot: the first page fixes `as_of` (now), and only records
updated at or before it belong to the listing, so rows added or edited while a client pages
through do not shift it (they are picked up by the next sync, `from` = that `as_of`). `next`
links carry `as_of` and a keyset cursor `after` (the last record's updated time and id), so a
page starts exactly after the previous one whatever changed before it. `last` links carry
`as_of` and a page number (offset within the snapshot). `X-Total-Count` counts the snapshot; it
can only go down during a listing, when a record of it is edited (the edit moves it past `as_of`,
into the next sync). An import's transaction stamps its rows when it starts and commits later,
so an incremental consumer should start its next sync a little before the previous `as_of`
(the extracts look back 5 minutes by default) and de-duplicate on (id, updated_at).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which name
# per-view dependencies built in closures.
import base64
import inspect
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel

from bspk_pipelines.api.deps import Key, service_of
from bspk_pipelines.api.models import RECORDS
from bspk_pipelines.api.responses import (
    ERRORS,
    ETAG_HEADER,
    LIMIT_HEADERS,
    PAGE_HEADERS,
    not_modified_or,
    paging_links,
)
from bspk_pipelines.outbound.views import VIEWS, View
from bspk_pipelines.warehouse.apply import now

PREFIX = "/api/extraction/v1"
MAX_PAGE = 1_000_000  # keeps OFFSET within a 64-bit integer whatever per_page is
MAX_IDS = 500
ID_LIST_CHARS = 20_000

SUMMARIES = {
    "clients": "List clients", "calls": "List calls", "messages": "List messages", "emails": "List emails",
    "notes": "List notes", "appointments": "List appointments", "reminders": "List reminders",
    "slices": "List slices", "sales_associates": "List sales associates",
    "ideabook_actions": "List idea book actions (not paginated)",
}


class Listing(BaseModel):
    """The parameters of one list request, checked."""

    since: datetime | None = None
    until: datetime | None = None
    client_ids: list[str] | None = None
    associate_ids: list[str] | None = None
    page: int = 1
    per_page: int = 30
    as_of: datetime | None = None
    after: tuple[datetime, Any] | None = None


def naive_utc(value: datetime | None, name: str) -> datetime | None:
    """The warehouse's time: naive UTC. A value without an offset is taken as UTC."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise HTTPException(422, f"{name}: out of range") from None


def _ids(text: str | None, name: str) -> list[str] | None:
    if text is None:
        return None
    ids = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not ids:
        raise HTTPException(422, f"{name}: a comma-separated list of at least one id, such as ID1,ID2")
    if len(ids) > MAX_IDS:
        raise HTTPException(422, f"{name}: at most {MAX_IDS} ids per request")
    if any("\x00" in i for i in ids):
        raise HTTPException(422, f"{name}: must not contain NUL characters")
    return ids


def encode_cursor(updated_at: datetime, row_id: Any) -> str:
    raw = json.dumps([updated_at.isoformat(), row_id], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def id_type(view: View) -> type:
    """The Python type of the view's ids (int or str), as its query selects them (for any brand)."""
    return view.query("").selected_columns["_id"].type.python_type


def decode_cursor(text: str, ids: type) -> tuple[datetime, Any]:
    """The (updated time, id) an `after` cursor carries, checked to be one the view's query can
    compare with: an id of the view's type, an integer within 64 bits, text the databases store."""
    try:
        updated_at, row_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if type(row_id) is not ids:  # `type is`: a JSON true is no id either
            raise TypeError(row_id)
        if ids is int and not -(2**63) <= row_id < 2**63:
            raise ValueError(row_id)
        if ids is str:
            row_id.encode("utf-8")  # a lone surrogate has no UTF-8: neither database takes it
            if "\x00" in row_id:  # PostgreSQL's text refuses NUL
                raise ValueError(row_id)
        at = datetime.fromisoformat(updated_at)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise HTTPException(422, "after: not a cursor this API wrote; follow the Link header's next URL") from None
    return naive_utc(at, "after"), row_id


def accepted_parameters(view: View) -> dict[str, inspect.Parameter]:
    """The query parameters `view`'s endpoint takes, as FastAPI declares them."""
    def param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)

    out = {}
    if view.client_column:
        out["client_ids"] = param("client_ids", str | None, Query(
            None, max_length=ID_LIST_CHARS, description="comma list of the brand's client ids (shopper_ref); "
                                                        "not together with sales_associate_ids"))
    if view.associate_column:
        out["sales_associate_ids"] = param("sales_associate_ids", str | None, Query(
            None, max_length=ID_LIST_CHARS, description="comma list of sales associate ids"
                                                        + ("; not together with client_ids" if view.client_column else "")))
    out["from"] = param("since", datetime | None, Query(
        None, alias="from", description="updated at or after this time (ISO 8601; no offset means UTC)"))
    out["to"] = param("until", datetime | None, Query(None, alias="to", description="updated at or before this time"))
    if view.paginated:
        out["page"] = param("page", int, Query(1, ge=1, le=MAX_PAGE, description="page number, from 1"))
        out["per_page"] = param("per_page", int, Query(30, ge=1, le=100, description="records per page, at most 100"))
        out["as_of"] = param("as_of", datetime | None, Query(
            None, description="snapshot time of a listing; set by the Link URLs (default: now)"))
        out["after"] = param("after", str | None, Query(
            None, max_length=400, description="keyset cursor; set by the Link header's next URL"))
    return out


def listing_dependency(view: View) -> Callable[..., Listing]:
    """A FastAPI dependency reading `view`'s query parameters, refusing the ones it does not take."""
    params = accepted_parameters(view)
    ids = id_type(view)

    def read(request: Request, **values: Any) -> Listing:
        unknown = sorted(set(request.query_params) - set(params))
        if unknown:
            raise HTTPException(422, f"{view.name} does not take {', '.join(unknown)}; it takes {', '.join(params)}")
        client_ids = _ids(values.get("client_ids"), "client_ids")
        associate_ids = _ids(values.get("sales_associate_ids"), "sales_associate_ids")
        if client_ids is not None and associate_ids is not None:
            raise HTTPException(422, "client_ids and sales_associate_ids cannot be combined: send one of them")
        since, until = naive_utc(values.get("since"), "from"), naive_utc(values.get("until"), "to")
        if since and until and since > until:
            raise HTTPException(422, "from is after to")
        after = values.get("after")
        return Listing(since=since, until=until, client_ids=client_ids, associate_ids=associate_ids,
                       page=values.get("page", 1), per_page=values.get("per_page", 30),
                       as_of=naive_utc(values.get("as_of"), "as_of"), after=decode_cursor(after, ids) if after else None)

    read.__signature__ = inspect.Signature(
        [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
         *params.values()])
    return read


def _keyset(query: sa.Select, after: tuple[datetime, Any]) -> sa.Select:
    updated, row_id = query.selected_columns["_updated_at"], query.selected_columns["_id"]
    at, last = after
    return query.where(sa.or_(updated > at, sa.and_(updated == at, row_id > last)))


def fetch(conn: sa.Connection, view: View, brand: str, listing: Listing) -> tuple[list[dict], int | None, Any]:
    """The page's records, the snapshot's total (None when not paginated) and the last row's
    (updated time, id), with one row more fetched to know whether a next page exists."""
    until = listing.until
    if view.paginated:
        until = min(until, listing.as_of) if until else listing.as_of
    query = view.filtered(brand, listing.since, until, listing.client_ids, listing.associate_ids)
    order = (query.selected_columns["_updated_at"], query.selected_columns["_id"])
    if not view.paginated:
        rows = conn.execute(query.order_by(*order)).mappings().all()
        return [view.shape(dict(r)) for r in rows], None, None
    total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    page = query.order_by(*order).limit(listing.per_page + 1)
    page = _keyset(page, listing.after) if listing.after else page.offset((listing.page - 1) * listing.per_page)
    rows = conn.execute(page).mappings().all()
    more = len(rows) > listing.per_page
    rows = rows[:listing.per_page]
    last = (rows[-1]["_updated_at"], rows[-1]["_id"]) if rows and more else None
    return [view.shape(dict(r)) for r in rows], total, last


def list_endpoint(view: View) -> Callable[..., Response]:
    def endpoint(request: Request, key: Key, listing: Annotated[Listing, Depends(listing_dependency(view))],
                 if_none_match: Annotated[str | None, Header(
                     max_length=1000, description="an ETag from an earlier answer: 304 if unchanged")] = None) -> Response:
        if view.paginated and listing.as_of is None:
            listing = listing.model_copy(update={"as_of": now()})
        with service_of(request).engine.connect() as conn:
            records, total, last = fetch(conn, view, key.brand, listing)
        headers = {}
        if view.paginated:
            pages = max(1, math.ceil(total / listing.per_page))
            headers["X-Total-Count"] = str(total)
            headers["Link"] = paging_links(
                request.url, listing.as_of, listing.page, pages,
                encode_cursor(*last) if last else None)
        return not_modified_or(records, headers, if_none_match, extra_tag=str(total))

    endpoint.__name__ = f"list_{view.name}"
    endpoint.__doc__ = (
        f"The brand's {view.name.replace('_', ' ')}, oldest update first"
        + (", in pages." if view.paginated else "; not paginated: every matching record, no pagination headers.")
    )
    return endpoint


def router() -> APIRouter:
    api = APIRouter(prefix=PREFIX, tags=["Extraction API"])
    for view in VIEWS.values():
        endpoint = list_endpoint(view)
        headers = {**LIMIT_HEADERS, **(PAGE_HEADERS if view.paginated else ETAG_HEADER)}
        responses = {
            200: {"description": "the records", "headers": headers},
            304: {"description": "not modified: the If-None-Match ETag still matches", "headers": LIMIT_HEADERS},
            **ERRORS,
        }
        api.add_api_route(f"/{view.name}", endpoint, methods=["GET"], response_model=list[RECORDS[view.name]],
                          summary=SUMMARIES[view.name], responses=responses, operation_id=f"list_{view.name}")
        # The platform's own examples name the endpoints with .json.
        api.add_api_route(f"/{view.name}.json", endpoint, methods=["GET"], include_in_schema=False)
    return api
