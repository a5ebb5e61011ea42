"""The four steps a delivered file goes through: land, validate, map, apply.

Each step reads what the previous one left (the landed file, then parquet in the work folder),
records its outcome in the `files` table and can be run again safely: a file name is imported
once, and a step that finds its file already past it changes nothing.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from bspk_pipelines.config import Brand
from bspk_pipelines.entities import ENTITIES
from bspk_pipelines.files import Delivery, safe_name, sha256_of
from bspk_pipelines.history import land_months, landing_counts, release_months, split_by_month
from bspk_pipelines.mapping import lineage, source_columns, to_platform
from bspk_pipelines.parse import LINE, FileFailure, RowProblem, read_batches
from bspk_pipelines.validate import typed, validate
from bspk_pipelines.warehouse.apply import Counts, apply_rows, now, release_held
from bspk_pipelines.warehouse.schema import files, rejects

IN_PROGRESS = ("received", "validated", "mapped")


@dataclass(frozen=True)
class Layout:
    """Where a brand's files live on disk under the data folder."""

    data_dir: Path

    def drop(self, brand: Brand, source: str) -> Path:
        path = Path(brand.sources[source].drop)
        return path if path.is_absolute() else self.data_dir / path

    def landed(self, brand: str, source: str, name: str) -> Path:
        return self.data_dir / brand / "landing" / source / safe_name(name)

    def work(self, brand: str, source: str, entity: str, name: str, layer: str) -> Path:
        return self.data_dir / brand / "work" / source / entity / f"{safe_name(name)}.{layer}.parquet"


@dataclass
class StepResult:
    """What one step did to one file, for the asset's metadata."""

    status: str
    message: str = ""
    rows: int = 0
    rejected: int = 0
    sha256: str = ""
    size: int = 0
    preview: pl.DataFrame | None = None
    rejects: list[RowProblem] = field(default_factory=list)


def _file_row(conn: sa.Connection, brand: str, source: str, name: str):
    return conn.execute(
        sa.select(files).where(files.c.brand == brand, files.c.source == source, files.c.name == name)
    ).mappings().first()


def _set(conn: sa.Connection, brand: str, source: str, name: str, **values) -> None:
    conn.execute(files.update().where(files.c.brand == brand, files.c.source == source, files.c.name == name).values(**values))


def record_failed_name(engine: sa.Engine, brand: str, source: str, name: str, path: Path, error: str) -> bool:
    """Record a file whose name says nothing we can apply; True if it was not recorded before."""
    with engine.begin() as conn:
        if _file_row(conn, brand, source, name):
            return False
        conn.execute(files.insert().values(
            brand=brand, source=source, name=name, entity=None, sha256=sha256_of(path), size=path.stat().st_size,
            received_at=now(), sort_key="", status="failed", error=error,
        ))
    return True


def land(engine: sa.Engine, layout: Layout, brand: Brand, delivery: Delivery) -> StepResult:
    """Copy the delivered file, unchanged, into the landing zone and record name, size and sha256."""
    source, name = delivery.source, delivery.name
    dropped = layout.drop(brand, source) / safe_name(name)
    landed = layout.landed(brand.brand, source, name)
    with engine.begin() as conn:
        existing = _file_row(conn, brand.brand, source, name)
        if existing and existing["status"] not in IN_PROGRESS:
            return StepResult(existing["status"], f"{name} was imported before ({existing['status']}); a file name is imported once",
                              sha256=existing["sha256"], size=existing["size"])
    if not landed.exists() or not existing:
        landed.parent.mkdir(parents=True, exist_ok=True)
        partial = landed.with_name(f".{landed.name}.part")
        shutil.copyfile(dropped, partial)
        os.replace(partial, landed)
    sha, size = sha256_of(landed), landed.stat().st_size
    with engine.begin() as conn:
        if existing:
            return StepResult(existing["status"], "resuming a file whose processing was interrupted", sha256=sha, size=size)
        twin = conn.execute(
            sa.select(files.c.name).where(files.c.brand == brand.brand, files.c.sha256 == sha, files.c.status != "failed")
        ).scalar()
        status = "duplicate" if twin else "received"
        conn.execute(files.insert().values(
            brand=brand.brand, source=source, name=name, entity=delivery.entity, sha256=sha, size=size,
            received_at=now(), sort_key=delivery.queue_position, status=status, duplicate_of=twin,
            error=f"same bytes as {twin}: recorded, not applied twice" if twin else None,
        ))
    message = f"same bytes as {twin}: recorded as a duplicate, not applied" if twin else "landed"
    return StepResult(status, message, sha256=sha, size=size)


def _parse_and_check(layout: Layout, brand: Brand, source: str, entity_name: str, name: str) -> tuple[pl.DataFrame, list[RowProblem], int, int]:
    entity = ENTITIES[entity_name]
    src = brand.sources[source]
    path = layout.landed(brand.brand, source, name)
    if src.format == "bspk":
        expected = [c.header or c.name for c in entity.columns if c.in_header]
        optional = [c.header or c.name for c in entity.columns if not c.in_header]
        batches = read_batches(path, src.dialect, expected, optional, exact=True)
        file_map = None
        renamed = entity.header_names
    else:
        file_map = next(f for f in src.files if f.entity == entity_name and _matches(f.pattern, name))
        batches = read_batches(path, src.dialect, source_columns(file_map))
    frames, problems, read, superseded = [], [], 0, 0
    for batch in batches:
        problems += batch.problems
        read += batch.rows.height + len(batch.problems)
        if file_map:
            rows, where = to_platform(entity, file_map, src.dialect, batch.rows), lineage(file_map)
        else:
            rows = batch.rows.rename({h: n for h, n in renamed.items() if h in batch.rows.columns})
            where = {n: h for h, n in renamed.items()}
        checked = validate(entity, rows, where)
        frames.append(checked.rows)
        problems += checked.rejects
        superseded += checked.superseded
    rows = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    problems.sort(key=lambda p: (p.line, p.column))
    return rows, problems, read, superseded


def _matches(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def validate_file(engine: sa.Engine, layout: Layout, brand: Brand, source: str, entity: str, name: str) -> StepResult:
    """Parse and check every row; good rows go on, bad rows become rejects naming line, column and rule."""
    with engine.connect() as conn:
        row = _file_row(conn, brand.brand, source, name)
    if row is None or row["status"] not in IN_PROGRESS:
        return StepResult(row["status"] if row else "missing", "nothing to validate: " + (row["status"] if row else "not landed"))
    try:
        rows, problems, read, superseded = _parse_and_check(layout, brand, source, entity, name)
        if ENTITIES[entity].month_column:
            _, outside = split_by_month(brand, ENTITIES[entity], rows, ENTITIES[entity].month_column)
            if outside:
                rows = rows.filter(~pl.col(LINE).is_in([p.line for p in outside]))
                problems = sorted(problems + outside, key=lambda p: (p.line, p.column))
    except FileFailure as e:
        with engine.begin() as conn:
            _set(conn, brand.brand, source, name, status="failed", error=str(e))
        raise
    out = layout.work(brand.brand, source, entity, name, "validated")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.write_parquet(out)
    with engine.begin() as conn:
        conn.execute(rejects.delete().where(rejects.c.brand == brand.brand, rejects.c.source == source, rejects.c.file == name))
        if problems:
            conn.execute(rejects.insert(), [
                {"brand": brand.brand, "source": source, "file": name, "line": p.line, "column": p.column,
                 "value": p.value, "rule": p.rule, "message": p.message}
                for p in problems
            ])
        rejected_lines = len({p.line for p in problems})
        _set(conn, brand.brand, source, name, status="validated", rows_read=read, rejected=rejected_lines,
             superseded=superseded)
    return StepResult("validated", rows=rows.height, rejected=rejected_lines, preview=rows.head(5), rejects=problems)


def owned_columns(brand: Brand, source: str, entity_name: str) -> list[str]:
    """The entity's key plus the attributes `source` may set under the brand's precedence."""
    entity = ENTITIES[entity_name]
    return list(entity.key) + [a for a in entity.attributes if source in brand.owners(entity_name, a)]


def map_file(engine: sa.Engine, layout: Layout, brand: Brand, source: str, entity_name: str, name: str) -> StepResult:
    """The source's contribution to the entity: its rows, limited to the attributes it owns."""
    with engine.connect() as conn:
        row = _file_row(conn, brand.brand, source, name)
    if row is None or row["status"] not in ("validated", "mapped"):
        return StepResult(row["status"] if row else "missing", "nothing to map: " + (row["status"] if row else "not landed"))
    entity = ENTITIES[entity_name]
    rows = pl.read_parquet(layout.work(brand.brand, source, entity_name, name, "validated"))
    keep = [c for c in owned_columns(brand, source, entity_name) if c in rows.columns]
    # Key columns a source does not send: '' where the key allows a blank, else the reference's default.
    missing_keys = [k for k in entity.key if k not in rows.columns]
    if missing_keys:
        filler = pl.DataFrame({k: [None if k in entity.optional_key else entity.column(k).default] for k in missing_keys},
                              schema={k: pl.Utf8 for k in missing_keys})
        rows = rows.join(typed(entity, filler), how="cross")
    rows = rows.select(*keep, *missing_keys, LINE)
    out = layout.work(brand.brand, source, entity_name, name, "mapped")
    rows.write_parquet(out)
    with engine.begin() as conn:
        if entity.month_column:
            # History lands in the month store; the month partitions rebuild from it. The file's
            # counts say what it changes against the table as it stands when it lands.
            counts = landing_counts(conn, brand.brand, entity, rows)
            touched = land_months(conn, layout.data_dir, brand, entity, rows, name, row["sort_key"])
            _set(conn, brand.brand, source, name, status="applied", applied_at=now(), inserted=counts.inserted,
                 updated=counts.updated, unchanged=counts.unchanged, held=counts.held, deleted=0)
            return StepResult("applied", f"landed in {len(touched)} month(s): {_span(touched)}", rows=rows.height,
                              preview=rows.head(5))
        _set(conn, brand.brand, source, name, status="mapped")
    return StepResult("mapped", rows=rows.height, preview=rows.head(5))


def _span(month_keys: list[str]) -> str:
    return "none" if not month_keys else month_keys[0] if len(month_keys) == 1 else f"{month_keys[0]} to {month_keys[-1]}"


@dataclass
class Applied:
    file: str
    source: str
    counts: Counts


def provided_columns(brand: Brand, entity_name: str) -> dict[str, set[str]]:
    entity = ENTITIES[entity_name]
    out = {}
    for sid in brand.sources_of(entity_name):
        src = brand.sources[sid]
        if src.format == "bspk":
            out[sid] = set(entity.column_names)
        else:
            out[sid] = {c for f in src.files if f.entity == entity_name for c in f.columns}
    return out


def apply_pending(engine: sa.Engine, layout: Layout, brand: Brand, entity_name: str) -> tuple[list[Applied], Counts]:
    """Apply every mapped file of the entity, first in first out, each in one transaction;
    then release held rows whose shopper or product has arrived."""
    entity = ENTITIES[entity_name]
    multi = len(brand.sources_of(entity_name)) > 1
    owners = {a: brand.owners(entity_name, a) for a in entity.attributes} if multi else None
    provided = provided_columns(brand, entity_name) if multi else None
    with engine.connect() as conn:
        pending = conn.execute(
            sa.select(files.c.source, files.c.name).where(
                files.c.brand == brand.brand, files.c.entity == entity_name, files.c.status == "mapped"
            ).order_by(files.c.sort_key, files.c.name)
        ).all()
    applied = []
    for source, name in pending:
        rows = pl.read_parquet(layout.work(brand.brand, source, entity_name, name, "mapped"))
        with engine.begin() as conn:
            counts = apply_rows(conn, brand.brand, entity_name, source, rows, name, owners, provided)
            _set(conn, brand.brand, source, name, status="applied", applied_at=now(), **{
                k: v for k, v in counts.as_dict().items() if k in ("inserted", "updated", "unchanged", "held", "deleted")
            })
        applied.append(Applied(name, source, counts))
    with engine.begin() as conn:
        released = release_held(conn, brand.brand, entity_name)
        # Held sales wait in their months: the months whose shopper or product arrived rebuild.
        release_months(conn, brand.brand, entity_name)
    return applied, released
