"""Reading a delivered delimited text file into rows that remember their line, or failing the whole file.

A file fails as a whole (FileFailure) when it cannot be read as the source's CSV at all: wrong
encoding, no header, a header that does not fit, a trailer missing. A single bad row never fails
a file: it becomes a reject with its line and the rule it broke. Lines that are no rows (before
the header, a trailer) are passed over and counted (`ParsedBatch.passed_over`), never lost.
"""

from __future__ import annotations

import codecs
import collections
import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import polars as pl

from bspk_pipelines.model.mapping import Dialect
from bspk_pipelines.model.entities import LINE

# Given the header and a batch's rows, the rows to read on (see `read_batches`).
SetAside = Callable[[list[str], pl.DataFrame], pl.DataFrame]
# The most a row may hold, in bytes as the file has them: its line, or the lines a quoted field
# spans (their line breaks count, the one that ends the row does not). Descriptions go to 65,535
# characters; a row past this is surely not data, and holding it would cost memory without bound,
# so it is rejected (`length`) and read past in pieces, never whole.
MAX_ROW_BYTES = 1 << 20
# A line of MAX_ROW_BYTES and its \r\n: one read of the file hands over a line that fits whole.
_PIECE = MAX_ROW_BYTES + 2
# No row the csv module sees is over MAX_ROW_BYTES (see _Lines), so neither is a field of it.
csv.field_size_limit(MAX_ROW_BYTES + 1)


class FileFailure(Exception):
    """The file as a whole cannot be applied; the message names the file and the problem."""


@dataclass
class RowProblem:
    line: int
    column: str
    value: str
    rule: str
    message: str


@dataclass(frozen=True)
class PassedOver:
    """A line of the file that is no row, as the dialect says: before the header, or a trailer."""

    line: int
    text: str  # its first 200 characters
    why: str  # "skip_lines", "trailer_lines" or "trailer_pattern": the setting that passes it over


@dataclass
class ParsedBatch:
    rows: pl.DataFrame  # one Utf8 column per header column, blanks as null, plus `_line`
    problems: list[RowProblem]
    set_aside: int = 0  # rows read but set aside (see `read_batches`)
    passed_over: list[PassedOver] = field(default_factory=list)  # on a file's first batch
    sheet: str | None = None  # a workbook's: the sheet the rows are of, which each reject names


def locate_decode_error(path: Path, encoding: str) -> tuple[int, int, bytes]:
    """Line, byte offset and bytes of the first sequence that does not decode."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line, offset = 1, 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            for i in range(len(chunk)):
                # Bytes of a multi-byte sequence the decoder holds: the bad sequence starts with them.
                pending = decoder.getstate()[0]
                try:
                    # Lines are counted in the text: a 0x0A byte is half a character in UTF-16.
                    line += decoder.decode(chunk[i : i + 1]).count("\n")
                except UnicodeDecodeError:
                    return line, offset + i - len(pending), (pending + chunk[i : i + 4])[:4]
            offset += len(chunk)
    pending = decoder.getstate()[0]
    return line, offset - len(pending), pending


def check_header(
    name: str, header: list[str], expected: list[str], optional: list[str], exact: bool, delimiter: str = ",",
    line: int = 1,
) -> None:
    """Fail the file unless its header (on `line`) names every expected column once (and, if
    exact, no others)."""
    if expected and not set(header) & set(expected):
        # Data on the header's line, or another delimiter: listing every column as missing would hide that.
        found = delimiter.join(header)
        other = next((d for d in ";,\t|" if d != delimiter and d in found), None) if len(header) == 1 else None
        hint = f"is the file delimited by {other!r} instead of {delimiter!r}?" if other else "is the header line missing?"
        raise FileFailure(
            f"{name}: line {line}: expected a header naming the columns ({', '.join(expected)}); "
            f"found {found[:200]!r}, which names none of them: {hint}"
        )
    seen: dict[str, int] = {}
    for pos, col in enumerate(header, start=1):
        if col in seen:
            raise FileFailure(f"{name}: line {line}: column {col!r} appears twice in the header "
                              f"(positions {seen[col]} and {pos})")
        seen[col] = pos
    missing = [c for c in expected if c not in seen]
    unknown = [c for c in header if c not in expected and c not in optional] if exact else []
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(repr(c) for c in unknown)}")
        raise FileFailure(f"{name}: line {line}: the header does not fit: {'; '.join(parts)}")


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
    at = dialect.skip_lines + 1  # the header's line, or the first row's
    named = dialect.named_columns
    if path.stat().st_size == 0:
        if named is not None:
            yield _batch(named, [[] for _ in named], [], [], None)  # no header to miss: no rows
            return
        raise FileFailure(f"{name}: the file is empty: expected a header on line {at}")
    if named is not None:
        check_named(name, named, expected)
    plain = _plain(path, dialect)
    encoding = "utf-8-sig" if plain else _encoding(path, dialect)
    trailer = trailer_of(path, dialect, encoding, plain, at if named is None else at - 1)
    stop = trailer[0].line if trailer else None  # the first line of the trailer: no row starts there or after
    if plain:
        yield from _split_batches(path, dialect, expected, optional, exact, batch_rows, set_aside, trailer)
        return
    try:
        with path.open("r", encoding=encoding, errors="strict", newline="") as f:
            text = _Lines(f, encoding)
            skipped: list[PassedOver] = []
            try:
                for _ in range(dialect.skip_lines):  # a report's title, its date: lines, not rows
                    text.new_row()
                    line = next(iter(text), None)
                    if line is None:
                        raise FileFailure(f"{name}: the file ends before its header (line {at}, after skip_lines: "
                                          f"{dialect.skip_lines})")
                    skipped.append(PassedOver(text.number, line.rstrip("\r\n").removeprefix("\ufeff")[:200], "skip_lines"))
                reader = _reader(text, dialect)
                text.new_row()
                header = named if named is not None else next(reader, None)
            except _RowTooLong:
                what = "the header" if text.number + 1 >= at else "a line before the header"
                raise FileFailure(f"{name}: line {text.number + 1}: {what} is longer than {MAX_ROW_BYTES:,} bytes "
                                  "(1 MiB): is this a CSV file?") from None
            if not header or all(not h.strip() for h in header):
                raise FileFailure(f"{name}: line {at}: expected a header, found an empty line")
            if named is None:
                # A byte-order mark the codec keeps (utf-16-le, say) is no part of the first column's name.
                header = [h.strip() for h in [header[0].removeprefix("\ufeff"), *header[1:]]]
                check_header(name, header, expected, list(optional), exact, dialect.delimiter, at)
            nulls = set(dialect.null_values)
            width = len(header)
            passed_over = [*skipped, *trailer]
            columns: list[list[str | None]] = [[] for _ in header]
            lines: list[int] = []
            problems: list[RowProblem] = []
            start = text.number + 1
            while stop is None or start < stop:
                text.new_row()
                try:
                    record = next(reader)
                except StopIteration:
                    break
                except _RowTooLong:
                    problems.append(_too_long(start, header, *text.skip_row(name, start, dialect)))
                    start, reader = text.number + 1, _reader(text, dialect)
                    continue
                except csv.Error as e:
                    if "expected after" not in str(e):
                        # The end of the file inside a quoted field:
                        # where the rows after it start cannot be known, so the file fails.
                        raise FileFailure(
                            f"{name}: line {start}: not readable as CSV: {e} (a quoted field that is never closed?)"
                        ) from None
                    # Text after a closing quote: the reader drops the rest of the line, so only it is lost.
                    line, start = start, text.number + 1
                    problems.append(RowProblem(line, "*", "", "quote",
                                               f"a closing quote must be followed by the delimiter or the end of the line ({e})"))
                    continue
                line, start = start, text.number + 1
                if not record or record == [""]:
                    continue
                if line == 1:
                    record[0] = record[0].removeprefix("\ufeff")  # a header-less file's byte-order mark
                if len(record) != width:
                    problems.append(
                        RowProblem(line, "*", dialect.delimiter.join(record)[:200], "field_count",
                                   f"expected {width} fields as {_as_in(named)}, found {len(record)}")
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
                    col.append(value if value.strip() and value.strip() not in nulls else None)
                if len(lines) >= batch_rows:
                    yield _batch(header, columns, lines, problems, set_aside, passed_over)
                    columns, lines, problems, passed_over = [[] for _ in header], [], [], []
            yield _batch(header, columns, lines, problems, set_aside, passed_over)
    except UnicodeDecodeError:
        line, offset, bad = locate_decode_error(path, encoding)
        raise FileFailure(
            f"{name}: line {line}: not valid {dialect.encoding} text (byte offset {offset}: {bad!r})"
        ) from None
    except csv.Error as e:
        # Rows handle their own CSV errors: only the header (line 1 onwards) gets here.
        raise FileFailure(f"{name}: line {at}: the header is not readable as CSV: {e}") from None


def _reader(lines: _Lines, dialect: Dialect):
    if len(dialect.delimiter) > 1:
        # A delimiter of several characters (`||`) is what a system writes that quotes nothing:
        # every line is its fields, split on it.
        return (line.rstrip("\r\n").split(dialect.delimiter) for line in lines)
    # strict: a quote not closed by the end of the file, or text after a closing quote, is an
    # error rather than silently swallowing the lines that follow into one field.
    return csv.reader(lines, delimiter=dialect.delimiter, quotechar=dialect.quote, strict=True)


def _as_in(named: list[str] | None) -> str:
    return "the dialect's columns" if named is not None else "in the header"


def check_named(name: str, named: list[str], expected: list[str]) -> None:
    """A file without a header has the dialect's columns: they must hold every column the mapping reads."""
    missing = [c for c in expected if c not in named]
    if missing:
        raise FileFailure(f"{name}: the mapping reads column{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
                          f"which the dialect's columns ({', '.join(named)}) do not name: add "
                          f"{'them' if len(missing) > 1 else 'it'} to `columns` where the file has "
                          f"{'them' if len(missing) > 1 else 'it'}, or read another column")


def _encoding(path: Path, dialect: Dialect) -> str:
    with path.open("rb") as f:
        return dialect.decoding_for(f.read(4))


def trailer_of(path: Path, dialect: Dialect, encoding: str, plain: bool, header_line: int) -> list[PassedOver]:
    """The lines at the end of the file that are its trailer (see `Dialect.trailer_lines` and
    `trailer_pattern`), after `header_line`; FileFailure where the file has none."""
    if not (dialect.trailer_lines or dialect.trailer_pattern):
        return []
    wanted = dialect.trailer_lines or 1000  # a pattern: the lines at the end that match, up to 1,000
    last = _last_lines(path, encoding, plain, wanted)
    last = [(n, t) for n, t in last if n > header_line]
    if dialect.trailer_lines:
        if len(last) < dialect.trailer_lines:
            raise FileFailure(f"{path.name}: the file has {len(last)} line(s) after its header, fewer than its trailer "
                              f"(trailer_lines: {dialect.trailer_lines}): is it cut short?")
        return [PassedOver(n, t[:200], "trailer_lines") for n, t in last]
    matches = pl.Series([t for _, t in last], dtype=pl.Utf8).str.contains(dialect.trailer_pattern).to_list()
    count = next((i for i, m in enumerate(reversed(matches)) if not m), len(matches))
    if not count:
        where = f"its last line, line {last[-1][0]}, is {last[-1][1][:80]!r}" if last else "it has no line after its header"
        raise FileFailure(f"{path.name}: the file does not end with a trailer matching {dialect.trailer_pattern!r} "
                          f"(trailer_pattern); {where}: is it cut short? If the source writes no trailer, drop the setting")
    return [PassedOver(n, t[:200], "trailer_pattern") for n, t in last[len(last) - count:]]


def _last_lines(path: Path, encoding: str, plain: bool, count: int) -> list[tuple[int, str]]:
    """The file's last `count` lines that are not blank, with their numbers, as the reading paths count lines."""
    if plain:
        lines = text_lines(path).with_row_index(LINE, offset=1).filter(pl.col("raw").str.strip_chars() != "")
        last = lines.tail(count).collect(engine="streaming")
        return [(n + 0, t.removeprefix("\ufeff")) for n, t in zip(last[LINE].to_list(), last["raw"].to_list())]
    found: collections.deque[tuple[int, str]] = collections.deque(maxlen=count)
    number, ended = 0, True
    with path.open("r", encoding=encoding, errors="replace", newline="") as f:
        for piece in iter(lambda: f.readline(_PIECE), ""):
            number += ended  # a piece that does not end its line is followed by more of the same line
            ended = piece.endswith(("\n", "\r"))
            if ended and piece.strip():
                found.append((number, piece.rstrip("\r\n").removeprefix("\ufeff")))
    return list(found)


class _RowTooLong(Exception):
    """From `_Lines` through the csv reader: the row being read is over MAX_ROW_BYTES."""


# Where the skip of a long row is on its line: at a field's start, in an unquoted field, in a quoted
# one, just after a quote in a quoted one, past text after a closing quote (dropped to the line's end).
_FIELD_START, _UNQUOTED, _QUOTED, _CLOSED, _DROPPED = range(5)


class _Lines:
    """A text file's lines for the csv reader, read in pieces of at most _PIECE characters.

    A line that would take the row being read over MAX_ROW_BYTES is not handed over: iterating
    raises _RowTooLong instead (which ends that iteration), its caller reads past the rest of the
    row with `skip_row` and iterates again from the next row. `number` counts the lines read so
    far, skipped ones included.
    """

    def __init__(self, f: TextIO, encoding: str):
        self._f = f
        # Rows are measured in the file's bytes: the codec without its byte-order mark, and with
        # ASCII text taken as one byte a character where the codec writes it so (not UTF-16/32).
        self._measure = {"utf-8-sig": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}.get(encoding, encoding)
        self._ascii_bytes = len("a".encode(self._measure)) == 1
        self._unread: str | None = None  # what a look past a \r read of the next line
        self._held: tuple[str, bool] | None = None  # the first piece of the line that did not fit
        self._row: list[str] = []  # the lines handed over for the row being read
        self._row_bytes = 0
        self.number = 0

    def new_row(self) -> None:
        """A row starts with the next line."""
        self._row, self._row_bytes = [], 0

    def _bytes(self, text: str) -> int:
        return len(text) if self._ascii_bytes and text.isascii() else len(text.encode(self._measure, "replace"))

    def _read(self) -> str:
        if self._unread is None:
            return self._f.readline(_PIECE)
        piece, self._unread = self._unread, None
        return piece

    def _ends(self, piece: str) -> tuple[str, bool]:
        """The piece (with the \n after its \r, if there is one) and whether it ends its line."""
        if len(piece) < _PIECE or piece.endswith("\n"):
            return piece, True
        if piece.endswith("\r"):
            # The piece's end fell on a \r: whether a \n follows decides where the next line starts.
            following = self._f.readline(_PIECE)
            if following == "\n":
                return piece + following, True
            self._unread = following
            return piece, True
        return piece, False

    def _piece(self) -> tuple[str, bool]:
        """The next piece of the file ("" at its end) and whether it ends its line."""
        return self._ends(self._read())

    def __iter__(self) -> Iterator[str]:
        # Run once a line of the file: a generator, with no call for a line that fits whole.
        readline, ascii_bytes, measure = self._f.readline, self._ascii_bytes, self._measure
        while True:
            piece = readline(_PIECE) if self._unread is None else self._read()
            if not piece:
                return
            piece, ends = (piece, True) if len(piece) < _PIECE else self._ends(piece)
            size = len(piece) if ascii_bytes and piece.isascii() else len(piece.encode(measure, "replace"))
            # The line break that ends the row does not count: measured only when it could matter.
            if ends and (self._row_bytes + size <= MAX_ROW_BYTES
                         or self._row_bytes + self._bytes(piece.rstrip("\r\n")) <= MAX_ROW_BYTES):
                self.number += 1
                self._row.append(piece)
                self._row_bytes += size
                yield piece
            else:
                self._held = piece, ends
                raise _RowTooLong

    def _rest_of_row(self) -> Iterator[tuple[str, bool]]:
        """The row being read from its start, piece by piece, to the end of the file at most."""
        yield from ((line, True) for line in self._row)
        (piece, ends), starts_line = self._held, True
        while piece:
            self.number += starts_line
            yield piece, ends
            starts_line = ends
            piece, ends = self._piece()

    def skip_row(self, name: str, line: int, dialect: Dialect) -> tuple[int | None, str]:
        """Read past the row being read, which is over MAX_ROW_BYTES, without holding it.

        Its fields are followed as the csv reader would (a quote opens a field only at its start,
        two quotes in a quoted field are one, text after a closing quote makes the reader drop
        the rest of the line): returns the index of the first field over MAX_ROW_BYTES (None if
        only the row as a whole is) and that field's first 200 characters. The end of the file
        inside a quoted field fails the file, as it does for the reader.
        """
        delimiter, step = dialect.delimiter, len(dialect.delimiter)
        quote = dialect.quote if step == 1 else None  # nothing is quoted past a delimiter of several characters
        state, field, size, head, over = _FIELD_START, 0, 0, "", None

        def take(part: str) -> None:
            nonlocal size, head, over
            if over is None:
                head += part[:200 - len(head)]
                size += self._bytes(part)
                over = (field, head) if size > MAX_ROW_BYTES else None

        for piece, ends in self._rest_of_row():
            text = piece.rstrip("\r\n") if ends else piece
            i = 0
            while i < len(text) and state != _DROPPED:
                if state == _FIELD_START:
                    state, i = (_QUOTED, i + 1) if text[i] == quote else (_UNQUOTED, i)
                elif state == _CLOSED:
                    if text[i] == quote:
                        state, i = _QUOTED, i + 1
                        take(quote)
                    elif text.startswith(delimiter, i):
                        state, field, size, head, i = _FIELD_START, field + 1, 0, "", i + step
                    else:
                        state = _DROPPED
                else:  # on to the delimiter that ends an unquoted field, or the next quote in a quoted one
                    j = text.find(delimiter if state == _UNQUOTED else quote, i)
                    take(text[i:] if j < 0 else text[i:j])
                    if j < 0:
                        i = len(text)
                    elif state == _QUOTED:
                        state, i = _CLOSED, j + 1
                    else:
                        state, field, size, head, i = _FIELD_START, field + 1, 0, "", j + step
            if not ends:
                continue
            if state == _QUOTED and text != piece:
                take(piece[len(text):])  # a line break inside a quoted field is part of it
                continue
            if state == _QUOTED:
                break  # the file's last line ends inside a quoted field
            return over or (None, "")
        if state == _QUOTED:
            raise FileFailure(f"{name}: line {line}: not readable as CSV: unexpected end of data "
                              "(a quoted field that is never closed?)")
        return over or (None, "")


def _too_long(line: int, header: list[str], field: int | None, head: str) -> RowProblem:
    """The reject of a row over MAX_ROW_BYTES; `field` is the first over it, if one is."""
    if field is None:
        return RowProblem(line, "*", "", "length",
                          f"the row is longer than {MAX_ROW_BYTES:,} bytes (1 MiB), the most a row may hold, and was not "
                          "read: is a quote left open, so that the lines after it run into one field?")
    return RowProblem(line, header[field] if field < len(header) else "*", head, "length",
                      f"the value is longer than {MAX_ROW_BYTES:,} bytes (1 MiB), the most a field may hold, and the row "
                      "was not read: a value this long is not data (a file pasted into a cell?)")


def text_lines(path: Path) -> pl.LazyFrame:
    """The file's lines as they are (a blank line is null), read by polars."""
    return pl.scan_csv(path, has_header=False, separator="\x00", quote_char=None, infer_schema=False,
                       new_columns=["raw"], encoding="utf8")


def _plain(path: Path, dialect: Dialect) -> bool:
    """Whether every line of the file is its fields joined by the delimiter, nothing more: valid
    UTF-8 with no NUL byte, no carriage return but before a line feed, quotes only around whole
    fields that hold neither a delimiter nor a quote, and no line over MAX_ROW_BYTES (polars
    would hold it whole: the csv path reads past it)."""
    if dialect.decoding != "utf-8-sig":
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    previous = b""
    run = 0  # bytes since the last line feed
    with path.open("rb") as f:
        # A chunk is no longer than the longest line allowed, so only a line that runs across
        # chunks can be longer: it is measured from the last line feed of one to the first of the next.
        for chunk in iter(lambda: f.read(MAX_ROW_BYTES), b""):
            first = chunk.find(b"\n")
            if (run + len(chunk) if first < 0 else run + first) > MAX_ROW_BYTES:
                return False
            run = run + len(chunk) if first < 0 else len(chunk) - chunk.rfind(b"\n") - 1
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
    if len(dialect.delimiter) > 1:
        return True  # nothing is quoted: every line splits on the delimiter (see `_reader`)
    d, q = re.escape(dialect.delimiter), re.escape(dialect.quote)
    field = f"(?:[^{q}{d}]*|{q}[^{q}{d}]*{q})"
    odd = text_lines(path).filter(~pl.col("raw").str.contains(f"^{field}(?:{d}{field})*$")).select(pl.len())
    return odd.collect(engine="streaming").item() == 0


def _split_batches(
    path: Path, dialect: Dialect, expected: list[str], optional: list[str], exact: bool, batch_rows: int,
    set_aside: SetAside | None, trailer: list[PassedOver],
) -> Iterator[ParsedBatch]:
    """The plain-file path: polars reads whole lines, then splits them on the delimiter."""
    lines = text_lines(path)
    named = dialect.named_columns
    header: list[str] | None = None
    line, at = 0, dialect.skip_lines + 1  # lines read; the header's line (the first row's, without one)
    passed_over: list[PassedOver] = []
    stop = trailer[0].line if trailer else None
    for chunk in lines.collect_batches(chunk_size=batch_rows):
        numbered = chunk.with_row_index(LINE, offset=line + 1).with_columns(pl.col(LINE).cast(pl.Int64))
        line += chunk.height
        if stop is not None:
            numbered = numbered.filter(pl.col(LINE) < stop)
        if header is None:
            before = numbered.filter(pl.col(LINE) < at)
            passed_over += [PassedOver(n, (t or "").removeprefix("\ufeff")[:200], "skip_lines")
                            for n, t in before.select(LINE, "raw").iter_rows()]
            numbered = numbered.filter(pl.col(LINE) >= at)  # the lines before the header are no rows
            if numbered.is_empty():
                continue
            if named is not None:
                header = named
                numbered = numbered.with_columns(  # a header-less file's byte-order mark
                    pl.when(pl.col(LINE) == 1).then(pl.col("raw").str.strip_prefix("\ufeff")).otherwise(pl.col("raw")))
            else:
                first = numbered.row(0, named=True)["raw"]
                header = [h.strip() for h in (first or "").removeprefix("\ufeff").split(dialect.delimiter)]
                if not first or all(not h for h in header):
                    raise FileFailure(f"{path.name}: line {at}: expected a header, found an empty line")
                check_header(path.name, header, expected, list(optional), exact, dialect.delimiter, at)
                numbered = numbered.slice(1)
            passed_over += trailer
        present = numbered.filter(pl.col("raw").is_not_null())
        read = present.height
        if set_aside:
            present = set_aside(header, present.select(LINE, "raw"))
        fields = present.with_columns(pl.col("raw").str.split(dialect.delimiter).alias("_fields"))
        width = len(header)
        ragged = fields.filter(pl.col("_fields").list.len() != width)
        problems = [
            RowProblem(r[LINE], "*", r["raw"][:200], "field_count",
                       f"expected {width} fields as {_as_in(named)}, found {len(r['_fields'])}")
            for r in ragged.iter_rows(named=True)
        ]
        good = fields.filter(pl.col("_fields").list.len() == width)
        # Only whole fields are quoted here (see _plain): drop their quotes. Nothing is quoted
        # where the delimiter is several characters.
        quote = dialect.quote if len(dialect.delimiter) == 1 else ""
        fields = [pl.col("_fields").list.get(i) for i in range(width)]
        if quote:
            fields = [f.str.strip_prefix(quote).str.strip_suffix(quote) for f in fields]
        # Each column made whole before it is named: a header may say `*` or `^a$`, which pl.col would expand.
        rows = good.select(*(blank_as_null(f, dialect).alias(h) for f, h in zip(fields, header)), pl.col(LINE))
        yield ParsedBatch(rows, problems, read - present.height, passed_over)
        passed_over = []
    if header is None and named is not None:
        yield ParsedBatch(_batch(named, [[] for _ in named], [], [], None).rows, [], 0, passed_over)
    elif header is None:
        raise FileFailure(f"{path.name}: the file ends before its header (line {at}, after skip_lines: "
                          f"{dialect.skip_lines})")


def blank_as_null(value: pl.Expr, dialect: Dialect) -> pl.Expr:
    """A text value, null where it is blank or, trimmed, one of what the source writes for "no value"."""
    return pl.when(~value.str.strip_chars().is_in(pl.Series(["", *dialect.null_values], dtype=pl.Utf8).implode())).then(value)


def _batch(header: list[str], columns: list[list[str | None]], lines: list[int], problems: list[RowProblem],
           set_aside: SetAside | None, passed_over: list[PassedOver] = ()) -> ParsedBatch:
    data = {h: pl.Series(h, col, dtype=pl.Utf8) for h, col in zip(header, columns)}
    data[LINE] = pl.Series(LINE, lines, dtype=pl.Int64)
    rows = pl.DataFrame(data)
    kept = set_aside(header, rows) if set_aside else rows
    return ParsedBatch(kept, problems, rows.height - kept.height, list(passed_over))
