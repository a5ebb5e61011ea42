"""How many rows each brand has in the tables the Extraction API lists, kept by PostgreSQL itself,
so that a listing's `X-Total-Count` costs a lookup, not a count of a million rows.

Statement-level triggers (with transition tables: one update of the count per statement and
brand, however many rows it writes, COPY included) add what an insert adds, take away what a
delete removes and forget a truncated table's counts. Being triggers, they count every writer,
whatever code path it takes; being in the writing transaction, a count changes exactly when the
rows it counts are committed. The first migration that installs them counts the rows already
there, under the lock that creating a trigger takes on its table (no write slips between).

SQLite has no statement-level triggers: a row-level one would cost each bulk insert an update
per row, so there the Extraction API counts its listings as it always did.
"""

from __future__ import annotations

import sqlalchemy as sa

from bspk_pipelines.warehouse.platform import ACTIVITY_TABLES, clients

# Not in the warehouse's metadata: PostgreSQL only (see the module's docstring), made by `install`.
listing_counts = sa.Table(
    "listing_counts",
    sa.MetaData(),
    sa.Column("brand", sa.Text, primary_key=True),
    sa.Column("listing", sa.Text, primary_key=True, comment="the counted table"),
    sa.Column("rows", sa.BigInteger, nullable=False),
    comment="rows per brand of the tables the Extraction API lists, kept by triggers",
)
COUNTED: tuple[sa.Table, ...] = (clients, *ACTIVITY_TABLES.values())

_FUNCTION = """
CREATE OR REPLACE FUNCTION bspk_listing_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO listing_counts AS c (brand, listing, rows)
      SELECT brand, TG_TABLE_NAME, count(*) FROM added GROUP BY brand
      ON CONFLICT (brand, listing) DO UPDATE SET rows = c.rows + excluded.rows;
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE listing_counts AS c SET rows = c.rows - gone.n
      FROM (SELECT brand, count(*) AS n FROM removed GROUP BY brand) AS gone
      WHERE c.brand = gone.brand AND c.listing = TG_TABLE_NAME;
  ELSE
    DELETE FROM listing_counts WHERE listing = TG_TABLE_NAME;
  END IF;
  RETURN NULL;
END $$
"""
_TRIGGERS = (
    ("listing_count_added", "AFTER INSERT", "REFERENCING NEW TABLE AS added FOR EACH STATEMENT"),
    ("listing_count_removed", "AFTER DELETE", "REFERENCING OLD TABLE AS removed FOR EACH STATEMENT"),
    ("listing_count_truncated", "AFTER TRUNCATE", "FOR EACH STATEMENT"),
)


def install(conn: sa.Connection) -> None:
    """PostgreSQL: the counts table, its function, and each counted table's triggers where missing
    (its count made from the rows there). Part of the warehouse's migration; nothing on SQLite."""
    if conn.dialect.name != "postgresql":
        return
    listing_counts.create(conn, checkfirst=True)
    conn.exec_driver_sql(_FUNCTION)
    for table in COUNTED:
        present = conn.execute(sa.text("SELECT count(*) FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass) "
                                       "AND tgname LIKE 'listing_count_%'"), {"t": table.name}).scalar_one()
        if present == len(_TRIGGERS):
            continue
        for name, when, each in _TRIGGERS:
            conn.exec_driver_sql(f'DROP TRIGGER IF EXISTS {name} ON "{table.name}"')
            conn.exec_driver_sql(f'CREATE TRIGGER {name} {when} ON "{table.name}" {each} '
                                 "EXECUTE FUNCTION bspk_listing_count()")
        conn.execute(listing_counts.delete().where(listing_counts.c.listing == table.name))
        conn.execute(listing_counts.insert().from_select(
            ["brand", "listing", "rows"],
            sa.select(table.c.brand, sa.literal(table.name), sa.func.count()).group_by(table.c.brand)))


def kept_for(conn: sa.Connection, table: sa.Table | None) -> bool:
    """Whether the triggers keep the table's counts on this database (PostgreSQL, a counted table)."""
    return conn.dialect.name == "postgresql" and table in COUNTED


def kept_rows(table: sa.Table, brand: str) -> sa.ColumnElement[int]:
    """The brand's rows in a counted table, as the triggers keep them (0 before its first row), as
    a scalar subquery to read in the same statement as what it is compared with."""
    kept = sa.select(listing_counts.c.rows).where(listing_counts.c.brand == brand, listing_counts.c.listing == table.name)
    return sa.func.coalesce(kept.scalar_subquery(), 0)
