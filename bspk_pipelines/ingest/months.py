"""Sales history by month: every landed row is kept in a month store; a month is rebuilt whole.

A sales file of any span lands once: its mapped rows, marked with their delivery (source and
file), are split by month into `<data>/<brand>/work/months/<entity>/<YYYY-MM>/`, one part per
file and source (two sources may send one name), and each month it touches is marked pending.
Rebuilding a month reads everything landed for it, keeps each key's latest version (first in,
first out by file), and writes the difference to the warehouse in one transaction. So a
rebuild is idempotent, a backfill equals one big load, and a late file touches only its months.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.entities import ENTITIES, Entity, Reference, dependents
from bspk_pipelines.ingest.parse import LINE, RowProblem
from bspk_pipelines.warehouse.apply import (
    FILE, KEY, SOURCE, Counts, held_by_reference, now, refresh_statistics, resolves, stage_rows, unknown_references,
    upsert,
)
from bspk_pipelines.warehouse.locks import brand_lock
from bspk_pipelines.warehouse.schema import (
    ENTITY_TABLES, files, folded_columns, match_key, months, pending_months, polars_schema, with_folded,
)
from bspk_pipelines.warehouse.engine import writing

ORDER = "_order"
DEADLOCK = "40P01"
MONTH = "%Y-%m"


def month_dir(data_dir: Path, brand: str, entity: str, month: str) -> Path:
    return data_dir / brand / "work" / "months" / entity / month


def month_bounds(month: str) -> tuple[datetime, datetime]:
    start = datetime.strptime(month, MONTH)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def current_month() -> str:
    return date.today().strftime(MONTH)


def split_by_month(
    brand: Brand, entity: Entity, rows: pl.DataFrame, where: str
) -> tuple[dict[str, pl.DataFrame], list[RowProblem]]:
    """Rows grouped by month; rows outside the brand's history (before history_start, after
    this month) are rejects, as no month partition can hold them."""
    problems = outside_rows(brand, entity, rows, where)
    # By the rows themselves, not their lines: the rows an unpivoted line gives share its line.
    inside = rows.filter(~outside_history(brand, entity)).with_columns(
        pl.col(entity.month_column).dt.strftime(MONTH).alias("_month"))
    return {m: part.drop("_month") for (m,), part in inside.group_by("_month")}, problems


def outside_rows(brand: Brand, entity: Entity, rows: pl.DataFrame, where: str) -> list[RowProblem]:
    """A reject for each row outside the brand's history, naming `where` as its column."""
    col = entity.month_column
    return [
        RowProblem(r[LINE], where, str(r[col]), "outside_history",
                   f"{col} is outside the brand's sales history ({brand.history_start} to {current_month()})")
        for r in rows.filter(outside_history(brand, entity)).iter_rows(named=True)
    ]


def outside_history(brand: Brand, entity: Entity) -> pl.Expr:
    """Rows no month partition holds: dated before the brand's history_start or after this month."""
    month = pl.col(entity.month_column).dt.strftime(MONTH)
    return ((month < brand.history_start) | (month > current_month())).fill_null(False)


def land_months(conn: sa.Connection, data_dir: Path, brand: Brand, entity: Entity, rows: pl.DataFrame,
                source: str, file: str, order: str) -> list[str]:
    """Write a file's rows into the month store and mark the months they touch as pending."""
    by_month, _ = split_by_month(brand, entity, rows, entity.month_column)
    part_name = f"{order.replace('/', '__')}__{source}.parquet"
    for month, part in by_month.items():
        folder = month_dir(data_dir, brand.brand, entity.name, month)
        folder.mkdir(parents=True, exist_ok=True)
        part.with_columns(pl.lit(source).alias(SOURCE), pl.lit(file).alias(FILE), pl.lit(order).alias(ORDER)).write_parquet(
            folder / part_name)
    mark_pending(conn, brand.brand, entity.name, sorted(by_month))
    return sorted(by_month)


def landing_counts(conn: sa.Connection, brand: str, entity: Entity, rows: pl.DataFrame, unknown: dict[Reference, pl.Series]) -> Counts:
    """What a batch of a file's rows changes in the table: inserted, updated, unchanged, held
    (nothing written). `unknown`: the file's references that do not resolve (`unknown_references`).

    Where the table holds nothing yet in the batch's span (an initial load, a new month), every
    row whose references resolve is new, and the comparison is skipped.
    """
    table = ENTITY_TABLES[entity.name]
    if rows.is_empty():
        return Counts()
    col = table.c[entity.month_column]
    first, last = rows[entity.month_column].min(), rows[entity.month_column].max()
    occupied = conn.execute(sa.select(sa.literal(1)).where(table.c.brand == brand, col >= first, col <= last).limit(1)).first()
    if occupied:
        return upsert(conn, entity, table, brand, rows, "", list(entity.key), dry_run=True)
    resolved = int(resolves(conn, entity, brand, rows, unknown).sum())
    return Counts(inserted=resolved, held=rows.height - resolved)


def mark_pending(conn: sa.Connection, brand: str, entity: str, month_keys: list[str]) -> None:
    if not month_keys:
        return
    where = sa.and_(pending_months.c.brand == brand, pending_months.c.entity == entity)
    conn.execute(pending_months.delete().where(where, pending_months.c.month.in_(month_keys)))
    stamp = now()
    conn.execute(pending_months.insert(), [{"brand": brand, "entity": entity, "month": m, "since": stamp} for m in month_keys])


def pending(engine: sa.Engine, brand: str, entity: str) -> list[tuple[str, datetime]]:
    """Months waiting for a rebuild, oldest first, with when they became pending."""
    return pending_by_brand(engine, [brand]).get((brand, entity), [])


def pending_by_brand(engine: sa.Engine, brands: list[str]) -> dict[tuple[str, str], list[tuple[str, datetime]]]:
    """The months waiting for a rebuild of each (brand, entity) with any, oldest first: one
    query for every brand a drop sensor watches."""
    p = pending_months.c
    waiting: dict[tuple[str, str], list[tuple[str, datetime]]] = {}
    with engine.connect() as conn:
        for r in conn.execute(sa.select(p.brand, p.entity, p.month, p.since).where(p.brand.in_(brands))
                              .order_by(p.brand, p.entity, p.month)):
            waiting.setdefault((r.brand, r.entity), []).append((r.month, r.since))
    return waiting


def _month_parts(data_dir: Path, brand: str, entity: Entity, month: str) -> list[Path]:
    return sorted(month_dir(data_dir, brand, entity.name, month).glob("*.parquet"))


def _landed(data_dir: Path, brand: str, entity: Entity, month: str) -> pl.DataFrame:
    """Each key's latest landed version in the month (refs matched whatever their case): the last
    file in queue order wins, its refs as it sent them."""
    paths = _month_parts(data_dir, brand, entity, month)
    schema = polars_schema(entity) | {LINE: pl.Int64, SOURCE: pl.Utf8, FILE: pl.Utf8, ORDER: pl.Utf8}
    if not paths:
        return pl.DataFrame(schema=schema)
    rows = pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed")
    if SOURCE not in rows.columns:  # landed before the store recorded sources: held rows name none
        rows = rows.with_columns(pl.lit(None, pl.Utf8).alias(SOURCE))
    rows = with_folded(entity, rows.sort(ORDER, SOURCE, LINE))
    return rows.unique(subset=match_key(entity), keep="last", maintain_order=True).drop(*folded_columns(entity))


def rebuild_month(engine: sa.Engine, data_dir: Path, brand: str, entity_name: str, month: str) -> Counts:
    """Make the warehouse's month exactly what was landed for it, writing only the difference."""
    with brand_lock(engine, brand):
        return _rebuild_month(engine, data_dir, brand, entity_name, month)


def _rebuild_month(engine: sa.Engine, data_dir: Path, brand: str, entity_name: str, month: str) -> Counts:
    entity = ENTITIES[entity_name]
    started = now()
    rows = _landed(data_dir, brand, entity, month)
    with writing(engine) as conn:
        empty = conn.execute(sa.select(sa.literal(1)).where(_in_month(entity, brand, month)).limit(1)).first() is None
        counts = _fill_empty_month(conn, entity, brand, rows) if empty else None
        if counts is None:
            counts = _replace_month(conn, entity, brand, rows, month)
        else:
            refresh_statistics(conn, ENTITY_TABLES[entity_name], counts.inserted)
        _record_rebuild(conn, brand, entity_name, month, counts)
        conn.execute(pending_months.delete().where(
            pending_months.c.brand == brand, pending_months.c.entity == entity_name,
            pending_months.c.month == month, pending_months.c.since <= started))
    return counts


# PostgreSQL fills a backfill's empty months over this many connections at once (a connection's
# inserts run on one server core, and index upkeep is most of a fill's time).
FILL_CONNECTIONS = 2
# A fill reads and loads its months this many landed rows at a time, so its memory stays bounded
# however many months it fills.
FILL_ROWS = 500_000


def rebuild_months(engine: sa.Engine, data_dir: Path, brand: str, entity_name: str, month_keys: list[str]) -> dict[str, Counts]:
    """Rebuild several months. Months still empty in the table (a backfill, an initial load) fill
    with bulk inserts, in one transaction per group of months (on PostgreSQL, groups of about
    equal rows fill side by side); the others rebuild one transaction each."""
    with brand_lock(engine, brand):
        return _rebuild_months(engine, data_dir, brand, entity_name, month_keys)


def _rebuild_months(engine: sa.Engine, data_dir: Path, brand: str, entity_name: str,
                    month_keys: list[str]) -> dict[str, Counts]:
    entity = ENTITIES[entity_name]
    started = now()
    with engine.connect() as conn:
        empty = [m for m in month_keys
                 if conn.execute(sa.select(sa.literal(1)).where(_in_month(entity, brand, m)).limit(1)).first() is None]
    done: dict[str, Counts] = {}
    if len(empty) > 1:
        sizes = {m: _landed_rows(data_dir, brand, entity, m) for m in empty}
        groups = _balanced(sizes, FILL_CONNECTIONS if engine.dialect.name == "postgresql" else 1)
        with ThreadPoolExecutor(len(groups)) as pool:
            for filled in pool.map(lambda group: _fill_months(engine, data_dir, entity, brand, group, started), groups):
                done |= filled
    for m in month_keys:
        if m not in done:
            done[m] = rebuild_month(engine, data_dir, brand, entity_name, m)
    return done


def _landed_rows(data_dir: Path, brand: str, entity: Entity, month: str) -> int:
    """Rows landed for the month, from the parts' metadata (nothing read)."""
    paths = _month_parts(data_dir, brand, entity, month)
    return pl.scan_parquet(paths).select(pl.len()).collect().item() if paths else 0


def _balanced(sizes: dict[str, int], n: int) -> list[dict[str, int]]:
    """Consecutive months (month -> rows) in at most `n` groups of about equal rows."""
    total = sum(sizes.values())
    groups: list[dict[str, int]] = [{}]
    rows = 0
    for month, size in sizes.items():
        if groups[-1] and rows >= total * len(groups) / n and len(groups) < n:
            groups.append({})
        groups[-1][month] = size
        rows += size
    return groups


def _chunks(sizes: dict[str, int]) -> list[list[str]]:
    """Consecutive months in chunks of about FILL_ROWS landed rows (a bigger month alone)."""
    chunks: list[list[str]] = [[]]
    rows = 0
    for month, size in sizes.items():
        if chunks[-1] and rows + size > FILL_ROWS:
            chunks.append([])
            rows = 0
        chunks[-1].append(month)
        rows += size
    return chunks


def _fill_months(engine: sa.Engine, data_dir: Path, entity: Entity, brand: str, sizes: dict[str, int],
                 started: datetime) -> dict[str, Counts]:
    """Fill empty months in one transaction, FILL_ROWS landed rows at a time; {} where a key is
    already stored elsewhere, with nothing written (then each month rebuilds alone)."""
    table = ENTITY_TABLES[entity.name]
    done = {}
    parts = [p for m in sizes for p in _month_parts(data_dir, brand, entity, m)]
    try:
        with writing(engine) as conn:
            # The shoppers and products the months name that are not known: asked once, not per chunk
            # (each question is a pass over the referenced table).
            unknown = unknown_references(conn, entity, brand, pl.scan_parquet(parts)) if parts else {}
            for chunk in _chunks(sizes):
                landed = {m: _landed(data_dir, brand, entity, m) for m in chunk}
                frames = [r for r in landed.values() if r.height]
                if frames and _fill_empty_month(conn, entity, brand, pl.concat(frames, how="diagonal_relaxed"),
                                                unknown) is None:
                    raise _KeyElsewhere  # the group's earlier chunks are rolled back with it
                for m, r in landed.items():
                    # The month was empty: it now holds the rows whose references resolve, the others are held.
                    stored = int(resolves(conn, entity, brand, r, unknown).sum()) if r.height else 0
                    done[m] = Counts(inserted=stored, held=r.height - stored)
                    _record_rebuild(conn, brand, entity.name, m, done[m], stored)
            refresh_statistics(conn, table, sum(c.inserted for c in done.values()))
            conn.execute(pending_months.delete().where(
                pending_months.c.brand == brand, pending_months.c.entity == entity.name,
                pending_months.c.month.in_(list(sizes)), pending_months.c.since <= started))
    except _KeyElsewhere:
        return {}
    except sa.exc.OperationalError as e:
        if getattr(e.orig, "pgcode", None) != DEADLOCK:
            raise
        return {}  # a key in both groups: the server stopped one of them, whose months rebuild alone
    return done


class _KeyElsewhere(Exception):
    """A fill met a key already stored in another month: its group's months rebuild one by one."""


def _fill_empty_month(conn: sa.Connection, entity: Entity, brand: str, rows: pl.DataFrame,
                      unknown: dict[Reference, pl.Series] | None = None) -> Counts | None:
    """An empty month (an initial load, a backfill) takes its rows without comparing; None if a
    key is already stored in another month, which the full rebuild resolves. `unknown`: see
    `upsert`."""
    try:
        with conn.begin_nested():
            return upsert(conn, entity, ENTITY_TABLES[entity.name], brand, rows.drop(ORDER), None, list(entity.key),
                          all_new=True, unknown=unknown)
    except sa.exc.IntegrityError:
        return None


def _in_month(entity: Entity, brand: str, month: str) -> sa.ColumnElement[bool]:
    table = ENTITY_TABLES[entity.name]
    start, end = month_bounds(month)
    return sa.and_(table.c.brand == brand, table.c[entity.month_column] >= start, table.c[entity.month_column] < end)


def _replace_month(conn: sa.Connection, entity: Entity, brand: str, rows: pl.DataFrame, month: str) -> Counts:
    """Make a month that holds rows exactly its landed rows, writing only the difference."""
    table = ENTITY_TABLES[entity.name]
    this_month = _in_month(entity, brand, month)
    key = match_key(entity)
    counts = Counts()
    rows = with_folded(entity, rows)
    keys = stage_rows(conn, entity, rows.select(*key, LINE, pl.lit("").alias(KEY)))
    same_key = sa.and_(*[table.c[k] == keys.c[k] for k in key])
    # Keys of this month stored under another month: the newer file's version stays. A table row
    # names its file only: of two sources' deliveries of that name, the later one's position counts.
    stored = [table.c[k] for k in key]
    moved = conn.execute(
        sa.select(*stored, sa.func.max(files.c.sort_key)).select_from(table)
        .join(keys, same_key).outerjoin(files, sa.and_(files.c.brand == brand, files.c.entity == entity.name,
                                                       files.c.name == table.c[FILE]))
        .where(table.c.brand == brand, ~this_month).group_by(*stored)
    ).all()
    if moved:
        elsewhere = pl.DataFrame([tuple(r) for r in moved], schema=[*key, "_elsewhere"], orient="row")
        rows = rows.join(elsewhere, on=key, how="left", nulls_equal=True)
        superseded = rows.filter(pl.col("_elsewhere") > pl.col(ORDER))
        rows = rows.filter(~(pl.col("_elsewhere") > pl.col(ORDER)).fill_null(False)).drop("_elsewhere")
        stale = elsewhere.join(superseded.select(key), on=key, how="anti", nulls_equal=True)
        for r in stale.iter_rows(named=True):
            conn.execute(table.delete().where(table.c.brand == brand, *[table.c[k] == r[k] for k in key]))
    counts.deleted = conn.execute(table.delete().where(this_month, ~sa.exists().where(same_key))).rowcount
    keys.drop(conn)
    counts += upsert(conn, entity, table, brand, rows.drop(ORDER, *folded_columns(entity)), None, list(entity.key))
    return counts


def rows_at_rebuild(conn: sa.Connection, brand: str, entity: str, month_keys: list[str]) -> dict[str, int]:
    """Each month's rows in the table as its last rebuild left them (counted then, not again)."""
    m = months.c
    return dict(conn.execute(sa.select(m.month, m.rows).where(
        m.brand == brand, m.entity == entity, m.month.in_(month_keys))).all())


def _record_rebuild(conn: sa.Connection, brand: str, entity: str, month: str, counts: Counts, total: int | None = None) -> None:
    """Record a month's rebuild: its counts, and `total`, the rows the table holds for it now
    (counted here when not given)."""
    where = sa.and_(months.c.brand == brand, months.c.entity == entity, months.c.month == month)
    if total is None:
        table = ENTITY_TABLES[entity]
        total = conn.execute(sa.select(sa.func.count()).select_from(table).where(_in_month(ENTITIES[entity], brand, month))).scalar_one()
    before = conn.execute(sa.select(months).where(where)).mappings().first()
    values = {"rows": total, "held": counts.held, "rebuilt_at": now()}
    if before is None:
        conn.execute(months.insert().values(brand=brand, entity=entity, month=month, rebuilds=1, inserted=counts.inserted,
                                            updated=counts.updated, deleted=counts.deleted, **values))
    else:
        conn.execute(months.update().where(where).values(
            rebuilds=months.c.rebuilds + 1, inserted=months.c.inserted + counts.inserted,
            updated=months.c.updated + counts.updated, deleted=months.c.deleted + counts.deleted, **values))


def release_months(conn: sa.Connection, brand: str, arrived: str) -> dict[str, list[str]]:
    """Months holding rows that `arrived` (shoppers, products) now resolves: marked pending."""
    released = {}
    for name in dependents(arrived):
        entity = ENTITIES[name]
        if not entity.month_column:
            continue
        month_keys = sorted({
            m for frame in held_by_reference(conn, brand, name).values()
            for m in frame.filter(resolves(conn, entity, brand, frame))[entity.month_column].dt.strftime(MONTH).to_list()
        })
        mark_pending(conn, brand, name, month_keys)
        if month_keys:
            released[name] = month_keys
    return released
