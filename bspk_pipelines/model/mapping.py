"""How a brand's own file format maps to the platform's columns, as typed models: a source's CSV
dialect, each column's origin and transforms, skip rules, unpivots and the files a source sends.
The brand's configuration around it (sources, precedence, schedules) is `model.brand`."""

from __future__ import annotations

import codecs

import csv
import difflib
import fnmatch
import re
import string
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
import polars as pl
from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator,
)

from bspk_pipelines.model.entities import DEPENDENCY_ORDER, ENTITIES, Kind


DecimalMark = Literal[".", ","]
Thousands = Literal["", ",", ".", " ", "'"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# Codecs that read the byte order from a byte-order mark, and the marks they take.
UNMARKED = {"utf-16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "utf-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)}


# The shapes a source's files come in (see `Dialect.shape`).
Shape = Literal["csv", "fixed_width", "excel", "json", "jsonl", "parquet"]
# The settings that mean something for each shape (any other must keep its default).
SHAPE_SETTINGS: dict[str, set[str]] = {
    "csv": {"delimiter", "quote", "encoding", "header", "columns", "skip_lines", "trailer_lines", "trailer_pattern"},
    "fixed_width": {"encoding", "fixed", "skip_lines", "trailer_lines", "trailer_pattern"},
    "excel": {"sheet", "skip_lines"},
    "json": {"records"},
    "jsonl": set(),
    "parquet": set(),
}


class FixedColumn(Strict):
    """A column of a fixed-width file: its name and its characters on the line, counted from 1:
    `start` and `width`, or `start` and `end` (inclusive)."""

    name: str = Field(min_length=1)
    start: int = Field(ge=1)
    width: int | None = Field(None, ge=1)
    end: int | None = None

    @model_validator(mode="after")
    def _one_extent(self) -> FixedColumn:
        if (self.width is None) == (self.end is None):
            raise ValueError(f"column {self.name!r}: give its width or its end (inclusive), one of the two")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"column {self.name!r}: its end ({self.end}) is before its start ({self.start})")
        return self

    @property
    def stop(self) -> int:
        """The 0-based index just past the column's last character."""
        return self.end if self.end is not None else self.start - 1 + self.width


class Dialect(Strict):
    """How a source writes its files. The defaults are the platform's own format (CSV, UTF-8, a header)."""

    shape: Shape = "csv"
    # csv: the text between fields; several characters (`||`) split every line on them, unquoted.
    delimiter: str = Field(",", min_length=1, max_length=8)
    quote: str = Field('"', min_length=1, max_length=1)
    # Any text encoding Python's codecs name, aliases too (windows-1252 is cp1252; utf-16 reads
    # its byte-order mark, or takes little-endian without one); kept as written, for messages.
    encoding: str = "utf-8"
    # csv: whether the first line (after skip_lines) names the columns; without one, `columns` does.
    header: bool = True
    columns: list[str] = []
    # fixed_width: the columns and where each sits on the line.
    fixed: list[FixedColumn] = []
    # Lines before the header (a report's title, its export date), or before the first row of a
    # file without one; rows of a sheet before its header row (excel): skipped, counted, never rows.
    skip_lines: int = Field(0, ge=0, le=1000)
    # Lines at the end that are no rows (totals, an `EOF` marker): the last `trailer_lines` lines
    # that are not blank, or the lines at the end matching `trailer_pattern`, of which a file must
    # end with one at least (a file without it is cut short). Counted and shown, never rows.
    trailer_lines: int = Field(0, ge=0, le=1000)
    trailer_pattern: Regex | None = None
    # excel: the sheet to read (by name); the first sheet if none is named.
    sheet: str | None = Field(None, min_length=1)
    # json: the dotted path to the array of records in the document (`data.items`); none: the
    # document is the array.
    records: str | None = Field(None, pattern=r"^[^.\s]+(\.[^.\s]+)*$")
    # What the source's system writes for "no value" (NULL, -, N/A): a field whose trimmed text is
    # one of these reads as blank, as an empty field does (a blank clears, a blank required is rejected).
    null_values: list[str] = []
    decimal: DecimalMark = "."
    thousands: Thousands = ""
    date_format: str = "%Y-%m-%d"
    datetime_format: str = "%Y-%m-%dT%H:%M:%S"
    # Zone of naive datetimes in the file; sales are stored in UTC as the platform requires.
    timezone: str = "UTC"

    @field_validator("encoding")
    @classmethod
    def _text_encoding(cls, v: str) -> str:
        try:
            "".encode(v)  # a LookupError for an unknown name and for codecs of bytes (base64, zlib)
        except LookupError:
            raise ValueError("an encoding Python knows, such as utf-8, cp1252 (windows-1252), latin-1, iso-8859-15, "
                             f"utf-16 or shift_jis; found {v!r}") from None
        return v

    @property
    def decoding(self) -> str:
        """The codec files are read with: UTF-8 reads past a byte-order mark (Excel writes one)."""
        name = codecs.lookup(self.encoding).name
        return "utf-8-sig" if name == "utf-8" else name

    def decoding_for(self, start: bytes) -> str:
        """The codec a file starting with `start` is read with: UTF-16 or UTF-32 without a
        byte-order mark is little-endian, as Windows writes it (Python's codec would refuse it)."""
        name = self.decoding
        if name in UNMARKED and not start.startswith(UNMARKED[name]):
            return f"{name}-le"
        return name

    @model_validator(mode="after")
    def _separators_differ(self) -> Dialect:
        if self.thousands and self.thousands == self.decimal:
            raise ValueError(f"thousands separator {self.thousands!r} equals the decimal mark")
        return self

    @model_validator(mode="after")
    def _fits_its_shape(self) -> Dialect:
        defaults = Dialect.model_fields
        # Settings of another shape, set here: a mistake, or a shape not said.
        stray = [k for k in self.model_fields_set - SHAPE_SETTINGS[self.shape]
                 if k in set().union(*SHAPE_SETTINGS.values()) and getattr(self, k) != defaults[k].default]
        if stray:
            owners = {k: [s for s, keys in SHAPE_SETTINGS.items() if k in keys] for k in stray}
            raise ValueError("; ".join(f"{k} is a setting of shape {' or '.join(v)}, not of {self.shape}"
                                       for k, v in owners.items()))
        if self.shape == "csv" and self.header == bool(self.columns):
            raise ValueError("a file without a header (header: false) needs `columns`, its columns in order"
                             if not self.header else
                             "`columns` names the columns of a file without a header: set header: false too, "
                             "or leave `columns` out to read the header")
        if self.shape == "csv" and self.quote in self.delimiter:
            raise ValueError(f"the quote {self.quote!r} is part of the delimiter {self.delimiter!r}")
        if self.shape == "fixed_width":
            if not self.fixed:
                raise ValueError("a fixed_width file needs `fixed`: each column's name, start and width (or end)")
            ordered = sorted(self.fixed, key=lambda c: c.start)
            for a, b in zip(ordered, ordered[1:]):
                if b.start <= a.stop:
                    raise ValueError(f"fixed columns {a.name!r} ({a.start}-{a.stop}) and {b.name!r} "
                                     f"({b.start}-{b.stop}) overlap")
        names = self.columns or [c.name for c in self.fixed]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"column {twice[0]!r} is named twice")
        if self.trailer_lines and self.trailer_pattern:
            raise ValueError("trailer_lines and trailer_pattern both say where the trailer is: give one")
        return self

    @property
    def named_columns(self) -> list[str] | None:
        """The file's columns where the dialect names them (no header line to read them from)."""
        if self.shape == "fixed_width":
            return [c.name for c in self.fixed]
        return list(self.columns) if self.shape == "csv" and not self.header else None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"an IANA time zone such as Europe/Paris, found {v!r}") from e
        return v


def regex(v: str) -> str:
    """A regular expression as polars reads it (Rust's syntax: no look-around), or ValueError."""
    try:
        pl.select(pl.lit("").str.contains(v))
    except pl.exceptions.ComputeError as e:
        lines = str(e).splitlines()
        reason = next((x.removeprefix("error: ") for x in lines if x.startswith("error: ")), lines[0] if lines else "")
        raise ValueError(f"a regular expression as polars reads it (Rust syntax, no look-around): {reason}; "
                         f"found {v!r}") from None
    return v


Regex = Annotated[str, AfterValidator(regex)]


class Phone(Strict):
    """Phone numbers in E.164; a number written without +country is read in this region."""

    phone: str = Field(description="ISO 3166 alpha-2 region of numbers without +country")

    @field_validator("phone")
    @classmethod
    def _region(cls, v: str) -> str:
        if v not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"an ISO 3166 alpha-2 region such as FR or US, for numbers written without "
                             f"+country; found {v!r}")
        return v


class StripPrefix(Strict):
    """Remove this literal prefix once, where present ("CLI-" from "CLI-0042")."""

    strip_prefix: str = Field(min_length=1)


class StripLeading(Strict):
    """Remove every leading occurrence of these characters (zero padding: "0")."""

    strip_leading: str = Field(min_length=1)


class SplitPart(Strict):
    class Spec(Strict):
        sep: str = Field(min_length=1)
        index: int

    split: Spec


class Replace(Strict):
    """Every match of a regular expression replaced; `$1` in `with` is the first group's text."""

    class Spec(Strict):
        pattern: Regex = Field(min_length=1)
        with_: str = Field("", alias="with")

    replace: Spec


class ToList(Strict):
    """A list the file writes with another separator, as the platform's `;` list: items trimmed,
    blank items dropped ("vip, newsletter" with "," is "vip;newsletter")."""

    separator: str = Field(alias="list", min_length=1)


# A lookup file is a table of codes: past this it is not one, and is not read.
MAX_LOOKUP_BYTES = 16 << 20


class Lookup(Strict):
    """Values replaced by a table's: written inline (`values`) or read from a CSV file beside the
    brand file when the brand loads (`file`, its `key` and `value` columns). A value the table
    does not hold becomes `default`, or passes unchanged without one."""

    class Spec(Strict):
        values: dict[str, str] = {}
        file: str | None = None
        key: str | None = None
        value: str | None = None
        delimiter: str = Field(",", min_length=1, max_length=1)
        default: str | None = None

        @model_validator(mode="before")
        @classmethod
        def _read_file(cls, data: Any, info: ValidationInfo) -> Any:
            if not isinstance(data, dict) or data.get("file") is None:
                return data
            if data.get("values"):
                raise ValueError("either values (the table, inline) or file (a CSV file beside the brand file), not both")
            if not data.get("key") or not data.get("value"):
                raise ValueError("key and value: the lookup file's columns holding the file's value and the "
                                 "platform's")
            folder = Path((info.context or {}).get("folder") or ".").resolve()
            path = (folder / str(data["file"])).resolve()
            if Path(str(data["file"])).is_absolute() or not path.is_relative_to(folder):
                raise ValueError(f"file: a CSV file beside the brand file, named from its folder (stores.csv, "
                                 f"lookups/stores.csv); found {str(data['file'])[:200]!r}")
            return {**data, "values": _lookup_table(path, str(data["key"]), str(data["value"]),
                                                    str(data.get("delimiter", ",")))}

        @model_validator(mode="after")
        def _has_a_table(self) -> Lookup.Spec:
            if self.file is None and (self.key or self.value):
                raise ValueError("key and value name the columns of a lookup file: give its file too")
            if self.file is None and not self.values:
                raise ValueError("values ({value in the file: value for the platform}) or file, key and value "
                                 "(a CSV file beside the brand file)")
            return self

    lookup: Spec


def _lookup_table(path: Path, key: str, value: str, delimiter: str) -> dict[str, str]:
    """A lookup file's table (UTF-8, a byte-order mark accepted); ValueError saying what is wrong."""
    try:
        size = path.stat().st_size
    except OSError:
        raise ValueError(f"file: a CSV file beside the brand file; {path} does not exist") from None
    if size > MAX_LOOKUP_BYTES:
        raise ValueError(f"file: {path.name} holds {size:,} bytes, over the {MAX_LOOKUP_BYTES:,} a lookup file may hold")
    table: dict[str, str] = {}
    lines: dict[str, int] = {}
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in (key, value) if c not in header]
            if missing:
                raise ValueError(f"file: {path.name} has no column {' or '.join(missing)}; its header names "
                                 f"{', '.join(header)[:200] or 'nothing'} (delimiter {delimiter!r})")
            k, v = header.index(key), header.index(value)
            for line, row in enumerate(reader, start=2):
                if not any(field.strip() for field in row):
                    continue
                if len(row) != len(header):
                    raise ValueError(f"file: {path.name} line {line}: expected {len(header)} fields as in its "
                                     f"header, found {len(row)}")
                code, mapped = row[k].strip(), row[v].strip()
                if table.get(code, mapped) != mapped:
                    raise ValueError(f"file: {path.name} line {line}: {key} {code!r} again, with another {value} "
                                     f"than on line {lines[code]}")
                table[code], lines[code] = mapped, line
    except UnicodeDecodeError as e:
        raise ValueError(f"file: {path.name} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise ValueError(f"file: {path.name} is not readable as CSV: {e}") from None
    return table


NAMED_TRANSFORMS = ("trim", "upper", "lower", "title")
KEYED_TRANSFORMS = {"phone": Phone, "strip_prefix": StripPrefix, "strip_leading": StripLeading, "split": SplitPart,
                    "replace": Replace, "list": ToList, "lookup": Lookup}
TRANSFORMS = ("trim, upper, lower, title, {phone: FR}, {strip_prefix: 'CLI-'}, {strip_leading: '0'}, "
              "{split: {sep: '/', index: 0}}, {replace: {pattern: REGEX, with: TEXT}}, {list: ','}, "
              "{lookup: {values: {...}} or {file: codes.csv, key: COLUMN, value: COLUMN}}")


def _transform_kind(v: Any) -> str | None:
    """Which transform an item of `transforms` is: its name, the one key of its mapping, or None."""
    if isinstance(v, str):
        return "name" if v in NAMED_TRANSFORMS else None
    if isinstance(v, dict) and len(v) == 1:
        key = next(iter(v))
        return key if key in KEYED_TRANSFORMS else None
    return next((k for k, model in KEYED_TRANSFORMS.items() if isinstance(v, model)), None)


def _known_transform(v: Any) -> Any:
    """One message for an item that is no transform, naming those there are (not one per kind)."""
    if _transform_kind(v) is not None:
        return v
    if isinstance(v, dict) and len(v) > 1:
        raise ValueError(f"one transform per item, such as {{split: ...}}; found the keys {', '.join(map(str, v))} in one "
                         "item: write each as an item of its own")
    name = v if isinstance(v, str) else next(iter(v), "") if isinstance(v, dict) else ""
    close = difflib.get_close_matches(str(name), [*NAMED_TRANSFORMS, *KEYED_TRANSFORMS], n=1)
    raise ValueError(f"a transform: {TRANSFORMS}; found {repr(v)[:100]}"
                     + (f" (did you mean {close[0]}?)" if close else ""))


Transform = Annotated[
    Annotated[Literal["trim", "upper", "lower", "title"], Tag("name")]
    | Annotated[Phone, Tag("phone")] | Annotated[StripPrefix, Tag("strip_prefix")]
    | Annotated[StripLeading, Tag("strip_leading")] | Annotated[SplitPart, Tag("split")]
    | Annotated[Replace, Tag("replace")] | Annotated[ToList, Tag("list")] | Annotated[Lookup, Tag("lookup")],
    Discriminator(_transform_kind),
    BeforeValidator(_known_transform),
    Field(description=TRANSFORMS),
]

ORIGINS = ("from", "constant", "concat", "coalesce", "template")
_FIELD = {"from": "source", "constant": "constant", "concat": "concat", "coalesce": "coalesce", "template": "template"}


def template_columns(template: str) -> list[str]:
    """The columns a template names (`{CODE}-{TICKET}`: CODE, TICKET), or ValueError."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"a template such as '{{CODE}}-{{TICKET}}' ({e}; a literal brace is written twice); "
                         f"found {template!r}") from None
    names = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name or spec or conversion or not name.strip():
            raise ValueError(f"placeholders naming a column of the file, such as {{CODE}}; found "
                             f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} in {template!r}")
        names.append(name)
    if not names:
        raise ValueError(f"a template naming at least one column, such as '{{CODE}}-{{TICKET}}' (for a fixed value: "
                         f"constant); found {template!r}")
    return list(dict.fromkeys(names))


class ColumnMap(Strict):
    """How one platform column is made from a source row: its origin (one of `from`, `constant`,
    `concat`, `coalesce`, `template`), its `transforms` in order, then `values`, then numbers and
    dates read as the column (or else the source's dialect) writes them, then `divide` or
    `multiply`, and `default` where no value is left. `missing` is what a reject of a row the
    column gives no value says to do (the source's own reason a value can be missing)."""

    source: str | None = Field(None, alias="from")
    constant: str | None = None
    concat: list[str] | None = Field(None, min_length=1)
    sep: str = " "
    coalesce: list[str] | None = Field(None, min_length=2)
    template: str | None = None
    transforms: list[Transform] = []
    values: dict[str, str] = {}
    # Number and date formats of this column, where they are not the source dialect's.
    decimal: DecimalMark | None = None
    thousands: Thousands | None = None
    date_format: str | None = None
    datetime_format: str | None = None
    divide: Decimal | None = None
    multiply: Decimal | None = None
    default: str | None = None
    missing: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnMap:
        given = [k for k in ORIGINS if getattr(self, _FIELD[k]) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of {', '.join(ORIGINS)}; found {', '.join(given) or 'none'}")
        pattern = next((c for c in self.source_columns if c == "*" or (c.startswith("^") and c.endswith("$"))), None)
        if pattern is not None:
            raise ValueError(f"a column named {pattern!r} cannot be read: the reader takes the name for a pattern of "
                             "columns (every column, or a regular expression); the export must name it otherwise")
        return self

    @field_validator("template")
    @classmethod
    def _placeholders(cls, v: str | None) -> str | None:
        if v is not None:
            template_columns(v)
        return v

    @field_validator("date_format", "datetime_format")
    @classmethod
    def _a_format(cls, v: str | None) -> str | None:
        if v is not None and not re.search(r"%[a-zA-Z]", v):
            raise ValueError(f"a strftime format such as %d/%m/%Y; found {v!r}")
        return v

    @field_validator("divide", "multiply")
    @classmethod
    def _a_factor(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and (not v.is_finite() or v == 0):
            raise ValueError(f"a number other than 0, such as 100; found {v}")
        return v

    @field_validator("divide")
    @classmethod
    def _exact_quotient(cls, v: Decimal | None) -> Decimal | None:
        if v is not None and v.is_finite() and v != 0:
            numerator, _ = abs(v).as_integer_ratio()
            for prime in (2, 5):
                while numerator % prime == 0:
                    numerator //= prime
            if numerator != 1:
                raise ValueError(f"a number every amount divides by exactly, such as 10, 100, 1000 or 8 (dividing by "
                                 f"{v} would round); found {v}")
        return v

    @model_validator(mode="after")
    def _one_scale(self) -> ColumnMap:
        if self.divide is not None and self.multiply is not None:
            raise ValueError("divide or multiply, not both")
        if self.thousands and self.thousands == self.decimal:
            raise ValueError(f"thousands separator {self.thousands!r} equals the decimal mark")
        return self

    def read_with(self, dialect: Dialect) -> Dialect:
        """The source's dialect with this column's own number and date formats."""
        own = {k: getattr(self, k) for k in ("decimal", "thousands", "date_format", "datetime_format")
               if getattr(self, k) is not None}
        return dialect.model_copy(update=own) if own else dialect

    @property
    def factor(self) -> Decimal | None:
        """What each number is multiplied by, exactly (divide by 100: 0.01)."""
        if self.divide is not None:
            return Decimal(1) / self.divide
        return self.multiply

    @property
    def source_columns(self) -> list[str]:
        if self.source is not None:
            return [self.source]
        if self.template is not None:
            return template_columns(self.template)
        return list(self.concat or self.coalesce or [])


SKIP_RULES = "{blank: COLUMN}, {column: COLUMN, in: [VALUES]}, {column: COLUMN, not_in: [VALUES]} or {column: COLUMN, matches: REGEX}"


class SkipRule(Strict):
    """Rows a brand exports that the platform is not to receive (an article without an image, a
    draft, a test SKU): left out and counted as skipped with the rule, never rejected. Rules name
    the file's own columns; `in` and `not_in` compare the value without its surrounding spaces,
    `matches` looks for a regular expression in the value as sent."""

    blank: str | None = None
    column: str | None = None
    in_: list[str] | None = Field(None, alias="in", min_length=1)
    not_in: list[str] | None = Field(None, min_length=1)
    matches: Regex | None = None

    @model_validator(mode="after")
    def _one_test(self) -> SkipRule:
        tests = [k for k, v in (("in", self.in_), ("not_in", self.not_in), ("matches", self.matches)) if v is not None]
        given = (["blank"] if self.blank is not None else []) + (["column"] if self.column is not None else []) + tests
        if given == ["blank"] or (self.column is not None and self.blank is None and len(tests) == 1):
            return self
        raise ValueError(f"a skip rule: {SKIP_RULES}; found the keys {', '.join(given) or 'none'}")

    @property
    def source_column(self) -> str:
        return self.blank if self.blank is not None else self.column

    def __str__(self) -> str:
        if self.blank is not None:
            return f"blank: {self.blank}"
        if self.matches is not None:
            return f"{self.column} matches {self.matches!r}"
        test, values = ("in", self.in_) if self.in_ is not None else ("not in", self.not_in)
        return f"{self.column} {test} [{', '.join(values)}]"


class Unpivot(Strict):
    """A file with one column per store (or size, or currency) read as one row per such column:
    `SKU;STOCK_PARIS;STOCK_LYON` gives a row for STOCK_PARIS and one for STOCK_LYON, in which
    the column `name` holds the column's name (STOCK_PARIS) and the column `value` its cell; the
    other columns are the line's. Rows from one line keep its line number."""

    columns: list[str] | None = Field(None, min_length=1)
    matching: Regex | None = None
    name: str = Field(min_length=1)
    value: str = Field(min_length=1)

    @model_validator(mode="after")
    def _columns_or_matching(self) -> Unpivot:
        if (self.columns is None) == (self.matching is None):
            raise ValueError("either columns (the file's columns that become rows) or matching (a regular "
                             "expression their names match), not both")
        if self.name == self.value:
            raise ValueError(f"name and value are two columns the mapping reads; found both {self.name!r}")
        taken = [c for c in (self.name, self.value) if c in (self.columns or [])]
        if taken:
            raise ValueError(f"name and value are new columns, not the file's unpivoted ones; found {', '.join(taken)}")
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            raise ValueError(f"each column once; found {', '.join(self.columns)}")
        return self

    def cells(self, header: list[str]) -> list[str]:
        """The file's columns that become rows, in the header's order."""
        if self.columns is not None:
            return [c for c in header if c in self.columns]
        hits = pl.Series(header, dtype=pl.Utf8).str.contains(self.matching).to_list()
        return [c for c, hit in zip(header, hits) if hit and c not in (self.name, self.value)]


class FileTimestamp(Strict):
    """Where a brand-format file name carries its creation time, for first-in-first-out order."""

    regex: str
    format: str

    @field_validator("regex")
    @classmethod
    def _has_group(cls, v: str) -> str:
        if re.compile(v).groups < 1:
            raise ValueError("a regular expression with one group around the timestamp")
        return v


class EntityMap(Strict):
    """How a delivered file feeds one entity: which rows it leaves out (`skip`), whether a line
    gives one row per column of a kind (`unpivot`), and which platform column comes from which
    of its columns."""

    columns: dict[str, ColumnMap]
    skip: list[SkipRule] = []
    unpivot: Unpivot | None = None

    @property
    def read_columns(self) -> list[str]:
        """The columns rows are read from, the unpivot's `name` and `value` included."""
        return list(dict.fromkeys([*(c for cm in self.columns.values() for c in cm.source_columns),
                                   *(r.source_column for r in self.skip)]))


# Options of a column that only a kind of platform column takes.
_KIND_OPTIONS = {
    "decimal": (Kind.INT, Kind.DECIMAL), "thousands": (Kind.INT, Kind.DECIMAL), "divide": (Kind.INT, Kind.DECIMAL),
    "multiply": (Kind.INT, Kind.DECIMAL), "date_format": (Kind.DATE,), "datetime_format": (Kind.DATETIME,),
}
_LIST_KINDS = (Kind.LIST, Kind.LANGUAGES, Kind.CATEGORIES)


def _check_entity_map(entity_name: str, emap: EntityMap) -> None:
    """The columns exist in the entity and every key column is mapped (ValueError says which not)."""
    entity = ENTITIES[entity_name]
    unknown = [c for c in emap.columns if c not in entity.column_names]
    if unknown:
        raise ValueError(f"columns of {entity_name} ({', '.join(entity.column_names)}); found {', '.join(unknown)}")
    missing_key = [
        k for k in entity.key
        if k not in emap.columns and k not in entity.optional_key and entity.column(k).default is None
    ]
    if missing_key:
        raise ValueError(f"a mapping for every key column of {entity_name}; missing {', '.join(missing_key)}")
    for name, cm in emap.columns.items():
        kind = entity.column(name).kind
        for option, kinds in _KIND_OPTIONS.items():
            if getattr(cm, option) is not None and kind not in kinds:
                raise ValueError(f"columns.{name}.{option}: for {' or '.join(k.value for k in kinds)} columns; "
                                 f"{name} of {entity_name} is {kind.value}")
        if kind not in _LIST_KINDS and any(isinstance(t, ToList) for t in cm.transforms):
            raise ValueError(f"columns.{name}: list is for the platform's list columns "
                             f"({', '.join(k.value for k in _LIST_KINDS)}); {name} of {entity_name} is {kind.value}")
    if emap.unpivot and emap.unpivot.value not in emap.read_columns:
        raise ValueError(f"unpivot: no column reads its value column {emap.unpivot.value}: map one from it, such as "
                         f"{{from: {emap.unpivot.value}}}")


class FileMap(EntityMap):
    """One kind of file a brand-format source sends, and the entities it feeds.

    A file that feeds one entity says so with `entity` and `columns`; a file that feeds several
    (an ERP article file: products, prices, images) lists them under `entities`, each with its own
    columns. Either way it lands once and each entity is checked and contributed from it."""

    pattern: str = Field(description="glob on the file name, e.g. CLIENTS_*.csv")
    timestamp: FileTimestamp | None = None
    entity: str | None = None
    columns: dict[str, ColumnMap] | None = None  # type: ignore[assignment]
    entities: dict[str, EntityMap] = {}

    @field_validator("entity")
    @classmethod
    def _known_entity(cls, v: str | None) -> str | None:
        if v is not None and v not in ENTITIES:
            raise ValueError(f"one of {', '.join(ENTITIES)}; found {v!r}")
        return v

    @model_validator(mode="after")
    def _feeds_entities(self) -> FileMap:
        if self.entities and (self.entity or self.columns is not None):
            raise ValueError("either `entity` and `columns` (a file that feeds one entity) or `entities` "
                             "(one mapping per entity the file feeds), not both")
        if not self.entities and not (self.entity and self.columns is not None):
            raise ValueError("`entity` and `columns` (the entity the file feeds and how), or `entities` "
                             "(one mapping per entity, for a file that feeds several)")
        unknown = [e for e in self.feeds if e not in ENTITIES]
        if unknown:
            raise ValueError(f"entities among {', '.join(ENTITIES)}; found {', '.join(repr(e) for e in unknown)}")
        for entity_name, emap in self.feeds.items():
            try:
                _check_entity_map(entity_name, emap)
            except ValueError as e:
                raise ValueError(f"{entity_name}: {e}" if self.entities else str(e)) from None
        return self

    @property
    def witnesses(self) -> list[str]:
        """Names the pattern matches, to test another pattern against: its wildcards filled in
        a few ways (empty, a letter, digits, a word)."""
        out = []
        for fill in ("", "x", "1", "20260101_0000", "A-b"):
            name = re.sub(r"\[!?[^]]*\]", lambda m: _bracket_member(m.group(0)), self.pattern)
            out.append(name.replace("*", fill).replace("?", fill[:1] or "x"))
        return [w for w in out if fnmatch.fnmatchcase(w, self.pattern)]

    @property
    def feeds(self) -> dict[str, EntityMap]:
        """Each entity the file feeds, with its mapping, in the platform's dependency order."""
        given = self.entities or {self.entity: self}
        return {e: given[e] for e in sorted(given, key=lambda e: DEPENDENCY_ORDER.get(e, len(DEPENDENCY_ORDER)))}


EMPTY = EntityMap(columns={})


def _bracket_member(bracket: str) -> str:
    """A character a glob's `[...]` matches."""
    body = bracket[1:-1]
    if body.startswith("!"):
        return next(c for c in "x_0Z" if c not in body)
    return body[0] if body else "x"
