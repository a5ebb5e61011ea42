"""Reading a fixed-width file, as mainframes and older ERPs write them: every line one row, each
column at the characters the dialect's `fixed` gives (counted from 1), its padding (spaces, tabs) trimmed.

A line is as long as the end of its last column: a line of another length (a field shifted, one
missing) is rejected whole with its line (rule `width`), never cut where a column might be wrong.
Lines before the first row (`skip_lines`, a header line too) and a trailer are passed over and
counted as for delimited text. The file is read in the dialect's encoding, through a UTF-8 copy
where it is another, and its lines split by polars.
"""

from __future__ import annotations

import codecs
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from bspk_pipelines.ingest.parse import (
    FileFailure, ParsedBatch, PassedOver, RowProblem, SetAside, blank_as_null, check_named, locate_decode_error,
    text_lines, trailer_of,
)
from bspk_pipelines.model.entities import LINE
from bspk_pipelines.model.mapping import Dialect

_CHUNK = 1 << 20


def read_batches(path: Path, dialect: Dialect, expected: list[str], optional: list[str] = (), exact: bool = False,
                 batch_rows: int = 100_000, set_aside: SetAside | None = None) -> Iterator[ParsedBatch]:
    """The file's rows in batches (see `ingest.read.read_batches`)."""
    header = [c.name for c in dialect.fixed]
    check_named(path.name, header, expected)
    length = max(c.stop for c in dialect.fixed)
    empty = pl.DataFrame(schema={**{h: pl.Utf8 for h in header}, LINE: pl.Int64})
    if path.stat().st_size == 0:
        yield ParsedBatch(empty, [])
        return
    with _as_utf8(path, dialect) as text:
        passed_over = trailer_of(text, dialect, "utf-8", True, dialect.skip_lines)
        stop = passed_over[0].line if passed_over else None
        line = 0
        for chunk in text_lines(text).collect_batches(chunk_size=batch_rows):
            numbered = chunk.with_row_index(LINE, offset=line + 1).with_columns(
                pl.col(LINE).cast(pl.Int64), pl.col("raw").str.strip_suffix("\r"))
            if line == 0:
                numbered = numbered.with_columns(pl.col("raw").str.strip_prefix("\ufeff"))
            line += chunk.height
            before = numbered.filter(pl.col(LINE) <= dialect.skip_lines)
            passed_over = [PassedOver(n, (t or "")[:200], "skip_lines") for n, t in before.iter_rows()] + passed_over
            rows = numbered.filter((pl.col(LINE) > dialect.skip_lines) & pl.col("raw").str.strip_chars().ne(""))
            if stop is not None:
                rows = rows.filter(pl.col(LINE) < stop)
            width = rows.filter(pl.col("raw").str.len_chars() != length)
            problems = [RowProblem(n, "*", raw[:200], "width",
                                   f"the line is {len(raw)} characters long; its columns end at character {length} "
                                   "(is a field shifted or missing, or are the dialect's `fixed` columns off?)")
                        for n, raw in width.iter_rows()]
            fields = rows.filter(pl.col("raw").str.len_chars() == length).select(
                *(blank_as_null(pl.col("raw").str.slice(c.start - 1, c.stop - c.start + 1).str.strip_chars(),
                                dialect).alias(c.name) for c in dialect.fixed), pl.col(LINE))
            kept = set_aside(header, fields) if set_aside else fields
            yield ParsedBatch(kept, problems, fields.height - kept.height, passed_over)
            passed_over = []


@contextlib.contextmanager
def _as_utf8(path: Path, dialect: Dialect) -> Iterator[Path]:
    """The file itself where it is UTF-8, else a UTF-8 copy made as it is decoded (FileFailure
    naming the line of the first sequence that does not decode)."""
    with path.open("rb") as f:
        encoding = dialect.decoding_for(f.read(4))
    decoder = codecs.getincrementaldecoder(encoding)()
    utf8 = encoding == "utf-8-sig"
    with tempfile.TemporaryDirectory(prefix="bspk-fixed-") as scratch:
        copy = Path(scratch) / path.name
        try:
            with path.open("rb") as f, contextlib.nullcontext() if utf8 else copy.open("w", encoding="utf-8", newline="") as out:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    decoded = decoder.decode(chunk)
                    if out is not None:
                        out.write(decoded)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            line, offset, bad = locate_decode_error(path, encoding)
            raise FileFailure(f"{path.name}: line {line}: not valid {dialect.encoding} text (byte offset {offset}: "
                              f"{bad!r})") from None
        yield path if utf8 else copy
