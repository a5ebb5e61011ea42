"""Contribute: a source's checked rows limited to the attributes precedence lets it set, ready to
merge; a sales file's rows go on into the month store, where the file counts as applied."""

from __future__ import annotations

import shutil

import polars as pl
import sqlalchemy as sa

from bspk_pipelines.ingest.layout import Layout, parquet_parts
from bspk_pipelines.ingest.ledger import StepResult, advance, file_row, nothing_to_do
from bspk_pipelines.ingest.months import land_months, landing_counts
from bspk_pipelines.ingest.parse import LINE
from bspk_pipelines.ingest.precedence import owned_columns
from bspk_pipelines.ingest.rules import typed
from bspk_pipelines.ingest.unchanged import UnchangedRows
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.entities import ENTITIES
from bspk_pipelines.outbound.events import file_finished
from bspk_pipelines.warehouse.apply import Counts, now, unknown_references
from bspk_pipelines.warehouse.locks import brand_lock
from bspk_pipelines.warehouse.engine import writing

def map_file(engine: sa.Engine, layout: Layout, brand: Brand, source: str, entity_name: str, name: str) -> StepResult:
    """The source's contribution to the entity: its rows, limited to the attributes it owns.

    Sales history goes on into the month store, and the file counts as applied there. A checked
    file is mapped once.
    """
    with brand_lock(engine, brand.brand):
        return _map(engine, layout, brand, source, entity_name, name)

def _map(engine: sa.Engine, layout: Layout, brand: Brand, source: str, entity_name: str, name: str) -> StepResult:
    with engine.connect() as conn:
        row = file_row(conn, brand.brand, source, name, entity_name)
    if row is None or row["status"] != "validated":
        return nothing_to_do("map", row)
    entity = ENTITIES[entity_name]
    claim = row["claim"]
    out = layout.work(brand.brand, source, entity_name, name, claim, "mapped")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    total, preview, touched, counts = 0, None, set(), Counts()
    parts = parquet_parts(layout.work(brand.brand, source, entity_name, name, claim, "validated"))
    with writing(engine) as conn:
        # The shoppers and products the file names that are not known: asked once, not per batch.
        unknown = unknown_references(conn, entity, brand.brand, pl.scan_parquet(parts)) if entity.month_column and parts else None
        for i, part in enumerate(parts):
            rows = _owned(brand, source, entity, pl.read_parquet(part))
            total, preview = total + rows.height, rows.head(5) if preview is None or preview.is_empty() else preview
            if entity.month_column:
                # Counted against the table as it stands when the file lands, then landed by month.
                counts += landing_counts(conn, brand.brand, entity, rows, unknown)
                touched |= set(land_months(conn, layout.data_dir, brand, entity, rows, source, name,
                                           f"{row['sort_key']}/{i:05d}"))
            else:
                rows.write_parquet(out / f"part-{i:05d}.parquet")
        if entity.month_column:
            advance(conn, brand.brand, source, name, entity_name, ("validated",), status="applied", applied_at=now(), inserted=counts.inserted,
                 updated=counts.updated, unchanged=counts.unchanged, held=counts.held, deleted=0)
            file_finished(conn, brand.brand, source, name, entity_name, now())
        else:
            unchanged = UnchangedRows.of_validated(layout, brand, source, entity_name, name, claim)
            if unchanged:
                unchanged.record_in(out)
            advance(conn, brand.brand, source, name, entity_name, ("validated",), status="mapped")
    if entity.month_column:
        forget_work(layout, brand.brand, source, entity_name, name, claim)  # only once the landing is committed
        return StepResult("applied", f"landed in {len(touched)} month(s): {_span(sorted(touched))}", rows=total,
                          preview=preview)
    return StepResult("mapped", rows=total, preview=preview)

def _owned(brand: Brand, source: str, entity, rows: pl.DataFrame) -> pl.DataFrame:
    """Rows limited to the key and the attributes `source` may set; key columns it does not send
    take '' where the key allows a blank, else the reference's default."""
    keep = [c for c in owned_columns(brand, source, entity.name) if c in rows.columns]
    missing_keys = [k for k in entity.key if k not in rows.columns]
    if missing_keys:
        filler = pl.DataFrame({k: [None if k in entity.optional_key else entity.column(k).default] for k in missing_keys},
                              schema={k: pl.Utf8 for k in missing_keys})
        rows = rows.join(typed(entity, filler), how="cross")
    return rows.select(*keep, *missing_keys, LINE)

def forget_work(layout: Layout, brand: str, source: str, entity: str, name: str, claim: str) -> None:
    """An applied file's intermediate parts are no longer needed: the landed original stays,
    and sales history lives on in the month store."""
    for layer in ("validated", "mapped"):
        shutil.rmtree(layout.work(brand, source, entity, name, claim, layer), ignore_errors=True)
    if claim:  # the claim's folder holds nothing else
        shutil.rmtree(layout.work(brand, source, entity, name, claim, "mapped").parent, ignore_errors=True)

def _span(month_keys: list[str]) -> str:
    return "none" if not month_keys else month_keys[0] if len(month_keys) == 1 else f"{month_keys[0]} to {month_keys[-1]}"
