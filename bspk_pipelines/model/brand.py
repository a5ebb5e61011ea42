"""A brand's configuration (`mappings/<brand>.yaml`) as typed models: what a brand file may say,
each value checked where it is declared. Reading the files is `model.brand_file`."""

from __future__ import annotations

import fnmatch
import re
from datetime import timedelta
from typing import Annotated, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bspk_pipelines.model.entities import DEPENDENCY_ORDER, ENTITIES

BRAND_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
COMPANY_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
OWNER = re.compile(r"^(team:[A-Za-z0-9_.-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")
INTERVAL = re.compile(r"^(\d+)(m|h|d|w|mo)$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Dialect(Strict):
    """How a source writes its CSV files. The defaults are the platform's own format."""

    delimiter: str = Field(",", min_length=1, max_length=1)
    quote: str = Field('"', min_length=1, max_length=1)
    encoding: Literal["utf-8", "utf-8-sig", "cp1252", "latin-1", "iso-8859-15"] = "utf-8"
    decimal: Literal[".", ","] = "."
    thousands: Literal["", ",", ".", " ", "'"] = ""
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


class Phone(Strict):
    phone: str = Field(description="default ISO 3166 region for numbers without +country")


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


Transform = Annotated[
    Literal["trim", "upper", "lower", "title"] | Phone | StripPrefix | StripLeading | SplitPart,
    Field(description="trim|upper|lower|title, {phone: FR}, {strip_prefix: 'CLI-'}, {strip_leading: '0'}, "
                      "{split: {sep, index}}"),
]


class ColumnMap(Strict):
    """How one platform column is made from a source row."""

    source: str | None = Field(None, alias="from")
    constant: str | None = None
    concat: list[str] | None = None
    sep: str = " "
    transforms: list[Transform] = []
    values: dict[str, str] = {}

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnMap:
        given = [k for k in ("from", "constant", "concat") if getattr(self, _FIELD[k]) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of from, constant, concat; found {given or 'none'}")
        return self

    @property
    def source_columns(self) -> list[str]:
        if self.source is not None:
            return [self.source]
        return list(self.concat or [])


_FIELD = {"from": "source", "constant": "constant", "concat": "concat"}


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
    """How a delivered file feeds one entity: which platform column comes from which of its columns."""

    columns: dict[str, ColumnMap]


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
