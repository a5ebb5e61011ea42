"""The ledger: the one owner of the `files` table. A delivery's record for each entity it feeds,
its statuses and every transition (claimed by a landing, checked, contributed, applied, failed,
duplicate, refused, retried), what a step reports about it, and the held rows of an applied
delivery released later.

A delivery is a file's bytes as they arrived under a name: its key is the name, then `name@2`,
`name@3`... when the name comes again with other bytes. A landing claims a delivery with an
insert that fails if it is recorded; each later step moves one entity's record on with a
compare-and-set on the status the step before left (`advance`), so of two writers exactly one
moves it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import polars as pl
import sqlalchemy as sa

from bspk_pipelines.ingest.drop import Delivery, delivery_number, dropped_name
from bspk_pipelines.ingest.stores import Refused, Snapshot
from bspk_pipelines.ingest.parse import RowProblem
from bspk_pipelines.outbound.events import file_finished
from bspk_pipelines.warehouse.apply import Counts, now
from bspk_pipelines.warehouse.schema import files, held
from bspk_pipelines.warehouse.engine import insert_ignoring_conflicts, writing

IN_PROGRESS = ("received", "validated", "mapped")

# A drop folder entry not taken (a link, not a regular file, unreadable): looked at again.
REFUSED = "refused"

@dataclass
class StepResult:
    """What one step did to one file, for the asset's metadata."""

    status: str
    message: str = ""
    rows: int = 0
    rejected: int = 0
    sha256: str = ""
    size: int = 0
    unchanged: int = 0
    preview: pl.DataFrame | None = None
    rejects: list[RowProblem] = field(default_factory=list)

def _one(brand: str, source: str, name: str, entity: str | None) -> sa.ColumnElement[bool]:
    """A delivery's record for one entity; with `entity` None, its records for every entity."""
    f = files.c
    where = sa.and_(f.brand == brand, f.source == source, f.name == name)
    return where if entity is None else sa.and_(where, f.entity == entity)

def file_row(conn: sa.Connection, brand: str, source: str, name: str, entity: str | None = None):
    """A delivery's record for `entity` (None: any of its records, as for what all share)."""
    return conn.execute(sa.select(files).where(_one(brand, source, name, entity)).order_by(files.c.entity)).mappings().first()

def delivery_rows(conn: sa.Connection, brand: str, source: str, name: str) -> list:
    """A delivery's records, one per entity it feeds."""
    return conn.execute(sa.select(files).where(_one(brand, source, name, None)).order_by(files.c.entity)).mappings().all()

def _set(conn: sa.Connection, brand: str, source: str, name: str, entity: str | None, **values) -> None:
    conn.execute(files.update().where(_one(brand, source, name, entity)).values(**values))

class ClaimLost(RuntimeError):
    """Another writer moved the file on while this step worked (its lock was lost): the step's
    transaction is rolled back, so the file is never applied twice."""

def advance(conn: sa.Connection, brand: str, source: str, name: str, entity: str, was: tuple[str, ...], **values) -> None:
    """Move a delivery's record for `entity` on from one of the statuses `was` (a compare-and-set), or ClaimLost."""
    moved = conn.execute(files.update().where(_one(brand, source, name, entity), files.c.status.in_(was)).values(**values))
    if moved.rowcount != 1:
        now_is = file_row(conn, brand, source, name, entity)
        raise ClaimLost(f"{name}: another writer moved the file on meanwhile (it is {now_is['status'] if now_is else 'gone'}); "
                        "this step changed nothing")

def credit_released(conn: sa.Connection, brand: str, source: str, name: str, entity: str, released: Counts) -> None:
    """An applied delivery's held rows applied since (`release_held`): what applying them did is
    added to its counts and they leave its held rows, so its record tells the whole story."""
    f = files.c
    _set(conn, brand, source, name, entity, inserted=f.inserted + released.inserted, updated=f.updated + released.updated,
         unchanged=f.unchanged + released.unchanged, held=f.held - released.released,
         rejected=sa.func.coalesce(f.rejected, 0) + released.rejected)

def account_superseded_held(conn: sa.Connection, brand: str, entity: str) -> None:
    """Held rows a later delivery's rows for the same keys replaced (applied or held in their place)
    leave the held count of the delivery that sent them for its superseded count, so its record
    still adds up: every row read is applied, unchanged, rejected, held, skipped or superseded.
    Two reads: the entity's held rows by delivery, and the deliveries counting some held."""
    f, h = files.c, held.c
    still_held = dict(((r.source, r.file), r.n) for r in conn.execute(
        sa.select(h.source, h.file, sa.func.count().label("n")).where(h.brand == brand, h.entity == entity)
        .group_by(h.source, h.file)))
    counting = conn.execute(sa.select(f.source, f.name, f.held).where(f.brand == brand, f.entity == entity, f.held > 0))
    for source, name, counted in counting.all():
        now_held = still_held.get((source, name), 0) + still_held.get((None, name), 0)
        if counted > now_held:
            _set(conn, brand, source, name, entity, held=now_held,
                 superseded=sa.func.coalesce(f.superseded, 0) + (counted - now_held))

def nothing_to_do(step: str, row) -> StepResult:
    if row is None:
        return StepResult("missing", f"nothing to {step}: not landed")
    by = f" (claimed by run {row['run_id'][:8]})" if row["run_id"] else ""
    return StepResult(row["status"], f"nothing to {step}: the file is {row['status']}{by}")

def record_failed_name(engine: sa.Engine, brand: str, source: str, name: str, sha: str, seen: Snapshot,
                       error: str) -> bool:
    """Record a file whose name says nothing we can apply; True if it was not recorded before."""
    with writing(engine) as conn:
        forget_refusal(conn, brand, source, name)
        recorded = insert_ignoring_conflicts(conn, files, dict(
            brand=brand, source=source, name=name, entity="", sha256=sha, size=seen.size,
            dropped_mtime_ns=seen.mtime_ns, dropped_etag=seen.etag, received_at=now(), sort_key="", status="failed",
            error=error,
        ))
        if recorded:
            file_finished(conn, brand, source, name, "", now())
    return recorded

def record_refused(engine: sa.Engine, brand: str, source: str, name: str, refusal: Refused) -> bool:
    """Record a drop folder entry the pipeline will not read, with why (never its content); True
    if that is news (not recorded before, or for another reason). It is looked at again at every
    look, and taken once it is a regular file that can be read."""
    error = f"{name}: refused: {refusal}"
    with writing(engine) as conn:
        row = file_row(conn, brand, source, name)
        if row and (row["status"] != REFUSED or row["error"] == error):
            return False
        if row:
            _set(conn, brand, source, name, "", error=error, received_at=now())
            return True
        return insert_ignoring_conflicts(conn, files, dict(
            brand=brand, source=source, name=name, entity="", sha256="", size=0, received_at=now(), sort_key="",
            status=REFUSED, error=error))

def forget_refusal(conn: sa.Connection, brand: str, source: str, name: str) -> None:
    """An entry refused before is now a file that can be read: its record makes way for the file's."""
    conn.execute(files.delete().where(_one(brand, source, name, ""), files.c.status == REFUSED))

def forget_unlanded(conn: sa.Connection, brand: str, source: str, name: str) -> None:
    """A delivery never landed (refused, or its name matched no pattern) is taken now: its record
    makes way for the landed file's."""
    conn.execute(files.delete().where(_one(brand, source, name, ""), files.c.status.in_((REFUSED, "failed"))))

def twin_of(conn: sa.Connection, brand: str, sha: str) -> str | None:
    """The key of a delivery of the brand with these bytes that was not refused, if any."""
    return conn.execute(
        sa.select(files.c.name).where(files.c.brand == brand, files.c.sha256 == sha,
                                      files.c.status.not_in(("failed", REFUSED)))
    ).scalar()

def record_file(conn: sa.Connection, brand: str, delivery: Delivery, sha: str, seen: Snapshot, twin: str | None,
                 claim: str = "", run_id: str = "") -> bool:
    """Record the delivery as the drop folder had it (`seen`), claimed by `claim`, once for each
    entity it feeds; False if it is recorded already (another run's)."""
    rows = [dict(
        brand=brand, source=delivery.source, name=delivery.name, entity=entity, sha256=sha, size=seen.size,
        dropped_mtime_ns=seen.mtime_ns, dropped_etag=seen.etag,
        received_at=now(), sort_key=delivery.queue_position, status="duplicate" if twin else "received",
        duplicate_of=twin, error=f"same bytes as {twin}: recorded, not applied twice" if twin else None,
        claim=claim, run_id=run_id,
    ) for entity in delivery.entities]
    # The first insert is the claim; the rest follow it in the same transaction.
    if not insert_ignoring_conflicts(conn, files, rows[0]):
        return False
    if rows[1:]:
        conn.execute(files.insert(), rows[1:])
    if twin:
        for entity in delivery.entities:
            file_finished(conn, brand, delivery.source, delivery.name, entity, now())
    return True

def record_duplicate(engine: sa.Engine, brand: str, delivery: Delivery, sha: str, seen: Snapshot) -> str | None:
    """Record a delivered file as a duplicate without landing it, if a file with the same bytes
    was imported before (its landed copy holds them). Returns that file's name, or None (then
    nothing is recorded and the file goes through the four steps)."""
    with writing(engine) as conn:
        twin = twin_of(conn, brand, sha)
        row = file_row(conn, brand, delivery.source, delivery.name)
        if twin is None or (row and row["status"] != REFUSED):
            return None
        forget_refusal(conn, brand, delivery.source, delivery.name)
        return twin if record_file(conn, brand, delivery, sha, seen, twin) else None

def last_applied(conn: sa.Connection, brand: str, source: str, entity: str, other_than: str) -> str | None:
    """The source's file of the entity applied last, other than `other_than`."""
    return conn.execute(
        sa.select(files.c.name).where(files.c.brand == brand, files.c.source == source, files.c.entity == entity,
                                      files.c.status == "applied", files.c.name != other_than)
        .order_by(files.c.applied_at.desc(), files.c.sort_key.desc()).limit(1)
    ).scalar()

@dataclass(frozen=True)
class LastDelivery:
    """The latest delivery under a drop folder name: its key, status, bytes and the drop file's
    modification time (and version, where its store has them) when it was taken, and how many
    deliveries the name has had."""

    name: str
    status: str
    sha256: str
    size: int
    dropped_mtime_ns: int | None
    dropped_etag: str | None
    deliveries: int

# Past this many names a look reads the source's whole ledger rather than list them in its query.
MAX_NAMES_LISTED = 500


def recorded(conn: sa.Connection, brand: str, source: str, only: Collection[str] | None = None) -> dict[str, LastDelivery]:
    """The latest delivery of a source under each drop folder name the ledger holds (`only`: of
    those names, the files a look at the drop folder found: a sensor's look need not read years
    of deliveries every second)."""
    out: dict[str, LastDelivery] = {}
    query = (sa.select(files.c.name, files.c.status, files.c.sha256, files.c.size, files.c.dropped_mtime_ns,
                       files.c.dropped_etag)
             .where(files.c.brand == brand, files.c.source == source).distinct())
    if only is not None and len(only) <= MAX_NAMES_LISTED:
        # A name's later deliveries are `name@2`, `name@3`...: every such key is read, then sorted out.
        query = query.where(sa.or_(files.c.name.in_(list(only)), files.c.name.contains("@")))
    for r in sorted(conn.execute(query), key=lambda r: delivery_number(r.name)):
        dropped = dropped_name(r.name)
        if only is not None and dropped not in only:
            continue
        seen = out.get(dropped)
        out[dropped] = LastDelivery(r.name, r.status, r.sha256, r.size, r.dropped_mtime_ns, r.dropped_etag,
                                    max(delivery_number(r.name), seen.deliveries if seen else 0))
    return out

def still_there(conn: sa.Connection, brand: str, source: str, name: str, seen: Snapshot) -> None:
    """The drop file of a delivery was touched but holds the same bytes: remembered as it is now,
    so later looks need not hash it again."""
    _set(conn, brand, source, name, None, dropped_mtime_ns=seen.mtime_ns, dropped_etag=seen.etag)

def retry(conn: sa.Connection, brand: str, source: str, name: str) -> tuple[list[str], dict[str, str]]:
    """A failed landed delivery's records go back to `received` for its steps to run again, with
    the brand's current config: (the entities retried, why each other failed one is not). One is
    not when a later delivery of the source's entity was applied since: the older values would
    overwrite the newer. A delivery that was applied is never retried: only failed records move."""
    f = files.c
    retried, refused = [], {}
    for r in delivery_rows(conn, brand, source, name):
        if r["status"] != "failed" or not r["entity"]:
            continue
        later = conn.execute(sa.select(f.name).where(
            f.brand == brand, f.source == source, f.entity == r["entity"], f.status == "applied",
            f.sort_key > r["sort_key"]).order_by(f.sort_key.desc()).limit(1)).scalar()
        if later:
            refused[r["entity"]] = (f"a later delivery of {r['entity']}, {later}, was applied since: retried now, {name} "
                                    "would put its older values over it; send the rows still wanted in a new delivery")
            continue
        advance(conn, brand, source, name, r["entity"], ("failed",), status="received", error=None, rows_read=None,
                rejected=None, superseded=None, skipped=None)
        retried.append(r["entity"])
    return retried, refused

def failed(conn: sa.Connection, brand: str, name: str | None = None) -> list[sa.Row]:
    """The brand's failed deliveries waiting for a fix (source, key, entity, error), oldest
    first; with `name`, those under that key or drop folder name. One that a later delivery of
    the same source and entity replaced, applied since, waits for nothing: it is not retried; nor
    does one whose very bytes the source sent again under another name, applied (a misnamed file
    renamed: its failure feeds no entity, so no later delivery would replace it)."""
    f, later = files.c, files.alias("later").c
    replaced = sa.exists().where(later.brand == f.brand, later.source == f.source, later.status == "applied", sa.or_(
        sa.and_(later.entity == f.entity, later.sort_key > f.sort_key),
        sa.and_(later.sha256 == f.sha256, later.name != f.name)))
    query = sa.select(f.source, f.name, f.entity, f.error).where(f.brand == brand, f.status == "failed", ~replaced)
    rows = conn.execute(query.order_by(f.sort_key, f.name, f.entity)).all()
    return [r for r in rows if name is None or name in (r.name, dropped_name(r.name))]

def rejected_rows(conn: sa.Connection, brand: str, entity: str, deliveries: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Rows of `entity` rejected from each delivery, by (source, name): a name alone may come from two sources."""
    if not deliveries:
        return {}
    wanted = sa.tuple_(files.c.source, files.c.name).in_(deliveries)
    return {(r.source, r.name): r.rejected or 0 for r in conn.execute(
        sa.select(files.c.source, files.c.name, files.c.rejected).where(files.c.brand == brand, files.c.entity == entity, wanted))}
