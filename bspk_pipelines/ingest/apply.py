"""Apply: every contributed file of an entity merged by precedence into its platform table, first
in first out, one transaction per file; then held rows whose shopper or product arrived, each
credited to the delivery that sent it."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from bspk_pipelines.engagement.clients import ImportSync, MetafieldsTouch
from bspk_pipelines.ingest.check import validate_file
from bspk_pipelines.ingest.contribute import forget_work, map_file
from bspk_pipelines.ingest.layout import Layout, parquet_parts
from bspk_pipelines.ingest.ledger import account_superseded_held, advance, credit_released
from bspk_pipelines.ingest.months import release_months
from bspk_pipelines.ingest.precedence import provided_columns
from bspk_pipelines.ingest.unchanged import UnchangedRows, can_set_aside
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.entities import ENTITIES, referenced
from bspk_pipelines.outbound.events import file_finished
from bspk_pipelines.warehouse.apply import Counts, Observer, apply_rows, now, release_held
from bspk_pipelines.warehouse.locks import brand_lock
from bspk_pipelines.warehouse.schema import files, held
from bspk_pipelines.warehouse.engine import writing

@dataclass
class Applied:
    file: str
    source: str
    counts: Counts

def apply_pending(engine: sa.Engine, layout: Layout, brand: Brand, entity_name: str) -> tuple[list[Applied], Counts]:
    """Apply every mapped file of the entity, first in first out, each in one transaction;
    then release held rows whose shopper or product has arrived, credited in the ledger to the
    delivery (source and file) that sent them."""
    with brand_lock(engine, brand.brand):
        return _apply_pending(engine, layout, brand, entity_name)

def _apply_pending(engine: sa.Engine, layout: Layout, brand: Brand, entity_name: str) -> tuple[list[Applied], Counts]:
    entity = ENTITIES[entity_name]
    # Append-only rows are not merged: the first version recorded stays, whichever source sent it.
    multi = len(brand.sources_of(entity_name)) > 1 and not entity.append_only
    owners = {a: brand.attribute_owners(entity_name, a) for a in entity.attributes} if multi else None
    provided = provided_columns(brand, entity_name) if multi else None
    with engine.connect() as conn:
        pending = conn.execute(
            sa.select(files.c.source, files.c.name, files.c.status, files.c.claim).where(
                files.c.brand == brand.brand, files.c.entity == entity_name, files.c.status.in_(("validated", "mapped"))
            ).order_by(files.c.sort_key, files.c.name)
        ).all()
    applied = []
    for source, name, status, claim in pending:
        if status == "validated":
            # Its run stopped between validation and mapping (or a check below did).
            map_file(engine, layout, brand, source, entity_name, name)
        if can_set_aside(entity):
            with engine.connect() as conn:
                current = UnchangedRows.mapped_against_last_applied(conn, layout, brand, source, entity_name, name, claim)
            if not current:
                # Rows were set aside against a file that is no longer the source's last applied
                # one (or the check stopped half way): checked again, against the one that is.
                validate_file(engine, layout, brand, source, entity_name, name, again=True)
                map_file(engine, layout, brand, source, entity_name, name)
        unchanged = UnchangedRows.of_validated(layout, brand, source, entity_name, name, claim) if can_set_aside(entity) else None
        rows = pl.read_parquet(parquet_parts(layout.work(brand.brand, source, entity_name, name, claim, "mapped")))
        with writing(engine) as conn:
            counts = (apply_rows(conn, brand.brand, entity_name, source, rows, name, owners, provided,
                                 observe=_client_observer(brand, entity_name, name))
                      if not rows.is_empty() else Counts())
            counts.unchanged += unchanged.set_aside() if unchanged else 0
            advance(conn, brand.brand, source, name, entity_name, ("mapped",), status="applied", applied_at=now(), **{
                k: v for k, v in counts.as_dict().items() if k in ("inserted", "updated", "unchanged", "held", "deleted")
            }, **({"rejected": sa.func.coalesce(files.c.rejected, 0) + counts.rejected} if counts.rejected else {}))
            file_finished(conn, brand.brand, source, name, entity_name, now())
            if unchanged:
                unchanged.keep()  # before the commit: digests on disk never claim an apply that did not happen
        if unchanged:
            unchanged.forget_all_but_this()
        applied.append(Applied(name, source, counts))
        forget_work(layout, brand.brand, source, entity_name, name, claim)
    released = Counts()
    with writing(engine) as conn:
        for (source, name), counts in release_held(conn, brand.brand, entity_name,
                                                   _client_observer(brand, entity_name, "")).items():
            credit_released(conn, brand.brand, source, name, entity_name, counts)
            released += counts
        account_superseded_held(conn, brand.brand, entity_name)
        # Held sales wait in their months: the months whose shopper or product arrived rebuild.
        release_months(conn, brand.brand, entity_name)
    return applied, released


def _client_observer(brand: Brand, entity_name: str, name: str) -> Observer | None:
    """What carries a file's changes (`name`; held rows released: "") over to the brand's clients in
    the same transaction: a shopper's values (and the clients' events), a metafield's change of its
    client's update time."""
    if entity_name == "shoppers":
        return ImportSync(brand.brand, name, brand.webhooks.echo_imports, now())
    if entity_name == "metafields":
        return MetafieldsTouch(brand.brand, now())
    return None


def entities_waiting(conn: sa.Connection, brand: Brand) -> list[str]:
    """The brand's tables (not those by month) that `apply_pending` has work for: a file checked
    or contributed but not applied (its run stopped short), or rows held for a shopper or product
    since before a file of what they wait for was applied."""
    f, h = files.c, held.c
    waiting = set(conn.execute(sa.select(f.entity).distinct().where(
        f.brand == brand.brand, f.status.in_(("validated", "mapped")))).scalars())
    held_since = dict(conn.execute(sa.select(h.entity, sa.func.min(h.held_at)).where(
        h.brand == brand.brand, h.cause == "reference").group_by(h.entity)).all())
    last_applied = dict(conn.execute(sa.select(f.entity, sa.func.max(f.applied_at)).where(
        f.brand == brand.brand, f.status == "applied").group_by(f.entity)).all())
    for entity, since in held_since.items():
        if any(last_applied.get(r) and last_applied[r] > since for r in referenced(entity)):
            waiting.add(entity)
    return [e for e in brand.entities if e in waiting and not ENTITIES[e].month_column]
