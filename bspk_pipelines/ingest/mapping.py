"""A brand's own file format turned into the platform's columns, as its YAML mapping says.

Pure functions on polars frames of text. Values the mapping cannot convert (a date not in the
source's format, a phone number with no country) are passed on unchanged, so the platform's
rules reject them with the value the brand actually sent.
"""

from __future__ import annotations

import phonenumbers
import polars as pl

from bspk_pipelines.model.brand import ColumnMap, Dialect, EntityMap, Phone, SplitPart, StripLeading, StripPrefix
from bspk_pipelines.model.entities import Entity, Kind
from bspk_pipelines.ingest.parse import LINE

ISO_DATE = "%Y-%m-%d"
ISO_DATETIME = "%Y-%m-%dT%H:%M:%S"


def to_e164(value: str | None, region: str) -> str | None:
    """A phone number in E.164, reading numbers without +country in `region`; unparseable stays as is."""
    if value is None:
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return value
    if not phonenumbers.is_valid_number(number):
        return value
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _transform(expr: pl.Expr, step) -> pl.Expr:
    match step:
        case "trim":
            return expr.str.strip_chars()
        case "upper":
            return expr.str.to_uppercase()
        case "lower":
            return expr.str.to_lowercase()
        case "title":
            return expr.str.to_titlecase()
        case StripPrefix(strip_prefix=prefix):
            return expr.str.strip_prefix(prefix)
        case StripLeading(strip_leading=chars):
            return expr.str.strip_chars_start(chars)
        case SplitPart(split=spec):
            return expr.str.split(spec.sep).list.get(spec.index, null_on_oob=True).str.strip_chars()
        case Phone(phone=region):
            return expr.map_elements(lambda v: to_e164(v, region), return_dtype=pl.Utf8)
    raise ValueError(f"unknown transform {step!r}")


def _origin(cm: ColumnMap) -> pl.Expr:
    if cm.constant is not None:
        return pl.lit(cm.constant, dtype=pl.Utf8)
    if cm.concat is not None:
        joined = pl.concat_str([pl.col(c) for c in cm.concat], separator=cm.sep, ignore_nulls=True)
        return pl.when(pl.any_horizontal([pl.col(c).is_not_null() for c in cm.concat])).then(joined)
    return pl.col(cm.source)


def _dialect(expr: pl.Expr, kind: Kind, dialect: Dialect) -> pl.Expr:
    """Numbers, dates and times from the source's conventions to the platform's ISO text."""
    match kind:
        case Kind.INT | Kind.DECIMAL:
            if dialect.thousands:
                expr = expr.str.replace_all(dialect.thousands, "", literal=True)
            if dialect.decimal != ".":
                expr = expr.str.replace(dialect.decimal, ".", literal=True)
            return expr
        case Kind.DATE if dialect.date_format != ISO_DATE:
            parsed = expr.str.to_date(dialect.date_format, strict=False).dt.strftime(ISO_DATE)
            return pl.coalesce(parsed, expr)
        case Kind.DATETIME:
            naive = expr.str.to_datetime(dialect.datetime_format, strict=False)
            utc = naive.dt.replace_time_zone(dialect.timezone, ambiguous="earliest", non_existent="null")
            return pl.coalesce(utc.dt.convert_time_zone("UTC").dt.strftime(ISO_DATETIME), expr)
    return expr


def to_platform(entity: Entity, file_map: EntityMap, dialect: Dialect, rows: pl.DataFrame) -> pl.DataFrame:
    """Rows of a brand-format file (its own columns, text) as the entity's columns (text) plus `_line`."""
    exprs = []
    for name, cm in file_map.columns.items():
        expr = _origin(cm)
        for step in cm.transforms:
            expr = _transform(expr, step)
        if cm.values:
            expr = expr.replace(cm.values)
        expr = _dialect(expr, entity.column(name).kind, dialect)
        exprs.append(pl.when(expr.str.strip_chars() != "").then(expr).alias(name))
    return rows.select(*exprs, pl.col(LINE))


def lineage(file_map: EntityMap) -> dict[str, str]:
    """For each platform column, the source column(s) it came from, as a reject should name them."""
    out = {}
    for name, cm in file_map.columns.items():
        out[name] = "+".join(cm.source_columns) if cm.source_columns else f"{name} (constant)"
    return out


def source_columns(file_map: EntityMap) -> list[str]:
    """Columns a brand-format file must carry in its header for the mapping to work."""
    return list(dict.fromkeys(c for cm in file_map.columns.values() for c in cm.source_columns))
