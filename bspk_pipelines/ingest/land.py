"""Land: a delivered file copied, unchanged, into the landing zone and claimed for one run."""

from __future__ import annotations

import os
import secrets

import sqlalchemy as sa

from bspk_pipelines.ingest.drop import Changed, Delivery, Refused, copy_delivered, safe_name
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.ingest.ledger import (
    IN_PROGRESS, REFUSED, StepResult, file_row, forget_refusal, record_file, record_refused, twin_of,
)
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.warehouse.locks import brand_lock
from bspk_pipelines.warehouse.engine import writing

def land(engine: sa.Engine, layout: Layout, brand: Brand, delivery: Delivery, expected_sha: str | None = None,
         run_id: str = "") -> StepResult:
    """Copy the delivered file, unchanged, into the landing zone and claim it for this run: record
    name, size and the sha256 of the very bytes copied.

    `expected_sha` is what the drop folder's look saw: a file whose bytes differ now changed since
    it was found ready, and is left for a later look (Changed; nothing is recorded). A file
    another run has claimed is left to it; a link or unreadable entry is refused (Refused).
    """
    source, name = delivery.source, delivery.name
    dropped = layout.drop(brand, source) / safe_name(name)
    landed = layout.landed(brand.brand, source, name)
    with brand_lock(engine, brand.brand):
        with engine.connect() as conn:
            existing = file_row(conn, brand.brand, source, name)
        if existing and existing["status"] not in (*IN_PROGRESS, REFUSED):
            return StepResult(existing["status"], f"{name} was imported before ({existing['status']}); a file name is imported once",
                              sha256=existing["sha256"], size=existing["size"])
        if existing and existing["status"] != REFUSED:
            by = f"run {existing['run_id'][:8]}" if existing["run_id"] else "an earlier run"
            return StepResult(existing["status"], f"landed by {by}: carried on from where it is ({existing['status']})",
                              sha256=existing["sha256"], size=existing["size"])
        claim = secrets.token_hex(8)
        landed.parent.mkdir(parents=True, exist_ok=True)
        partial = landed.with_name(f".{claim}.part")  # hidden and .part: never taken for a delivery
        try:
            try:
                sha, seen = copy_delivered(dropped, partial)
            except Refused as e:
                record_refused(engine, brand.brand, source, name, e)
                raise
            if expected_sha and sha != expected_sha:
                raise Changed(f"{name} changed since it was found ready (its bytes are not the ones hashed then); "
                              "it is taken again once it has settled")
            os.replace(partial, landed)
        finally:
            partial.unlink(missing_ok=True)
        with writing(engine) as conn:
            forget_refusal(conn, brand.brand, source, name)
            twin = twin_of(conn, brand.brand, sha)
            if not record_file(conn, brand.brand, delivery, sha, seen, twin, claim, run_id):
                # The sensor's look recorded it meanwhile (as a duplicate: it takes no lock for that).
                row = file_row(conn, brand.brand, source, name)
                return StepResult(row["status"], f"recorded meanwhile: {row['status']}", sha256=row["sha256"], size=row["size"])
    message = f"same bytes as {twin}: recorded as a duplicate, not applied" if twin else "landed"
    return StepResult("duplicate" if twin else "received", message, sha256=sha, size=seen.size)
