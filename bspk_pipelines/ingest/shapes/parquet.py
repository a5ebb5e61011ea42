"""Reading a Parquet file into rows of text, as `parse.read_batches` reads a CSV file.

The file's columns are its schema's, a struct's fields named by their dotted path (`address.city`)
as a JSON record's nested fields are (`json_records.dotted`), so one mapping reads either shape.
The schema is the header: the columns the mapping reads must be in it, or the file fails naming
the nearest columns it has. Typed columns (integers, floats, dates, booleans, lists) are written
as the dialect's text (`typed.as_text`). `_line` is the row's number in the file, counted from 1.

The file is read a slice of `batch_rows` rows at a time, only the columns the mapping reads, so
memory stays bounded whatever its size. Not with `collect_batches`: polars's streaming engine runs
ahead of a consumer slower than itself (writing text, checking) and holds what it read meanwhile,
measured at the whole of a 240 MB file. A slice decodes the row groups it falls in, so a row group
much larger than a batch is decoded once for each of its batches (4,000,000 rows of 13 columns in
row groups of 1,000,000: 12 s of CPU, against 5 s in row groups of 100,000), a cost paid for the bound.
A file that is not Parquet, or is damaged, fails as a whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl

from bspk_pipelines.ingest.parse import FileFailure, ParsedBatch, SetAside, check_header
from bspk_pipelines.ingest.shapes.json_records import dotted, require_fields, text_batch
from bspk_pipelines.model.entities import LINE
from bspk_pipelines.model.mapping import Dialect

# The bytes every Parquet file starts and ends with.
_MAGIC = b"PAR1"
_WHAT_TO_DO = ("is it the brand's Parquet export, whole? A file of another shape (CSV, JSON, Excel) needs the source's "
               "dialect to say so (shape)")


def read_batches(
    path: Path,
    dialect: Dialect,
    expected: list[str],
    optional: list[str] = (),
    exact: bool = False,
    batch_rows: int = 100_000,
    set_aside: SetAside | None = None,
) -> Iterator[ParsedBatch]:
    """The rows of a Parquet file in batches (see the module's docstring and `parse.read_batches`,
    whose arguments every shape takes)."""
    _check_magic(path)
    try:
        scan = pl.scan_parquet(path)
        schema = scan.collect_schema()
        leaves = list(dotted(_tree(schema)))
        paths = dict(leaves)
        if len(paths) < len(leaves):
            twice = next(n for n in paths if sum(1 for m, _ in leaves if m == n) > 1)
            raise FileFailure(f"{path.name}: {twice!r} names two of the file's columns, a column of that name and a "
                              f"field of a struct ({twice.split('.')[0]!r}): the mapping could read either, so the file "
                              "is not read; export one of them under another name")
        require_fields(path.name, expected, paths, "the file's schema")
        check_header(path.name, list(paths), expected, list(optional), exact, ",", line=1)
        read = [c for c in dict.fromkeys([*expected, *optional]) if c in paths]
        fields = scan.select(*(_field(schema, paths[c]).alias(c) for c in read))
        count = scan.select(pl.len()).collect().item()  # from the file's metadata
        # A file without rows gives one batch, as a CSV file of just its header does.
        for start in range(0, max(count, 1), batch_rows):
            # The row's number from the slice's start: polars's own row index would have its reader
            # decode every nested column (a struct, a list) from the file's first row, batch after batch.
            rows = fields.slice(start, batch_rows).collect().with_columns(
                pl.int_range(start + 1, start + 1 + pl.len(), dtype=pl.Int64).alias(LINE))
            yield text_batch(rows, [], dialect, set_aside)
    except pl.exceptions.PolarsError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FileFailure(f"{path.name}: not readable as Parquet ({reason}): {_WHAT_TO_DO}") from None


def _check_magic(path: Path) -> None:
    """Fail a file that is no Parquet at all in one line, before polars says so in many."""
    with path.open("rb") as f:
        head = f.read(len(_MAGIC))
        f.seek(max(path.stat().st_size - len(_MAGIC), 0))
        tail = f.read()
    if head != _MAGIC or tail != _MAGIC or path.stat().st_size < 2 * len(_MAGIC):
        where = "start" if head != _MAGIC else "end"
        raise FileFailure(f"{path.name}: not a Parquet file: it does not {where} with the bytes PAR1, as every Parquet "
                          f"file does (it starts with {head!r}): {_WHAT_TO_DO}")


def _tree(schema: pl.Schema | pl.Struct) -> dict:
    """A schema as nested objects: a struct as its fields, any other column as its type."""
    fields = schema.items() if isinstance(schema, pl.Schema) else ((f.name, f.dtype) for f in schema.fields)
    return {name: _tree(dtype) if isinstance(dtype, pl.Struct) else dtype for name, dtype in fields}


def _field(schema: pl.Schema, path: tuple[str, ...]) -> pl.Expr:
    """The column at a path of keys: a struct's field, and so on down. Each by its position, a
    struct's fields renamed to their positions first: a name such as `*` or `^a$` would be expanded
    by pl.col, or matched as a pattern by struct.field."""
    names = list(schema.names())
    value, dtype = pl.nth(names.index(path[0])), schema[path[0]]
    for key in path[1:]:
        position = [f.name for f in dtype.fields].index(key)
        by_position = value.struct.rename_fields([str(i) for i in range(len(dtype.fields))])
        value, dtype = by_position.struct.field(str(position)), dtype.fields[position].dtype
    return value
