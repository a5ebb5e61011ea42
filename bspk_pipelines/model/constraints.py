"""What a column's values must be, in words: the descriptions the UI's column schemas
(`defs/tables.py`) and the reference of the platform's files (`model/reference.py`) both give."""

from __future__ import annotations

from bspk_pipelines.model.entities import Column, Entity, Kind

# What a value of each kind must be, as a column's description says it.
RULES = {
    Kind.TEXT: "text",
    Kind.EMAIL: "an email address",
    Kind.URL: "a URL",
    Kind.PHONE: "a phone number in E.164 form",
    Kind.COUNTRY: "an ISO 3166-1 alpha-2 country code",
    Kind.CURRENCY: "an ISO 4217 currency code",
    Kind.LANGUAGE: "an ISO 639-1 language code",
    Kind.LANGUAGES: "ISO 639-1 language codes separated by `;`",
    Kind.INT: "a whole number",
    Kind.DECIMAL: "a decimal number",
    Kind.DATE: "a date, YYYY-MM-DD",
    Kind.DATETIME: "an ISO 8601 date-time, stored in UTC",
    Kind.ENUM: "one of",
    Kind.LIST: "values separated by `;`",
    Kind.CATEGORIES: "category paths (`>>` between levels) separated by `;`",
    Kind.TYPED: "a value of the type its row declares",
}
# Kinds whose values are stored as what they mean (a number, a date), not as text of some length.
UNSIZED = {Kind.BOOL, Kind.INT, Kind.DECIMAL, Kind.DATE, Kind.DATETIME}
# Kinds whose one field holds several values, and what separates them.
LISTS = {Kind.LIST: ";", Kind.LANGUAGES: ";", Kind.CATEGORIES: ";"}


def value_rule(c: Column) -> str:
    """What a value of the column must be: `a URL`, `one of M, F, NB`."""
    if c.kind is Kind.BOOL:
        return " or ".join(c.truth)
    if c.typed_by:
        return f"{RULES[c.kind]} in `{c.typed_by[0]}` (a JSON array of them when `{c.typed_by[1]}` is true)"
    return RULES[c.kind] + (f" {', '.join(c.choices)}" if c.choices else "")


def is_key(entity: Entity, c: Column) -> bool:
    return c.name in entity.key


def is_unique(entity: Entity, c: Column) -> bool:
    """Unique per record: the whole key when it is this one column, or a value marked unique.
    A key of several columns is unique only as a whole."""
    return entity.key == (c.name,) or c.unique


def is_nullable(entity: Entity, c: Column) -> bool:
    return not (is_key(entity, c) or c.required)


def constraints(entity: Entity, c: Column) -> list[str]:
    """The column's constraints beyond its type, in words: key or required, a blank key's value,
    the longest text, the smallest number."""
    other = ["key"] if is_key(entity, c) else ["required"] if c.required else []
    if c.name in entity.optional_key:
        other.append("blank when unknown, never null")
    if c.max_len and c.kind not in UNSIZED:
        other.append(f"at most {c.max_len} characters")
    if c.minimum is not None:
        other.append(f"at least {c.minimum:g}")
    if c.required_with:
        other.append(f"required when {' or '.join(c.required_with)} is given")
    return other
