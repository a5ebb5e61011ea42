"""A brand's configuration (`mappings/<brand>.yaml`) as typed models: what a brand file may say,
each value checked where it is declared. How a source's columns map is `model.mapping`; reading
the files is `model.brand_file`."""

from __future__ import annotations

import fnmatch
import re
from datetime import timedelta
from typing import Annotated, Literal

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from bspk_pipelines.model.entities import DEPENDENCY_ORDER, ENTITIES, Kind
from bspk_pipelines.model.mapping import EMPTY, Dialect, FileMap, Strict
from bspk_pipelines.ingest.stores import DropUrlError, parse_drop
from bspk_pipelines.model.shopify import ENV_NAME, ShopifySource

# A constant a source may map where its files lack a column the platform requires beside others.
CONSTANT_EXAMPLES = {Kind.LANGUAGE: "fr", Kind.CURRENCY: "EUR"}

# The variables an SFTP drop's credentials are in, unless the source names others.
DEFAULT_KEY_ENV = "BSPK_SFTP_KEY_FILE"
DEFAULT_PASSWORD_ENV = "BSPK_SFTP_PASSWORD"

BRAND_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# workspace.yaml's one code location, and that of every brand whose file names none.
DEFAULT_LOCATION = "bspk_pipelines"
COMPANY_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
OWNER = re.compile(r"^(team:[A-Za-z0-9_.-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")
INTERVAL = re.compile(r"^(\d+)(m|h|d|w|mo)$")


class Source(Strict):
    """One brand system that sends files into a drop store: a folder, an SFTP folder or a bucket prefix."""

    format: Literal["bspk", "csv"]
    drop: str = Field(description="where the source's files arrive: a folder (relative to the data folder), "
                                  "sftp://user@host[:port]/path or s3://bucket/prefix")
    # An SFTP drop's credentials: the variables holding a private key file's path, and a password.
    drop_key_env: str = Field(DEFAULT_KEY_ENV, pattern=ENV_NAME)
    drop_password_env: str = Field(DEFAULT_PASSWORD_ENV, pattern=ENV_NAME)
    dialect: Dialect = Dialect()
    files: list[FileMap] = []

    @field_validator("drop")
    @classmethod
    def _a_store(cls, v: str) -> str:
        try:
            parse_drop(v)
        except DropUrlError as e:
            raise ValueError(str(e)) from None
        return v

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
    sources: dict[str, Annotated[Source | ShopifySource, Field(discriminator="format")]] = Field(min_length=1)
    precedence: dict[str, dict[str, list[str]]] = {}
    reject_rate_threshold: float = Field(0.05, ge=0, le=1)
    sync: Sync = Sync()
    # First month of sales history: the sales table is partitioned by month from here to now. The
    # default reaches back 30 years and more, as the platform's brands bring; a brand with a shorter
    # history sets its own (fewer partitions to show).
    history_start: str = Field("1990-01", pattern=r"^(19|20)\d\d-(0[1-9]|1[0-2])$")
    # A backfill over many months runs this many months per run (Dagster backfill policy).
    months_per_run: int = Field(360, ge=1, le=600)
    webhooks: Webhooks = Webhooks()
    extracts: Extracts = Extracts()
    # The Dagster code location that serves the brand when a platform splits its brands across
    # several (`bspk workspace`): each is its own code server, loading only its brands.
    location: str = DEFAULT_LOCATION

    @field_validator("brand", "location")
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
    def _source_ids(cls, v: dict[str, Source | ShopifySource]) -> dict[str, Source | ShopifySource]:
        bad = [s for s in v if not BRAND_ID.match(s)]
        if bad:
            raise ValueError(f"source ids of lower-case letters, digits and _; found {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _precedence_fits(self) -> Brand:
        for entity, rules in self.precedence.items():
            if entity not in ENTITIES:
                raise ValueError(f"precedence.{entity}: one of {', '.join(ENTITIES)}")
            if ENTITIES[entity].append_only:
                raise ValueError(f"precedence.{entity}: {ENTITIES[entity].file_type} rows are append-only, not "
                                 "merged by precedence: the first version recorded stays, whichever source sent it")
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
    def _companions_sent(self) -> Brand:
        """A column the platform requires beside others (a variant's language_code beside its
        options, a currency beside an amount): some source must send it, or every row giving the
        others would be refused row by row."""
        for entity_name in self.entities:
            feeding = self.sources_of(entity_name)
            maps = {sid: [f.feeds.get(entity_name, EMPTY).columns for f in self.sources[sid].files] for sid in feeding}
            sends = lambda column: any(  # noqa: E731
                self.sources[sid].format == "bspk" or any(column in m for m in maps[sid]) for sid in feeding)
            for c in ENTITIES[entity_name].columns:
                if not c.required_with or sends(c.name):
                    continue
                for sid, i, given in ((sid, i, [g for g in c.required_with if g in m])
                                      for sid in feeding for i, m in enumerate(maps[sid])):
                    if given:
                        raise ValueError(
                            f"sources.{sid}.files[{i}]: maps {given[0]} of {entity_name}, but no source sends "
                            f"{c.name}, which the platform requires with it: map the file's {c.name} column, or a "
                            f"constant ({c.name}: {{constant: {CONSTANT_EXAMPLES.get(c.kind, '...')}}})")
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
