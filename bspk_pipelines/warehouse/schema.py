"""The warehouse's tables: one per entity, named after it, plus the bookkeeping tables.

Every table has `brand` first in its primary key. `engine.migrate` creates what is missing and
adds columns a newer version of the project declares (filling them for existing rows where
`FILLED_WHEN_ADDED` says how), so a warehouse follows the code forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from functools import cache

import polars as pl
import sqlalchemy as sa

from bspk_pipelines.model.entities import ENTITIES, Entity, Kind

SCHEMA_VERSION = 3  # 2: decimals exact (ExactDecimal); 3: refs as sent (keys on their folded copy), a file's record per entity it feeds

metadata = sa.MetaData()


def decimal_text(value: Decimal | float | int | str) -> str:
    """A decimal's canonical text: its digits as written, scale kept (`1250.00`, `349.90`), no
    leading zeros, no sign on a zero. A float (a SQLite row stored before decimals were exact)
    gives its shortest text (`349.9`)."""
    d = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))
    text = format(d, "f")
    return text.lstrip("-") if d == 0 else text


class ExactDecimal(sa.types.TypeDecorator):
    """A decimal kept exactly as the brand wrote it and read back as the same `Decimal` on both
    databases. PostgreSQL stores NUMERIC without a fixed scale (each value keeps its own:
    1250.00 stays 1250.00). SQLite stores the canonical text: a NUMERIC column there has INTEGER
    or REAL affinity, so 1250.00 came back as the integer 1250 and 349.90 as the float 349.9."""

    impl = sa.Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine:
        return dialect.type_descriptor(sa.Text() if dialect.name == "sqlite" else sa.Numeric(asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return decimal_text(value) if dialect.name == "sqlite" else Decimal(decimal_text(value))

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(decimal_text(value))


def distinct(stored: sa.ColumnElement, staged: sa.ColumnElement) -> sa.ColumnElement:
    """Whether a stored value differs from a staged one. A decimal compares as written: PostgreSQL's
    NUMERIC calls 1250.0 and 1250.00 equal, SQLite's text would not; a brand resending 1250.0
    changes the row on both."""
    if isinstance(stored.type, ExactDecimal):
        return sa.cast(stored, sa.Text).is_distinct_from(sa.cast(staged, sa.Text))
    return stored.is_distinct_from(staged)


_TYPES = {
    Kind.BOOL: sa.Boolean(),
    Kind.INT: sa.BigInteger(),
    Kind.DECIMAL: ExactDecimal(),
    Kind.DATE: sa.Date(),
    Kind.DATETIME: sa.DateTime(),
}


# Decimals stay text in frames (canonical, see `decimal_text`): a float would round them.
_POLARS = {
    Kind.BOOL: pl.Boolean, Kind.INT: pl.Int64, Kind.DATE: pl.Date, Kind.DATETIME: pl.Datetime("us"),
}


# Refs that ignore case (product_ref, sku) are stored as the brand last sent them, and matched on
# a hidden copy folded to lower case (`_product_ref_key`), which takes their place in the primary
# key. So every join and lookup stays a plain `=` on key columns, served by the primary key's
# index on both databases, and the fold is polars' alone (`fold`), written beside the sent value.
# lower() in each join instead would need expression indexes to be fast, and SQLite's lower()
# folds ASCII only: SQLite, PostgreSQL and a file's duplicate check would disagree on `É-1`.
def fold(expr: pl.Expr) -> pl.Expr:
    """A ref as it is matched: lower case, whatever case the brand or a caller writes it in."""
    return expr.str.to_lowercase()


@cache
def folded_columns(entity: Entity) -> dict[str, str]:
    """Hidden folded column -> the key column it folds, for the entity's case-insensitive key columns
    (on every row, or on the rows of `case_insensitive_when`)."""
    return {f"_{c.name}_key": c.name for c in entity.columns
            if (c.case_insensitive or c.case_insensitive_when) and c.name in entity.key}


def folded(entity: Entity, name: str) -> pl.Expr:
    """A key column as it is matched: folded, where (and on the rows where) it ignores case."""
    c, col = entity.column(name), pl.col(name)
    if c.case_insensitive_when:
        column, value = c.case_insensitive_when
        return pl.when(pl.col(column) == value).then(fold(col)).otherwise(col)
    return fold(col) if c.case_insensitive else col


def match_key(entity: Entity, key: Sequence[str] | None = None) -> list[str]:
    """The columns a key (the entity's, or `key`, which may add e.g. `source`) is matched on in tables
    and frames: each case-insensitive column's folded copy in its place."""
    hidden = {c: h for h, c in folded_columns(entity).items()}
    return [hidden.get(k, k) for k in (entity.key if key is None else key)]


def with_folded(entity: Entity, frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """`frame` with the folded copies of the case-insensitive key columns it carries (written anew)."""
    present = frame.collect_schema().names()
    return frame.with_columns(folded(entity, c).alias(h) for h, c in folded_columns(entity).items() if c in present)


def column_type(entity: Entity, name: str) -> sa.types.TypeEngine:
    if name in entity.optional_key or name in folded_columns(entity):
        return sa.Text()
    return _TYPES.get(entity.column(name).kind, sa.Text())


def polars_schema(entity: Entity) -> dict[str, pl.DataType]:
    """The polars type of each column as validated rows carry it (matching `column_type`)."""
    return {
        c.name: pl.Utf8 if c.name in entity.optional_key else _POLARS.get(c.kind, pl.Utf8) for c in entity.columns
    }


def _entity_columns(entity: Entity, *leading: str) -> list[sa.SchemaItem]:
    """The entity's columns as sent, then their folded copies; the primary key is `brand`,
    `leading` and the key, each case-insensitive column by its folded copy."""
    key = match_key(entity, [c.name for c in entity.columns if c.name in entity.key])
    return [
        *[sa.Column(c.name, column_type(entity, c.name), nullable=c.name not in entity.key) for c in entity.columns],
        *[sa.Column(h, sa.Text, nullable=False, comment=f"{c} in lower case: what the key matches on")
          for h, c in folded_columns(entity).items()],
        sa.PrimaryKeyConstraint("brand", *leading, *key),
    ]


def _entity_table(entity: Entity) -> sa.Table:
    return sa.Table(
        entity.name,
        metadata,
        sa.Column("brand", sa.Text, nullable=False),
        *_entity_columns(entity),
        sa.Column("_file", sa.Text, nullable=False, comment="file that last changed the row"),
        sa.Column("_updated_at", sa.DateTime, nullable=False),
        comment=f"{entity.file_type} records as the brand sent them, merged by precedence",
    )


def _by_source_table(entity: Entity) -> sa.Table:
    return sa.Table(
        f"{entity.name}__by_source",
        metadata,
        sa.Column("brand", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        *_entity_columns(entity, "source"),
        sa.Column("_file", sa.Text, nullable=False),
        sa.Column("_updated_at", sa.DateTime, nullable=False),
        comment=f"each source's latest {entity.name} rows, before precedence picks attribute owners",
    )


ENTITY_TABLES: dict[str, sa.Table] = {name: _entity_table(e) for name, e in ENTITIES.items()}
BY_SOURCE_TABLES: dict[str, sa.Table] = {name: _by_source_table(e) for name, e in ENTITIES.items()}
# Each table's folded key columns and the column each folds: what `engine.migrate` fills them from.
FOLDED_KEYS: dict[str, dict[str, str]] = {
    tables[name].name: folded_columns(e)
    for tables in (ENTITY_TABLES, BY_SOURCE_TABLES) for name, e in ENTITIES.items() if folded_columns(e)
}
# Month rebuilds find a month's rows by this index. References are checked against the
# referenced table's primary key, so no index on the referring column is needed to load.
for _name, _e in ENTITIES.items():
    if _e.month_column:
        sa.Index(f"ix_{_name}_month", ENTITY_TABLES[_name].c.brand, ENTITY_TABLES[_name].c[_e.month_column])

files = sa.Table(
    "files",
    metadata,
    sa.Column("brand", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True,
              comment="the delivery: the file's name, and @2, @3... for the next deliveries under that name"),
    # A file that feeds several entities has a row for each, all landed by one claim; '' for an
    # entry that feeds none (a refused entry, a name that matches no pattern).
    sa.Column("entity", sa.Text, primary_key=True, server_default=""),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("sort_key", sa.Text, nullable=False, comment="first-in-first-out order of application"),
    sa.Column("status", sa.Text, nullable=False,
              comment="received, validated, mapped, applied, duplicate, failed; refused: a drop entry not taken (yet)"),
    sa.Column("error", sa.Text),
    sa.Column("duplicate_of", sa.Text),
    sa.Column("rows_read", sa.BigInteger),
    sa.Column("rejected", sa.BigInteger),
    sa.Column("superseded", sa.BigInteger, comment="rows replaced by a later measurement in the same file, or, "
                                                   "while held, by a later delivery's row of the same key"),
    sa.Column("skipped", sa.BigInteger, comment="rows the mapping's skip rules left out: neither applied nor rejected"),
    sa.Column("inserted", sa.BigInteger),
    sa.Column("updated", sa.BigInteger),
    sa.Column("unchanged", sa.BigInteger),
    sa.Column("held", sa.BigInteger),
    sa.Column("deleted", sa.BigInteger),
    sa.Column("applied_at", sa.DateTime),
    sa.Column("claim", sa.Text, comment="the landing's own token: its work folders are named after it"),
    sa.Column("dropped_mtime_ns", sa.BigInteger, comment="the drop file's modification time when it was taken"),
    sa.Column("dropped_etag", sa.Text, comment="the drop object's version (ETag) when it was taken, where its store has one"),
    sa.Column("run_id", sa.Text, comment="the Dagster run that landed the file"),
)
sa.Index("ix_files_sha", files.c.brand, files.c.sha256)

rejects = sa.Table(
    "rejects",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("brand", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("file", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, comment="the entity the row was checked for (null: recorded before files fed several)"),
    sa.Column("line", sa.BigInteger, nullable=False),
    sa.Column("column", sa.Text, nullable=False),
    sa.Column("value", sa.Text),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)
sa.Index("ix_rejects_file", rejects.c.brand, rejects.c.source, rejects.c.file)

held = sa.Table(
    "held",
    metadata,
    sa.Column("brand", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, comment="with `file`, the delivery that sent the row (null: landed in the month store "
                                         "before it recorded sources)"),
    sa.Column("file", sa.Text, nullable=False),
    sa.Column("line", sa.BigInteger, nullable=False),
    sa.Column("cause", sa.Text, nullable=False, server_default="reference",
              comment="reference: waits for a shopper or product; owner: waits for the source owning a required attribute"),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False, comment="the row as JSON, applied when its reference arrives"),
    sa.Column("held_at", sa.DateTime, nullable=False),
)


def _sources_of_held() -> sa.Update:
    """Rows held before `held` had a source: each gets the source of the delivery of its name (of
    the brand's entity) applied first after the row was held (an apply stamps the rows it holds,
    then the file); a row a month rebuild held, after every landing, gets the one applied last."""
    same_name = sa.and_(files.c.brand == held.c.brand, files.c.entity == held.c.entity, files.c.name == held.c.file,
                        files.c.status == "applied")
    holding = sa.select(files.c.source).where(same_name, files.c.applied_at >= held.c.held_at).order_by(files.c.applied_at)
    last = sa.select(files.c.source).where(same_name).order_by(files.c.applied_at.desc())
    return held.update().values(source=sa.func.coalesce(holding.limit(1).scalar_subquery(), last.limit(1).scalar_subquery()))


# What a column `engine.migrate` adds to an existing table holds for the rows written before it.
FILLED_WHEN_ADDED: dict[tuple[str, str], sa.Update] = {("held", "source"): _sources_of_held()}

pending_months = sa.Table(
    "pending_months",
    metadata,
    sa.Column("brand", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("month", sa.Text, primary_key=True, comment="YYYY-MM: a month partition to rebuild"),
    sa.Column("since", sa.DateTime, nullable=False),
    comment="months whose landed rows changed (a new file, a released reference) since their last rebuild",
)

months = sa.Table(
    "months",
    metadata,
    sa.Column("brand", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("month", sa.Text, primary_key=True),
    sa.Column("rows", sa.BigInteger, nullable=False, comment="rows the month holds after its last rebuild"),
    sa.Column("rebuilds", sa.BigInteger, nullable=False),
    sa.Column("inserted", sa.BigInteger, nullable=False, comment="summed over every rebuild"),
    sa.Column("updated", sa.BigInteger, nullable=False),
    sa.Column("deleted", sa.BigInteger, nullable=False),
    sa.Column("held", sa.BigInteger, nullable=False, comment="rows held at the last rebuild"),
    sa.Column("rebuilt_at", sa.DateTime, nullable=False),
)

pulls = sa.Table(
    "pulls",
    metadata,
    sa.Column("brand", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("object", sa.Text, primary_key=True, comment="customers, products, orders or locations"),
    sa.Column("watermark", sa.Text, comment="UTC, ISO 8601: nodes updated before it are delivered"),
    sa.Column("digest", sa.Text, comment="sha256 of the last snapshot of an object read whole (locations)"),
    sa.Column("recent", sa.Text, comment="JSON {id: updatedAt} of the nodes delivered in the overlap before the watermark"),
    sa.Column("pulled_at", sa.DateTime, nullable=False),
    sa.Column("delivery", sa.Text, comment="the last delivery the pull wrote"),
    comment="where each API pull of a source stands: the next one asks for what changed since",
)

shopify_webhooks = sa.Table(
    "shopify_webhooks",
    metadata,
    sa.Column("brand", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("webhook_id", sa.Text, primary_key=True, comment="X-Shopify-Webhook-Id: one per delivery, kept on retries"),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("resource", sa.Text, comment="the id of the object the webhook is about"),
    sa.Column("triggered_at", sa.Text, comment="X-Shopify-Triggered-At, as sent"),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("action", sa.Text, nullable=False, comment="what it asked for: a pull of an object, a deletion, nothing"),
    comment="Shopify webhooks taken, so a delivery Shopify sends again is taken once",
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime, nullable=False),
)
