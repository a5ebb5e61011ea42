"""The warehouse's engine: one per URL per process, SQLite or PostgreSQL set up for the way the
pipeline writes (a writer takes SQLite's lock up front; PostgreSQL plans by index), write
transactions, and the migration that brings a warehouse's schema up to this version's tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from bspk_pipelines.warehouse import platform  # noqa: F401  (its tables join `metadata`)
from bspk_pipelines.warehouse import counts
from bspk_pipelines.warehouse.schema import (
    FILLED_WHEN_ADDED, FOLDED_KEYS, SCHEMA_VERSION, ExactDecimal, files, metadata, schema_version,
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # pysqlite's own transaction handling defers BEGIN past DDL; we issue BEGIN ourselves.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def _postgres_settings(dbapi_conn, _record) -> None:
    # Plans for a file's few thousand changed rows look them up by index rather than scan a
    # table of millions: a random read costs about what a sequential one does on the SSDs (or
    # in the cache) a warehouse lives on, not PostgreSQL's default four times as much.
    cur = dbapi_conn.cursor()
    cur.execute("SET random_page_cost = 1.1")
    cur.close()
    dbapi_conn.commit()


def _sqlite_begin(conn) -> None:
    # A writer takes the write lock up front (IMMEDIATE): two writers wait in turn instead of
    # failing on a lock upgrade. Readers begin DEFERRED and never wait for a writer (WAL).
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("bspk_write") else "BEGIN")


@contextmanager
def writing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction: committed at the end of the block, rolled back on an error."""
    with engine.connect() as conn:
        conn.execution_options(bspk_write=True)
        with conn.begin():
            yield conn


def insert_ignoring_conflicts(conn: sa.Connection, table: sa.Table, values: dict) -> bool:
    """Insert a row unless one with its primary key exists (a compare-and-set: of two writers,
    exactly one inserts); True if this one did."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return conn.execute(dialect.insert(table).values(**values).on_conflict_do_nothing()).rowcount == 1


@cache
def engine_for(url: str) -> sa.Engine:
    """One engine per URL per process, with the schema migrated to this version of the code."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    # TCP keepalives: a connection idle while it holds a brand's lock (`locks`) is not dropped
    # by a firewall's idle timeout unnoticed, and a dead peer is found within a minute or two.
    keepalives = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 6}
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=keepalives if url.startswith("postgresql") else {})
    if engine.dialect.name == "sqlite":
        if engine.url.database and engine.url.database != ":memory:":
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)  # a new data folder
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
    else:
        sa.event.listen(engine, "connect", _postgres_settings)
    migrate(engine)
    return engine


def migrate(engine: sa.Engine) -> None:
    """Create missing tables and add missing columns (additive migrations), filling an added column
    for existing rows where the schema says how, then record the version."""
    with writing(engine) as conn:
        if conn.dialect.name == "postgresql":
            # One migrator at a time when several runs start together.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(724201)")
        metadata.create_all(conn)
        _folded_keys(conn)
        inspector = sa.inspect(conn)
        added = []
        for table in metadata.sorted_tables:
            existing = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in existing:
                    ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
                    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN {ddl}')
                    added.append((table.name, column.name))
        # Once every column is there: a fill may read another table's new columns.
        for fill in [FILLED_WHEN_ADDED[a] for a in added if a in FILLED_WHEN_ADDED]:
            conn.execute(fill)
        _exact_decimals(conn)
        _files_by_entity(conn)
        counts.install(conn)
        current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
        if current is None or current < SCHEMA_VERSION:
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION, applied_at=sa.func.now()))


def _folded_keys(conn: sa.Connection) -> None:
    """Tables made before refs were stored as sent (schema version 2: product_ref and sku
    lower-cased, in the primary key themselves) take their folded copies into the primary key.
    Each stored ref was lower-cased: it is its own folded copy, and stays as it is. PostgreSQL
    adds the columns and changes the primary key in place; SQLite cannot change a primary key:
    the table is copied into a new one."""
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        stored = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        missing = {h: sent for h, sent in FOLDED_KEYS.get(table.name, {}).items() if h not in stored}
        if not missing:
            continue
        if conn.dialect.name == "sqlite":
            _copy_table(conn, table, stored, {h: f'"{sent}"' for h, sent in missing.items()})
            continue
        quoted = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
        for h, sent in missing.items():
            conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{h}" TEXT')
            conn.exec_driver_sql(f'UPDATE "{table.name}" SET "{h}" = "{sent}"')
            conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ALTER COLUMN "{h}" SET NOT NULL')
        old = inspector.get_pk_constraint(table.name)["name"]
        conn.exec_driver_sql(f'ALTER TABLE "{table.name}" DROP CONSTRAINT "{old}", ADD PRIMARY KEY ({quoted})')


def _copy_table(conn: sa.Connection, table: sa.Table, stored: dict[str, sa.types.TypeEngine],
                values: dict[str, str]) -> None:
    """SQLite: `table` made anew as the schema defines it, holding the stored table's rows: each
    column from `values` (SQL over the stored columns), else the stored column of its name (a
    decimal stored as a number as that number's text: see `_exact_decimals`)."""
    for index in sa.inspect(conn).get_indexes(table.name):
        conn.exec_driver_sql(f'DROP INDEX "{index["name"]}"')
    copy = table.to_metadata(sa.MetaData(), name=f"{table.name}__copy")
    copy.create(conn)

    def value(c: sa.Column) -> str:
        if c.name in values:
            return values[c.name]
        numeric = isinstance(c.type, ExactDecimal) and isinstance(stored[c.name], sa.Numeric)
        return f'CAST("{c.name}" AS TEXT)' if numeric else f'"{c.name}"'

    columns = [c for c in table.columns if c.name in values or c.name in stored]
    names, selected = ", ".join(f'"{c.name}"' for c in columns), ", ".join(value(c) for c in columns)
    conn.exec_driver_sql(f'INSERT INTO "{copy.name}" ({names}) SELECT {selected} FROM "{table.name}"')
    conn.exec_driver_sql(f'DROP TABLE "{table.name}"')
    conn.exec_driver_sql(f'ALTER TABLE "{copy.name}" RENAME TO "{table.name}"')


def _exact_decimals(conn: sa.Connection) -> None:
    """Decimal columns of a warehouse made before they were exact (schema version 1: NUMERIC(20, 6))
    take the `ExactDecimal` storage. PostgreSQL changes the column's type in place, values kept.
    SQLite cannot change a column's type: the table is copied into a new one, each decimal as the
    text of what the column held (349.9 for the float it had made of 349.90)."""
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        decimals = [c.name for c in table.columns if isinstance(c.type, ExactDecimal)]
        if not decimals:
            continue
        stored = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        old = [c for c in decimals if isinstance(stored[c], sa.Numeric) and (conn.dialect.name == "sqlite" or stored[c].scale is not None)]
        if not old:
            continue
        if conn.dialect.name == "postgresql":
            for c in old:
                conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ALTER COLUMN "{c}" TYPE numeric')
            continue
        _copy_table(conn, table, stored, {})


def _files_by_entity(conn: sa.Connection) -> None:
    """A warehouse made before a file could feed several entities (schema version 2) keys `files`
    by brand, source and name: the entity joins the key, '' where a record fed none."""
    inspector = sa.inspect(conn)
    if "entity" in inspector.get_pk_constraint("files")["constrained_columns"]:
        return
    if conn.dialect.name == "sqlite":
        stored = {c["name"]: c["type"] for c in inspector.get_columns("files")}
        _copy_table(conn, files, stored, {"entity": "COALESCE(\"entity\", '')"})
        return
    constraint = inspector.get_pk_constraint("files")["name"]
    conn.exec_driver_sql("UPDATE files SET entity = '' WHERE entity IS NULL")
    conn.exec_driver_sql(f'ALTER TABLE files DROP CONSTRAINT "{constraint}", ALTER COLUMN entity SET NOT NULL, '
                         "ALTER COLUMN entity SET DEFAULT '', ADD PRIMARY KEY (brand, source, name, entity)")
