"""What every answer shares: declared error responses and headers, pagination links, weak ETags."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse
from starlette.datastructures import URL

from bspk_pipelines.api.models import Error


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error as every answer of the service writes it: `{"error": {"status", "message"}}`."""
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


def _error(description: str) -> dict[str, Any]:
    return {"model": Error, "description": description}


UNAUTHORIZED = {401: _error("no API key, or one that is not valid or was revoked")}
ERRORS: dict[int | str, dict[str, Any]] = {
    **UNAUTHORIZED,
    422: _error("a parameter or the body failed validation"),
    429: _error("the key's rate limit is exhausted for this window, or too many failed authentications came "
                "from the client address or for the key id (see Retry-After)"),
    500: _error("unexpected server error (no details are given out)"),
    503: _error("too many API keys are being checked at once (see Retry-After)"),
}
BAD_BODY = {400: _error("the body could not be read: not JSON, not UTF-8, or a broken multipart form")}
NOT_FOUND = {404: _error("no such object for the key's brand (other brands' objects are not found either)")}
CONFLICT = {409: _error("conflicts with the current state (see message)")}


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "required": True, "schema": {"type": kind, "minimum": 0} if kind == "integer"
            else {"type": kind}}


LIMIT_HEADERS = {
    "X-RateLimit-Limit": _header("requests allowed per key per 10-second window", "integer"),
    "X-RateLimit-Remaining": _header("requests left in the current window", "integer"),
}
PAGE_HEADERS = {
    "X-Total-Count": _header("records in the listing (its snapshot, see as_of)", "integer"),
    "Link": _header('<url>; rel="next" (when there is a next page), <url>; rel="last"'),
    "ETag": _header('weak ETag, W/"..."; send it back in If-None-Match to get a 304 when nothing changed'),
}
ETAG_HEADER = {"ETag": PAGE_HEADERS["ETag"]}


def iso_utc(value: datetime) -> str:
    return value.isoformat() + "Z"


def paging_links(url: URL, as_of: datetime, page: int, pages: int, cursor: str | None) -> str:
    """`Link` with rel="next" (a keyset cursor within the snapshot) when there is more, and rel="last"."""
    base = url.remove_query_params(["page", "as_of", "after"])
    links = []
    if cursor:
        links.append(f'<{base.include_query_params(page=page + 1, as_of=iso_utc(as_of), after=cursor)}>; rel="next"')
    links.append(f'<{base.include_query_params(page=pages, as_of=iso_utc(as_of))}>; rel="last"')
    return ", ".join(links)


def weak_etag(body: bytes, extra: str = "") -> str:
    return 'W/"' + hashlib.md5(body + extra.encode("utf-8"), usedforsecurity=False).hexdigest() + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison (RFC 9110 13.1.2): W/ prefixes do not count."""
    if not if_none_match:
        return False
    wanted = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in wanted or etag.removeprefix("W/") in wanted


def not_modified_or(payload: Any, headers: dict[str, str], if_none_match: str | None, extra_tag: str = "",
                    status_code: int = 200) -> Response:
    """The JSON answer with its weak ETag, or a bodiless 304 when If-None-Match names that ETag."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    etag = weak_etag(body, extra_tag)
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, status_code=status_code, media_type="application/json", headers={**headers, "ETag": etag})
