"""Import upload: a CSV file over HTTP into the brand's drop folder, then its progress.

`POST /api/platform/v1/imports` (multipart, field `file`, optional field `source`) takes a file
only when everything the pipeline would refuse at once is fine, so a bad upload is a 4xx now
rather than a failed file later:

- the name is one safe path component (no separators, no `..`, no control characters) of at
  most `MAX_NAME_BYTES` (240) bytes in UTF-8, room left for its temporary name, not one
  the drop-folder watcher skips (hidden, `.part`, `.tmp`, `.done`), and follows the naming rule
  of exactly one of the brand's sources (`files.classify`: the platform's
  `<TYPE>_<VERSION>_<Company>_<YYYYMMDDHHMM>.csv`, or a CSV source's patterns); `source` picks
  one when the name fits several;
- a name that comes again is the next delivery under it (`name@2`, as the drop folder takes it):
  the file takes the landed one's place in the drop folder; a name whose file still waits there,
  not yet landed, is a 409;
- at most `max_upload_bytes` (413; the gate refuses a larger Content-Length before reading);
- the content decodes in the source's encoding (UTF-8 for the platform's format) and its first
  line is the entity's header (`parse.check_header`, as validation checks it).

The bytes go to a hidden temporary name in the drop folder (`.<name>.<random>.part`, which the
watcher ignores), are checked on the way, and are then linked to the final name in one step
(`os.link`, which also refuses to replace a file that appeared meanwhile): the watcher never
sees a partial file (a re-delivery replaces the landed file in one step, `os.replace`). The
answer is 202 with an id to follow: the id of the delivery the file will be.

`GET /api/platform/v1/imports/{id}`: `received` with `landed: false` while the file waits in
the drop folder; then the `files` record: received, validated, mapped, applied, duplicate or
failed, its counts and how many rejects it has (listed by `.../imports/{id}/rejects`).
The id is the source and delivery key (the file name, `name@2`...), base64url-encoded: it works for files dropped by other means
too, and it names nothing outside the key's brand.
"""

from __future__ import annotations

import base64
import codecs
import csv
import hashlib
import math
import os
import secrets
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from bspk_pipelines.api.deps import Key, Service, service_of
from bspk_pipelines.api.keys import ApiKey
from bspk_pipelines.api.models import ImportStatus, Reject
from bspk_pipelines.api.responses import (
    BAD_BODY,
    CONFLICT,
    ERRORS,
    LIMIT_HEADERS,
    NOT_FOUND,
    PAGE_HEADERS,
    _error,
)
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.ingest.drop import (
    Delivery,
    FileNameError,
    classify,
    delivery_number,
    dropped_name,
    route,
    safe_name,
)
from bspk_pipelines.ingest.stores import is_candidate
from bspk_pipelines.outbound.events import iso
from bspk_pipelines.ingest.parse import FileFailure, check_header
from bspk_pipelines.ingest.shapes.compressed import GZIP_MAGIC
from bspk_pipelines.ingest.check import expected_header
from bspk_pipelines.ingest.ledger import REFUSED, delivery_rows, recorded
from bspk_pipelines.warehouse.schema import rejects

PREFIX = "/api/platform/v1/imports"
CHUNK = 1 << 20
MAX_HEADER_CHARS = 1 << 20
NAME_MAX = 255  # bytes in a file name on the usual Linux filesystems (ext4, XFS, btrfs, tmpfs)
# An upload is first written as `.<name>.<8 hex digits>.part`: its name must leave room for that.
MAX_NAME_BYTES = NAME_MAX - 15
COUNTS = ("rows_read", "rejected", "superseded", "inserted", "updated", "unchanged", "held", "deleted")
ImportId = Annotated[str, PathParam(max_length=1024, description="the id the upload answered with")]


def import_id(source: str, name: str) -> str:
    return base64.urlsafe_b64encode(f"{source}/{name}".encode()).decode("ascii").rstrip("=")


def parse_import_id(value: str) -> tuple[str, str] | None:
    try:
        source, _, name = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8").partition("/")
    except (ValueError, UnicodeDecodeError):
        return None
    return (source, name) if source and name else None


def _brand(service: Service, key: ApiKey) -> Brand:
    brand = service.brands.get(key.brand)
    if brand is None:
        raise HTTPException(422, f"brand {key.brand} has no configuration here, so no drop folder to import into")
    return brand


class Checker:
    """Follows the bytes of an upload: size, sha256, and for text (a delimited or fixed-width file,
    not compressed) its decoding and the header line once it is complete. Another shape, or a
    compressed file, is read whole at validation."""

    def __init__(self, brand: Brand, delivery: Delivery, limit: int):
        dialect = brand.sources[delivery.source].dialect
        self.brand, self.delivery, self.limit, self.dialect = brand, delivery, limit, dialect
        self.decoder = None  # made from the upload's first bytes, as validation reads the file
        self.start = b""  # those bytes, until there are enough to tell a byte-order mark or a compression
        self.follows_text: bool | None = None  # whether the upload is text to decode, once its first bytes tell
        self.size, self.sha = 0, hashlib.sha256()
        self.head: list[str] = []
        self.header_checked = not (dialect.shape == "csv" and dialect.header)

    def feed(self, chunk: bytes, final: bool = False) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise HTTPException(413, f"the upload is larger than the limit of {self.limit} bytes")
        self.sha.update(chunk)
        if self.follows_text is None:
            self.start += chunk
            if len(self.start) < 4 and not final:
                return
            self.follows_text = (self.dialect.shape in ("csv", "fixed_width")
                                 and not self.start.startswith(GZIP_MAGIC))
            if self.follows_text:
                chunk, self.decoder = self.start, codecs.getincrementaldecoder(self.dialect.decoding_for(self.start))()
        if not self.follows_text:
            return
        try:
            text = self.decoder.decode(chunk, final=final)
        except UnicodeDecodeError as e:
            raise HTTPException(422, f"{self.delivery.name}: not {self.dialect.encoding} text "
                                     f"(byte {self.size - len(chunk) + e.start}: {e.reason})") from None
        if not self.header_checked:
            self.head.append(text)
            head = "".join(self.head)
            skip = self.dialect.skip_lines  # lines before the header: a report's title, its date
            if head.count("\n") > skip or final:
                self._check_header((head.split("\n", skip + 1) + [""] * (skip + 1))[skip])
            elif len(head) > MAX_HEADER_CHARS:
                raise HTTPException(422, f"{self.delivery.name}: no end of line in the first {MAX_HEADER_CHARS} characters")

    def _check_header(self, line: str) -> None:
        self.header_checked = True
        name = self.delivery.name
        if not line.strip():
            raise HTTPException(422, f"{name}: line {self.dialect.skip_lines + 1}: expected the header, found "
                                     + ("nothing" if not self.size else "an empty line"))
        if "\x00" in line:
            raise HTTPException(422, f"{name}: line {self.dialect.skip_lines + 1}: NUL characters in the header")
        delimiter = self.dialect.delimiter
        fields = (line.rstrip("\r").split(delimiter) if len(delimiter) > 1 else
                  next(csv.reader([line.rstrip("\r")], delimiter=delimiter, quotechar=self.dialect.quote)))
        header = [h.strip() for h in fields]
        for entity in self.delivery.entities:
            expected, optional, exact = expected_header(self.brand, self.delivery.source, entity, self.delivery.name)
            try:
                check_header(name, header, expected, optional, exact, self.dialect.delimiter, self.dialect.skip_lines + 1)
            except FileFailure as e:
                raise HTTPException(422, f"{e} (for {entity})" if len(self.delivery.entities) > 1 else str(e)) from None


def receive(service: Service, brand: Brand, upload: UploadFile, source: str | None) -> dict[str, Any]:
    """Check the upload and put it in the drop folder under its name, in one step; its status."""
    name = upload.filename or ""
    try:
        size = len(name.encode("utf-8"))
        if size > MAX_NAME_BYTES:
            raise FileNameError(f"the file name is {size} bytes long in UTF-8; the limit is {MAX_NAME_BYTES} bytes")
        safe_name(name)
        if not is_candidate(name):
            raise FileNameError(f"{name!r}: the drop folder ignores hidden names and .part/.tmp/.done files")
        delivery = route(brand, name, source)
        if brand.sources[delivery.source].format == "shopify":
            raise FileNameError(f"{name}: source {delivery.source} is a Shopify shop: its deliveries are its pulls "
                                f"(`bspk sync`, `bspk backfill --source {delivery.source}`), not uploads")
        if service.layout.drop(brand, delivery.source) is None:
            raise FileNameError(f"{name}: source {delivery.source}'s files arrive in {brand.sources[delivery.source].drop}: "
                                "put them there; uploads go to a source whose drop is a folder")
    except FileNameError as e:
        raise HTTPException(422, str(e)) from None
    with service.engine.connect() as conn:
        last = recorded(conn, brand.brand, delivery.source).get(name)
    folder = service.layout.drop(brand, delivery.source)
    final = folder / name
    landed = waiting_in_drop(final)
    # The file in the drop folder is the last delivery's, as it was taken: the new one takes its place.
    again = last is not None and last.status != REFUSED and landed is not None and \
        (landed.st_size, landed.st_mtime_ns) == (last.size, last.dropped_mtime_ns)
    if not again and (final.exists() or final.is_symlink()):
        raise HTTPException(409, f"{name} is already waiting in the drop folder, not landed yet: send it again once "
                                 "it is (GET the import to follow it)")
    if again:
        delivery = delivery.again(last.deliveries + 1)
    checker = Checker(brand, delivery, service.settings.max_upload_bytes)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.{secrets.token_hex(4)}.part"
    try:
        with partial.open("wb") as out:
            for chunk in iter(lambda: upload.file.read(CHUNK), b""):
                checker.feed(chunk)
                out.write(chunk)
            checker.feed(b"", final=True)
            out.flush()
            os.fsync(out.fileno())
        if again and checker.sha.hexdigest() == last.sha256:
            raise HTTPException(409, f"{name}: the same bytes as its last delivery ({last.name}, {last.status}): "
                                     "nothing new to import")
        try:
            if again:
                os.replace(partial, final)  # the landed file's place, in one step
            else:
                os.link(partial, final)  # atomic, and never replaces a file of the same name
        except FileExistsError:
            raise HTTPException(409, f"{name} is already waiting in the drop folder") from None
    finally:
        partial.unlink(missing_ok=True)
    return status_of_drop(delivery.source, delivery.name, os.lstat(final), checker.sha.hexdigest(), delivery.entities)


def waiting_in_drop(path: Path) -> os.stat_result | None:
    """The status of a regular file waiting in a drop folder, never through a link; None if there is none."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def status_of_drop(source: str, name: str, st: os.stat_result, sha256: str | None, entities: tuple[str, ...]) -> dict[str, Any]:
    return {
        "id": import_id(source, name), "file_name": name, "source": source, "entity": ", ".join(entities),
        "status": "received", "landed": False, "size": st.st_size, "sha256": sha256,
        "received_at": iso(datetime.fromtimestamp(st.st_mtime, UTC).replace(tzinfo=None)), "applied_at": None, "error": None,
        "duplicate_of": None, "counts": dict.fromkeys(COUNTS), "rejects": {"count": 0, "href": ""},
    }


# A delivery that feeds several entities is as far as its least advanced record.
PROGRESS = ("failed", REFUSED, "received", "validated", "mapped", "applied", "duplicate")


def status_of_file(conn: sa.Connection, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A delivery's status from its records, one per entity it feeds: counts summed."""
    row = min(rows, key=lambda r: PROGRESS.index(r["status"]) if r["status"] in PROGRESS else 0)
    r = rejects.c
    count = conn.execute(sa.select(sa.func.count()).where(
        r.brand == row["brand"], r.source == row["source"], r.file == row["name"])).scalar_one()
    counts = {k: None if all(x[k] is None for x in rows) else sum(x[k] or 0 for x in rows) for k in COUNTS}
    return {
        "id": import_id(row["source"], row["name"]), "file_name": row["name"], "source": row["source"],
        "entity": ", ".join(x["entity"] for x in rows if x["entity"]) or None, "status": row["status"],
        "landed": row["status"] != REFUSED, "size": row["size"], "sha256": row["sha256"] or None,
        "received_at": iso(row["received_at"]), "applied_at": iso(max((x["applied_at"] for x in rows if x["applied_at"]), default=None)),
        "error": "; ".join(dict.fromkeys(x["error"] for x in rows if x["error"])) or None,
        "duplicate_of": row["duplicate_of"], "counts": counts, "rejects": {"count": count, "href": ""},
    }


def _with_href(status: dict[str, Any]) -> dict[str, Any]:
    status["rejects"]["href"] = f"{PREFIX}/{status['id']}/rejects"
    return status


def find(service: Service, key: ApiKey, value: str) -> tuple[list[dict[str, Any]], Delivery, os.stat_result | None]:
    """The `files` records of an import id (none while the file waits in the drop folder), the
    file's place and, while it waits, its status; 404 when the key's brand has neither."""
    missing = HTTPException(404, f"no import {value}")
    parsed, brand = parse_import_id(value), service.brands.get(key.brand)
    if parsed is None or brand is None or parsed[0] not in brand.sources or len(parsed[1].encode()) > NAME_MAX:
        raise missing  # a name longer than NAME_MAX names no file: asking the filesystem would be an error
    source, name = parsed
    dropped = dropped_name(name)
    try:
        # Also refuses a name that is not one safe path component.
        delivery = classify(brand, source, dropped).again(delivery_number(name))
    except FileNameError:
        raise missing from None
    with service.engine.connect() as conn:
        rows = [dict(r) for r in delivery_rows(conn, key.brand, source, name)]
        last = recorded(conn, key.brand, source).get(dropped)
    # The file in the drop folder is this delivery on its way in when it is the next under its name.
    coming = (last.deliveries + 1 if last and last.status != REFUSED else 1) == delivery_number(name)
    folder = service.layout.drop(brand, source)
    waiting = waiting_in_drop(folder / dropped) if folder and not rows and coming else None
    if not rows and waiting is None:
        raise missing
    return rows, delivery, waiting


def router() -> APIRouter:
    api = APIRouter(prefix=PREFIX, tags=["Import upload"])
    ok = {"headers": LIMIT_HEADERS}

    @api.post("", status_code=202, response_model=ImportStatus, summary="Upload a CSV file to import",
              responses={202: {"description": "received: the file waits in the drop folder for the pipeline", **ok}, **BAD_BODY, **ERRORS, **CONFLICT,
                         411: _error("no Content-Length"), 413: _error("larger than the upload limit")})
    def upload_import(request: Request, key: Key,
               file: Annotated[UploadFile, File(description="the CSV file, named as the brand's files are")],
               source: Annotated[str | None, Form(max_length=100, description="the brand's source, when the name "
                                                                            "fits several")] = None) -> JSONResponse:
        """Put the file in the brand's drop folder for the pipeline; follow it with GET imports/{id}."""
        service = service_of(request)
        status = receive(service, _brand(service, key), file, source)
        return JSONResponse(_with_href(status), status_code=202)

    @api.get("/{import_id}", response_model=ImportStatus, summary="Follow an import",
             responses={200: {"description": "the import's status", **ok}, **ERRORS, **NOT_FOUND})
    def get_import(import_id: ImportId, request: Request, key: Key) -> JSONResponse:
        """Where the file is: waiting in the drop folder, then its `files` record, counts and rejects."""
        service = service_of(request)
        rows, delivery, waiting = find(service, key, import_id)
        if not rows:
            return JSONResponse(_with_href(status_of_drop(delivery.source, delivery.name, waiting, None, delivery.entities)))
        with service.engine.connect() as conn:
            return JSONResponse(_with_href(status_of_file(conn, rows)))

    @api.get("/{import_id}/rejects", response_model=list[Reject], summary="List an import's rejected rows",
             responses={200: {"headers": {**LIMIT_HEADERS, "X-Total-Count": PAGE_HEADERS["X-Total-Count"],
                                          "Link": PAGE_HEADERS["Link"]}}, **ERRORS, **NOT_FOUND})
    def list_rejects(import_id: ImportId, request: Request, key: Key,
                     page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
                     per_page: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
        """The file's rejects (line, column, value, rule, message) in line order, in pages
        (`X-Total-Count`, `Link`); empty until the file has been validated."""
        service = service_of(request)
        row, delivery, _ = find(service, key, import_id)  # its records: none while it waits
        r = rejects.c
        where = sa.and_(r.brand == key.brand, r.source == delivery.source, r.file == delivery.name)
        with service.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).where(where)).scalar_one() if row else 0
            found = conn.execute(sa.select(r.line, r.column, r.value, r.rule, r.message).where(where)
                                 .order_by(r.line, r.column, r.id).limit(per_page).offset((page - 1) * per_page)
                                 ).mappings().all() if row else []
        pages = max(1, math.ceil(total / per_page))
        links = [f'<{request.url.include_query_params(page=page + 1)}>; rel="next"'] if page < pages else []
        links.append(f'<{request.url.include_query_params(page=pages)}>; rel="last"')
        return JSONResponse([dict(f) for f in found], headers={"X-Total-Count": str(total), "Link": ", ".join(links)})

    return api
