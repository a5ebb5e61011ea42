"""The warehouse schema follows the code forward: missing tables and columns are added in place."""

from __future__ import annotations

import sqlalchemy as sa

from bspk_pipelines.warehouse.schema import SCHEMA_VERSION, metadata
from bspk_pipelines.warehouse.engine import migrate


def test_migrate_adds_what_a_newer_version_declares_and_keeps_rows(warehouse_url):
    engine = sa.create_engine(warehouse_url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:  # an older warehouse: `files` without later columns, no `held` table
        conn.execute(sa.text(
            "create table files (brand text, source text, name text, entity text, sha256 text not null, "
            "size bigint not null, received_at timestamp not null, sort_key text not null, status text not null, "
            "primary key (brand, source, name))"))
        conn.execute(sa.text(
            "insert into files values ('acme', 'main', 'f.csv', 'shoppers', 'abc', 1, '2024-01-01 00:00:00', 'k', 'applied')"))
    migrate(engine)
    migrate(engine)  # a second run finds nothing to do
    inspector = sa.inspect(engine)
    assert {c["name"] for c in inspector.get_columns("files")} == {c.name for c in metadata.tables["files"].columns}
    assert set(metadata.tables) <= set(inspector.get_table_names())
    with engine.connect() as conn:
        assert conn.execute(sa.text("select status, superseded from files")).one() == ("applied", None)
        assert conn.execute(sa.text("select max(version) from schema_version")).scalar() == SCHEMA_VERSION
    engine.dispose()
