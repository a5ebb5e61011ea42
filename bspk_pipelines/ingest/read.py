"""Reading a delivered file of any shape a source's dialect names into rows of text that remember
where they are in the file, or failing the whole file.

Every shape gives the same thing, `parse.ParsedBatch`: one text column per column of the file
(blank and the dialect's `null_values` as null) and `_line`, where the row is (a line of a text
file, a row of a sheet, a record of a JSON document, a row of a Parquet file, counted from 1). So
mapping, checks, precedence and apply never know the shape. Typed values (Excel, JSON, Parquet)
are written as the dialect's own text would be read (see `typed.as_text`). A compressed file
(gzip) is read through its decompression (see `compressed`), whatever its shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from bspk_pipelines.ingest import parse
from bspk_pipelines.ingest.parse import FileFailure, ParsedBatch, SetAside
from bspk_pipelines.ingest.stores import archives
from bspk_pipelines.ingest.shapes import compressed, excel, fixed_width, json_records, parquet
from bspk_pipelines.model.mapping import Dialect

# The shapes read line by line, whose batches are bounded by their bytes as well as their rows.
TEXT_SHAPES = ("csv", "fixed_width", "jsonl")
# About the most bytes of the file a batch of its lines holds: rows of 200 KB come 320 to a batch,
# not 250,000 (50 GB), whatever `batch_rows` says.
BATCH_BYTES = 64 << 20
_SAMPLE = 1 << 20


def rows_per_batch(path: Path, batch_rows: int) -> int:
    """`batch_rows`, or fewer where the file's lines are long (judged by its first mebibyte's)."""
    with path.open("rb") as f:
        sample = f.read(_SAMPLE)
    average = max(1.0, len(sample) / max(1, sample.count(b"\n")))
    return max(1, min(batch_rows, int(BATCH_BYTES // average)))


# The modules that read files, of every shape (their code is part of what `check.rules_fingerprint` hashes).
MODULES = (parse, compressed, excel, fixed_width, json_records, parquet)
READERS = {"csv": parse.read_batches, "fixed_width": fixed_width.read_batches, "excel": excel.read_batches,
           "json": json_records.read_batches, "jsonl": json_records.read_batches, "parquet": parquet.read_batches}


def read_batches(
    path: Path,
    dialect: Dialect,
    expected: list[str],
    optional: list[str] = (),
    exact: bool = False,
    batch_rows: int = 100_000,
    set_aside: SetAside | None = None,
) -> Iterator[ParsedBatch]:
    """The file's rows in batches (see `parse.read_batches`, whose arguments every shape takes)."""
    with compressed.expanded(path) as readable:
        if dialect.shape in TEXT_SHAPES:
            batch_rows = rows_per_batch(readable, batch_rows)
        if dialect.shape != "excel" and archives.is_zip(readable):  # an .xlsx is a zip, any other shape is not
            raise FileFailure(f"{path.name}: a zip archive, not a {dialect.shape} file: drop an archive itself into the "
                              "drop store, where each of its members is a delivery (an archive inside an archive, or "
                              "inside a gzip file, is not opened)")
        yield from READERS[dialect.shape](readable, dialect, expected, optional, exact, batch_rows, set_aside)
