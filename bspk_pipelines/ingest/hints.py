"""What to change in a brand's mapping so a rejected value reads: the `thousands` or `decimal`
setting a number needs, the `values` a yes/no column needs, the `date_format` a date is in, the
transform a code's case needs. Looked at once per distinct value rejected, never per row.

A hint is added to a reject's message ("not a number such as 399.99; set thousands: " " on the
source's dialect or the column"); it says nothing where no change of the mapping would help. A
required value that is missing gets the column's own `missing` text, where its mapping has one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pycountry
import polars as pl

from bspk_pipelines.ingest.rules import DECIMAL, WHOLE, countries, currencies, languages
from bspk_pipelines.model.mapping import ColumnMap, Dialect, EntityMap, Phone
from bspk_pipelines.model.entities import Entity, Kind

THOUSANDS = ("", ",", ".", " ", "'")
DATE_FORMATS = ("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d", "%Y%m%d", "%d/%m/%y", "%m/%d/%y",
                "%d.%m.%y", "%Y-%m-%d", "%d %b %Y", "%b %d %Y")
DATETIME_FORMATS = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%d.%m.%Y %H:%M",
                    "%d.%m.%Y %H:%M:%S", "%d-%m-%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y%m%d%H%M%S",
                    "%d/%m/%Y %I:%M %p", "%m/%d/%Y %I:%M %p", "%Y-%m-%d %H:%M:%S")
# Words files write for yes and no, each with its opposite.
YES_NO = (("yes", "no"), ("y", "n"), ("oui", "non"), ("o", "n"), ("ja", "nein"), ("j", "n"), ("si", "no"),
          ("true", "false"), ("t", "f"), ("1", "0"), ("on", "off"), ("x", ""))
WHERE = "on the source's dialect or the column"


def hints(entity: Entity, emap: EntityMap, dialect: Dialect) -> Callable[[str, str, pl.Series], pl.Series]:
    """For `rules.validate`: given a column, the rule it broke and its values as sent, what to add
    to each message."""

    def hint(column: str, rule: str, values: pl.Series) -> pl.Series:
        cm = emap.columns.get(column)
        if cm is not None and rule == "required" and cm.missing:
            return pl.repeat(f"; {cm.missing}", len(values), eager=True, dtype=pl.Utf8)
        explain = _EXPLAIN.get(rule)
        if cm is None or explain is None:
            return pl.repeat("", len(values), eager=True, dtype=pl.Utf8)
        distinct = [v for v in values.unique().to_list() if v]
        said = explain(distinct, cm, cm.read_with(dialect), entity.column(column)) if distinct else {}
        return values.replace_strict(said, default="", return_dtype=pl.Utf8)

    return hint


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _reads(value: str, decimal: str, thousands: str, pattern: str) -> str | None:
    """The number `value` is with these separators, or None if it is not one (a thousands
    separator must come before each group of three digits of the whole part, and only there)."""
    text = value.strip()
    whole, _, fraction = text.partition(decimal)
    if thousands and thousands in whole:
        if thousands in fraction or not re.fullmatch(rf"-?\d{{1,3}}({re.escape(thousands)}\d{{3}})+", whole):
            return None
        whole = whole.replace(thousands, "")
    number = f"{whole}.{fraction}" if decimal in text else whole
    return number if re.fullmatch(pattern, number) else None


def _number(values: list[str], cm: ColumnMap, read: Dialect, column) -> dict[str, str]:
    pattern = WHOLE if column.kind is Kind.INT else DECIMAL
    out = {}
    for value in values:
        options = []
        for decimal in (".", ","):
            for thousands in THOUSANDS:
                number = _reads(value, decimal, thousands, pattern) if thousands != decimal else None
                changes = [f"{k}: {_quoted(v)}" for k, v, now in (("decimal", decimal, read.decimal),
                                                                    ("thousands", thousands, read.thousands)) if v != now]
                if number is not None and changes:
                    options.append((len(changes), " and ".join(changes), number))
        fewest = [o for o in options if o[0] == min((o[0] for o in options), default=0)]
        if len(fewest) == 1:
            out[value] = f"; set {fewest[0][1]} {WHERE}"
        elif fewest:
            out[value] = "; set " + " or ".join(f"{o[1]} (it reads {o[2]})" for o in fewest[:2]) + f" {WHERE}"
    return out


def _formats(values: list[str], current: str, candidates: tuple[str, ...], setting: str, date: bool) -> dict[str, str]:
    series = pl.Series(values, dtype=pl.Utf8).str.strip_chars()
    reading = {}
    for fmt in candidates:
        if fmt == current:
            continue
        parsed = series.str.to_date(fmt, strict=False) if date else series.str.to_datetime(fmt, strict=False)
        # %Y reads 24 as the year 24: a two-digit year is %y's.
        for value, ok in zip(values, (parsed.dt.year() >= 1000).fill_null(False).to_list()):
            if ok:
                reading.setdefault(value, []).append(fmt)
    return {v: f"; set {setting}: " + " or ".join(_quoted(f) for f in fmts[:2]) + f" {WHERE}"
            for v, fmts in reading.items()}


def _date(values: list[str], cm: ColumnMap, read: Dialect, column) -> dict[str, str]:
    return _formats(values, read.date_format, DATE_FORMATS, "date_format", True)


def _datetime(values: list[str], cm: ColumnMap, read: Dialect, column) -> dict[str, str]:
    return _formats(values, read.datetime_format, DATETIME_FORMATS, "datetime_format", False)


def _like(value: str, word: str) -> str:
    """`word` written in the case of `value` (YES -> NO, Oui -> Non)."""
    return word.upper() if value.isupper() else word.title() if value.istitle() else word


def _boolean(values: list[str], cm: ColumnMap, read: Dialect, column) -> dict[str, str]:
    true, false = column.truth
    case = "upper" if true.isupper() else "lower"
    out = {}
    for value in values:
        text = value.strip()
        if text.lower() in (true.lower(), false.lower()):
            out[value] = f"; add the transform {case} (transforms: [trim, {case}])"
            continue
        pair = next(((yes, no) for yes, no in YES_NO if text.lower() in (yes, no)), None)
        if pair is None:
            out[value] = f"; map the file's values with values, such as values: {{{_quoted(text)}: {_quoted(true)}}}"
            continue
        yes, no = (_like(text, w) for w in pair)
        table = {k: v for k, v in ((yes, true), (no, false)) if k}
        out[value] = f"; map the file's values with values: {json.dumps(table, ensure_ascii=False)}"
    return out


def _enum(values: list[str], cm: ColumnMap, read: Dialect, column) -> dict[str, str]:
    out = {}
    for value in values:
        same = next((c for c in column.choices if c.lower() == value.strip().lower()), "...")
        out[value] = f"; map the file's values to these with values, such as values: {{{_quoted(value)}: {_quoted(same)}}}"
    return out


def _code(valid: Callable[[], frozenset[str]], case: str) -> Callable[..., dict[str, str]]:
    """Hints for a column of ISO codes: the transform that puts a code in the case the ISO list
    writes it, or (countries) the code of a country written by name."""

    def explain(values: list[str], cm: ColumnMap, read: Dialect, column) -> dict[str, str]:
        out = {}
        for value in values:
            text = value.strip()
            fixed = text.upper() if case == "upper" else text.lower()
            if fixed in valid() and fixed != value:
                steps = ["trim"] * (text != value) + [case] * (fixed != text)
                out[value] = f"; add the transform{'s' * (len(steps) > 1)} {', '.join(steps)} (transforms: [{', '.join(steps)}])"
            elif valid is countries:
                try:
                    code = pycountry.countries.lookup(text).alpha_2
                except LookupError:
                    continue
                out[value] = f"; map names to codes with values, such as values: {{{_quoted(value)}: {_quoted(code)}}}"
        return out

    return explain


def _phone(values: list[str], cm: ColumnMap, read: Dialect, column) -> dict[str, str]:
    if any(isinstance(t, Phone) for t in cm.transforms):
        return {}
    return {v: "; read numbers written without +country in a region with transforms: [{phone: FR}] (its ISO code)"
            for v in values if not v.strip().startswith("+") and re.search(r"\d{6}", re.sub(r"[\s.()-]", "", v))}


_EXPLAIN = {
    "decimal": _number, "integer": _number, "date": _date, "datetime": _datetime, "boolean": _boolean, "enum": _enum,
    "country": _code(countries, "upper"), "currency": _code(currencies, "upper"), "language": _code(languages, "lower"),
    "e164_phone": _phone,
}
