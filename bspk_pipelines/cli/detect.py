"""What an unknown file looks like, and the dialect lines that would read it: `bspk preview
--detect`, for a brand being onboarded from a file before it has a config, or a file that fits
none of its sources.

Everything here is a guess from the file's bytes, and says so: what was seen (magic bytes, a
byte-order mark, field counts line by line), then the settings it suggests, only those that differ
from `Dialect`'s defaults. The suggestion is read back through the real reader
(`ingest.read.read_batches`), so the rows shown are what the dialect gives, not what the guess
hoped for. No Dagster, no config, nothing written but a decompressed copy of a gzip file in a
temporary folder, gone when the detection is.

The delimiter and the header are found by counting fields line by line rather than by
`csv.Sniffer`: the sniffer gives up on the commonest export there is, a `;` file with decimal
commas under a title line, and calls an obvious header a row.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bspk_pipelines.ingest.parse import FileFailure
from bspk_pipelines.ingest.read import read_batches
from bspk_pipelines.ingest.shapes import compressed
from bspk_pipelines.ingest.shapes.json_records import dotted
from bspk_pipelines.model.entities import LINE
from bspk_pipelines.model.mapping import Dialect

# How much of a file is looked at: its start (JSON paths are found in it too) and its end (a trailer).
HEAD_BYTES = 4 << 20
TAIL_BYTES = 64 << 10
SAMPLE_LINES = 200
# The share of lines that must split into the same number of fields for a delimiter to be the file's.
AGREEING = 0.8
# Characters a delimiter of several characters (`||`, `|~|`) is made of.
MULTI_DELIMITER = re.compile(r"[|;,~^#]{2,8}")
DELIMITERS = (",", ";", "\t", "|")
# Objects counted in an array of records; past it the count says "1,000+".
MAX_COUNTED = 1000
TRAILER_WORD = re.compile(r"^(EOF|END|TOTAL|TRAILER)\b", re.IGNORECASE)
NUMBER = re.compile(r"^[-+]?(\d+|\d{1,3}([.,' ]\d{3})+)([.,]\d+)?%?$")
DECIMAL_COMMA = re.compile(r"^[-+]?(\d+|\d{1,3}([. ]\d{3})+),\d+$")
DOT_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(\.\d{3})+,\d+$")
COMMA_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(,\d{3})+\.\d+$")
# A date with the day and month in either order (31/12/2024, 12-31-24), perhaps a time after it.
DAY_MONTH = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4}|\d{2})(?:([ T])(\d{1,2}:\d{2}(:\d{2})?))?$")
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}(?:([ T])\d{2}:\d{2}(:\d{2})?)?$")
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le", "utf-32", "UTF-32 with a byte-order mark"),
        (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32", "UTF-32 with a byte-order mark"),
        (codecs.BOM_UTF8, "utf-8", None, "UTF-8 with a byte-order mark (Excel's CSV UTF-8): the default reads it"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16", "UTF-16 with a byte-order mark (Excel's Unicode text)"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16", "UTF-16 (big-endian) with a byte-order mark"))
SHAPES_READ = "CSV, fixed width, Excel, JSON, JSON Lines, Parquet, or a gzip of one"


class Unreadable(Exception):
    """The file cannot be looked at at all (empty, not text and no shape known, a broken
    archive); the message is one line, without the file's name."""


@dataclass
class Detection:
    seen: list[tuple[str, str]]  # what was looked at and what it showed, in the order they are printed
    dialect: dict[str, Any] | None  # the settings that differ from the defaults; None: no shape the pipeline reads
    rows: pl.DataFrame | None = None  # the first rows as the suggested dialect reads them
    rows_note: str = ""  # why there are no rows to show
    # The file's columns, for the readers that read only the columns asked for (JSON, Parquet).
    columns: list[str] = field(default_factory=list)


def detect(path: Path, rows: int = 5) -> Detection:
    """What the file at `path` looks like, its suggested dialect and its first `rows` rows read by it."""
    head = _head(path)
    if head.startswith(compressed.GZIP_MAGIC):
        return _gzip(path, rows)
    found = _shape(path, head)
    if found.dialect is not None:
        found.rows, found.rows_note = _read_back(path, found, rows)
    return found


def _shape(path: Path, head: bytes) -> Detection:
    """The file's shape by its first bytes (zip, Parquet, an .xls workbook), else text."""
    if head.startswith(b"PK\x03\x04"):
        return _zip(path)
    if head.startswith(b"PAR1"):
        return _parquet(path)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return _excel(path, "Excel workbook (.xls: an OLE compound file)")
    return _text(path, head)


def report(name: str, found: Detection) -> str:
    """A detection as the lines `bspk preview` prints: what was seen (aligned), the dialect to
    paste under the source, the first rows."""
    width = max(len(label) for label, _ in found.seen)
    lines = [f"{name}: what it looks like (a guess from its bytes; nothing is written)"]
    for label, text in found.seen:
        first, *more = text.splitlines() or [""]
        lines.append(f"  {label.ljust(width)}  {first}")
        lines += [f"  {' ' * width}  {line}" for line in more]
    if found.dialect is None:
        return "\n".join(lines)
    lines += ["", "suggested dialect, to paste under the source:"]
    lines += ["  " + line for line in dialect_yaml(found.dialect).splitlines()]
    if found.rows is None:
        lines += ["", f"rows: not shown: {found.rows_note}"]
    else:
        lines += ["", f"first {len(found.rows)} rows as it reads them:"]
        with pl.Config(tbl_rows=len(found.rows), tbl_cols=-1, tbl_width_chars=160, fmt_str_lengths=40,
                       tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            lines += ["  " + line for line in str(found.rows).splitlines()]
    return "\n".join(lines)


def dialect_yaml(settings: dict[str, Any]) -> str:
    """`dialect:` and the settings under it, as YAML to paste into a brand file (a `dialect: {}`
    when the defaults read the file)."""
    if not settings:
        return "dialect: {}  # the defaults read it"
    lines = ["dialect:"]
    for key, value in settings.items():
        if key == "fixed":
            lines.append("  fixed:")
            lines += [f"    - {{name: {_scalar(c['name'])}, start: {c['start']}, width: {c['width']}}}" for c in value]
        elif isinstance(value, list):
            lines.append(f"  {key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"  {key}: {_scalar(value)}")
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    """A value as YAML: plain when it cannot be misread (cp1252, data.items), else double-quoted
    (a JSON string is a YAML double-quoted scalar: `";"`, `"\\t"`, `"%d/%m/%Y"`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value) and value.lower() not in (
        "true", "false", "yes", "no", "on", "off", "null", "y", "n")
    return value if plain else json.dumps(value, ensure_ascii=False)


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as e:
        raise Unreadable(f"cannot be read: {e.strerror}") from None
    if not head:
        raise Unreadable("the file is empty")
    return head


def _read_back(path: Path, found: Detection, count: int) -> tuple[pl.DataFrame | None, str]:
    """The first `count` rows the suggested dialect reads, or why there are none to show (the
    suggestion stands either way)."""
    dialect = Dialect(**found.dialect)
    taken: list[pl.DataFrame] = []
    try:
        with contextlib.closing(read_batches(path, dialect, expected=[], optional=found.columns,
                                             batch_rows=max(count, 1000))) as batches:
            for batch in batches:
                taken.append(batch.rows.drop(LINE))
                if sum(len(t) for t in taken) >= count:
                    break
    except FileFailure as e:
        return None, f"the suggested dialect does not read it: {e}"
    except Exception as e:  # noqa: BLE001 - a reader's bug must not hide the suggestion, the point of the command
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return None, f"the {dialect.shape} reader stopped with {type(e).__name__}: {first} (a bug: please report it)"
    rows = pl.concat(taken).head(count) if taken else pl.DataFrame()
    if rows.is_empty():
        return None, "the suggested dialect reads no rows"
    if dialect.named_columns and rows.columns != dialect.named_columns:
        return None, f"the {dialect.shape} reader does not name the columns as `columns` does"
    return rows, ""


def _gzip(path: Path, rows: int) -> Detection:
    """A gzip file: what is inside it, decompressed as the pipeline reads it (`compressed`: no
    setting says so)."""
    try:
        with compressed.expanded(path) as copy:
            found = detect(copy, rows)
            size = copy.stat().st_size
    except FileFailure as e:
        raise Unreadable(str(e).removeprefix(f"{path.name}: ")) from None
    found.seen.insert(0, ("compressed", f"gzip, {size:,} bytes inside: read through its decompression, "
                                        "nothing to set"))
    return found


def _zip(path: Path) -> Detection:
    """A zip archive: a workbook (.xlsx is one, holding xl/workbook.xml; .xlsb xl/workbook.bin),
    or an archive of files, listed: in a drop folder each member is a delivery of its own
    (`stores.archives`), with a dialect of its own to detect."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise Unreadable(f"starts as a zip archive but is not one that opens: {e}") from None
    workbook = next((m.filename for m in members if m.filename.startswith("xl/workbook.")), None)
    if workbook:
        return _excel(path, f"Excel workbook (a zip holding {workbook})")
    listed = [f"{m.filename} ({m.file_size:,} bytes)" for m in members[:10]]
    if len(members) > 10:
        listed.append(f"... and {len(members) - 10:,} more")
    return Detection([("shape", "zip archive: in a drop folder each member is a delivery of its own "
                                "(archive.zip!member.csv), matched by its own name: unpack it and preview a member"),
                      ("members", "\n".join(listed) or "none")], None)


def _parquet(path: Path) -> Detection:
    """A Parquet file (PAR1 at its start and its end): its columns and their types."""
    with path.open("rb") as f:
        f.seek(-4, 2)
        if f.read(4) != b"PAR1":
            raise Unreadable("starts as Parquet (PAR1) but does not end as one: is it cut short?")
    try:
        schema = pl.read_parquet_schema(path)
        height = pl.scan_parquet(path).select(pl.len()).collect().item()
    except pl.exceptions.PolarsError as e:
        raise Unreadable(f"a Parquet file polars cannot read: {str(e).splitlines()[0]}") from None
    return Detection([("shape", f"Parquet (PAR1 at its start and end), {height:,} rows"),
                      ("columns", "\n".join(f"{name}: {dtype}" for name, dtype in schema.items()))],
                     {"shape": "parquet"}, columns=list(schema))


def _excel(path: Path, shape: str) -> Detection:
    """A workbook: its sheets, of which the reader takes the first unless `sheet` names another."""
    import fastexcel

    try:
        sheets = fastexcel.read_excel(path).sheet_names
    except fastexcel.FastExcelError as e:
        raise Unreadable(f"not a workbook that opens: {str(e).splitlines()[0]}") from None
    return Detection([("shape", shape),
                      ("sheets", ", ".join(sheets) + (f" (the first, {sheets[0]}, is read; `sheet:` names another)"
                                                      if len(sheets) > 1 else ""))], {"shape": "excel"})


def _text(path: Path, head: bytes) -> Detection:
    """A text file: its encoding, then JSON, JSON Lines, delimited or fixed-width text."""
    codec, suggested, words = _encoding(head)
    whole = path.stat().st_size <= len(head)
    text = codecs.getincrementaldecoder(codec)(errors="replace").decode(head, final=whole).removeprefix("\ufeff")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if not whole:
        lines.pop()  # cut short by the sample
    settings = {"encoding": suggested} if suggested else {}
    seen = [("encoding", words)]
    if text.lstrip()[:1] in ("{", "["):
        return _json(text, lines, seen, bool(suggested))
    return _delimited(lines[:SAMPLE_LINES], lines if whole else _tail(path, codec), seen, settings)


def _encoding(head: bytes) -> tuple[str, str | None, str]:
    """The codec the sample is read with, the encoding to suggest (None: the default reads it)
    and what was seen, in words: a byte-order mark, NUL bytes at every other byte (UTF-16
    without a mark), valid UTF-8, else the single-byte encoding that decodes it, said as a guess."""
    for bom, codec, suggested, words in BOMS:
        if head.startswith(bom):
            return codec, suggested, words
    sample = head[:4096]
    if b"\x00" in sample:
        even, odd = sample[0::2].count(0) / len(sample[0::2]), sample[1::2].count(0) / max(len(sample[1::2]), 1)
        if odd > 0.3 and even < 0.05:
            return "utf-16-le", "utf-16", "UTF-16 little-endian without a byte-order mark (utf-16 reads it so)"
        if even > 0.3 and odd < 0.05:
            return "utf-16-be", "utf-16-be", "UTF-16 big-endian without a byte-order mark"
        raise Unreadable(f"not text: it holds NUL bytes and starts {head[:8]!r}, no shape the pipeline reads "
                         f"({SHAPES_READ})")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEAD_BYTES)
    except UnicodeDecodeError as e:
        line = head[:e.start].count(b"\n") + 1
        where = f"line {line}: {head[e.start:e.start + 2]!r}"
    else:
        return "utf-8", None, "ASCII (UTF-8 reads it)" if head.isascii() else "UTF-8"
    try:
        head.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1", "latin-1", (f"not UTF-8 ({where}), nor cp1252 (a byte it leaves undefined); latin-1 "
                                      "decodes any bytes: check the accented letters in the rows below")
    same = "" if re.search(rb"[\x80-\x9f]", head) else "; latin-1 reads the same letters"
    return "cp1252", "cp1252", f"not UTF-8 ({where}); cp1252 (windows-1252) decodes it{same}"


def _tail(path: Path, codec: str) -> list[str]:
    """The file's last lines, read from its last TAIL_BYTES (on a character boundary of UTF-16
    and UTF-32), the first of them dropped as it may be cut."""
    unit = 4 if codec.startswith("utf-32") else 2 if codec.startswith("utf-16") else 1
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(f.tell() - TAIL_BYTES, 0) // unit * unit)
        text = f.read().decode(codec, errors="replace")
    return [line.removesuffix("\r") for line in text.split("\n")][1:]


def _json(text: str, lines: list[str], seen: list[tuple[str, str]], not_utf8: bool) -> Detection:
    """JSON Lines (the first lines each an object) or a JSON document, whose arrays of objects
    are the candidate `records` paths (found in the sample, which may stop anywhere)."""
    if not_utf8:
        seen.append(("note", "JSON is read as UTF-8 (RFC 8259) and the json shapes set no encoding: convert the file"))
    first = [line for line in lines if line.strip()][:20]
    objects = [value for value in map(_json_value, first) if isinstance(value, dict)]
    # Most of the first lines each an object: JSON Lines (a bad line among them is a reject, not another shape).
    if len(first) > 1 and len(objects) * 2 > len(first) and not isinstance(_json_value(text), (dict, list)):
        keys = list(dict.fromkeys(k for value in objects for k in _dotted_names(value)))
        seen[:0] = [("shape", "JSON Lines: one object a line")]
        if len(objects) < len(first):
            seen.append(("note", f"{len(first) - len(objects)} of the first {len(first)} lines are not JSON objects: "
                                 "each will be a reject (json) on its line"))
        seen.append(("keys", ", ".join(keys)))
        return Detection(seen, {"shape": "jsonl"}, columns=keys)
    arrays = _record_arrays(text)
    seen.insert(0, ("shape", "JSON document"))
    if not arrays:
        seen.append(("records", "no array of objects in the first "
                                f"{HEAD_BYTES >> 20} MB: the json shape reads an array of records"))
        return Detection(seen, None)
    # The array with the most objects in the sample: the records, surely (not a document's `links`).
    best = max(arrays, key=lambda path: arrays[path].objects)
    said = [f"{path or '(the document itself)'}: {a.objects:,}{'+' if a.objects >= MAX_COUNTED else ''} "
            f"object{'s' if a.objects > 1 else ''}" for path, a in arrays.items()]
    seen.append(("records", "\n".join(said)))
    seen.append(("keys", ", ".join(arrays[best].keys)))
    return Detection(seen, {"shape": "json", **({"records": best} if best else {})}, columns=list(arrays[best].keys))


def _dotted_names(record: dict) -> list[str]:
    """A record's fields as a mapping names them: nested objects by their dotted path."""
    return [name for name, _ in dotted(record)]


def _json_value(line: str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


@dataclass
class _Open:
    """A container open at a point of a JSON text: an object (with the key last read) or an array."""

    array: bool
    path: str | None  # dotted keys from the document; None under an array (a records path cannot reach it)
    record_of: str | None = None  # an object in an array of records: that array's path
    key: str | None = None
    expecting_key: bool = False
    items: int = 0


@dataclass
class _Records:
    """An array of objects in a JSON document: how many (counted to MAX_COUNTED), and their keys."""

    objects: int = 0
    keys: dict[str, None] = field(default_factory=dict)  # in the order they are first seen


def _record_arrays(text: str) -> dict[str, _Records]:
    """The dotted paths, through objects only, to arrays of objects, in the order they start; ""
    is the document itself. A hand-made scanner rather than `json.loads`: the text is a sample
    and may stop anywhere."""
    found: dict[str, _Records] = {}
    stack: list[_Open] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        top = stack[-1] if stack else None
        if c == '"':
            end = i + 1
            while end < n and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if end >= n:
                break
            if top and not top.array and top.expecting_key:
                top.key, top.expecting_key = _json_value(text[i:end + 1]), False
                if top.record_of is not None and isinstance(top.key, str):
                    found[top.record_of].keys[top.key] = None
            elif top and top.array:
                top.items += 1
            i = end + 1
            continue
        if c in "{[":
            record_of = None
            if top is None:
                path = ""
            elif top.array:
                top.items += 1
                if c == "{" and top.path is not None and top.items <= MAX_COUNTED:
                    record_of = top.path
                    found.setdefault(record_of, _Records()).objects += 1
                path = None
            else:
                usable = top.path is not None and isinstance(top.key, str) and re.fullmatch(r"[^.\s]+", top.key)
                path = (f"{top.path}.{top.key}" if top.path else top.key) if usable else None
            stack.append(_Open(array=c == "[", path=path, record_of=record_of, expecting_key=c == "{"))
        elif c in "}]":
            if not stack:
                break
            stack.pop()
        elif c == "," and top and not top.array:
            top.expecting_key = True
        elif top and top.array and not c.isspace() and c not in ",:" and (i == 0 or text[i - 1] in "[, \t\r\n"):
            top.items += 1  # a number or a literal starts
        i += 1
    return found


def _fields(line: str, delimiter: str) -> list[str]:
    """A line's fields: quoted as CSV for a delimiter of one character, split plainly on one of
    several (as the reader splits them)."""
    if len(delimiter) > 1:
        return line.split(delimiter)
    return next(csv.reader([line], delimiter=delimiter), [""])


def _agreement(counts: list[int]) -> tuple[int, int]:
    """The count most lines have (of fields, or characters) and how many lines have it. Those
    lines must make one block, four in five of the lines from its first to its last: what is
    around it (a title, a trailer) is outside; 0 lines when they are scattered."""
    value = Counter(counts).most_common(1)[0][0]
    where = [i for i, count in enumerate(counts) if count == value]
    return value, len(where) if len(where) >= AGREEING * (where[-1] - where[0] + 1) else 0


def _delimiter(filled: list[str]) -> tuple[str, int, int] | None:
    """The delimiter that splits the most lines into the same number of fields (two at least),
    that number, and how many lines. One of several characters (`||`) wins a tie with its own
    characters (`|` splits such a file alike too), but not with more lines: doubled commas of an
    empty column are no delimiter, as the header, which has none, says."""
    multi = list(dict.fromkeys(run for line in filled for run in MULTI_DELIMITER.findall(line)))
    best: tuple[tuple[int, int, int], str, int, int] | None = None
    for delimiter in multi + list(DELIMITERS):
        fields, agreeing = _agreement([len(_fields(line, delimiter)) for line in filled])
        rank = (agreeing, len(delimiter), fields)
        if fields >= 2 and agreeing and (best is None or rank > best[0]):
            best = rank, delimiter, fields, agreeing
    return best[1:] if best else None


def _fixed_layout(filled: list[str]) -> tuple[int, list[tuple[int, int]], int] | None:
    """Fixed width: the length most lines have, the columns (0-based start and stop) between the
    runs of spaces through every one of them, and how many lines have that length. A column runs
    from where its text starts to where the next one's does, so its padding is its own."""
    length, agreeing = _agreement([len(line) for line in filled])
    rows = [line for line in filled if len(line) == length]
    if agreeing < 2:
        return None
    blank = [all(line[i] == " " for line in rows) for i in range(length)]
    starts = [i for i in range(length) if not blank[i] and (i == 0 or blank[i - 1])]
    if len(starts) < 2:
        return None
    return length, list(zip(starts, starts[1:] + [length])), agreeing


def _delimited(lines: list[str], tail: list[str], seen: list[tuple[str, str]], settings: dict[str, Any]) -> Detection:
    """Delimited text, or fixed width when that explains more lines (a fixed-width file with
    decimal commas splits on `,` too, but its header does not): the delimiter, the lines before
    the header, the header or its absence, a trailer, decimal marks and dates."""
    filled = [line for line in lines if line.strip()]
    if not filled:
        raise Unreadable(f"blank: no line of its first {len(lines):,} holds anything")
    found, fixed = _delimiter(filled), _fixed_layout(filled)
    if fixed and (found is None or fixed[2] > found[2]):
        return _fixed_width(lines, tail, fixed, seen, settings)
    if found:
        delimiter, width, agreeing = found
        seen.insert(0, ("shape", "delimited text (csv)"))
        seen.append(("delimiter", f"{_scalar(delimiter)}: {width} fields on {agreeing} of the first "
                                  f"{len(filled)} lines"))
        if delimiter != ",":
            settings["delimiter"] = delimiter
    else:
        delimiter, width = ",", 1
        seen.insert(0, ("shape", "text, one field a line (no delimiter splits the lines alike)"))
    split = [_fields(line, delimiter) if line.strip() else [] for line in lines]
    at = next((i for i, fields in enumerate(split) if len(fields) == width), 0)
    if at:
        settings["skip_lines"] = at
        seen.append(("before", f"{at} line{'s' if at > 1 else ''} before the header: "
                               + "; ".join(repr(line[:60]) for line in lines[:at][:3])))
    body = [fields for fields, line in zip(split[at + 1:], lines[at + 1:])
            if len(fields) == width and not TRAILER_WORD.match(line.strip())]
    seen.append(("header", _header(split[at], body, at + 1, settings)))
    _trailer(tail, lambda line: len(_fields(line, delimiter)) == width, seen, settings)
    rows = body if settings.get("header", True) else [split[at], *body]
    values = [v.strip() for fields in rows for v in fields]
    _numbers(values, delimiter, seen, settings)
    _dates(values, seen, settings)
    return Detection(seen, settings)


def _header(first: list[str], body: list[list[str]], line: int, settings: dict[str, Any]) -> str:
    """Whether the first line names the columns: names are text, none blank, none twice; a row
    has a number or a date, or repeats a value. Without a header, `columns` names them (placeholders)."""
    names = [v.strip() for v in first]
    kinds = [_kind(v) for v in names]
    if all(k == "text" for k in kinds) and len(set(names)) == len(names):
        typed = [name for i, name in enumerate(names) if any(i < len(row) and _kind(row[i].strip()) in ("number", "date") for row in body)]
        below = (f"; the rows below have numbers or dates in {', '.join(typed)}" if typed else
                 "; the rows below are text too, so this is a guess: if it is a row, set header: false")
        return f"line {line} names the columns: {', '.join(names)}{below}"
    settings["header"] = False
    settings["columns"] = [f"column_{i}" for i in range(1, len(names) + 1)]
    why = next((f"{v!r} is a {k}" for v, k in zip(names, kinds) if k != "text"), "a value repeats")
    return f"none: line {line} is a row ({why}): `columns` names the columns; rename the placeholders"


def _kind(value: str) -> str:
    if not value:
        return "blank"
    if NUMBER.match(value):
        return "number"
    if DAY_MONTH.match(value) or ISO.match(value):
        return "date"
    return "text"


def _trailer(tail: list[str], is_row: Callable[[str], bool], seen: list[tuple[str, str]],
             settings: dict[str, Any]) -> None:
    """The lines at the end that are no rows (of the last five): a marker word (EOF, TOTAL...),
    or not shaped as the rows. Marker words all: a `trailer_pattern` of them; else `trailer_lines`."""
    trailer: list[str] = []
    for line in reversed([line for line in tail if line.strip()][-5:]):
        if is_row(line) and not TRAILER_WORD.match(line.strip()):
            break
        trailer.insert(0, line)
    if not trailer:
        return
    words = [m.group(1) for m in map(TRAILER_WORD.match, (line.strip() for line in trailer)) if m]
    if len(words) == len(trailer):
        words = list(dict.fromkeys(words))
        settings["trailer_pattern"] = f"^{words[0]}" if len(words) == 1 else f"^({'|'.join(words)})"
    else:
        settings["trailer_lines"] = len(trailer)
    seen.append(("trailer", "; ".join(repr(line[:60]) for line in trailer)))


def _numbers(values: list[str], delimiter: str, seen: list[tuple[str, str]], settings: dict[str, Any]) -> None:
    """A decimal comma (12,50 in a file not delimited by commas) and the thousands separator seen
    with it; or thousands commas with a decimal point (1,250.00)."""
    commas = [v for v in values if DECIMAL_COMMA.match(v)] if delimiter != "," else []
    if commas:
        settings["decimal"] = ","
        if any(DOT_THOUSANDS.match(v) for v in commas):
            settings["thousands"] = "."
        elif any(" " in v for v in commas):
            settings["thousands"] = " "
        seen.append(("numbers", f"decimal comma: {', '.join(commas[:3])}"))
    elif thousands := next((v for v in values if COMMA_THOUSANDS.match(v)), None):
        settings["thousands"] = ","
        seen.append(("numbers", f"thousands commas: {thousands}"))


def _dates(values: list[str], seen: list[tuple[str, str]], settings: dict[str, Any]) -> None:
    """The date and datetime formats seen. Day and month are told apart only by a value over 12:
    without one they are ambiguous, said so, and nothing is suggested."""
    for key, label in (("date_format", "dates"), ("datetime_format", "datetimes")):
        with_time = key == "datetime_format"
        said = []
        by_shape: dict[str, list[re.Match]] = {}
        for m in filter(None, map(DAY_MONTH.match, values)):
            if bool(m.group(5)) == with_time:
                by_shape.setdefault(_day_month_shape(m), []).append(m)
        if by_shape:
            shape, matches = max(by_shape.items(), key=lambda item: len(item[1]))
            day_first = any(int(m.group(1)) > 12 for m in matches)
            month_first = any(int(m.group(3)) > 12 for m in matches)
            telling = next((m.group(0) for m in matches if int(m.group(1)) > 12 or int(m.group(3)) > 12),
                           matches[0].group(0))
            day_month, month_day = shape.format(a="%d", b="%m"), shape.format(a="%m", b="%d")
            if day_first == month_first:
                why = "values over 12 on both sides" if day_first else "no day over 12"
                said.append(f"{telling}: ambiguous ({why}): {day_month} or {month_day}; set {key} yourself")
            else:
                settings[key] = day_month if day_first else month_day
                said.append(f"{telling}: {settings[key]} (the {'day' if day_first else 'month'} comes first: "
                            "it goes over 12)")
        iso = next((m for m in map(ISO.match, values) if m and bool(m.group(1)) == with_time), None)
        if iso:
            form = "%Y-%m-%d" + (f"{iso.group(1)}%H:%M{':%S' if iso.group(2) else ''}" if with_time else "")
            default = Dialect.model_fields[key].default
            if form != default and key not in settings:
                settings[key] = form
            said.append(f"{iso.group(0)}: {form}" + (", the default" if form == default else ""))
        if said:
            seen.append((label, "\n".join(said)))


def _day_month_shape(m: re.Match) -> str:
    """A day-and-month date's format, {a} and {b} standing for its first two parts."""
    sep, year = m.group(2), "%Y" if len(m.group(4)) == 4 else "%y"
    time = f"{m.group(5)}%H:%M{':%S' if m.group(7) else ''}" if m.group(5) else ""
    return f"{{a}}{sep}{{b}}{sep}{year}{time}"


def _fixed_width(lines: list[str], tail: list[str], layout: tuple[int, list[tuple[int, int]], int],
                 seen: list[tuple[str, str]], settings: dict[str, Any]) -> Detection:
    """A fixed-width file's `fixed` columns; a first line of names is its header, skipped, its
    names the columns' (else placeholders)."""
    length, bounds, _ = layout
    at = next(i for i, line in enumerate(lines) if len(line) == length and line.strip())
    cut = [[line[a:b].strip() for a, b in bounds] for line in lines[at:] if len(line) == length]
    names = cut[0]
    header = len(set(names)) == len(names) and all(_kind(v) == "text" for v in names) and any(
        _kind(v) in ("number", "date") for row in cut[1:] for v in row)
    columns = ([re.sub(r"\W+", "_", name).strip("_").lower() or f"column_{i}" for i, name in enumerate(names, 1)]
               if header else [f"column_{i}" for i in range(1, len(bounds) + 1)])
    settings["shape"] = "fixed_width"
    settings["fixed"] = [{"name": name, "start": a + 1, "width": b - a} for name, (a, b) in zip(columns, bounds)]
    if at + header:
        settings["skip_lines"] = at + header
    seen.insert(0, ("shape", f"fixed width: lines of {length} characters, {len(bounds)} columns between runs of "
                             "spaces through every line"))
    seen.append(("header", f"line {at + 1} names the columns: {', '.join(names)} (skipped: `fixed` names them)"
                 if header else "none: `fixed` names the columns; rename the placeholders"))
    _trailer(tail, lambda line: len(line) == length, seen, settings)
    return Detection(seen, settings)
