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
`as_of` and a page number (offset within the snapshot). `X-Total-Count` counts the snapshot, as
the listing's first page finds it; a record of it edited during the listing moves past `as_of`
(into the next sync), so a listing can end before its count says.

Every page costs what its own rows cost, at any depth (a listing of a million clients included):

- A `next` page seeks: its cursor is a range condition on the (brand, updated_at, id) index
  (`(updated_at, id) > (a, n)`, a row-value comparison both databases plan as an index range).
- `X-Total-Count` is counted once per listing, by its first page, and carried in the `next`
  cursors; on PostgreSQL a listing without filters reads the brand's row count that triggers keep
  (`warehouse.counts`) less the rows updated after `as_of`, an index range at the end.
- A page number reaches MAX_OFFSET records into a listing from either end: `last` and the pages
  near it are read backwards from the end. A page further from both ends is refused (422) with a
  pointer to the `next` links, rather than read through every record before it.
- The ETag is that of the page's rows as the database gives them, before they are shaped and
  before anything is counted: an `If-None-Match` that matches is answered (304) after one seek.
  It covers the records; a 304 leaves the client's `X-Total-Count` and `Link` as it had them. An import's transaction stamps its rows when it starts and commits later,
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
    etag_matches,
    not_modified_or,
    paging_links,
    weak_etag,
)
from bspk_pipelines.outbound.views import VIEWS, View
from bspk_pipelines.warehouse import counts
from bspk_pipelines.warehouse.apply import now

PREFIX = "/api/extraction/v1"
MAX_PAGE = 1_000_000  # keeps OFFSET within a 64-bit integer whatever per_page is
# The most records a page number may skip, from the start of a listing or from its end.
MAX_OFFSET = 10_000
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
    total: int | None = None  # the listing's count, carried in its `next` cursors


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


def encode_cursor(updated_at: datetime, row_id: Any, total: int) -> str:
    """A `next` cursor: where the page ends, and the listing's count."""
    raw = json.dumps([updated_at.isoformat(), row_id, total], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def id_type(view: View) -> type:
    """The Python type of the view's ids (int or str), as its query selects them (for any brand)."""
    return view.query("").selected_columns["_id"].type.python_type


def decode_cursor(text: str, ids: type) -> tuple[datetime, Any, int | None]:
    """The (updated time, id) an `after` cursor carries, checked to be one the view's query can
    compare with (an id of the view's type, an integer within 64 bits, text the databases store),
    and the listing's count (None in a cursor of an earlier version, which carried none)."""
    try:
        updated_at, row_id, *carried = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        total = carried[0] if carried else None
        if len(carried) > 1 or (total is not None and (type(total) is not int or not 0 <= total < 2**63)):
            raise ValueError(carried)
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
    return naive_utc(at, "after"), row_id, total


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
        out["page"] = param("page", int, Query(1, ge=1, le=MAX_PAGE, description=(
            f"page number, from 1; a page more than {MAX_OFFSET:,} records from both ends of the listing is "
            "refused (422): follow the Link header's next URLs")))
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
        at, row_id, total = decode_cursor(values["after"], ids) if values.get("after") else (None, None, None)
        return Listing(since=since, until=until, client_ids=client_ids, associate_ids=associate_ids,
                       page=values.get("page", 1), per_page=values.get("per_page", 30),
                       as_of=naive_utc(values.get("as_of"), "as_of"), after=(at, row_id) if at else None, total=total)

    read.__signature__ = inspect.Signature(
        [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
         *params.values()])
    return read


def _order(query: sa.Select) -> tuple[sa.ColumnElement, sa.ColumnElement]:
    return query.selected_columns["_updated_at"], query.selected_columns["_id"]


def _query(view: View, brand: str, listing: Listing) -> sa.Select:
    """The listing's records, unordered: its filters, and for a paginated view its snapshot."""
    until = listing.until
    if view.paginated:
        until = min(until, listing.as_of) if until else listing.as_of
    return view.filtered(brand, listing.since, until, listing.client_ids, listing.associate_ids)


def count(conn: sa.Connection, view: View, brand: str, listing: Listing) -> int:
    """The records of the listing's snapshot. Without filters, on a counted table: the brand's rows
    as `counts` keeps them, less those updated after `as_of` (the few edited since it began)."""
    unfiltered = not (listing.since or listing.until or listing.client_ids or listing.associate_ids)
    if not (unfiltered and counts.kept_for(conn, view.table)):
        return conn.execute(sa.select(sa.func.count()).select_from(_query(view, brand, listing).subquery())).scalar_one()
    t, kept = view.table, counts.kept_rows(view.table, brand)
    # One statement, one snapshot: the count kept and the rows updated since, as of the same commit.
    later = sa.select(sa.func.count()).where(t.c.brand == brand, t.c.updated_at > listing.as_of).scalar_subquery()
    return conn.execute(sa.select(kept - later)).scalar_one()


def page_rows(conn: sa.Connection, view: View, brand: str, listing: Listing,
              total: Callable[[], int]) -> tuple[list[sa.RowMapping], bool]:
    """A paginated listing's page, as the database gives its rows, and whether more follow.
    `total` gives the listing's count, asked for only where a page from the end needs it."""
    query = _query(view, brand, listing)
    updated, row_id = _order(query)
    size = listing.per_page
    if listing.after:
        # A row-value comparison: an index range (updated_at, id) > (a, n), where an OR of the two
        # columns would read the index from the brand's start and filter.
        rows = conn.execute(query.where(sa.tuple_(updated, row_id) > sa.tuple_(*listing.after))
                            .order_by(updated, row_id).limit(size + 1)).mappings().all()
        return rows[:size], len(rows) > size
    start = (listing.page - 1) * size
    if start <= MAX_OFFSET:
        rows = conn.execute(query.order_by(updated, row_id).offset(start).limit(size + 1)).mappings().all()
        return rows[:size], len(rows) > size
    records = total()
    end = min(start + size, records)
    if start >= records:
        return [], False
    if records - end > MAX_OFFSET:
        raise HTTPException(422, f"page {listing.page} starts at record {start + 1:,} of {records:,}: a page number "
                                 f"reaches {MAX_OFFSET:,} records into a listing from either end; to go deeper, follow "
                                 "the Link header's next URLs (each page starts where the one before ended), or narrow "
                                 "the listing with from and to")
    backwards = query.order_by(updated.desc(), row_id.desc()).offset(records - end).limit(end - start)
    return list(reversed(conn.execute(backwards).mappings().all())), end < records


def list_endpoint(view: View) -> Callable[..., Response]:
    def endpoint(request: Request, key: Key, listing: Annotated[Listing, Depends(listing_dependency(view))],
                 if_none_match: Annotated[str | None, Header(
                     max_length=1000, description="an ETag from an earlier answer: 304 if unchanged")] = None) -> Response:
        if not view.paginated:
            query = _query(view, key.brand, listing)
            with service_of(request).engine.connect() as conn:
                rows = conn.execute(query.order_by(*_order(query))).mappings()
                return not_modified_or([view.shape(dict(r)) for r in rows], {}, if_none_match)
        if listing.as_of is None:
            listing = listing.model_copy(update={"as_of": now()})
        total = listing.total
        with service_of(request).engine.connect() as conn:
            def counted() -> int:
                nonlocal total
                total = count(conn, view, key.brand, listing) if total is None else total
                return total

            rows, more = page_rows(conn, view, key.brand, listing, counted)
            # The rows' repr: every value as the database gave it (a datetime, a Decimal), cheaper than JSON.
            etag = weak_etag(repr([tuple(r.values()) for r in rows]).encode("utf-8"))
            if etag_matches(if_none_match, etag):
                return Response(status_code=304, headers={"ETag": etag})
            counted()
        pages = max(1, math.ceil(total / listing.per_page))
        cursor = encode_cursor(rows[-1]["_updated_at"], rows[-1]["_id"], total) if rows and more else None
        headers = {"X-Total-Count": str(total), "Link": paging_links(request.url, listing.as_of, listing.page, pages, cursor),
                   "ETag": etag}
        body = json.dumps([view.shape(dict(r)) for r in rows], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Response(body, media_type="application/json", headers=headers)

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
