"""A brand's configuration (`mappings/<brand>.yaml`) as typed models: what a brand file may say,
each value checked where it is declared. Reading the files is `model.brand_file`."""

from __future__ import annotations

import csv
import difflib
import fnmatch
import re
import string
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
import polars as pl
from croniter import croniter
from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator,
)

from bspk_pipelines.model.entities import DEPENDENCY_ORDER, ENTITIES, Kind

BRAND_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
COMPANY_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
OWNER = re.compile(r"^(team:[A-Za-z0-9_.-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")
INTERVAL = re.compile(r"^(\d+)(m|h|d|w|mo)$")


DecimalMark = Literal[".", ","]
Thousands = Literal["", ",", ".", " ", "'"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Dialect(Strict):
    """How a source writes its CSV files. The defaults are the platform's own format."""

    delimiter: str = Field(",", min_length=1, max_length=1)
    quote: str = Field('"', min_length=1, max_length=1)
    encoding: Literal["utf-8", "utf-8-sig", "cp1252", "latin-1", "iso-8859-15"] = "utf-8"
    decimal: DecimalMark = "."
    thousands: Thousands = ""
    date_format: str = "%Y-%m-%d"
    datetime_format: str = "%Y-%m-%dT%H:%M:%S"
    # Zone of naive datetimes in the file; sales are stored in UTC as the platform requires.
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _separators_differ(self) -> Dialect:
        if self.thousands and self.thousands == self.decimal:
            raise ValueError(f"thousands separator {self.thousands!r} equals the decimal mark")
        return self

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
    `multiply`, and `default` where no value is left."""

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

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnMap:
        given = [k for k in ORIGINS if getattr(self, _FIELD[k]) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of {', '.join(ORIGINS)}; found {', '.join(given) or 'none'}")
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


class Source(Strict):
    """One brand system that sends files into a drop folder."""

    format: Literal["bspk", "csv"]
    drop: str = Field(description="folder the source drops files into; relative to the data folder")
    dialect: Dialect = Dialect()
    files: list[FileMap] = []

    @model_validator(mode="after")
    def _format_fits(self) -> Source:
        if self.format == "bspk" and (self.files or self.dialect != Dialect()):
            raise ValueError("a bspk-format source takes no files or dialect: its files are the platform's own format")
        if self.format == "csv" and not self.files:
            raise ValueError("a csv source needs `files`: which file patterns feed which entity")
        for i, a in enumerate(self.files):
            for j, b in enumerate(self.files[i + 1:], start=i + 1):
                both = next((w for w in (*a.witnesses, *b.witnesses)
                             if fnmatch.fnmatchcase(w, a.pattern) and fnmatch.fnmatchcase(w, b.pattern)), None)
                if both is not None:
                    raise ValueError(
                        f"files[{i}] ({a.pattern}) and files[{j}] ({b.pattern}) both match a name such as {both!r}: "
                        "a delivered file must match one pattern. For a file that feeds several entities, list "
                        "them under one entry's `entities`")
        return self

    @model_validator(mode="after")
    def _column_formats_fit(self) -> Source:
        for i, f in enumerate(self.files):
            for entity, emap in f.feeds.items():
                for name, cm in emap.columns.items():
                    read = cm.read_with(self.dialect)
                    if read.thousands and read.thousands == read.decimal:
                        where = f"files[{i}]" + (f".entities.{entity}" if f.entities else "") + f".columns.{name}"
                        raise ValueError(f"{where}: its thousands separator {read.thousands!r} equals its decimal mark "
                                         "(the dialect's, where the column sets neither)")
        return self


class Sync(Strict):
    interval: str | None = Field(None, description="1m ... 1mo, or a cron string")
    # How often, at the longest, a delivery reaches each of the brand's tables (`1d`, `12h`): the
    # tables' freshness policy. Not the interval, which says how often the pipeline looks.
    expect_every: str | None = None

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str | None) -> str | None:
        if v is not None:
            interval_to_cron(v)
        return v

    @field_validator("expect_every")
    @classmethod
    def _expected(cls, v: str | None) -> str | None:
        if v is not None and duration(v) < timedelta(minutes=1):
            raise ValueError(f"at least 1m, as Dagster checks freshness by the minute; found {v!r}")
        return v


# The platform's client events; `shopper.*` are the newer names of the same events.
CLIENT_EVENTS = ("client.created", "client.updated", "client.deleted")
EVENT_ALIASES = {f"shopper.{e.split('.')[1]}": e for e in CLIENT_EVENTS}
EVENTS = (*CLIENT_EVENTS, "file_import.finished")
# Events carry the signing secret (X-Bspk-Secret, as the platform documents): HTTPS only, plain
# HTTP for a receiver on this machine alone (a local test receiver, the demo).
TARGET_URL = r"^(https://[^\s/?#]+|http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?)(/\S*)?$"
EXTRACT_ENTITIES = ("clients", "calls", "messages", "emails", "notes", "appointments", "reminders", "slices",
                    "sales_associates")


class WebhookEndpoint(Strict):
    """A receiver of the brand's events. Its signing secret (`whsec_...`) is read from the
    environment variable `secret_env`; during a key rotation the variable holds the new and the
    old secret separated by a space, and every delivery carries a signature from each."""

    url: str = Field(pattern=TARGET_URL)
    events: list[str] = Field(min_length=1)
    enabled: bool = True
    secret_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str]) -> list[str]:
        unknown = [e for e in v if e not in EVENTS and e not in EVENT_ALIASES]
        if unknown:
            raise ValueError(f"events among {', '.join((*EVENTS, *EVENT_ALIASES))}; found {', '.join(unknown)}")
        return v


class Webhooks(Strict):
    endpoints: list[WebhookEndpoint] = []
    # A client change that came from the brand's own files is not sent back to it unless asked.
    echo_imports: bool = False


class Extracts(Strict):
    """Incremental extracts of the platform's engagement data, written to the brand's outbox."""

    format: Literal["csv", "jsonl"] = "csv"
    outbox: str | None = Field(None, description="folder, relative to the data folder; default <brand>/outbox")
    lookback: str = Field("5m", description="how far before the watermark each run looks again for late rows")
    entities: list[Literal[EXTRACT_ENTITIES]] = list(EXTRACT_ENTITIES)  # type: ignore[valid-type]

    @field_validator("lookback")
    @classmethod
    def _duration(cls, v: str) -> str:
        duration(v)
        return v


def duration(text: str) -> timedelta:
    """`30s`, `5m`, `2h` or `1d` as a timedelta."""
    m = re.match(r"^(\d+)(s|m|h|d)$", text)
    if not m:
        raise ValueError(f"a duration such as 30s, 5m, 2h or 1d; found {text!r}")
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]: int(m.group(1))})


class Brand(Strict):
    """A tenant: its sources, its precedence rules, its schedules and its outbound channels."""

    brand: str
    company_name: str
    # Who answers for the brand's data: shown as the owners of its assets in Dagster's UI.
    owners: list[str] = []
    sources: dict[str, Source] = Field(min_length=1)
    precedence: dict[str, dict[str, list[str]]] = {}
    reject_rate_threshold: float = Field(0.05, ge=0, le=1)
    sync: Sync = Sync()
    # First month of sales history: the sales table is partitioned by month from here to now. The
    # default reaches back 30 years and more, as the platform's brands bring; a brand with a shorter
    # history sets its own (fewer partitions to show).
    history_start: str = Field("1990-01", pattern=r"^(19|20)\d\d-(0[1-9]|1[0-2])$")
    # A backfill over many months runs this many months per run (Dagster backfill policy).
    months_per_run: int = Field(120, ge=1, le=600)
    webhooks: Webhooks = Webhooks()
    extracts: Extracts = Extracts()

    @field_validator("brand")
    @classmethod
    def _brand_id(cls, v: str) -> str:
        if not BRAND_ID.match(v):
            raise ValueError(f"lower-case letters, digits and _, starting with a letter; found {v!r}")
        return v

    @field_validator("company_name")
    @classmethod
    def _company(cls, v: str) -> str:
        if not COMPANY_NAME.match(v):
            raise ValueError(f"a CamelCase name of letters and digits, as in the file names; found {v!r}")
        return v

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        bad = [o for o in v if not OWNER.match(o)]
        if bad:
            raise ValueError(f"e-mail addresses or team:<name>, as Dagster names owners; found {', '.join(bad)}")
        return v

    @field_validator("sources")
    @classmethod
    def _source_ids(cls, v: dict[str, Source]) -> dict[str, Source]:
        bad = [s for s in v if not BRAND_ID.match(s)]
        if bad:
            raise ValueError(f"source ids of lower-case letters, digits and _; found {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _precedence_fits(self) -> Brand:
        for entity, rules in self.precedence.items():
            if entity not in ENTITIES:
                raise ValueError(f"precedence.{entity}: one of {', '.join(ENTITIES)}")
            feeding = set(self.sources_of(entity))
            columns = ENTITIES[entity].attributes
            for attribute, order in rules.items():
                where = f"precedence.{entity}.{attribute}"
                if attribute != "default" and attribute not in columns:
                    raise ValueError(f"{where}: default or an attribute of {entity} ({', '.join(columns)})")
                strangers = [s for s in order if s not in feeding]
                if strangers:
                    raise ValueError(
                        f"{where}: sources that send {entity} ({', '.join(sorted(feeding)) or 'none'}); "
                        f"found {', '.join(strangers)}"
                    )
        return self

    @model_validator(mode="after")
    def _options_have_a_language(self) -> Brand:
        """The platform requires a variant's language_code beside its options: some source must
        send it, or every variant with an option would be refused row by row."""
        sends = lambda sid, column: self.sources[sid].format == "bspk" or any(  # noqa: E731
            column in f.feeds.get("product_variants", EMPTY).columns for f in self.sources[sid].files)
        feeding = self.sources_of("product_variants")
        if any(sends(s, "language_code") for s in feeding):
            return self
        for sid in feeding:
            for i, f in enumerate(self.sources[sid].files):
                variants = f.feeds.get("product_variants", EMPTY).columns
                options = [c for c in ("option_1_value", "option_2_value", "option_3_value") if c in variants]
                if options:
                    raise ValueError(
                        f"sources.{sid}.files[{i}]: maps {options[0]} of product_variants, but no source sends "
                        "language_code, which the platform requires with options: map the file's language "
                        "column, or a constant (language_code: {constant: fr})")
        return self

    @model_validator(mode="after")
    def _required_columns_sent(self) -> Brand:
        """A column the platform requires must come from some source that sends the entity, or
        every row would be refused: one message per such column."""
        problems = []
        for entity_name in self.entities:
            maps = [(sid, i, f.feeds[entity_name]) for sid in self.sources_of(entity_name)
                    for i, f in enumerate(self.sources[sid].files) if entity_name in f.feeds]
            if any(self.sources[sid].format == "bspk" for sid in self.sources_of(entity_name)):
                continue
            entity = ENTITIES[entity_name]
            for c in entity.columns:
                if c.required and c.default is None and not any(c.name in m.columns for _, _, m in maps):
                    sid, i, _ = maps[0]
                    problems.append(
                        f"sources.{sid}.files[{i}]: {c.name} of {entity_name} is required by the platform and no source "
                        f"maps it, so every row would be rejected: map it ({c.name}: {{from: <column>}}) or give it a "
                        f"constant ({c.name}: {{constant: ...}}); see `bspk entities {entity_name}`")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def sources_of(self, entity: str) -> list[str]:
        """Source ids that send files for `entity`."""
        return [
            sid
            for sid, s in self.sources.items()
            if s.format == "bspk" or any(entity in f.feeds for f in s.files)
        ]

    @property
    def entities(self) -> list[str]:
        """Entities this brand receives, in dependency order."""
        fed = {e for e in ENTITIES if self.sources_of(e)}
        return sorted(fed, key=DEPENDENCY_ORDER.get)

    def attribute_owners(self, entity: str, attribute: str) -> list[str]:
        """Sources that may set `attribute`, most trusted first."""
        rules = self.precedence.get(entity, {})
        return rules.get(attribute) or rules.get("default") or self.sources_of(entity)

    @property
    def schedule_cron(self) -> str | None:
        return interval_to_cron(self.sync.interval) if self.sync.interval else None


def interval_to_cron(interval: str) -> str:
    """`1m`..`1mo` (or a cron string) as a cron string."""
    m = INTERVAL.match(interval)
    if not m:
        if croniter.is_valid(interval):
            return interval
        raise ValueError(f"an interval such as 1m, 15m, 1h, 1d, 1w, 1mo or a cron string; found {interval!r}")
    n, unit = int(m.group(1)), m.group(2)
    limits = {"m": 59, "h": 23, "d": 31, "w": 1, "mo": 12}
    if not 1 <= n <= limits[unit]:
        raise ValueError(f"between 1{unit} and {limits[unit]}{unit}; found {interval!r}")
    step = lambda field: field if n == 1 else f"{field}/{n}"  # noqa: E731
    return {
        "m": f"{step('*')} * * * *",
        "h": f"0 {step('*')} * * *",
        "d": f"0 0 {step('*')} * *",
        "w": "0 0 * * 1",
        "mo": f"0 0 1 {step('*')} *",
    }[unit]
