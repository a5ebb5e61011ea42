"""The platform's rules for one entity, checked on every row (pandera on polars).

`validate` takes rows in the platform's columns as text and returns the rows that pass, typed,
plus one reject per broken rule naming line, column, value and rule. The rules come from the
entity specs; nothing here knows a particular entity.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pandera.polars as pa
import polars as pl
import pycountry

from bspk_pipelines.model.entities import CELL, Column, Entity, Kind
from bspk_pipelines.model.metafields import misfit
from bspk_pipelines.ingest.parse import LINE, RowProblem

EMAIL = r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$"
URL = r"^https?://[^\s]+$"
E164 = r"^\+[1-9][0-9]{6,14}$"
# Digits are ASCII: `\d` in polars' (and Python's) patterns takes any script's digits (`٣`).
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
WHOLE = r"^-?[0-9]+$"
DECIMAL = r"^-?[0-9]+(\.[0-9]+)?$"
NUMBER = re.compile(DECIMAL)
# ISO 8601 as the platform's files write it: a date, or date and time, optionally Z or an offset.
DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$"


@cache
def countries() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries)


# ISO 4217 codes that are not money a store can price in: precious metals, bond-market units,
# the IMF's SDR, the ADB unit, the sucre, the testing code and "no currency".
NOT_CURRENCIES = frozenset({"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"})


@cache
def currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies) - NOT_CURRENCIES


@cache
def languages() -> frozenset[str]:
    return frozenset(lang.alpha_2 for lang in pycountry.languages if hasattr(lang, "alpha_2"))


MESSAGES = {
    "required": "a value is required",
    "length": "length must be {min}-{max} characters",
    "email": "not an email address",
    "url": "not an http(s) URL",
    "e164_phone": "not an E.164 phone number such as +14155551212",
    "country": "not an ISO 3166 alpha-2 country code such as FR",
    "currency": "not an ISO 4217 currency code such as EUR",
    "language": "not an ISO 639-1 language code such as fr",
    "boolean": "expected {truth}",
    "integer": "not a whole number",
    "decimal": "not a number such as 399.99",
    "minimum": "must not be below {minimum}",
    "overflow": "more than {digits} digits before the decimal point",
    "date": "not a date YYYY-MM-DD",
    "datetime": "not an ISO 8601 date-time such as 2022-01-17T10:15:18",
    "enum": "expected one of {choices}",
}


def _check(rule: str, expr: pl.Expr) -> pa.Check:
    """A pandera check from a polars expression over the column (nulls pass; `required` covers them).

    A blank passes whatever `expr` makes of it: `is_not_null()` of a blank is False, not null.
    """
    blank = pl.col(expr.meta.root_names()[0]).is_null()
    return pa.Check(lambda data: data.lazyframe.select((blank | expr).fill_null(True)), name=rule)


def _list_items(col: str) -> pl.Expr:
    return pl.col(col).str.split(";").list.eval(pl.element().str.strip_chars())


def checks_for(c: Column) -> list[pa.Check]:
    col = pl.col(c.name)
    checks = []
    if c.max_len is not None:
        checks.append(_check("length", col.str.len_chars().is_between(c.min_len, c.max_len)))
    match c.kind:
        case Kind.EMAIL:
            checks.append(_check("email", col.str.contains(EMAIL)))
        case Kind.URL:
            checks.append(_check("url", col.str.contains(URL)))
        case Kind.PHONE:
            checks.append(_check("e164_phone", col.str.contains(E164)))
        case Kind.COUNTRY:
            checks.append(_check("country", col.is_in(list(countries()))))
        case Kind.CURRENCY:
            checks.append(_check("currency", col.is_in(list(currencies()))))
        case Kind.LANGUAGE:
            checks.append(_check("language", col.is_in(list(languages()))))
        case Kind.LANGUAGES:
            checks.append(_check("language", _list_items(c.name).list.eval(pl.element().is_in(list(languages()))).list.all()))
        case Kind.BOOL:
            checks.append(_check("boolean", col.is_in(c.truth)))
        case Kind.ENUM:
            checks.append(_check("enum", col.is_in(list(c.choices))))
        case Kind.INT | Kind.DECIMAL:
            pattern = WHOLE if c.kind is Kind.INT else DECIMAL
            checks.append(_check("integer" if c.kind is Kind.INT else "decimal", col.str.contains(pattern)))
            digits = col.str.strip_chars_start("-").str.split(".").list.first().str.strip_chars_start("0")
            checks.append(_check("overflow", digits.str.len_chars() <= c.max_digits))
            if c.minimum is not None:
                checks.append(_check("minimum", ~col.str.starts_with("-") | (col.str.strip_chars("-0.") == "")))
        case Kind.DATE:
            checks.append(_check("date", col.str.contains(DATE) & col.str.to_date("%Y-%m-%d", strict=False).is_not_null()))
        case Kind.DATETIME:
            checks.append(_check("datetime", col.str.contains(DATETIME) & pl.col(parsed(c.name)).is_not_null()))
    return checks


def sent(name: str) -> str:
    """The hidden column holding a mapped column's value as the file sent it (`mapping.map_rows`),
    which a reject shows."""
    return f"__sent_{name}"


def label(where: dict[str, str], name: str, cell: str | None = None) -> str:
    """The column of the delivered file a value of `name` came from, as a reject names it; in a
    row unpivoted from a column (`cell`), that column stands for `_cell`."""
    text = where.get(name, name)
    return text if cell is None else "+".join(cell if part == CELL else part for part in text.split("+"))


def parsed(name: str) -> str:
    """The hidden column holding a date-time column's values parsed once (see with_parsed_datetimes)."""
    return f"__utc_{name}"


def with_parsed_datetimes(entity: Entity, frame: pl.DataFrame) -> pl.DataFrame:
    """Parses each date-time column once, for the check and the typed value alike. Values in the
    platform's own form parse in one pass; only the others take the general ISO 8601 path."""
    out = []
    for c in entity.columns:
        if c.kind is not Kind.DATETIME or c.name not in frame.columns:
            continue
        text = frame[c.name]
        values = text.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us")
        rest = (values.is_null() & text.is_not_null()).arg_true()
        if rest.len():
            general = pl.select(_to_utc(pl.lit(text.gather(rest)))).to_series()
            values = values.scatter(rest, general)
        out.append(values.alias(parsed(c.name)))
    return frame.with_columns(out) if out else frame


def _to_utc(col: pl.Expr) -> pl.Expr:
    """ISO 8601 text to a naive UTC datetime; text with no offset is taken as UTC (as SALE says)."""
    text = col.str.replace(" ", "T").str.replace("Z$", "+00:00")
    text = pl.when(text.str.len_chars() == 10).then(text + "T00:00:00").otherwise(text)
    text = pl.when(text.str.contains(r"T\d{2}:\d{2}(?:[+-]|$)")).then(text.str.replace(r"(T\d{2}:\d{2})", "${1}:00")).otherwise(text)
    with_offset = text.str.contains(r"[+-]\d{2}:?\d{2}$")
    aware = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_zone="UTC")
    naive = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False)
    return pl.when(with_offset).then(aware.dt.replace_time_zone(None)).otherwise(naive)


@cache
def _schema(entity: Entity, columns: tuple[str, ...]) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            c.name: pa.Column(pl.Utf8, checks=checks_for(c), nullable=not c.required)
            for c in entity.columns
            if c.name in columns
        },
        strict=False,
    )


def _message(c: Column, rule: str) -> str:
    if rule == "not_nullable":
        return MESSAGES["required"]
    if rule == "overflow" and c.kind is Kind.INT:
        return f"more than {c.max_digits} digits"
    if rule == "boolean" and c.truth[0].islower():
        # Most of the platform's files write TRUE/FALSE: say so where this one does not.
        return f"expected {' or '.join(c.truth)}, in lower case (not {' or '.join(t.upper() for t in c.truth)})"
    return MESSAGES.get(rule, rule).format(
        min=c.min_len, max=c.max_len, minimum=c.minimum, digits=c.max_digits,
        choices=", ".join(c.choices), truth=" or ".join(c.truth),
    )


def exact_decimal(col: pl.Expr) -> pl.Expr:
    """A valid decimal's canonical text, as `warehouse.schema.decimal_text` writes it: digits and
    scale as sent (a float would turn 349.90 into 349.9 and 0.1 + 0.2 into 0.30000000000000004),
    no leading zeros, no sign on a zero."""
    text = col.str.replace(r"^(-?)0+(\d)", "${1}${2}")
    return pl.when(text.str.contains(r"^-0(\.0+)?$")).then(text.str.strip_chars_start("-")).otherwise(text)


def typed(entity: Entity, frame: pl.DataFrame) -> pl.DataFrame:
    """Valid text rows converted to the types the warehouse stores; text, refs too, as sent."""
    exprs = []
    for name in frame.columns:
        if name not in entity.column_names:
            continue
        c = entity.column(name)
        col = pl.col(name)
        match c.kind:
            case Kind.BOOL:
                col = col == c.truth[0]
            case Kind.INT:
                col = col.cast(pl.Int64)
            case Kind.DECIMAL:
                col = exact_decimal(col)
            case Kind.DATE:
                col = col.str.to_date("%Y-%m-%d")
            case Kind.DATETIME:
                col = pl.col(parsed(name)) if parsed(name) in frame.columns else _to_utc(col)
            case Kind.LIST | Kind.LANGUAGES | Kind.CATEGORIES:
                col = _list_items(name).list.join(";")
        if name in entity.optional_key:
            # Part of the key even when blank: canonical text, '' for blank (see column_type).
            col = (col if c.kind in (Kind.TEXT, Kind.LIST) else pl.col(name)).fill_null("")
        exprs.append(col.alias(name))
    return frame.with_columns(exprs).select(*[c for c in frame.columns if c in entity.column_names or c in (LINE, CELL)])


@dataclass
class Validated:
    rows: pl.DataFrame
    rejects: list[RowProblem]


# What to change so a rejected value reads: given a column, the rule it broke and its values as
# sent, a text to add to each message ("" for none). See `ingest.hints`.
Hint = Callable[[str, str, pl.Series], pl.Series]


def validate(entity: Entity, frame: pl.DataFrame, source_columns: dict[str, str] | None = None,
             hint: Hint | None = None) -> Validated:
    """Check rows (platform columns as text, plus `_line`) against the entity's rules.

    `source_columns` names, for each platform column, the column of the delivered file it came
    from, so a reject points at what the brand can see in its own file; a reject shows the value
    as the file sent it where the frame carries it (`sent`), and what `hint` says to change.
    """
    frame = frame.with_columns(
        pl.col(c.name).fill_null(c.default) for c in entity.columns if c.default is not None and c.name in frame.columns
    )
    frame = with_parsed_datetimes(entity, frame)
    present = tuple(c for c in frame.columns if c in entity.column_names)
    where = source_columns or {}
    rejects: list[RowProblem] = []
    bad_idx: set[int] = set()
    try:
        _schema(entity, present).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as e:
        cases = e.failure_cases.filter(pl.col("index").is_not_null())
        lines = frame[LINE]
        cells = frame[CELL] if CELL in frame.columns else None
        for (name, check), group in cases.group_by("column", "check", maintain_order=True):
            rule = "required" if check == "not_nullable" else check
            idx = group["index"].cast(pl.Int64)
            # A missing value is shown blank; with the mapping's copy, any value as the file sent it.
            value = pl.repeat("", len(idx), eager=True) if check == "not_nullable" else group["failure_case"].cast(pl.Utf8)
            if sent(name) in frame.columns:
                value = pl.select(pl.coalesce(frame[sent(name)].gather(idx), value)).to_series()
            extra = hint(name, rule, value) if hint else pl.repeat("", len(value), eager=True)
            message = _message(entity.column(name), check)
            for i, v, more in zip(idx.to_list(), value.to_list(), extra.to_list()):
                bad_idx.add(i)
                rejects.append(RowProblem(lines[i], label(where, name, cells[i] if cells is not None else None),
                                          (v or "")[:200], rule, message + more))
    # Required columns missing from this source's rows altogether are checked at merge time.
    good = frame.with_row_index("_idx").filter(~pl.col("_idx").is_in(list(bad_idx))).drop("_idx")
    good, more = _row_rules(entity, good, where)
    rejects += more
    rejects.sort(key=lambda r: (r.line, r.column))
    # Keys and unique values are checked across the whole file, once its batches are written.
    return Validated(typed(entity, good), rejects)


def _row_rules(entity: Entity, frame: pl.DataFrame, where: dict[str, str]) -> tuple[pl.DataFrame, list[RowProblem]]:
    """Rules that look at more than one column of a row."""
    broken: list[tuple[pl.Expr, str, str, str]] = []
    cols = set(frame.columns)
    if "ending_on" in cols and "discounted" in entity.column_names:
        # A source may leave the `discounted` key out: its prices are then standard ones (the
        # key's default), which an ending_on does not fit either.
        discounted = pl.col("discounted") if "discounted" in cols else pl.lit(entity.column("discounted").default)
        broken.append((pl.col("ending_on").is_not_null() & (discounted.fill_null("FALSE") != "TRUE"),
                       "ending_on", "ending_on_needs_discount", "ending_on is only valid on a discounted price"))
    for c in entity.columns:
        given = [g for g in c.required_with if g in cols]
        if given and c.name in cols:
            any_given = pl.any_horizontal([pl.col(g).is_not_null() for g in given])
            broken.append((any_given & pl.col(c.name).is_null(), c.name, "required_with",
                           f"{c.name} is required when {' or '.join(given)} is given"))
    rejects = []
    for c in entity.columns:
        if c.typed_by and c.name in cols and set(c.typed_by) <= cols:
            frame, more = _typed_values(entity, c, frame, where)
            rejects += more
    for cond, col, rule, message in broken:
        hit = frame.filter(cond)
        rejects += [RowProblem(r[LINE], label(where, col, r.get(CELL)), r.get(sent(col)) or r[col] or "", rule, message)
                    for r in hit.iter_rows(named=True)]
        frame = frame.filter(~cond)
    return frame, rejects


def _typed_values(entity: Entity, c: Column, frame: pl.DataFrame, where: dict[str, str]) -> tuple[pl.DataFrame, list[RowProblem]]:
    """Rows whose `c` fits the type its row declares (`Column.typed_by`), and a reject for each other."""
    type_column, list_column = c.typed_by
    truth = entity.column(list_column).truth[0]
    reasons = [misfit(t, None if listed is None else listed == truth, v)
               for t, listed, v in zip(frame[type_column], frame[list_column], frame[c.name])]
    bad = pl.Series([r is not None for r in reasons], dtype=pl.Boolean)
    rejects = [RowProblem(r[LINE], label(where, c.name, r.get(CELL)), (r.get(sent(c.name)) or r[c.name] or "")[:200],
                          "value_type", reason)
               for r, reason in zip(frame.filter(bad).iter_rows(named=True), (x for x in reasons if x is not None))]
    return frame.filter(~bad), rejects
