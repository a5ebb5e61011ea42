"""Check: a landed file read with its source's dialect, mapped to the platform's columns and checked
against the platform's rules, batch by batch; good rows go on as parquet parts, bad rows become
rejects naming line, column, value and rule."""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from bspk_pipelines.ingest import mapping as mapping_code
from bspk_pipelines.ingest import read as read_code
from bspk_pipelines.ingest import precedence as precedence_code
from bspk_pipelines.ingest import rules as rules_code
from bspk_pipelines.ingest import unchanged as unchanged_code
from bspk_pipelines.ingest.layout import Layout, count_rows, parquet_parts
from bspk_pipelines.ingest.ledger import StepResult, advance, file_row, nothing_to_do
from bspk_pipelines.ingest.hints import hints
from bspk_pipelines.ingest.mapping import SKIPPED_SCHEMA, lineage, map_rows, source_columns, unpivot_problem
from bspk_pipelines.ingest.months import outside_history, outside_rows
from bspk_pipelines.ingest.parse import FileFailure, PassedOver, RowProblem
from bspk_pipelines.ingest.read import read_batches
from bspk_pipelines.ingest.precedence import owned_columns
from bspk_pipelines.ingest.rules import label, validate
from bspk_pipelines.ingest.unchanged import UnchangedRows, can_set_aside
from bspk_pipelines.model import entities as entities_code
from bspk_pipelines.model import metafields as metafields_code
from bspk_pipelines.ingest.drop import dropped_name, matches
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.mapping import EntityMap
from bspk_pipelines.model.entities import CELL, ENTITIES, LINE
from bspk_pipelines.outbound.events import file_finished
from bspk_pipelines.shopify import records as shopify_records
from bspk_pipelines.warehouse import bulk
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.locks import brand_lock
from bspk_pipelines.warehouse.schema import match_key, rejects, with_folded
from bspk_pipelines.warehouse.engine import writing

# Rows per batch while a file streams through validation and mapping: bounds memory.
BATCH_ROWS = 250_000

def mapping_of(brand: Brand, source: str, entity_name: str, name: str) -> tuple[EntityMap | None, dict[str, str]]:
    """How the delivery `name` maps to the entity (None: the platform's own format), and for each
    platform column the file's column a reject should name."""
    src = brand.sources[source]
    if src.format == "bspk":
        return None, {n: h for h, n in ENTITIES[entity_name].header_names.items()}
    dropped = dropped_name(name)
    file_map = next(f.feeds[entity_name] for f in src.files
                    if entity_name in f.feeds and matches(dropped, f.pattern))
    return file_map, lineage(file_map)

def expected_header(brand: Brand, source: str, entity_name: str, name: str) -> tuple[list[str], list[str], bool]:
    """The file's header as validation reads it: (columns that must be there, columns that may,
    whether any other column is refused). A Shopify delivery (JSONL) has none."""
    if brand.sources[source].format == "shopify":
        return [], [], False
    file_map, _ = mapping_of(brand, source, entity_name, name)
    if file_map is None:
        entity = ENTITIES[entity_name]
        return ([c.header or c.name for c in entity.columns if c.in_header],
                [c.header or c.name for c in entity.columns if not c.in_header], True)
    return source_columns(file_map), [], False

@dataclass
class CheckedBatch:
    rows: pl.DataFrame  # the rows that pass, typed
    problems: list[RowProblem]
    skipped: pl.DataFrame  # mapping.SKIPPED_SCHEMA
    read: int  # rows the batch's lines gave (an unpivoted line gives several), skipped and rejected ones too
    rejected: int  # rows rejected: a line that could not be read counts one
    passed_over: list[PassedOver] = field(default_factory=list)  # lines that are no rows (see `ParsedBatch`)

def _checked_batches(layout: Layout, brand: Brand, source: str, entity_name: str, name: str, batch_rows: int,
                     unchanged: UnchangedRows | None) -> Iterator[CheckedBatch]:
    """The file's rows in batches, read, mapped and checked. With `unchanged`, lines as the
    source's last applied file sent them are set aside there before mapping and checks (a CSV
    file's; a Shopify delivery's are all checked)."""
    entity = ENTITIES[entity_name]
    src = brand.sources[source]
    path = layout.landed_copy(brand.brand, source, name)
    file_map, where = mapping_of(brand, source, entity_name, name)
    if src.format == "shopify":
        batches = shopify_records.read_batches(path, entity_name, batch_rows)
    else:
        expected, optional, exact = expected_header(brand, source, entity_name, name)
        batches = read_batches(path, src.dialect, expected, optional, exact=exact, batch_rows=batch_rows,
                               set_aside=unchanged.set_aside_rows if unchanged else None)
    hint = hints(entity, file_map, src.dialect) if file_map else None
    for batch in batches:
        skipped = pl.DataFrame(schema=SKIPPED_SCHEMA)
        if file_map:
            problem = unpivot_problem(file_map, [c for c in batch.rows.columns if c != LINE])
            if problem:
                raise FileFailure(f"{path.name}: line 1: {problem}")
            mapped = map_rows(entity, file_map, src.dialect, batch.rows)
            rows, skipped = mapped.rows, mapped.skipped
        else:
            rows = batch.rows.rename({h: n for h, n in entity.header_names.items() if h in batch.rows.columns})
        checked = validate(entity, rows, where, hint)
        problems, valid = batch.problems + checked.rejects, checked.rows
        rejected = len(batch.problems) + rows.height - valid.height
        if entity.month_column:
            valid, outside = _within_history(brand, entity, valid, where)
            problems += outside
            rejected += len(outside)
        if batch.sheet is not None:  # a workbook's reject names its sheet, beside its row (`line`) and column
            problems = [replace(p, message=f"sheet {batch.sheet!r}, row {p.line}: {p.message}") for p in problems]
        yield CheckedBatch(valid, problems, skipped, rows.height + skipped.height + len(batch.problems), rejected,
                           batch.passed_over)

def _within_history(brand: Brand, entity, rows: pl.DataFrame, where: dict[str, str]) -> tuple[pl.DataFrame, list[RowProblem]]:
    """Rows a month partition can hold, and rejects for the others, naming each one's column."""
    column = entity.month_column
    unpivoted = CELL in rows.columns and CELL in where.get(column, column).split("+")
    outside = []
    for cell, part in (rows.partition_by(CELL, as_dict=True, maintain_order=True).items() if unpivoted else [((None,), rows)]):
        outside += outside_rows(brand, entity, part, label(where, column, cell[0]))
    return rows.filter(~outside_history(brand, entity)), outside

def _identity(columns) -> list[str]:
    """What tells a file's rows apart: the line, and the cell where the mapping unpivots."""
    return [LINE, CELL] if CELL in columns else [LINE]

def _later_duplicates(rows: pl.LazyFrame, columns: list[str], keep_by: str | None, exclude: pl.DataFrame | None = None,
                      shown: list[str] = ()) -> pl.DataFrame:
    """Rows sharing `columns` with another row of the file (rows in `exclude` aside): every row
    but the first (or, with `keep_by`, the latest by that column), with the line (and cell) of the
    one that stays, and the `shown` columns too."""
    ids = _identity(rows.collect_schema().names())
    scan = rows.select(*dict.fromkeys([*columns, *shown]), *ids, *([keep_by] if keep_by else [])).with_row_index("_row")
    scan = scan.join(exclude.lazy(), on=ids, how="anti", maintain_order="left") if exclude is not None else scan
    scan = scan.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in columns))
    # Only rows whose values hash alike can share them: grouping millions of rows by a 64-bit hash
    # takes a fraction of the memory of grouping them by their text, and the few rows left are
    # compared by their values below (so a collision costs nothing but a look).
    hashed = scan.select(pl.struct(columns).hash().alias("_hash"), "_row")
    alike = hashed.join(hashed.group_by("_hash").len().filter(pl.col("len") > 1), on="_hash", how="semi")
    scan = scan.join(alike.select("_row"), on="_row", how="semi", maintain_order="left")
    # Rows of one line (unpivoted) come in the file's order: the row number breaks their tie.
    order = [keep_by, LINE, "_row"] if keep_by else [LINE, "_row"]
    pick = (lambda c: pl.col(c).sort_by(order).last()) if keep_by else (lambda c: pl.col(c).sort_by(order).first())
    stays = scan.group_by(columns).agg(
        pick("_row").alias("_stays_row"), *[pick(c).alias(f"_stays{c}") for c in ids], pl.len().alias("_n"),
    ).filter(pl.col("_n") > 1)
    return (scan.join(stays, on=columns, nulls_equal=True).filter(pl.col("_row") != pl.col("_stays_row"))
            .collect(engine="streaming"))

def _stays(r: dict) -> str:
    return f"line {r['_stays' + LINE]}" + (f" ({r['_stays' + CELL]})" if CELL in r else "")

def _deduplicate(entity, parts: list[Path], aside: list[Path], where: dict[str, str]) -> tuple[list[RowProblem], int, int]:
    """A key once per file, whatever batch it fell in: a later duplicate is rejected, except where
    the latest measurement wins (superseded); values that must be unique likewise. Rows set
    aside as unchanged (`aside`: their key and unique values) count as any other row. Keys
    whose refs differ only in case are the same key (`A-100`, `a-100`); a reject shows the ref as sent.
    Rows of one line (unpivoted) are told apart by their cell: a duplicate drops that row alone.
    Returns the rejects, the number of rows superseded and the number of rows dropped."""
    problems, superseded = [], 0
    every_row = pl.concat([pl.scan_parquet(p) for p in (parts, aside) if p], how="diagonal")
    columns = pl.read_parquet_schema(parts[0])
    ids = _identity(columns)
    key = [k for k in entity.key if k in columns]
    later = _later_duplicates(with_folded(entity, every_row), match_key(entity, key), entity.latest_by, shown=key)
    if entity.latest_by:
        superseded = later.height
    else:
        problems += [RowProblem(r[LINE], "+".join(label(where, k, r.get(CELL)) for k in key), "|".join(str(r[k]) for k in key),
                                "duplicate_key", f"same key as {_stays(r)}")
                     for r in later.iter_rows(named=True)]
    dropped = later.select(ids)
    for c in entity.columns:
        if c.unique and c.name in columns:
            clash = _later_duplicates(every_row, [c.name], None, dropped)
            problems += [RowProblem(r[LINE], label(where, c.name, r.get(CELL)), r[c.name], f"duplicate_{c.name}",
                                    f"{c.name} must be unique per {entity.name}; {_stays(r)} has it")
                         for r in clash.iter_rows(named=True)]
            dropped = pl.concat([dropped, clash.select(ids)])
    removed = 0
    if not dropped.is_empty():
        for part in parts + aside:
            rows = pl.read_parquet(part)
            kept = rows.join(dropped, on=ids, how="anti", maintain_order="left")
            if kept.height != rows.height:
                kept.write_parquet(part)
                removed += rows.height - kept.height
    return problems, superseded, removed

@dataclass
class Checked(StepResult):
    """What checking a file did: beside a step's counts, the rows its mapping skipped."""

    skipped: int = 0
    skips: list[dict] = field(default_factory=list)  # the first rows skipped: line, column, value, rule
    passed_over: list[PassedOver] = field(default_factory=list)  # lines that are no rows: before the header, a trailer

def validate_file(engine: sa.Engine, layout: Layout, brand: Brand, source: str, entity: str, name: str,
                  batch_rows: int = BATCH_ROWS, again: bool = False) -> Checked:
    """Parse and check every row; good rows go on, bad rows become rejects naming line, column and rule.

    The file streams through in batches of `batch_rows`, so memory stays bounded whatever its size.
    Rows exactly as the source's last applied file sent them are set aside as unchanged (see
    `UnchangedRows`). A landed file is checked once (`again`: a checked file is checked anew).
    """
    with brand_lock(engine, brand.brand):
        return _validate(engine, layout, brand, source, entity, name, batch_rows, again)

def _validate(engine: sa.Engine, layout: Layout, brand: Brand, source: str, entity: str, name: str,
              batch_rows: int, again: bool) -> Checked:
    with engine.connect() as conn:
        row = file_row(conn, brand.brand, source, name, entity)
    was = ("received", "validated", "mapped") if again else ("received",)
    if row is None or row["status"] not in was:
        return Checked(**nothing_to_do("validate", row).__dict__)
    claim = row["claim"]
    out = layout.work(brand.brand, source, entity, name, claim, "validated")
    shutil.rmtree(out, ignore_errors=True)
    (out / "rejects").mkdir(parents=True)
    unchanged = None
    if can_set_aside(ENTITIES[entity]):
        with engine.connect() as conn:
            unchanged = UnchangedRows.start(conn, layout, brand, source, entity, name, claim, rules_fingerprint())
    read = rejected = skipped = 0
    preview, sample, skips, passed_over = None, [], [], []
    (out / "skipped").mkdir()
    try:
        for i, batch in enumerate(_checked_batches(layout, brand, source, entity, name, batch_rows, unchanged)):
            batch.rows.write_parquet(out / f"part-{i:05d}.parquet")
            _write_problems(out / "rejects" / f"part-{i:05d}.parquet", batch.problems)
            if not batch.skipped.is_empty():
                batch.skipped.write_parquet(out / "skipped" / f"part-{i:05d}.parquet")
            read, rejected, skipped = read + batch.read, rejected + batch.rejected, skipped + batch.skipped.height
            preview = batch.rows.head(5) if preview is None or preview.is_empty() else preview
            sample = sample or sorted(batch.problems, key=lambda p: (p.line, p.column))[:5]
            skips = skips or batch.skipped.head(5).to_dicts()
            passed_over += batch.passed_over
    except FileFailure as e:
        with writing(engine) as conn:
            advance(conn, brand.brand, source, name, entity, was, status="failed", error=str(e))
            file_finished(conn, brand.brand, source, name, entity, now())
        raise
    aside = unchanged.aside_parts() if unchanged else []
    # Rows set aside count as read (an unpivoted line's rows each), whatever the duplicate checks drop.
    read += count_rows(aside)
    problems, superseded, dropped = _deduplicate(ENTITIES[entity], parquet_parts(out), aside,
                                                 mapping_of(brand, source, entity, name)[1])
    _write_problems(out / "rejects" / "part-dedup.parquet", problems)
    rejected += dropped - superseded
    sample = sample or problems[:5]
    valid, set_aside = count_rows(parquet_parts(out)), count_rows(aside)
    found = parquet_parts(out / "rejects")
    with writing(engine) as conn:
        conn.execute(rejects.delete().where(rejects.c.brand == brand.brand, rejects.c.source == source, rejects.c.file == name,
                                            sa.or_(rejects.c.entity == entity, rejects.c.entity.is_(None))))
        for part in found:
            # The rows of an unpivoted line share its other columns: a reject on one of them is said once.
            bulk.load(conn, rejects, pl.read_parquet(part).unique(maintain_order=True).with_columns(
                pl.lit(brand.brand).alias("brand"), pl.lit(source).alias("source"), pl.lit(name).alias("file"),
                pl.lit(entity).alias("entity")))
        advance(conn, brand.brand, source, name, entity, was, status="validated", rows_read=read, rejected=rejected,
                superseded=superseded, skipped=skipped)
    return Checked("validated", rows=valid + set_aside, rejected=rejected, unchanged=set_aside, preview=preview,
                   rejects=sample, skipped=skipped, skips=skips, passed_over=passed_over)

PROBLEM_SCHEMA = {"line": pl.Int64, "column": pl.Utf8, "value": pl.Utf8, "rule": pl.Utf8, "message": pl.Utf8}

def _write_problems(path: Path, problems: list[RowProblem]) -> None:
    if problems:
        # A NUL in what a reject quotes is written \0: PostgreSQL's text holds none.
        frame = pl.DataFrame([p.__dict__ for p in problems], schema=PROBLEM_SCHEMA)
        frame.with_columns(pl.col(c).str.replace_all("\x00", "\\0", literal=True) for c in ("column", "value", "message")
                           ).write_parquet(path)

@cache
def rules_fingerprint() -> str:
    """The code that reads, maps and checks rows, found by its modules wherever they live: digests
    made under other rules compare with nothing."""
    code = b"".join(Path(module.__file__).read_bytes()
                    for module in (entities_code, metafields_code, read_code, *read_code.MODULES, mapping_code, rules_code,
                                   precedence_code, unchanged_code, sys.modules[__name__]))
    return hashlib.sha256(code).hexdigest()

@dataclass
class DryRun:
    """What checking a file for one entity would give, written nowhere: rows read, the valid
    rows' first few, the rejects, and the attributes the source would set under precedence."""

    entity: str
    rows_read: int
    valid: int
    preview: pl.DataFrame | None
    rejects: list[RowProblem]
    sets: list[str]
    left_to_others: list[str]
    skipped: int = 0  # rows the mapping's skip rules leave out
    skips: list[dict] = field(default_factory=list)  # the first of them: line, column, value, rule
    passed_over: list[PassedOver] = field(default_factory=list)  # lines that are no rows: before the header, a trailer

# Skipped rows a dry run shows with their rule.
SHOWN_SKIPS = 20

def dry_run(brand: Brand, source: str, entity_name: str, path: Path, rows: int = 5) -> DryRun:
    """Read, map and check a file for the entity as validation would (FileFailure if it cannot be
    read), in a temporary folder: the warehouse, the landing zone and Dagster are not touched."""
    entity = ENTITIES[entity_name]
    with tempfile.TemporaryDirectory(prefix="bspk-preview-") as tmp:
        layout = Layout(Path(tmp))
        landed = layout.landed(brand.brand, source, path.name)
        landed.parent.mkdir(parents=True)
        landed.symlink_to(path.resolve())
        out = Path(tmp) / "parts"
        out.mkdir()
        read, skipped, preview, problems, skips, passed_over = 0, 0, None, [], [], []
        for i, batch in enumerate(_checked_batches(layout, brand, source, entity_name, path.name, BATCH_ROWS, None)):
            batch.rows.write_parquet(out / f"part-{i:05d}.parquet")
            read, skipped, problems = read + batch.read, skipped + batch.skipped.height, problems + batch.problems
            skips += batch.skipped.head(SHOWN_SKIPS - len(skips)).to_dicts()
            passed_over += batch.passed_over
            preview = batch.rows.head(rows) if preview is None or preview.is_empty() else preview
        parts = parquet_parts(out)
        if parts:
            problems += _deduplicate(entity, parts, [], mapping_of(brand, source, entity_name, path.name)[1])[0]
        valid = count_rows(parts)
    file_map, _ = mapping_of(brand, source, entity_name, path.name)
    # A mapped source sends what it maps; one of the platform's format, what the file's header names.
    sent = set(file_map.columns) if file_map else set(preview.columns if preview is not None else entity.column_names)
    owned = set(owned_columns(brand, source, entity_name))
    attributes = [a for a in entity.attributes if a in sent]
    return DryRun(entity_name, read, valid, preview, sorted(problems, key=lambda p: (p.line, p.column)),
                  [a for a in attributes if a in owned], [a for a in attributes if a not in owned], skipped, skips,
                  passed_over)
