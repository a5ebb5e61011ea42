"""Reading JSON Lines and JSON documents into rows of text, as `parse.read_batches` reads a CSV file.

A record is a JSON object; its nested objects are addressed by dotted names, the path of keys
(`address.city`, `customer.name.first`), so a mapping names a nested field as it names a column.
A list stays its JSON text (a mapping's transforms can split it), and so does an object the mapping
names as a whole. Only the fields the mapping reads come out; a field a record lacks is null.
Typed values (numbers, booleans, lists) are written as the dialect's text (`typed.as_text`); a
field whose values differ in type from record to record (a zip code sent as 75001 and as "2A004")
is each value's JSON text, a string as itself.

JSON Lines (`shape: jsonl`): one record per line; `_line` is the line in the file and blank lines
are skipped. A line that is not a JSON object, or is longer than `parse.MAX_ROW_BYTES` (read past
in pieces, never held whole), is a reject of that line; the file goes on.

A JSON document (`shape: json`): the records are the array at the dialect's `records` path
(`data.items`), or the document itself without one. It is streamed (ijson's C parser: a document
of millions of records is read in bounded memory), and a streaming parser knows no lines: `_line`
is the record's number in the array, counted from 1, and a reject names that number. A record
that is not an object is a reject; a document that does not parse, or whose records path leads
nowhere or to no array, fails as a whole, naming where.

The columns are settled on the first batch: every mapped column (`expected`) must be a field of at
least one of its records, or the file fails naming the nearest fields they have (a typo in a
dotted name would otherwise read as a column of nothing but blanks); an `optional` column comes
out if a record of the first batch has it.

The helpers that name nested fields and turn typed columns into a batch are shared with the
Parquet reader (`parquet`), so both shapes name a nested field alike.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path

import ijson
import polars as pl

from bspk_pipelines.ingest.parse import MAX_ROW_BYTES, FileFailure, ParsedBatch, RowProblem, SetAside, check_header
from bspk_pipelines.ingest.shapes import typed
from bspk_pipelines.model.entities import LINE
from bspk_pipelines.model.mapping import Dialect

# One read of a JSON Lines file: a line of MAX_ROW_BYTES and its \r\n fits whole.
_PIECE = MAX_ROW_BYTES + 2
# What a field a record does not have reads as, told apart from a field that is null.
_ABSENT = object()
# JSON's names for what a value is, for messages.
_KINDS = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
          Decimal: "a number", bool: "a boolean", type(None): "null"}
# The bytes of a UTF-8 sequence that do not start a character (to count a line's characters).
_CONTINUATION = bytes(range(0x80, 0xC0))
# Numbers below this read as floats do (`typed`); larger ones, which a float would round (or make
# infinite), keep their exact digits.
_FLOAT_EXACT = 2**53
# The deepest nesting of arrays and objects a document may have.
MAX_DEPTH = 64
# Reads of a document when locating where it stops parsing.
_CHUNK = 1 << 16
# The records of the first batch whose fields a failure names (see `_settle_columns`).
_SAMPLE = 1000
# Bound once: `json.loads` and `json.dumps` build them, and sniff the encoding, at every call.
# Numbers as JSON gives them, exactly (1e400 is no float; 0.1 is no 0.1000000000000000055...).
_decode = json.JSONDecoder(parse_float=Decimal).decode
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=float).encode


def read_batches(
    path: Path,
    dialect: Dialect,
    expected: list[str],
    optional: list[str] = (),
    exact: bool = False,
    batch_rows: int = 100_000,
    set_aside: SetAside | None = None,
) -> Iterator[ParsedBatch]:
    """The records of a JSON Lines file or a JSON document in batches (see the module's docstring
    and `parse.read_batches`, whose arguments every shape takes)."""
    if dialect.shape == "jsonl":
        records, unit = _line_records(path), "lines"
    else:
        records, unit = _document_records(path, dialect.records), "records"
    yield from _batches(path.name, records, unit, dialect, expected, list(optional), exact, batch_rows, set_aside)


# --- shared with the Parquet reader ------------------------------------------------------------


def dotted(tree: Mapping, prefix: str = "") -> Iterator[tuple[str, tuple[str, ...]]]:
    """The leaves of nested objects (a JSON record, a Parquet schema as a tree of its structs): each
    one's dotted name (`address.city`) and its path of keys."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from ((n, (key, *p)) for n, p in dotted(value, f"{name}."))
        else:
            yield name, (key,)


def require_fields(name: str, expected: list[str], found: Iterable[str], where: str) -> None:
    """Fail the file naming the first mapped column none of its fields is, and the nearest fields it
    has: the JSON and Parquet counterpart of a header that lacks a column."""
    found = list(dict.fromkeys(found))
    present = set(found)
    missing = [c for c in expected if c not in present]
    if not missing:
        return
    column = missing[0]
    near = difflib.get_close_matches(column, found, n=3, cutoff=0.6)
    others = f"; {len(missing) - 1} other mapped column{'s' if len(missing) > 2 else ''} missing too" if len(missing) > 1 else ""
    if near:
        hint = f"the nearest fields there are {', '.join(repr(f) for f in near)}"
    else:
        hint = f"the fields there are {', '.join(repr(f) for f in found[:10])}{', ...' if len(found) > 10 else ''}" \
            if found else "there are none"
    raise FileFailure(f"{name}: {where}: no field {column!r}, which the mapping reads{others}: {hint} (a nested "
                      "field is named by its path, as in address.city): correct the name in the mapping")


def text_batch(frame: pl.DataFrame, problems: list[RowProblem], dialect: Dialect,
               set_aside: SetAside | None) -> ParsedBatch:
    """A batch of typed columns and `_line` as the text the dialect reads, less the rows `set_aside`
    sets aside (see `parse._batch`)."""
    rows = typed.as_text(frame, dialect, keep=(LINE,))
    columns = [c for c in rows.columns if c != LINE]
    # A NUL (`\u0000` in JSON) is no text a platform column holds (PostgreSQL refuses it): the row
    # is a reject, as a CSV row holding one is.
    nul = pl.any_horizontal(pl.nth(i).str.contains("\x00", literal=True) for i in range(len(columns))) \
        if columns else pl.lit(False)
    bad = rows.filter(nul)
    for row in bad.iter_rows():
        i = next(i for i, v in enumerate(row[:-1]) if v is not None and "\x00" in v)
        problems = [*problems, RowProblem(row[-1], columns[i], row[i].replace("\x00", "\\0")[:200], "nul_byte",
                                          "the value contains a NUL character")]
    rows = rows.filter(~nul) if not bad.is_empty() else rows
    kept = set_aside(columns, rows) if set_aside else rows
    return ParsedBatch(kept, problems, rows.height - kept.height)


# --- records to batches ------------------------------------------------------------------------


def _batches(
    name: str, records: Iterator[tuple[int, object]], unit: str, dialect: Dialect, expected: list[str],
    optional: list[str], exact: bool, batch_rows: int, set_aside: SetAside | None,
) -> Iterator[ParsedBatch]:
    """Records (with their line, or number: `unit` names which) in batches of `batch_rows` records
    and rejects at most; a RowProblem in `records` is a reject as it is."""
    wanted = list(dict.fromkeys([*expected, *optional]))
    # The first batch tells a field a record lacks from a null one, to settle the columns.
    lines, values, problems, sample = _read_batch(records, [_getter(c, _ABSENT) for c in wanted], batch_rows,
                                                  keep=_SAMPLE)
    columns = _settle_columns(name, sample, dict(zip(wanted, values)), unit, lines, expected, optional, exact)
    values = [[None if v is _ABSENT else v for v in column] for column in values]
    getters = [_getter(c) for c in wanted]
    while True:
        read = dict(zip(wanted, values))
        frame = pl.DataFrame([_series(c, read[c]) for c in columns] + [pl.Series(LINE, lines, dtype=pl.Int64)])
        yield text_batch(frame, problems, dialect, set_aside)
        lines, values, problems, _ = _read_batch(records, getters, batch_rows)
        if not lines and not problems:
            return


def _read_batch(records: Iterator[tuple[int, object]], getters: list[Callable[[dict], object]], batch_rows: int,
                keep: int = 0) -> tuple[list[int], list[list], list[RowProblem], list[dict]]:
    """The next batch: the records' lines, the values of each wanted column (a list a column: no
    container a row, which the garbage collector would go through again and again), the rejects,
    and the first `keep` records themselves."""
    lines: list[int] = []
    values: list[list] = [[] for _ in getters]
    readers = [(column.append, get) for column, get in zip(values, getters)]
    problems: list[RowProblem] = []
    kept: list[dict] = []
    for line, record in records:
        if type(record) is dict:
            lines.append(line)
            for append, get in readers:
                append(get(record))
            if len(kept) < keep:
                kept.append(record)
        elif isinstance(record, RowProblem):
            problems.append(record)
        else:
            problems.append(RowProblem(line, "*", _json_text(record)[:200], "json", f"not a JSON object: "
                                       f"{_KINDS[type(record)]}, where each record is an object of fields"))
        if len(lines) + len(problems) >= batch_rows:
            break
    return lines, values, problems, kept


def _getter(column: str, absent: object = None) -> Callable[[dict], object]:
    """What reads a record's value at a dotted name: a key of that name itself (some exports flatten
    their objects so), or else the path of keys; `absent` where the record has neither (a null on
    the way is a null, not an absence)."""
    if "." not in column:
        return lambda record: record.get(column, absent)
    keys = column.split(".")

    def get(record: dict) -> object:
        if column in record:
            return record[column]
        value = record
        for key in keys:
            if type(value) is not dict:
                return None if value is None else absent
            value = value.get(key, absent)
        return value
    return get


def _settle_columns(name: str, sample: list[dict], values: dict[str, list], unit: str, lines: list[int],
                    expected: list[str], optional: list[str], exact: bool) -> list[str]:
    """The columns of every batch: the wanted ones a record of the first batch has (its `values`,
    _ABSENT where a record lacks the field). The fields named in a failure, and checked against an
    exact header, are those of the batch's first records (`sample`)."""
    if not lines:
        return list(expected)
    has = [c for c, column in values.items() if any(v is not _ABSENT for v in column)]
    if set(expected) <= set(has) and not exact:
        return has
    # The objects a mapping names whole are fields too, beside the leaves.
    fields = list(dict.fromkeys([*(f for record in sample for f, _ in dotted(record)), *has]))
    require_fields(name, expected, fields, f"{unit} {lines[0]} to {lines[-1]} (the first batch)")
    check_header(name, fields, expected, optional, exact, ",", line=lines[0])
    return has


def _series(name: str, values: list) -> pl.Series:
    """A column's values as one typed series for `typed.as_text`: of their own type where they all
    have one (a number, integer or not, is a number), or else each value's JSON text, a string as itself."""
    kinds = set(map(type, values)) - {type(None)}
    if kinds <= {str}:
        return pl.Series(name, values, dtype=pl.Utf8)
    if kinds == {bool}:
        return pl.Series(name, values, dtype=pl.Boolean)
    if kinds == {int} and all(abs(v) < 2**63 for v in values if v is not None):
        return pl.Series(name, values, dtype=pl.Int64)
    numbers = [v for v in values if v is not None]
    if kinds <= {int, Decimal} and all(abs(v) < _FLOAT_EXACT for v in numbers):
        # As a number is read anywhere (`typed`): 15 significant digits, so that an exporter's float
        # noise (0.7999999999999999) reads as the number meant, and 12.0 as 12.
        return pl.Series(name, [None if v is None else float(v) for v in values], dtype=pl.Float64)
    if kinds <= {int, Decimal}:  # a number no float holds (1e400, 2**70): its exact digits, never inf
        return pl.Series(name, [None if v is None else str(v) for v in values], dtype=pl.Utf8)
    return pl.Series(name, [v if v is None or type(v) is str else _json_text(v) for v in values], dtype=pl.Utf8)


def _json_text(value: object) -> str:
    """A value's JSON text, compact as `typed` writes lists and objects. A number of a document
    (ijson reads it as a Decimal, exactly) is written as it was sent, inside a list as a float."""
    return str(value) if isinstance(value, Decimal) else _encode(value)


# --- JSON Lines --------------------------------------------------------------------------------


def _line_records(path: Path) -> Iterator[tuple[int, object]]:
    """Each line that is not blank, with its number, decoded; a RowProblem for a line that does not
    decode or is too long. A line is read in pieces of at most _PIECE bytes: one too long is read
    past, never held."""
    with path.open("rb") as f:
        number = 0
        while piece := f.readline(_PIECE):
            number += 1
            head = piece
            while len(piece) == _PIECE and not piece.endswith(b"\n"):
                piece = f.readline(_PIECE)
            if head is not piece or len(head.rstrip(b"\r\n")) > MAX_ROW_BYTES:
                yield number, RowProblem(number, "*", head[:200].decode("utf-8", "replace"), "length",
                                         f"the line is longer than {MAX_ROW_BYTES:,} bytes (1 MiB), the most a row "
                                         "may hold, and was not read: is it a record, one to a line?")
                continue
            if head.isspace():
                continue
            try:
                yield number, _decode(head.decode("utf-8-sig" if number == 1 else "utf-8"))
            except UnicodeDecodeError as e:
                yield number, _not_json(number, head, f"not UTF-8 text (byte {e.start + 1} of the line)")
            except json.JSONDecodeError as e:
                yield number, _not_json(number, head, f"{e.msg} at column {e.colno}")
            except RecursionError:
                yield number, _not_json(number, head, "arrays or objects nested too deeply to be a record")


def _not_json(line: int, text: bytes, reason: str) -> RowProblem:
    return RowProblem(line, "*", text.rstrip(b"\r\n")[:200].decode("utf-8", "replace"), "json",
                      f"not a JSON object: {reason}")


# --- JSON documents ----------------------------------------------------------------------------


def _document_records(path: Path, records: str | None) -> Iterator[tuple[int, object]]:
    """The records of the array at the `records` path, numbered from 1, streamed."""
    if path.stat().st_size == 0:
        raise FileFailure(f"{path.name}: the file is empty: expected a JSON document (an array of records, or an "
                          "object holding one)")
    prefix = f"{records}.item" if records else "item"
    try:
        _find_records(path, records)
        with path.open("rb") as f:
            yield from enumerate(ijson.items(_events(path.name, f), prefix), start=1)
    except ijson.JSONError as e:
        raise _not_parsed(path, prefix, e) from None


def _events(name: str, f) -> Iterator[tuple[str, str, object]]:
    """ijson's prefixed events of a document (as `ijson.parse` gives them), made here from its basic
    ones so that nesting is bounded: ijson's C parser would build the prefix of every level of a
    200 KB `[[[[...` (tens of gigabytes) before the first event came out. Past MAX_DEPTH levels the
    file fails: no export's record nests so deep."""
    prefix, entered = "", []  # the prefix of the next value; each open container's own prefix
    for event, value in ijson.basic_parse(f):
        if event == "map_key":
            base = entered[-1]
            yield base, event, value
            prefix = f"{base}.{value}" if base else value
        elif event == "start_map" or event == "start_array":
            yield prefix, event, None
            entered.append(prefix)
            if len(entered) > MAX_DEPTH:
                raise FileFailure(f"{name}: arrays or objects nested more than {MAX_DEPTH} levels deep (at "
                                  f"{prefix[:80] or 'the document'}...): no export's records nest so deep; is this "
                                  "the brand's JSON export?")
            if event == "start_array":
                prefix = f"{prefix}.item" if prefix else "item"
        elif event == "end_map" or event == "end_array":
            # The container's own prefix: an array's next item has it too (a map's next key sets its own).
            prefix = entered.pop()
            yield prefix, event, None
        else:
            yield prefix, event, value


def _find_records(path: Path, records: str | None) -> None:
    """Fail the file unless its `records` path (the document itself without one) is an array,
    naming the keys found where the path stops. Reads the document's events up to that array."""
    keys = records.split(".") if records else []
    depth, at = 0, ""  # the keys of the path followed so far, and their dotted path (ijson's prefix)
    seen: list[str] = []  # the keys of the object where the path stands
    with path.open("rb") as f:
        for prefix, kind, value in _events(path.name, f):
            if prefix != at:
                continue
            if kind == "map_key":
                if value == keys[depth]:
                    depth, seen = depth + 1, []
                    at = ".".join(keys[:depth])
                elif len(seen) < 50:
                    seen.append(value)
            elif kind == "end_map":
                where = f"key {at!r}" if at else "the document"
                found = ", ".join(repr(k) for k in seen) or "none"
                raise FileFailure(f"{path.name}: the records path {records!r} is not in the document: {where} has no "
                                  f"key {keys[depth]!r} (its keys: {found}): correct the dialect's records path")
            elif depth == len(keys):  # the value at the path: the array of records
                if kind != "start_array":
                    raise _not_records(path.name, records, at, kind)
                return
            elif kind != "start_map":  # a value on the way there: an object to go into
                raise _not_records(path.name, records, at, kind)


def _not_records(name: str, records: str | None, at: str, kind: str) -> FileFailure:
    """The failure of a records path that leads to no array: the value where it stops is `kind` (an
    event of ijson's)."""
    what = {"start_map": "an object", "start_array": "an array", "string": "a string", "number": "a number",
            "boolean": "a boolean", "null": "null"}[kind]
    if not records:
        hint = ("name the array of its records with the dialect's records path (as in data.items), or for one record "
                "to a line set the dialect's shape to jsonl" if kind == "start_map"
                else "a JSON export is an array of records, or an object holding one")
        return FileFailure(f"{name}: the document is {what}, not an array of records: {hint}")
    if at == records:
        return FileFailure(f"{name}: the records path {records!r} leads to {what}, not an array of records: "
                           "correct the dialect's records path")
    return FileFailure(f"{name}: the records path {records!r} goes through {repr(at) if at else 'the document'}, "
                       f"which is {what}, not an object: correct the dialect's records path")


def _not_parsed(path: Path, prefix: str, error: ijson.JSONError) -> FileFailure:
    """The failure of a document that does not parse, naming where the parser stopped."""
    reason = str(error).splitlines()[0].rstrip(".") if str(error) else type(error).__name__
    offset = _stop_offset(path, prefix)
    size = path.stat().st_size
    if offset is None or offset >= size:
        return FileFailure(f"{path.name}: not a whole JSON document ({reason}): it ends at byte {size:,} before "
                           "its last value is closed: is the file cut short?")
    line, column = _line_and_column(path, offset)
    with path.open("rb") as f:
        f.seek(offset)
        near = f.read(30).decode("utf-8", "replace")
    if "trailing garbage" in reason:
        hint = "a second value after the document: one record to a line is JSON Lines (the dialect's shape jsonl)"
    else:
        hint = "is the file JSON, as the brand's system exported it?"
    return FileFailure(f"{path.name}: line {line}, column {column} (byte {offset + 1:,}): not valid JSON ({reason}) "
                       f"near {near!r}: {hint}")


class _Discard:
    """A target for ijson's push parser that keeps nothing: only whether the bytes parse matters."""

    def send(self, value) -> None:
        pass


def _stop_offset(path: Path, prefix: str) -> int | None:
    """The offset of the byte on which the parser stops, None if it stops only at the end.

    ijson's C parser says why it stops, not where: its push interface is fed the file once in
    chunks, to find the chunk it stops in, then again up to that chunk and the chunk byte by byte."""

    def stops(pieces: Iterable[bytes]) -> int | None:
        parser, done = ijson.items_coro(_Discard(), prefix), 0
        try:
            for piece in pieces:
                parser.send(piece)
                done += len(piece)
            parser.close()
        except ijson.JSONError:
            return done
        return None

    def chunks(upto: int | None = None) -> Iterator[bytes]:
        with path.open("rb") as f:
            done = 0
            while (upto is None or done < upto) and (chunk := f.read(_CHUNK)):
                done += len(chunk)
                yield chunk
            if upto is not None:
                yield from (bytes([b]) for b in f.read(_CHUNK))

    start = stops(chunks())
    return None if start is None else stops(chunks(upto=start))


def _line_and_column(path: Path, offset: int) -> tuple[int, int]:
    """The line and column (in characters of UTF-8) of a byte offset, counted from 1."""
    line, column = 1, 1
    with path.open("rb") as f:
        left = offset
        while left > 0 and (chunk := f.read(min(_CHUNK, left))):
            left -= len(chunk)
            newline = chunk.rfind(b"\n")
            line += chunk.count(b"\n")
            tail = chunk[newline + 1:]
            column = (1 if newline >= 0 else column) + len(tail.translate(None, _CONTINUATION))
    return line, column
