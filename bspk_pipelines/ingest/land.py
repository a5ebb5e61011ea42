"""Land: a delivered file copied, unchanged, into the landing zone and claimed for one run; a failed delivery retried."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from bspk_pipelines.ingest.drop import Delivery, copy_delivered, dropped_name, safe_name
from bspk_pipelines.ingest.stores import Changed, Refused
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.ingest.ledger import (
    IN_PROGRESS, REFUSED, StepResult, delivery_rows, file_row, forget_unlanded, record_file, record_refused, retry, twin_of,
)
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.warehouse.locks import brand_lock
from bspk_pipelines.warehouse.engine import writing

class NotRetried(Exception):
    """A failed delivery that is not retried, and why (a later one was applied since)."""


def land(engine: sa.Engine, layout: Layout, brand: Brand, delivery: Delivery, expected_sha: str | None = None,
         run_id: str = "") -> StepResult:
    """Copy the delivered file, unchanged, into the landing zone and claim it for this run: record
    name, size and the sha256 of the very bytes copied, once for each entity the file feeds.

    `expected_sha` is what the drop folder's look saw: a file whose bytes differ now changed since
    it was found ready, and is left for a later look (Changed; nothing is recorded). A delivery
    another run has claimed is left to it; a link or unreadable entry is refused (Refused). A
    delivery that failed is retried (`retry`): its landed copy is checked again under the current
    config; one whose name matched no pattern is taken from the drop folder again.
    """
    source, name = delivery.source, delivery.name
    dropped = safe_name(dropped_name(name))
    landed = layout.landed(brand.brand, source, name)
    with brand_lock(engine, brand.brand):
        with writing(engine) as conn:
            existing = delivery_rows(conn, brand.brand, source, name)
            retried, refused = retry(conn, brand.brand, source, name) if existing else ([], {})
            if existing and all(r["entity"] == "" and r["status"] in ("failed", REFUSED) for r in existing):
                forget_unlanded(conn, brand.brand, source, name)
                existing = []
        first = existing[0] if existing else None
        if refused and not retried:
            raise NotRetried("; ".join(refused.values()))
        if retried:
            return StepResult("received", f"retried: {', '.join(retried)} checked again from the landed copy",
                              sha256=first["sha256"], size=first["size"])
        if first and first["status"] not in IN_PROGRESS:
            return StepResult(first["status"], f"{name} was imported before ({first['status']}); an applied delivery "
                              "is never applied again: a new version comes as a new delivery",
                              sha256=first["sha256"], size=first["size"])
        if first:
            by = f"run {first['run_id'][:8]}" if first["run_id"] else "an earlier run"
            return StepResult(first["status"], f"landed by {by}: carried on from where it is ({first['status']})",
                              sha256=first["sha256"], size=first["size"])
        claim = secrets.token_hex(8)
        landed.parent.mkdir(parents=True, exist_ok=True)
        partial = landed.with_name(f".{claim}.part")  # hidden and .part: never taken for a delivery
        store = layout.drop_store(brand, source)
        try:
            try:
                sha, seen = copy_delivered(store, dropped, partial)
            except Refused as e:
                record_refused(engine, brand.brand, source, name, e)
                raise
            if expected_sha and sha != expected_sha:
                raise Changed(f"{dropped} changed since it was found ready (its bytes are not the ones hashed then); "
                              "it is taken again once it has settled")
            layout.keep_landed(partial, brand.brand, source, name, sha)
        finally:
            store.close()
            partial.unlink(missing_ok=True)
        with writing(engine) as conn:
            forget_unlanded(conn, brand.brand, source, name)
            twin = twin_of(conn, brand.brand, sha)
            if not record_file(conn, brand.brand, delivery, sha, seen, twin, claim, run_id):
                # The sensor's look recorded it meanwhile (as a duplicate: it takes no lock for that).
                row = file_row(conn, brand.brand, source, name)
                return StepResult(row["status"], f"recorded meanwhile: {row['status']}", sha256=row["sha256"], size=row["size"])
    message = f"same bytes as {twin}: recorded as a duplicate, not applied" if twin else "landed"
    return StepResult("duplicate" if twin else "received", message, sha256=sha, size=seen.size)
