"""The four steps a delivered file goes through: land, validate, map, apply.

Each step reads what the previous one left (the landed file, then parquet in the work folder),
records its outcome in the `files` table and can be run again safely: a file name is imported
once, and a step that finds its file already past it changes nothing.

Several runs may reach the same file at once (the sensor's, `bspk sync`, the UI's). Every step
holds the brand's writer lock (`warehouse.locks`) while it works, and moves the file on only from
the status it expects: landing claims the file for one run (an insert that fails if the file is
recorded), each later step takes it from the status the one before left, and the work folders of
a landing are its own (named after its claim). A run that comes second finds the work done and
says so.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand, FileMap
from bspk_pipelines.engagement.clients import ImportSync
from bspk_pipelines.model.entities import ENTITIES
from bspk_pipelines.ingest.drop import Changed, Delivery, Refused, Snapshot, copy_delivered, safe_name
from bspk_pipelines.ingest.months import land_months, landing_counts, release_months, split_by_month
from bspk_pipelines.ingest.mapping import lineage, source_columns, to_platform
from bspk_pipelines.outbound.events import file_finished
from bspk_pipelines.ingest.parse import LINE, FileFailure, RowProblem, read_batches
from bspk_pipelines.ingest.rules import typed, validate
from bspk_pipelines.ingest import mapping, parse, rules
from bspk_pipelines.model import entities
from bspk_pipelines.warehouse import bulk
from bspk_pipelines.warehouse.apply import Counts, apply_rows, now, release_held, unknown_references
from bspk_pipelines.warehouse.locks import brand_lock
from bspk_pipelines.warehouse.schema import files, insert_ignoring_conflicts, rejects, writing

IN_PROGRESS = ("received", "validated", "mapped")
# A drop folder entry not taken (a link, not a regular file, unreadable): looked at again.
REFUSED = "refused"
# Under a source's entity work folder, the folders of the claims (the others are digests').
CLAIMS = "claims"
# Rows per batch while a file streams through validation and mapping: bounds memory.
BATCH_ROWS = 250_000


@dataclass(frozen=True)
class Layout:
    """Where a brand's files live on disk under the data folder."""

    data_dir: Path

    def drop(self, brand: Brand, source: str) -> Path:
        path = Path(brand.sources[source].drop)
        return path if path.is_absolute() else self.data_dir / path

    def landed(self, brand: str, source: str, name: str) -> Path:
        return self.data_dir / brand / "landing" / source / safe_name(name)

    def work(self, brand: str, source: str, entity: str, name: str, claim: str | None, layer: str) -> Path:
        """Folder of a file's rows after a step, as parquet parts (one per batch): in a folder of
        the landing's claim (files landed before claims existed have none)."""
        folder = self.data_dir / brand / "work" / source / entity
        return (folder / CLAIMS / safe_name(claim) if claim else folder) / f"{safe_name(name)}.{layer}"

    def digests(self, brand: str, source: str, entity: str) -> Path:
        """Folder of the row digests of the source's last applied file of the entity."""
        return self.data_dir / brand / "work" / source / entity / "applied-digests"


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


def file_row(conn: sa.Connection, brand: str, source: str, name: str):
    return conn.execute(
        sa.select(files).where(files.c.brand == brand, files.c.source == source, files.c.name == name)
    ).mappings().first()


def _set(conn: sa.Connection, brand: str, source: str, name: str, **values) -> None:
    conn.execute(files.update().where(files.c.brand == brand, files.c.source == source, files.c.name == name).values(**values))


class ClaimLost(RuntimeError):
    """Another writer moved the file on while this step worked (its lock was lost): the step's
    transaction is rolled back, so the file is never applied twice."""


def _advance(conn: sa.Connection, brand: str, source: str, name: str, was: tuple[str, ...], **values) -> None:
    """Move a file on from one of the statuses `was` (a compare-and-set), or ClaimLost."""
    moved = conn.execute(files.update().where(
        files.c.brand == brand, files.c.source == source, files.c.name == name, files.c.status.in_(was)).values(**values))
    if moved.rowcount != 1:
        now_is = file_row(conn, brand, source, name)
        raise ClaimLost(f"{name}: another writer moved the file on meanwhile (it is {now_is['status'] if now_is else 'gone'}); "
                        "this step changed nothing")


def record_failed_name(engine: sa.Engine, brand: str, source: str, name: str, sha: str, seen: Snapshot,
                       error: str) -> bool:
    """Record a file whose name says nothing we can apply; True if it was not recorded before."""
    with writing(engine) as conn:
        _forget_refusal(conn, brand, source, name)
        recorded = insert_ignoring_conflicts(conn, files, dict(
            brand=brand, source=source, name=name, entity=None, sha256=sha, size=seen.size,
            dropped_mtime_ns=seen.mtime_ns, received_at=now(), sort_key="", status="failed", error=error,
        ))
        if recorded:
            file_finished(conn, brand, source, name, now())
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
            _set(conn, brand, source, name, error=error, received_at=now())
            return True
        return insert_ignoring_conflicts(conn, files, dict(
            brand=brand, source=source, name=name, entity=None, sha256="", size=0, received_at=now(), sort_key="",
            status=REFUSED, error=error))


def _forget_refusal(conn: sa.Connection, brand: str, source: str, name: str) -> None:
    """An entry refused before is now a file that can be read: its record makes way for the file's."""
    conn.execute(files.delete().where(files.c.brand == brand, files.c.source == source, files.c.name == name,
                                      files.c.status == REFUSED))


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
            _forget_refusal(conn, brand.brand, source, name)
            twin = twin_of(conn, brand.brand, sha)
            if not _record_file(conn, brand.brand, delivery, sha, seen, twin, claim, run_id):
                # The sensor's look recorded it meanwhile (as a duplicate: it takes no lock for that).
                row = file_row(conn, brand.brand, source, name)
                return StepResult(row["status"], f"recorded meanwhile: {row['status']}", sha256=row["sha256"], size=row["size"])
    message = f"same bytes as {twin}: recorded as a duplicate, not applied" if twin else "landed"
    return StepResult("duplicate" if twin else "received", message, sha256=sha, size=seen.size)


def twin_of(conn: sa.Connection, brand: str, sha: str) -> str | None:
    """The name of a file of the brand with these bytes that was not refused, if any."""
    return conn.execute(
        sa.select(files.c.name).where(files.c.brand == brand, files.c.sha256 == sha,
                                      files.c.status.not_in(("failed", REFUSED)))
    ).scalar()


def _record_file(conn: sa.Connection, brand: str, delivery: Delivery, sha: str, seen: Snapshot, twin: str | None,
                 claim: str = "", run_id: str = "") -> bool:
    """Record the delivery as the drop folder had it (`seen`), claimed by `claim`; False if it is
    recorded already (another run's)."""
    recorded = insert_ignoring_conflicts(conn, files, dict(
        brand=brand, source=delivery.source, name=delivery.name, entity=delivery.entity, sha256=sha, size=seen.size,
        dropped_mtime_ns=seen.mtime_ns,
        received_at=now(), sort_key=delivery.queue_position, status="duplicate" if twin else "received",
        duplicate_of=twin, error=f"same bytes as {twin}: recorded, not applied twice" if twin else None,
        claim=claim, run_id=run_id,
    ))
    if recorded and twin:
        file_finished(conn, brand, delivery.source, delivery.name, now())
    return recorded


def record_duplicate(engine: sa.Engine, brand: str, delivery: Delivery, sha: str, seen: Snapshot) -> str | None:
    """Record a delivered file as a duplicate without landing it, if a file with the same bytes
    was imported before (its landed copy holds them). Returns that file's name, or None (then
    nothing is recorded and the file goes through the four steps)."""
    with writing(engine) as conn:
        twin = twin_of(conn, brand, sha)
        row = file_row(conn, brand, delivery.source, delivery.name)
        if twin is None or (row and row["status"] != REFUSED):
            return None
        _forget_refusal(conn, brand, delivery.source, delivery.name)
        return twin if _record_file(conn, brand, delivery, sha, seen, twin) else None


def mapping_of(brand: Brand, source: str, entity_name: str, name: str) -> tuple[FileMap | None, dict[str, str]]:
    """How the file maps to the entity (None: the platform's own format), and for each platform
    column the file's column a reject should name."""
    src = brand.sources[source]
    if src.format == "bspk":
        return None, {n: h for h, n in ENTITIES[entity_name].header_names.items()}
    file_map = next(f for f in src.files if f.entity == entity_name and fnmatch.fnmatchcase(name, f.pattern))
    return file_map, lineage(file_map)


def expected_header(brand: Brand, source: str, entity_name: str, name: str) -> tuple[list[str], list[str], bool]:
    """The file's header as validation reads it: (columns that must be there, columns that may,
    whether any other column is refused)."""
    file_map, _ = mapping_of(brand, source, entity_name, name)
    if file_map is None:
        entity = ENTITIES[entity_name]
        return ([c.header or c.name for c in entity.columns if c.in_header],
                [c.header or c.name for c in entity.columns if not c.in_header], True)
    return source_columns(file_map), [], False


def _checked_batches(layout: Layout, brand: Brand, source: str, entity_name: str, name: str, batch_rows: int,
                     unchanged: UnchangedRows | None):
    """The file's rows in batches: (valid rows, problems, rows read) each. With `unchanged`, rows
    as the source's last applied file sent them are set aside there before mapping and checks."""
    entity = ENTITIES[entity_name]
    src = brand.sources[source]
    path = layout.landed(brand.brand, source, name)
    file_map, where = mapping_of(brand, source, entity_name, name)
    expected, optional, exact = expected_header(brand, source, entity_name, name)
    batches = read_batches(path, src.dialect, expected, optional, exact=exact, batch_rows=batch_rows,
                           set_aside=unchanged.set_aside_rows if unchanged else None)
    for batch in batches:
        rows = batch.rows
        if file_map:
            rows = to_platform(entity, file_map, src.dialect, rows)
        else:
            rows = rows.rename({h: n for h, n in entity.header_names.items() if h in rows.columns})
        checked = validate(entity, rows, where)
        problems, rows = batch.problems + checked.rejects, checked.rows
        if entity.month_column:
            _, outside = split_by_month(brand, entity, rows, where.get(entity.month_column, entity.month_column))
            if outside:
                rows = rows.filter(~pl.col(LINE).is_in([p.line for p in outside]))
                problems += outside
        yield rows, problems, batch.rows.height + len(batch.problems) + batch.set_aside


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def _count(parts: list[Path]) -> int:
    return pl.scan_parquet(parts).select(pl.len()).collect().item() if parts else 0


def _later_duplicates(rows: pl.LazyFrame, columns: list[str], keep_by: str | None, exclude: set[int] = frozenset()) -> pl.DataFrame:
    """Rows sharing `columns` with another row of the file (lines in `exclude` aside): every row
    but the first (or, with `keep_by`, the latest by that column), with the line of the one that stays."""
    scan = rows.select(*columns, LINE, *([keep_by] if keep_by else []))
    scan = scan.filter(~pl.col(LINE).is_in(list(exclude))) if exclude else scan
    order = [keep_by, LINE] if keep_by else [LINE]
    stays = scan.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in columns)).group_by(columns).agg(
        pl.col(LINE).sort_by(order).last().alias("_stays") if keep_by else pl.col(LINE).min().alias("_stays"),
        pl.len().alias("_n"),
    ).filter(pl.col("_n") > 1)
    return scan.join(stays, on=columns, nulls_equal=True).filter(pl.col(LINE) != pl.col("_stays")).collect(engine="streaming")


def _deduplicate(entity, parts: list[Path], aside: list[Path], where: dict[str, str]) -> tuple[list[RowProblem], int]:
    """A key once per file, whatever batch it fell in: a later duplicate is rejected, except where
    the latest measurement wins (superseded); values that must be unique likewise. Rows set
    aside as unchanged (`aside`: their key and unique values) count as any other row.
    Returns the rejects and the number of rows superseded."""
    problems, superseded, dropped = [], 0, set()
    every_row = pl.concat([pl.scan_parquet(p) for p in (parts, aside) if p], how="diagonal")
    columns = pl.read_parquet_schema(parts[0])
    key = [k for k in entity.key if k in columns]
    later = _later_duplicates(every_row, key, entity.latest_by)
    if entity.latest_by:
        superseded = later.height
    else:
        label = "+".join(where.get(k, k) for k in key)
        problems += [RowProblem(r[LINE], label, "|".join(str(r[k]) for k in key), "duplicate_key", f"same key as line {r['_stays']}")
                     for r in later.iter_rows(named=True)]
    dropped |= set(later[LINE].to_list())
    for c in entity.columns:
        if c.unique and c.name in columns:
            clash = _later_duplicates(every_row, [c.name], None, dropped)
            problems += [RowProblem(r[LINE], where.get(c.name, c.name), r[c.name], f"duplicate_{c.name}",
                                    f"{c.name} must be unique per {entity.name}; line {r['_stays']} has it")
                         for r in clash.iter_rows(named=True)]
            dropped |= set(clash[LINE].to_list())
    if dropped:
        for part in parts + aside:
            rows = pl.read_parquet(part)
            kept = rows.filter(~pl.col(LINE).is_in(list(dropped)))
            if kept.height != rows.height:
                kept.write_parquet(part)
    return problems, superseded


def validate_file(engine: sa.Engine, layout: Layout, brand: Brand, source: str, entity: str, name: str,
                  batch_rows: int = BATCH_ROWS, again: bool = False) -> StepResult:
    """Parse and check every row; good rows go on, bad rows become rejects naming line, column and rule.

    The file streams through in batches of `batch_rows`, so memory stays bounded whatever its size.
    Rows exactly as the source's last applied file sent them are set aside as unchanged (see
    `UnchangedRows`). A landed file is checked once (`again`: a checked file is checked anew).
    """
    with brand_lock(engine, brand.brand):
        return _validate(engine, layout, brand, source, entity, name, batch_rows, again)


def _validate(engine: sa.Engine, layout: Layout, brand: Brand, source: str, entity: str, name: str,
              batch_rows: int, again: bool) -> StepResult:
    with engine.connect() as conn:
        row = file_row(conn, brand.brand, source, name)
    was = ("received", "validated", "mapped") if again else ("received",)
    if row is None or row["status"] not in was:
        return _nothing_to_do("validate", row)
    claim = row["claim"]
    out = layout.work(brand.brand, source, entity, name, claim, "validated")
    shutil.rmtree(out, ignore_errors=True)
    (out / "rejects").mkdir(parents=True)
    unchanged = None
    if _skippable(ENTITIES[entity]):
        with engine.connect() as conn:
            unchanged = UnchangedRows.start(conn, layout, brand, source, entity, name, claim)
    read = 0
    preview, sample = None, []
    try:
        for i, (rows, problems, n) in enumerate(_checked_batches(layout, brand, source, entity, name, batch_rows,
                                                                 unchanged)):
            rows.write_parquet(out / f"part-{i:05d}.parquet")
            _write_problems(out / "rejects" / f"part-{i:05d}.parquet", problems)
            read += n
            preview = rows.head(5) if preview is None or preview.is_empty() else preview
            sample = sample or sorted(problems, key=lambda p: (p.line, p.column))[:5]
    except FileFailure as e:
        with writing(engine) as conn:
            _advance(conn, brand.brand, source, name, was, status="failed", error=str(e))
            file_finished(conn, brand.brand, source, name, now())
        raise
    aside = unchanged.aside_parts() if unchanged else []
    problems, superseded = _deduplicate(ENTITIES[entity], _parts(out), aside, mapping_of(brand, source, entity, name)[1])
    _write_problems(out / "rejects" / "part-dedup.parquet", problems)
    sample = sample or problems[:5]
    valid, set_aside = _count(_parts(out)), _count(aside)
    found = _parts(out / "rejects")
    problems_frame = pl.scan_parquet(found) if found else None
    rejected_lines = problems_frame.select(pl.col("line").n_unique()).collect().item() if found else 0
    with writing(engine) as conn:
        conn.execute(rejects.delete().where(rejects.c.brand == brand.brand, rejects.c.source == source, rejects.c.file == name))
        for part in found:
            bulk.load(conn, rejects, pl.read_parquet(part).with_columns(
                pl.lit(brand.brand).alias("brand"), pl.lit(source).alias("source"), pl.lit(name).alias("file")))
        _advance(conn, brand.brand, source, name, was, status="validated", rows_read=read, rejected=rejected_lines,
             superseded=superseded)
    return StepResult("validated", rows=valid + set_aside, rejected=rejected_lines, unchanged=set_aside, preview=preview,
                      rejects=sample)


PROBLEM_SCHEMA = {"line": pl.Int64, "column": pl.Utf8, "value": pl.Utf8, "rule": pl.Utf8, "message": pl.Utf8}


def _write_problems(path: Path, problems: list[RowProblem]) -> None:
    if problems:
        pl.DataFrame([p.__dict__ for p in problems], schema=PROBLEM_SCHEMA).write_parquet(path)


def owned_columns(brand: Brand, source: str, entity_name: str) -> list[str]:
    """The entity's key plus the attributes `source` may set under the brand's precedence."""
    entity = ENTITIES[entity_name]
    return list(entity.key) + [a for a in entity.attributes if source in brand.owners(entity_name, a)]


def map_file(engine: sa.Engine, layout: Layout, brand: Brand, source: str, entity_name: str, name: str) -> StepResult:
    """The source's contribution to the entity: its rows, limited to the attributes it owns.

    Sales history goes on into the month store, and the file counts as applied there. A checked
    file is mapped once.
    """
    with brand_lock(engine, brand.brand):
        return _map(engine, layout, brand, source, entity_name, name)


def _nothing_to_do(step: str, row) -> StepResult:
    if row is None:
        return StepResult("missing", f"nothing to {step}: not landed")
    by = f" (claimed by run {row['run_id'][:8]})" if row["run_id"] else ""
    return StepResult(row["status"], f"nothing to {step}: the file is {row['status']}{by}")


def _map(engine: sa.Engine, layout: Layout, brand: Brand, source: str, entity_name: str, name: str) -> StepResult:
    with engine.connect() as conn:
        row = file_row(conn, brand.brand, source, name)
    if row is None or row["status"] != "validated":
        return _nothing_to_do("map", row)
    entity = ENTITIES[entity_name]
    claim = row["claim"]
    out = layout.work(brand.brand, source, entity_name, name, claim, "mapped")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    total, preview, touched, counts = 0, None, set(), Counts()
    parts = _parts(layout.work(brand.brand, source, entity_name, name, claim, "validated"))
    with writing(engine) as conn:
        # The shoppers and products the file names that are not known: asked once, not per batch.
        unknown = unknown_references(conn, entity, brand.brand, pl.scan_parquet(parts)) if entity.month_column and parts else None
        for i, part in enumerate(parts):
            rows = _owned(brand, source, entity, pl.read_parquet(part))
            total, preview = total + rows.height, rows.head(5) if preview is None or preview.is_empty() else preview
            if entity.month_column:
                # Counted against the table as it stands when the file lands, then landed by month.
                counts += landing_counts(conn, brand.brand, entity, rows, unknown)
                touched |= set(land_months(conn, layout.data_dir, brand, entity, rows, name, f"{row['sort_key']}/{i:05d}"))
            else:
                rows.write_parquet(out / f"part-{i:05d}.parquet")
        if entity.month_column:
            _advance(conn, brand.brand, source, name, ("validated",), status="applied", applied_at=now(), inserted=counts.inserted,
                 updated=counts.updated, unchanged=counts.unchanged, held=counts.held, deleted=0)
            file_finished(conn, brand.brand, source, name, now())
        else:
            unchanged = UnchangedRows.of_validated(layout, brand, source, entity_name, name, claim)
            if unchanged:
                unchanged.record_in(out)
            _advance(conn, brand.brand, source, name, ("validated",), status="mapped")
    if entity.month_column:
        _forget_work(layout, brand.brand, source, entity_name, name, claim)  # only once the landing is committed
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


def _forget_work(layout: Layout, brand: str, source: str, entity: str, name: str, claim: str) -> None:
    """An applied file's intermediate parts are no longer needed: the landed original stays,
    and sales history lives on in the month store."""
    for layer in ("validated", "mapped"):
        shutil.rmtree(layout.work(brand, source, entity, name, claim, layer), ignore_errors=True)
    if claim:  # the claim's folder holds nothing else
        shutil.rmtree(layout.work(brand, source, entity, name, claim, "mapped").parent, ignore_errors=True)


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
    with brand_lock(engine, brand.brand):
        return _apply_pending(engine, layout, brand, entity_name)


def _apply_pending(engine: sa.Engine, layout: Layout, brand: Brand, entity_name: str) -> tuple[list[Applied], Counts]:
    entity = ENTITIES[entity_name]
    multi = len(brand.sources_of(entity_name)) > 1
    owners = {a: brand.owners(entity_name, a) for a in entity.attributes} if multi else None
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
        if _skippable(entity):
            with engine.connect() as conn:
                current = UnchangedRows.mapped_against_last_applied(conn, layout, brand, source, entity_name, name, claim)
            if not current:
                # Rows were set aside against a file that is no longer the source's last applied
                # one (or the check stopped half way): checked again, against the one that is.
                validate_file(engine, layout, brand, source, entity_name, name, again=True)
                map_file(engine, layout, brand, source, entity_name, name)
        unchanged = UnchangedRows.of_validated(layout, brand, source, entity_name, name, claim) if _skippable(entity) else None
        rows = pl.read_parquet(_parts(layout.work(brand.brand, source, entity_name, name, claim, "mapped")))
        with writing(engine) as conn:
            # A shopper's change reaches its client (and the client's events) in the same transaction.
            clients = ImportSync(brand.brand, name, brand.webhooks.echo_imports, now()) if entity_name == "shoppers" else None
            counts = (apply_rows(conn, brand.brand, entity_name, source, rows, name, owners, provided, observe=clients)
                      if not rows.is_empty() else Counts())
            counts.unchanged += unchanged.set_aside() if unchanged else 0
            _advance(conn, brand.brand, source, name, ("mapped",), status="applied", applied_at=now(), **{
                k: v for k, v in counts.as_dict().items() if k in ("inserted", "updated", "unchanged", "held", "deleted")
            })
            file_finished(conn, brand.brand, source, name, now())
            if unchanged:
                unchanged.keep()  # before the commit: digests on disk never claim an apply that did not happen
        if unchanged:
            unchanged.forget_all_but_this()
        applied.append(Applied(name, source, counts))
        _forget_work(layout, brand.brand, source, entity_name, name, claim)
    with writing(engine) as conn:
        released = release_held(conn, brand.brand, entity_name)
        # Held sales wait in their months: the months whose shopper or product arrived rebuild.
        release_months(conn, brand.brand, entity_name)
    return applied, released


def _skippable(entity) -> bool:
    """Whether a row equal to the last file's can be left out: not where a file's rows act as a
    whole (an image set replaces the product's), nor where rows are compared on a time
    (inventory's latest measurement, sales by month)."""
    return not (entity.replace_set_by or entity.latest_by or entity.month_column)


DIGEST = ["_h1", "_h2"]


def _last_applied(conn: sa.Connection, brand: str, source: str, entity: str, other_than: str) -> str | None:
    """The source's file of the entity applied last, other than `other_than`."""
    return conn.execute(
        sa.select(files.c.name).where(files.c.brand == brand, files.c.source == source, files.c.entity == entity,
                                      files.c.status == "applied", files.c.name != other_than)
        .order_by(files.c.applied_at.desc(), files.c.sort_key.desc()).limit(1)
    ).scalar()


@cache
def _rules_fingerprint() -> str:
    """The code that reads, maps and checks rows, found by its modules wherever they live: digests
    made under other rules compare with nothing."""
    code = b"".join(Path(module.__file__).read_bytes()
                    for module in (entities, parse, mapping, rules, sys.modules[__name__]))
    return hashlib.sha256(code).hexdigest()


class UnchangedRows:
    """Rows a source sends again exactly as in its last applied file are neither mapped, checked
    nor applied again: they count as unchanged.

    Brands resend whole files (every shopper, every day) where a few rows changed. Each applied
    file leaves, for each of its rows that passed, a 128-bit digest (two seeded polars row
    hashes) of its line as read (its fields, for a file Python's csv module reads), with its key
    and unique values. The next file of the same source and entity sets aside each row whose
    digest is among them before splitting it into fields and mapping it; the key and
    unique values of the rows set aside still take part in the file's duplicate checks, so rejects
    and duplicates are reported exactly as if every row had been checked. Only the source's last
    applied file counts (a row changed, then changed back, is applied); if another file of the
    source is applied in between, the file is checked again, against that one, before it applies. The
    digests' folder name carries the file's header, the source's settings, the attributes it
    owns, the code of the rules and the polars version: a change to any of them compares with nothing.
    """

    def __init__(self, layout: Layout, brand: Brand, source: str, entity: str, name: str, claim: str):
        self.layout, self.brand, self.source, self.entity, self.name = layout, brand, source, entity, name
        self.work = layout.work(brand.brand, source, entity, name, claim, "validated")
        state = self.work / "unchanged.json"
        self.state = json.loads(state.read_text()) if state.exists() else {}
        self.previous: pl.DataFrame | None = None
        self.batches = 0

    @classmethod
    def start(cls, conn: sa.Connection, layout: Layout, brand: Brand, source: str, entity: str, name: str,
              claim: str) -> UnchangedRows:
        """Before validation: compare with the source's last applied file."""
        rows = cls(layout, brand, source, entity, name, claim)
        rows.state = {"compared_with": _last_applied(conn, brand.brand, source, entity, name)}
        for folder in ("aside", "digests"):
            (rows.work / folder).mkdir(parents=True, exist_ok=True)
        return rows

    @classmethod
    def of_validated(cls, layout: Layout, brand: Brand, source: str, entity: str, name: str,
                     claim: str) -> UnchangedRows | None:
        """After validation: what it set aside, if it compared at all."""
        rows = cls(layout, brand, source, entity, name, claim)
        return rows if rows.state else None

    def set_aside_rows(self, header: list[str], rows: pl.DataFrame) -> pl.DataFrame:
        """Of one batch of rows as read (lines, or fields: see `read_batches`), the rows to read on,
        split, map and check; the others are set aside."""
        content = rows.drop(LINE)
        hashed = rows.with_columns(content.hash_rows(seed=1).alias(DIGEST[0]), content.hash_rows(seed=2).alias(DIGEST[1]))
        if "digests" not in self.state:
            self.state["digests"] = self._fingerprint(header, content.columns)
            (self.work / "unchanged.json").write_text(json.dumps(self.state))
            base = self.state["compared_with"] and self._digests_of(self.state["compared_with"])
            self.previous = pl.read_parquet(base) if base and base.exists() else None
        part = f"part-{self.batches:05d}.parquet"
        self.batches += 1
        if self.previous is not None:
            hashed.select(LINE, *DIGEST).join(self.previous, on=DIGEST).write_parquet(self.work / "aside" / part)
            hashed = hashed.join(self.previous, on=DIGEST, how="anti", maintain_order="left")
        hashed.select(LINE, *DIGEST).write_parquet(self.work / "digests" / part)
        return hashed.drop(DIGEST)

    def aside_parts(self) -> list[Path]:
        return _parts(self.work / "aside")

    def set_aside(self) -> int:
        return _count(self.aside_parts())

    def record_in(self, mapped: Path) -> None:
        """Note beside the mapped rows what they were compared with, and how many were set aside."""
        (mapped / "unchanged.json").write_text(json.dumps(self.state | {"set_aside": self.set_aside()}))

    @staticmethod
    def mapped_against_last_applied(conn: sa.Connection, layout: Layout, brand: Brand, source: str, entity: str,
                                    name: str, claim: str) -> bool:
        """Whether the file's mapped rows still stand: nothing was set aside, or against the source's
        last applied file. Mapped rows without the note (a check stopped half way) do not."""
        note = layout.work(brand.brand, source, entity, name, claim, "mapped") / "unchanged.json"
        if not note.exists():
            return False
        state = json.loads(note.read_text())
        return not state["set_aside"] or state["compared_with"] == _last_applied(conn, brand.brand, source, entity, name)

    def keep(self) -> None:
        """Leave this file's digests for the next file: those set aside, and those of the rows that passed."""
        if "digests" not in self.state or not _parts(self.work / "digests"):
            return
        parts = _parts(self.work)
        kept = [c for c in pl.read_parquet_schema(parts[0]) if c in _dedup_columns(ENTITIES[self.entity])] if parts else []
        passed = pl.scan_parquet(_parts(self.work / "digests")).join(pl.scan_parquet(parts).select(LINE, *kept), on=LINE)
        aside = [pl.scan_parquet(self.aside_parts())] if self.aside_parts() else []
        digests = pl.concat([passed, *aside], how="diagonal").select(*DIGEST, *kept).unique(DIGEST)
        path = self._digests_of(self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.part")
        digests.sink_parquet(partial)
        os.replace(partial, path)

    def forget_all_but_this(self) -> None:
        """Once this file is applied, earlier files' digests (of any fingerprint) are of no use."""
        keep = self._digests_of(self.name)
        for path in self.layout.digests(self.brand.brand, self.source, self.entity).glob("*/*.parquet"):
            if path != keep:
                path.unlink(missing_ok=True)

    def _fingerprint(self, header: list[str], hashed: list[str]) -> str:
        settings = [pl.__version__, _rules_fingerprint(), header, hashed, self.brand.sources[self.source].model_dump(mode="json"),
                    owned_columns(self.brand, self.source, self.entity)]
        return hashlib.sha256(json.dumps(settings, default=str).encode()).hexdigest()[:16]

    def _digests_of(self, name: str) -> Path:
        return self.layout.digests(self.brand.brand, self.source, self.entity) / self.state["digests"] / f"{safe_name(name)}.parquet"


def _dedup_columns(entity) -> set[str]:
    """The columns a file's duplicate checks read: the key and the values that must be unique."""
    return set(entity.key) | {c.name for c in entity.columns if c.unique}
