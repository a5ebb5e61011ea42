"""Applying a file's rows to the warehouse: only what changed is written, in one transaction.

Rows are staged in a temporary table, then compared with the stored rows in SQL (IS DISTINCT
FROM, column by column), so nothing is read back into Python row by row. Rows that reference
a shopper or product not known yet are held with the delivery (source and file) that sent them,
and released when it arrives; the ledger credits the release to that delivery.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from decimal import Decimal

import polars as pl
import sqlalchemy as sa

from bspk_pipelines.model.entities import ENTITIES, LINE, Entity, Reference, dependents
from bspk_pipelines.warehouse import bulk
from bspk_pipelines.warehouse.schema import (
    BY_SOURCE_TABLES, ENTITY_TABLES, column_type, decimal_text, distinct, fold, folded, folded_columns, held, match_key,
    polars_schema, rejects, with_folded,
)

KEY = "_key"
# Values bound in one IN (...): well under SQLite's limit of 32,766 variables per statement.
KEYS_PER_STATEMENT = 5000
FILE = "_file"
# The source of a row's delivery, in frames whose rows come from several (the month store).
SOURCE = "_source"
# Sees a write before it happens: (connection, stage table of the rows about to be written).
Observer = Callable[[sa.Connection, sa.Table], None]


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    held: int = 0
    deleted: int = 0
    released: int = 0
    rejected: int = 0  # rows rejected at apply: an append-only key resent changed, a reference that disagrees

    def __iadd__(self, other: Counts) -> Counts:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)
        return self

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def with_key(entity: Entity, frame: pl.DataFrame) -> pl.DataFrame:
    """Adds `_key`: the entity key as one text value (refs folded), how held rows are found again."""
    parts = [folded(entity, k).cast(pl.Utf8).fill_null("") for k in entity.key]
    return frame.with_columns(pl.concat_str(parts, separator="|").alias(KEY))


def stage_rows(conn: sa.Connection, entity: Entity, frame: pl.DataFrame, extra_key: tuple[str, ...] = ()) -> sa.Table:
    """A temporary table holding the rows, typed as the target columns, with the folded copies of
    their case-insensitive key columns (see `schema.match_key`)."""
    frame = with_folded(entity, frame)
    cols = [c for c in frame.columns if c not in (LINE, KEY) and c not in extra_key]
    stage = sa.Table(
        f"stage_{entity.name}",
        sa.MetaData(),
        *[sa.Column(c, sa.Text) for c in extra_key],
        *[sa.Column(c, sa.Text if c == FILE else column_type(entity, c)) for c in cols],
        sa.Column(LINE, sa.BigInteger),
        sa.Column(KEY, sa.Text),
        prefixes=["TEMPORARY"],
    )
    stage.drop(conn, checkfirst=True)
    stage.create(conn)
    bulk.load(conn, stage, frame.select(*extra_key, *cols, LINE, KEY))
    if conn.dialect.name == "postgresql":
        # A temporary table has no statistics: without them the planner scans whole tables to
        # compare a few thousand staged rows (a month rebuild took seconds instead of milliseconds).
        conn.exec_driver_sql(f'ANALYZE "{stage.name}"')
    return stage


def _match(target: sa.Table, stage: sa.Table, brand: str, key: list[str]) -> sa.ColumnElement[bool]:
    """Rows of `target` with a staged row's key (`key` as `match_key` names it)."""
    return sa.and_(target.c.brand == brand, *[target.c[k] == stage.c[k] for k in key])


def upsert(
    conn: sa.Connection,
    entity: Entity,
    target: sa.Table,
    brand: str,
    frame: pl.DataFrame,
    file: str | None,
    key: list[str],
    hold_unresolved: bool = True,
    dry_run: bool = False,
    all_new: bool = False,
    observe: Observer | None = None,
    source: str | None = None,
    unknown: dict[Reference, pl.Series] | None = None,
) -> Counts:
    """Insert new keys, update keys whose content differs, leave the rest untouched.

    `frame` holds only the columns this write owns; other columns of existing rows are kept. Keys
    match whatever the case of their refs; a ref sent in another case is a change of the row.
    Rows are stamped with `file`, or, when it is None, with the frame's own `_file` column; rows
    held are recorded as sent by `source`'s `file`, or by the frame's `_source` and `_file`.
    A dry run counts what would happen and writes nothing. With `all_new` the caller knows no
    key exists yet (an empty month): rows are inserted without comparing, and a key that does
    exist fails the insert (IntegrityError) rather than being compared; the caller refreshes the
    table's statistics (`refresh_statistics`) once it has loaded all it loads. `observe` is called with
    the stage once held rows have left it, while the target still holds the old rows. `unknown`:
    the references that do not resolve (`unknown_references`), if the caller asked already over
    rows that include these.
    """
    counts = Counts()
    frame = with_key(entity, frame) if KEY not in frame.columns else frame
    if dry_run or hold_unresolved:
        # Rows whose shopper or product is not known yet are held, not staged (a dry run counts them).
        unknown = unknown_references(conn, entity, brand, frame) if unknown is None else unknown
        known = resolves(conn, entity, brand, frame, unknown)
        waiting, frame = frame.filter(~known), frame.filter(known)
        counts.held = waiting.height
    disagreeing = 0
    for ref in entity.references if hold_unresolved else ():
        if ref.agrees:
            frame, rejected = _reject_disagreeing(conn, entity, brand, frame, ref, source, file, dry_run)
            disagreeing += rejected
    frame = frame.drop(SOURCE, strict=False)  # it names the delivery, not a column of the table
    if all_new and not dry_run and observe is None and not entity.replace_set_by and not (
            hold_unresolved and _holds_any(conn, entity, brand)):
        # Nothing to compare and nothing held to supersede: the rows go straight into the table.
        if hold_unresolved:
            _hold_unresolved(conn, entity, brand, None, waiting, unknown, source, file)
        counts.inserted = _insert_new(conn, entity, target, brand, frame, file)
        return counts
    extra_key = tuple(k for k in key if k not in entity.column_names)
    stage = stage_rows(conn, entity, frame, extra_key)
    key = match_key(entity, key)
    if hold_unresolved and not dry_run:
        _hold_unresolved(conn, entity, brand, stage, waiting, unknown, source, file)
    values = [c.name for c in stage.columns if c.name not in (LINE, KEY, FILE, *key)]
    match = _match(target, stage, brand, key)
    differs = sa.or_(*[distinct(target.c[c], stage.c[c]) for c in values]) if values else sa.false()
    newer = target.c[entity.latest_by] <= stage.c[entity.latest_by] if entity.latest_by else sa.true()
    if entity.append_only and not all_new:
        # A stored row never changes: one resending its key with other values is rejected.
        counts.rejected = _reject_changes(conn, entity, target, stage, brand, match, differs, source, file, dry_run)
        differs = sa.false()

    staged = conn.execute(sa.select(sa.func.count()).select_from(stage)).scalar_one()
    counts.inserted = staged if all_new else conn.execute(
        sa.select(sa.func.count()).select_from(stage).where(~sa.exists().where(match))
    ).scalar_one()
    counts.updated = 0 if all_new else conn.execute(
        sa.select(sa.func.count()).select_from(stage).join(target, match).where(differs, newer)
    ).scalar_one()
    counts.unchanged = staged - counts.inserted - counts.updated - counts.rejected
    counts.rejected += disagreeing
    if dry_run:
        stage.drop(conn)
        return counts
    if observe:
        observe(conn, stage)
    stamp = now()
    source_file = stage.c[FILE] if file is None else sa.literal(file)
    if counts.updated:
        conn.execute(
            sa.update(target).where(match, differs, newer)
            .values({c: stage.c[c] for c in values} | {FILE: source_file, "_updated_at": stamp})
        )
    if counts.inserted:
        cols = [*key, *values]
        select = sa.select(
            sa.literal(brand).label("brand"), *[stage.c[c] for c in cols],
            source_file.label(FILE), sa.literal(stamp).label("_updated_at"),
        ).where(sa.true() if all_new else ~sa.exists().where(match))
        conn.execute(sa.insert(target).from_select(["brand", *cols, "_file", "_updated_at"], select))
    refresh_statistics(conn, target, counts.inserted + counts.updated)
    if entity.replace_set_by and target is ENTITY_TABLES[entity.name]:
        counts.deleted = _replace_sets(conn, entity, target, stage, brand)
    stage.drop(conn)
    return counts


def _reject_changes(conn: sa.Connection, entity: Entity, target: sa.Table, stage: sa.Table, brand: str,
                    match: sa.ColumnElement[bool], differs: sa.ColumnElement[bool], source: str | None,
                    file: str | None, dry_run: bool) -> int:
    """Record as rejects the staged rows of an append-only entity whose key is stored with other
    values (the reference: "a repeated pair is ignored"); the stored row stays as it is."""
    last, keys = entity.key[-1], " and ".join(entity.key)
    changed = conn.execute(sa.select(stage.c[LINE], stage.c[FILE] if file is None else sa.literal(file).label(FILE),
                                     stage.c[last]).join(target, match).where(differs)).mappings().all()
    if not dry_run:
        _reject(conn, entity, brand, source, [(r[FILE], r[LINE], last, r[last]) for r in changed], "append_only",
                f"this {keys} is already recorded with other values and {entity.file_type} rows are append-only, "
                f"so the row is ignored; send the change under a new {last}")
    return len(changed)


def _reject_disagreeing(conn: sa.Connection, entity: Entity, brand: str, frame: pl.DataFrame, ref: Reference,
                        source: str | None, file: str | None, dry_run: bool) -> tuple[pl.DataFrame, int]:
    """The rows whose referenced record (known by now) holds other values where `ref.agrees` says it
    must hold the row's (an event naming another order's line item): rejected `reference`, each
    naming what the record holds; the other rows go on."""
    pairs = [(column, target) for column, target in ref.agrees if column in frame.columns]
    if frame.is_empty() or not pairs or ref.column not in frame.columns:
        return frame, 0
    table, values = ENTITY_TABLES[ref.entity], frame[ref.column].drop_nulls().unique().to_list()
    stored: dict = {}
    for i in range(0, len(values), KEYS_PER_STATEMENT):
        stored |= {r[0]: r[1:] for r in conn.execute(sa.select(table.c[ref.target_column], *[table.c[t] for _, t in pairs])
                   .where(table.c.brand == brand, table.c[ref.target_column].in_(values[i:i + KEYS_PER_STATEMENT])))}
    named = frame.filter(pl.col(ref.column).is_in(list(stored)))
    bad = [r for r in named.iter_rows(named=True) if any(r[c] != held for (c, _), held in zip(pairs, stored[r[ref.column]]))]
    if not dry_run:
        for r in bad:
            _reject(conn, entity, brand, source, [(file if file is not None else r[FILE], r[LINE], ref.column, r[ref.column])],
                    "reference", f"{ref.column} {r[ref.column]!r} is a {ref.entity} record of "
                    + ", ".join(f"{t} {held!r}" for (_, t), held in zip(pairs, stored[r[ref.column]]))
                    + ", not of this row's " + ", ".join(f"{c} {r[c]!r}" for c, _ in pairs))
    return frame.filter(~pl.col(KEY).is_in([r[KEY] for r in bad])), len(bad)


def _reject(conn: sa.Connection, entity: Entity, brand: str, source: str | None,
            where: list[tuple[str, int, str, object]], rule: str, message: str) -> None:
    """Rejects found at apply, each (file, line, column, value), all with one rule and message."""
    if where:
        conn.execute(rejects.insert(), [{"brand": brand, "source": source or "", "file": file, "entity": entity.name,
                                         "line": line, "column": column, "value": str(value), "rule": rule,
                                         "message": message} for file, line, column, value in where])


def _insert_new(conn: sa.Connection, entity: Entity, target: sa.Table, brand: str, frame: pl.DataFrame,
                file: str | None) -> int:
    """Bulk-load rows whose keys are all new into `target` (COPY on PostgreSQL: one pass, where a
    stage would take two); a key already stored fails the load with IntegrityError."""
    stamp = now()
    frame = with_folded(entity, frame).with_columns(
        pl.lit(brand).alias("brand"), (pl.col(FILE) if file is None else pl.lit(file)).alias(FILE),
        pl.lit(stamp).alias("_updated_at"))
    bulk.load(conn, target, frame.select(c for c in frame.columns if c in target.c))
    return frame.height


def refresh_statistics(conn: sa.Connection, target: sa.Table, changed: int) -> None:
    """ANALYZE a PostgreSQL table that grew by a tenth, as autovacuum would, but before the next
    statement: a backfill filling an empty table otherwise plans every month as if still empty."""
    if conn.dialect.name != "postgresql" or changed < 1000:
        return
    estimate = conn.execute(sa.text("select reltuples from pg_class where oid = cast(:t as regclass)"), {"t": target.name}).scalar()
    if estimate is None or changed >= 0.1 * max(estimate, 0):
        conn.exec_driver_sql(f'ANALYZE "{target.name}"')


def _replace_sets(conn: sa.Connection, entity: Entity, target: sa.Table, stage: sa.Table, brand: str) -> int:
    """A file's rows are the complete set for each product it names: drop the product's other rows."""
    by = match_key(entity, entity.replace_set_by)
    in_file = sa.select(stage.c[by[0]])
    same_set = sa.and_(*[target.c[k] == stage.c[k] for k in by])
    still_sent = sa.exists().where(same_set, *[target.c[k] == stage.c[k] for k in match_key(entity)])
    result = conn.execute(
        sa.delete(target).where(target.c.brand == brand, target.c[by[0]].in_(in_file), ~still_sent)
    )
    return result.rowcount


def _holds_any(conn: sa.Connection, entity: Entity, brand: str) -> bool:
    """Whether any of the brand's rows of the entity are held (the question costs nothing)."""
    return conn.execute(sa.select(held.c.key).where(held.c.brand == brand, held.c.entity == entity.name).limit(1)).first() is not None


def _hold_unresolved(conn: sa.Connection, entity: Entity, brand: str, stage: sa.Table | None, rows: pl.DataFrame,
                     unknown: dict[Reference, pl.Series], source: str | None, file: str | None) -> None:
    """Record `rows`, whose shopper or product (among `unknown`) is not known yet, in `held`. A
    newer row for a key supersedes whatever was held for it: held or staged now, its old held row
    goes (`stage` None: the caller knows nothing is held)."""
    where = sa.and_(held.c.brand == brand, held.c.entity == entity.name)
    if stage is not None and _holds_any(conn, entity, brand):  # a delete is a pass over `held`
        conn.execute(held.delete().where(where, held.c.key.in_(sa.select(stage.c[KEY]))))
        keys = rows[KEY].to_list()
        for i in range(0, len(keys), KEYS_PER_STATEMENT):
            conn.execute(held.delete().where(where, held.c.key.in_(keys[i:i + KEYS_PER_STATEMENT])))
    if rows.is_empty():
        return
    missing = {ref: (~_known(rows, ref, values)).to_list() for ref, values in unknown.items()}
    stamp = now()
    conn.execute(held.insert(), [
        _held(brand, entity, r, (source, file) if file is not None else (r[SOURCE], r[FILE]), "reference", "; ".join(
            f"{ref.column} {r[ref.column]!r} is not a known {ref.entity} record yet" for ref in missing
            if missing[ref][i]), stamp)
        for i, r in enumerate(rows.iter_rows(named=True))
    ])


def _held(brand: str, entity: Entity, row: dict, delivery: tuple[str | None, str], cause: str, reason: str,
          stamp: datetime) -> dict:
    """A `held` record: the row as JSON, to be applied when what it waits for arrives, and the
    delivery (source, file) that sent it."""
    source, file = delivery
    return {
        "brand": brand, "entity": entity.name, "key": row[KEY], "source": source, "file": file, "line": row[LINE],
        "cause": cause, "reason": reason, "held_at": stamp,
        "payload": json.dumps({k: v for k, v in row.items() if k not in (KEY, FILE, SOURCE, *folded_columns(entity))},
                              default=str),
    }


def merge_by_precedence(entity: Entity, rows: pl.DataFrame, owners: dict[str, list[str]], provided: dict[str, set[str]],
                        latest: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per key from every source's rows: each attribute from its most trusted source.

    An attribute's value comes from the first source in its owner list that sent a row for
    the key and sends that attribute at all; a source outside the list never touches it, so
    it cannot blank it. Keys match whatever the case of their refs; a ref is written as `latest`
    (the source whose delivery is being applied) sent it, else as the first row does. Returns
    (complete rows, rows still missing a required attribute), with the keys' folded copies.
    """
    key = match_key(entity)
    rows = with_folded(entity, rows)
    sent = [k for k in entity.key if k not in key]
    first = rows.sort(pl.col("source") != latest, maintain_order=True) if latest else rows
    merged = first.select(*key, *sent).unique(subset=key, keep="first", maintain_order=True)
    for attribute in entity.attributes:
        candidates = [s for s in owners[attribute] if attribute in provided.get(s, set())]
        if not candidates:
            continue
        value = None
        for source in reversed(candidates):
            part = rows.filter(pl.col("source") == source).select(*key, pl.col(attribute).alias(f"_v_{source}"), pl.lit(True).alias(f"_has_{source}"))
            merged = merged.join(part, on=key, how="left", nulls_equal=True)
            pick = pl.when(pl.col(f"_has_{source}").fill_null(False)).then(pl.col(f"_v_{source}"))
            value = pick if value is None else pick.otherwise(value)
        merged = merged.with_columns(value.alias(attribute)).drop([c for c in merged.columns if c.startswith(("_v_", "_has_"))])
    required = [c.name for c in entity.columns if c.required and c.name in merged.columns]
    complete = pl.all_horizontal([pl.col(c).is_not_null() for c in required]) if required else pl.lit(True)
    return merged.filter(complete), merged.filter(~complete)


def apply_rows(
    conn: sa.Connection,
    brand: str,
    entity_name: str,
    source: str,
    frame: pl.DataFrame,
    file: str,
    owners: dict[str, list[str]] | None = None,
    provided: dict[str, set[str]] | None = None,
    observe: Observer | None = None,
) -> Counts:
    """Apply one file's mapped rows. With `owners` (several sources feed the entity), each source's
    rows are kept apart and the entity's rows are merged from them by precedence. `observe` sees
    the write to the entity's table (see `upsert`)."""
    entity = ENTITIES[entity_name]
    target = ENTITY_TABLES[entity_name]
    if not owners:
        return upsert(conn, entity, target, brand, frame, file, list(entity.key), observe=observe, source=source)
    by_source = BY_SOURCE_TABLES[entity_name]
    upsert(conn, entity, by_source, brand, frame.with_columns(pl.lit(source).alias("source")), file,
           ["source", *entity.key], hold_unresolved=False)
    key = match_key(entity)
    frame = with_folded(entity, frame)
    keys = frame.select(key).unique()
    stage = stage_rows(conn, entity, keys.with_columns(pl.lit(0).alias(LINE), pl.lit("").alias(KEY)))
    cols = [c for c in by_source.columns if c.name not in ("brand", "_file", "_updated_at", *folded_columns(entity))]
    query = sa.select(*cols).join(stage, sa.and_(*[by_source.c[k] == stage.c[k] for k in key])).where(by_source.c.brand == brand)
    rows = pl.DataFrame(
        [{k: decimal_text(v) if isinstance(v, Decimal) else v for k, v in r._mapping.items()} for r in conn.execute(query)],
        schema={"source": pl.Utf8} | polars_schema(entity),
    )
    stage.drop(conn)
    if rows.is_empty():
        return Counts()
    # The refs as this delivery sent them: the last sent, whichever source sent the others. (Rows
    # a source resends unchanged were set aside before this: they leave the stored casing as it is.)
    complete, incomplete = merge_by_precedence(entity, rows, owners, provided or {}, latest=source)
    lines = frame.select(*key, LINE)
    complete = complete.join(lines, on=key, how="left", nulls_equal=True)
    counts = upsert(conn, entity, target, brand, complete, file, list(entity.key), observe=observe, source=source)
    counts.held += _hold_incomplete(conn, entity, brand, incomplete.join(lines, on=key, how="left", nulls_equal=True),
                                    (source, file), owners)
    return counts


def _hold_incomplete(conn: sa.Connection, entity: Entity, brand: str, rows: pl.DataFrame, delivery: tuple[str, str],
                     owners: dict[str, list[str]]) -> int:
    """Record merged rows still missing a required attribute: they wait for the source that owns it."""
    if rows.is_empty():
        return 0
    rows = with_key(entity, rows)
    required = [c.name for c in entity.columns if c.required and c.name in rows.columns]
    stamp = now()
    records = [
        _held(brand, entity, r, delivery, "owner",
              "waiting for " + ", ".join(f"{a} (from {' or '.join(owners[a])})" for a in required if r[a] is None), stamp)
        for r in rows.iter_rows(named=True)
    ]
    conn.execute(held.delete().where(held.c.brand == brand, held.c.entity == entity.name, held.c.key.in_([r["key"] for r in records])))
    conn.execute(held.insert(), records)
    return len(records)


def release_held(conn: sa.Connection, brand: str, entity_name: str,
                 observe: Observer | None = None) -> dict[tuple[str | None, str], Counts]:
    """Apply held rows of `entity_name` whose references now resolve; the rest stay held.

    Returns what was released by the delivery (source, file) that sent it, for the ledger to credit,
    so each file's counts tell the whole story. Rows waiting for an attribute's owner are not
    released here: the owner's file merges them. `observe` sees each write (see `upsert`).
    """
    entity = ENTITIES[entity_name]
    released = {}
    for (source, file), frame in held_by_reference(conn, brand, entity_name).items():
        # Rows still waiting are left exactly as they are held.
        frame = frame.filter(resolves(conn, entity, brand, frame))
        if frame.is_empty():
            continue
        counts = upsert(conn, entity, ENTITY_TABLES[entity_name], brand, frame, file, list(entity.key), source=source,
                        observe=observe)
        counts.released = frame.height - counts.held
        released[source, file] = counts
    return released


def held_by_reference(conn: sa.Connection, brand: str, entity_name: str) -> dict[tuple[str | None, str], pl.DataFrame]:
    """Rows of `entity_name` held for a shopper or product, typed again, by the delivery (source,
    file) that sent them."""
    entity = ENTITIES[entity_name]
    rows = conn.execute(
        sa.select(held.c.source, held.c.file, held.c.payload)
        .where(held.c.brand == brand, held.c.entity == entity_name, held.c.cause == "reference")
        .order_by(held.c.held_at, held.c.line)
    ).all()
    by_delivery: dict[tuple[str | None, str], list[dict]] = {}
    for source, file, payload in rows:
        by_delivery.setdefault((source, file), []).append(json.loads(payload))
    schema = polars_schema(entity) | {LINE: pl.Int64}
    return {
        delivery: pl.DataFrame(records, infer_schema_length=None).with_columns([
            (pl.col(c).cast(pl.Utf8).str.to_datetime(strict=False) if t == pl.Datetime("us") else
             pl.col(c).cast(pl.Utf8).str.to_date(strict=False) if t == pl.Date else pl.col(c).cast(t))
            for c, t in schema.items() if c in records[0]
        ])
        for delivery, records in by_delivery.items()
    }


def unknown_references(conn: sa.Connection, entity: Entity, brand: str,
                       frame: pl.DataFrame | pl.LazyFrame) -> dict[Reference, pl.Series]:
    """For each reference the rows carry, the values among theirs that name no known shopper or
    product (yet), as the target's key matches them (a product_ref folded). The distinct values go
    to the database once; it answers in one join."""
    unknown = {}
    columns = frame.collect_schema().names()
    for ref in entity.references:
        if ref.column not in columns or (ref.when and ref.when[0] not in columns):
            continue
        rows = frame.lazy().filter(_applies(ref)) if ref.when else frame.lazy()
        distinct = rows.select(_as_matched(ref, pl.col(ref.column)).drop_nulls().unique().alias("value")).collect(
            engine="streaming")
        if distinct.is_empty():
            continue
        wanted = sa.Table("wanted_refs", sa.MetaData(), sa.Column("value", sa.Text), prefixes=["TEMPORARY"])
        wanted.drop(conn, checkfirst=True)
        wanted.create(conn)
        bulk.load(conn, wanted, distinct)
        referenced = ENTITY_TABLES[ref.entity]
        (target,) = match_key(ENTITIES[ref.entity], [ref.target_column])
        missing = conn.execute(sa.select(wanted.c.value).where(~sa.exists().where(
            referenced.c.brand == brand, referenced.c[target] == wanted.c.value))).scalars().all()
        wanted.drop(conn)
        unknown[ref] = pl.Series(missing, dtype=pl.Utf8)
    return unknown


def resolves(conn: sa.Connection, entity: Entity, brand: str, frame: pl.DataFrame,
             unknown: dict[Reference, pl.Series] | None = None) -> pl.Series:
    """For each row, whether every shopper or product it references is known now (`unknown`: from
    `unknown_references` over rows that include these, to ask the database once for many batches)."""
    unknown = unknown_references(conn, entity, brand, frame) if unknown is None else unknown
    ok = pl.repeat(True, frame.height, eager=True)
    for ref, values in unknown.items():
        if ref.column in frame.columns and not values.is_empty():
            ok &= _known(frame, ref, values)
    return ok


def _applies(ref: Reference) -> pl.Expr:
    """The rows a reference holds for: all, or those of its `when` (a metafield's owner type)."""
    return (pl.col(ref.when[0]) == ref.when[1]).fill_null(False) if ref.when else pl.lit(True)


def _as_matched(ref: Reference, values: pl.Expr) -> pl.Expr:
    """A reference's values as its target's key matches them: folded where that ignores case."""
    return fold(values) if ENTITIES[ref.entity].column(ref.target_column).case_insensitive else values


def _known(frame: pl.DataFrame, ref: Reference, unknown: pl.Series) -> pl.Series:
    """For each row, whether it names none of the `unknown` values of `ref` (from `unknown_references`)."""
    named = (_applies(ref) & _as_matched(ref, pl.col(ref.column)).is_in(unknown.implode())).fill_null(False)
    return ~frame.select(named).to_series()


def held_count(conn: sa.Connection, brand: str, entity_name: str) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(held).where(held.c.brand == brand, held.c.entity == entity_name)).scalar_one()


def entities_with_held(conn: sa.Connection, brand: str, referenced: str) -> list[str]:
    """Entities with rows held that `referenced` arriving could release."""
    candidates = dependents(referenced)
    found = conn.execute(sa.select(held.c.entity).distinct().where(held.c.brand == brand, held.c.entity.in_(candidates))).scalars().all()
    return [e for e in candidates if e in found]
