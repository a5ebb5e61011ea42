"""Reading a delivered CSV file into rows that remember their line, or failing the whole file.

A file fails as a whole (FileFailure) when it cannot be read as the source's CSV at all: wrong
encoding, no header, a header that does not fit. A single bad row never fails a file: it
becomes a reject with its line and the rule it broke.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from bspk_pipelines.config import Dialect

LINE = "_line"
# Given the header and a batch's rows, the rows to read on (see `read_batches`).
SetAside = Callable[[list[str], pl.DataFrame], pl.DataFrame]
# A field may be long (descriptions go to 65,535 characters); past this it is surely not data.
csv.field_size_limit(16 * 1024 * 1024)


class FileFailure(Exception):
    """The file as a whole cannot be applied; the message names the file and the problem."""


@dataclass
class RowProblem:
    line: int
    column: str
    value: str
    rule: str
    message: str


@dataclass
class ParsedBatch:
    rows: pl.DataFrame  # one Utf8 column per header column, blanks as null, plus `_line`
    problems: list[RowProblem]
    set_aside: int = 0  # rows read but set aside (see `read_batches`)


def _decoding(dialect: Dialect) -> str:
    # A UTF-8 byte-order mark is harmless and common (Excel writes one): read past it.
    return "utf-8-sig" if dialect.encoding == "utf-8" else dialect.encoding


def _locate_decode_error(path: Path, encoding: str) -> tuple[int, int, bytes]:
    """Line, byte offset and bytes of the first sequence that does not decode."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line, offset = 1, 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            for i in range(len(chunk)):
                # Bytes of a multi-byte sequence the decoder holds: the bad sequence starts with them.
                pending = decoder.getstate()[0]
                try:
                    decoder.decode(chunk[i : i + 1])
                except UnicodeDecodeError:
                    return line, offset + i - len(pending), (pending + chunk[i : i + 4])[:4]
                if chunk[i] == 0x0A:
                    line += 1
            offset += len(chunk)
    pending = decoder.getstate()[0]
    return line, offset - len(pending), pending


def check_header(
    name: str, header: list[str], expected: list[str], optional: list[str], exact: bool, delimiter: str = ","
) -> None:
    """Fail the file unless its header names every expected column once (and, if exact, no others)."""
    if expected and not set(header) & set(expected):
        # Data on line 1, or another delimiter: listing every column as missing would hide that.
        line = delimiter.join(header)
        other = next((d for d in ";,\t|" if d != delimiter and d in line), None) if len(header) == 1 else None
        hint = f"is the file delimited by {other!r} instead of {delimiter!r}?" if other else "is the header line missing?"
        raise FileFailure(
            f"{name}: line 1: expected a header naming the columns ({', '.join(expected)}); "
            f"found {line[:200]!r}, which names none of them: {hint}"
        )
    seen: dict[str, int] = {}
    for pos, col in enumerate(header, start=1):
        if col in seen:
            raise FileFailure(f"{name}: line 1: column {col!r} appears twice in the header (positions {seen[col]} and {pos})")
        seen[col] = pos
    missing = [c for c in expected if c not in seen]
    unknown = [c for c in header if c not in expected and c not in optional] if exact else []
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(repr(c) for c in unknown)}")
        raise FileFailure(f"{name}: line 1: the header does not fit: {'; '.join(parts)}")


def read_batches(
    path: Path,
    dialect: Dialect,
    expected: list[str],
    optional: list[str] = (),
    exact: bool = False,
    batch_rows: int = 100_000,
    set_aside: SetAside | None = None,
) -> Iterator[ParsedBatch]:
    """Rows of a CSV file in batches, each row tagged with the line it starts on.

    `expected` columns must all be in the header; with `exact` (the platform's own format) no
    other columns than `expected` and `optional` may be. Blank lines are skipped.
    A plain file (UTF-8, no NUL, no lone carriage return, quotes only around whole fields that
    hold no delimiter) is split by polars, many times faster; any other goes through Python's
    csv reader. Both give the same rows.

    `set_aside`, if given, sees each batch before it is split into fields or checked, and
    returns the rows to go on with: on the plain path a frame of `_line` and `raw` (the line as
    it is), on the other the header's fields and `_line`.
    """
    name = path.name
    if path.stat().st_size == 0:
        raise FileFailure(f"{name}: the file is empty: expected a header on line 1")
    if _plain(path, dialect):
        yield from _split_batches(path, dialect, expected, optional, exact, batch_rows, set_aside)
        return
    encoding = _decoding(dialect)
    try:
        with path.open("r", encoding=encoding, errors="strict", newline="") as f:
            # strict: a quote not closed by the end of the file, or text after a closing quote, is
            # an error rather than silently swallowing the lines that follow into one field.
            reader = csv.reader(f, delimiter=dialect.delimiter, quotechar=dialect.quote, strict=True)
            header = next(reader, None)
            if not header or all(not h.strip() for h in header):
                raise FileFailure(f"{name}: line 1: expected a header, found an empty line")
            header = [h.strip() for h in header]
            check_header(name, header, expected, list(optional), exact, dialect.delimiter)
            width = len(header)
            columns: list[list[str | None]] = [[] for _ in header]
            lines: list[int] = []
            problems: list[RowProblem] = []
            start = reader.line_num + 1
            while True:
                try:
                    record = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    if "expected after" not in str(e):
                        # The end of the file inside a quoted field (or a field past the size limit):
                        # where the rows after it start cannot be known, so the file fails.
                        raise FileFailure(
                            f"{name}: line {start}: not readable as CSV: {e} (a quoted field that is never closed?)"
                        ) from None
                    # Text after a closing quote: the reader drops the rest of the line, so only it is lost.
                    line, start = start, reader.line_num + 1
                    problems.append(RowProblem(line, "*", "", "quote",
                                               f"a closing quote must be followed by the delimiter or the end of the line ({e})"))
                    continue
                line, start = start, reader.line_num + 1
                if not record or record == [""]:
                    continue
                if len(record) != width:
                    problems.append(
                        RowProblem(line, "*", dialect.delimiter.join(record)[:200], "field_count",
                                   f"expected {width} fields as in the header, found {len(record)}")
                    )
                    continue
                nul = next((i for i, v in enumerate(record) if "\x00" in v), None)
                if nul is not None:
                    problems.append(
                        RowProblem(line, header[nul], record[nul].replace("\x00", "\\0")[:200], "nul_byte",
                                   "the value contains a NUL byte")
                    )
                    continue
                lines.append(line)
                for col, value in zip(columns, record):
                    col.append(value if value.strip() else None)
                if len(lines) >= batch_rows:
                    yield _batch(header, columns, lines, problems, set_aside)
                    columns, lines, problems = [[] for _ in header], [], []
            yield _batch(header, columns, lines, problems, set_aside)
    except UnicodeDecodeError:
        line, offset, bad = _locate_decode_error(path, encoding)
        raise FileFailure(
            f"{name}: line {line}: not valid {dialect.encoding} text (byte offset {offset}: {bad!r})"
        ) from None
    except csv.Error as e:
        # Rows handle their own CSV errors: only the header (line 1 onwards) gets here.
        raise FileFailure(f"{name}: line 1: the header is not readable as CSV: {e}") from None


def _lines(path: Path) -> pl.LazyFrame:
    """The file's lines as they are (a blank line is null), read by polars."""
    return pl.scan_csv(path, has_header=False, separator="\x00", quote_char=None, infer_schema=False,
                       new_columns=["raw"], encoding="utf8")


def _plain(path: Path, dialect: Dialect) -> bool:
    """Whether every line of the file is its fields joined by the delimiter, nothing more: valid
    UTF-8 with no NUL byte, no carriage return but before a line feed, and quotes only around
    whole fields that hold neither a delimiter nor a quote."""
    if dialect.encoding not in ("utf-8", "utf-8-sig"):
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    previous = b""
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            if b"\x00" in chunk:
                return False
            joined = previous + chunk
            if joined.count(b"\r") != joined.count(b"\r\n") + joined.endswith(b"\r"):
                return False
            previous = chunk[-1:]
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return False
    if previous.endswith(b"\r"):
        return False
    d, q = re.escape(dialect.delimiter), re.escape(dialect.quote)
    field = f"(?:[^{q}{d}]*|{q}[^{q}{d}]*{q})"
    odd = _lines(path).filter(~pl.col("raw").str.contains(f"^{field}(?:{d}{field})*$")).select(pl.len())
    return odd.collect(engine="streaming").item() == 0


def _split_batches(
    path: Path, dialect: Dialect, expected: list[str], optional: list[str], exact: bool, batch_rows: int,
    set_aside: SetAside | None,
) -> Iterator[ParsedBatch]:
    """The plain-file path: polars reads whole lines, then splits them on the delimiter."""
    lines = _lines(path)
    header: list[str] | None = None
    line = 0
    for chunk in lines.collect_batches(chunk_size=batch_rows):
        numbered = chunk.with_row_index(LINE, offset=line + 1).with_columns(pl.col(LINE).cast(pl.Int64))
        line += chunk.height
        if header is None:
            first = numbered.row(0, named=True)["raw"]
            header = [h.strip() for h in (first or "").removeprefix("\ufeff").split(dialect.delimiter)]
            if not first or all(not h for h in header):
                raise FileFailure(f"{path.name}: line 1: expected a header, found an empty line")
            check_header(path.name, header, expected, list(optional), exact, dialect.delimiter)
            numbered = numbered.slice(1)
        present = numbered.filter(pl.col("raw").is_not_null())
        read = present.height
        if set_aside:
            present = set_aside(header, present.select(LINE, "raw"))
        fields = present.with_columns(pl.col("raw").str.split(dialect.delimiter).alias("_fields"))
        width = len(header)
        ragged = fields.filter(pl.col("_fields").list.len() != width)
        problems = [
            RowProblem(r[LINE], "*", r["raw"][:200], "field_count",
                       f"expected {width} fields as in the header, found {len(r['_fields'])}")
            for r in ragged.iter_rows(named=True)
        ]
        good = fields.filter(pl.col("_fields").list.len() == width)
        # Only whole fields are quoted here (see _plain): drop their quotes.
        quote = dialect.quote
        values = [pl.col("_fields").list.get(i).str.strip_prefix(quote).str.strip_suffix(quote).alias(h)
                  for i, h in enumerate(header)]
        rows = good.select(*values, pl.col(LINE)).with_columns(
            pl.when(pl.col(h).str.strip_chars() != "").then(pl.col(h)).alias(h) for h in header)
        yield ParsedBatch(rows, problems, read - present.height)


def _batch(header: list[str], columns: list[list[str | None]], lines: list[int], problems: list[RowProblem],
           set_aside: SetAside | None) -> ParsedBatch:
    data = {h: pl.Series(h, col, dtype=pl.Utf8) for h, col in zip(header, columns)}
    data[LINE] = pl.Series(LINE, lines, dtype=pl.Int64)
    rows = pl.DataFrame(data)
    kept = set_aside(header, rows) if set_aside else rows
    return ParsedBatch(kept, problems, rows.height - kept.height)
