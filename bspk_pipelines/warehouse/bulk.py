"""Loading a polars frame into a table as fast as each database allows.

PostgreSQL takes COPY from CSV text; SQLite takes the driver's executemany of plain tuples in
the open transaction. Both skip SQLAlchemy's per-row parameter processing.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import sqlalchemy as sa

NULL = r"\N"


def load(conn: sa.Connection, table: sa.Table, frame: pl.DataFrame, batch_rows: int = 100_000) -> None:
    """Append `frame`'s rows (columns named as the table's) to `table` inside the caller's transaction."""
    if frame.is_empty():
        return
    columns = frame.columns
    dbapi = conn.dialect.dbapi
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        if conn.dialect.name == "postgresql":
            quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
            name = conn.dialect.identifier_preparer.format_table(table)
            sql = f"COPY {name} ({quoted}) FROM STDIN WITH (FORMAT csv, NULL '{NULL}')"
            # polars writes the next slice's CSV while the server takes this one (both let go of the GIL).
            with ThreadPoolExecutor(1) as writer:
                pending = None
                for chunk in frame.iter_slices(batch_rows):
                    written = writer.submit(_csv, chunk)
                    if pending:
                        cursor.copy_expert(sql, pending.result())
                    pending = written
                cursor.copy_expert(sql, pending.result())
        else:
            placeholders = ", ".join("?" for _ in columns)
            quoted = ", ".join(f'"{c}"' for c in columns)
            sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({placeholders})'
            for chunk in frame.iter_slices(batch_rows):
                cursor.executemany(sql, _sqlite_rows(chunk))
    except dbapi.Error as e:
        # As SQLAlchemy raises a statement's errors (IntegrityError for a key already stored, a
        # deadlock as OperationalError), so callers handle both paths alike.
        raise sa.exc.DBAPIError.instance(sql, None, e, dbapi.Error) from None
    finally:
        cursor.close()


def _csv(frame: pl.DataFrame) -> io.BytesIO:
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False, null_value=NULL, datetime_format="%Y-%m-%dT%H:%M:%S%.f")
    buffer.seek(0)
    return buffer


def _sqlite_rows(frame: pl.DataFrame):
    """Rows as SQLAlchemy's SQLite types store them: dates and datetimes as ISO text, booleans as 0/1."""
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.Date:
            col = col.dt.strftime("%Y-%m-%d")
        elif isinstance(dtype, pl.Datetime):
            col = col.dt.strftime("%Y-%m-%d %H:%M:%S.%6f")
        elif dtype == pl.Boolean:
            col = col.cast(pl.Int8)
        exprs.append(col)
    return frame.select(exprs).iter_rows()
