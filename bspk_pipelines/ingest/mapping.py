"""A brand's own file format turned into the platform's columns, as its YAML mapping says.

Pure functions on polars frames of text. A line the mapping unpivots gives one row per column of
a kind (each row keeps the line's number and names its column in `_cell`); rows a skip rule
matches are left out and listed with the rule; then each platform column is made from its
origin, transforms, value map, number and date formats, scale and default. Values the mapping
cannot convert (a date not in the format, a phone number with no country) are passed on
unchanged, and each column's value as the file sent it rides along (`rules.sent`), so the
platform's rules reject what the brand actually sent.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from decimal import Decimal, localcontext

import phonenumbers
import polars as pl

from bspk_pipelines.ingest.rules import NUMBER, sent
from bspk_pipelines.model.mapping import ColumnMap, Dialect, EntityMap, Lookup, Phone, Replace, SkipRule, SplitPart, StripLeading, StripPrefix, ToList
from bspk_pipelines.model.entities import CELL, LINE, Entity, Kind

ISO_DATE = "%Y-%m-%d"
ISO_DATETIME = "%Y-%m-%dT%H:%M:%S"
# The rows a mapping's skip rules leave out: the line, the column the rule reads, its value, the rule.
SKIPPED_SCHEMA = {"line": pl.Int64, "column": pl.Utf8, "value": pl.Utf8, "rule": pl.Utf8}


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


def _blank_is_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.strip_chars() != "").then(expr)


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
        case Replace(replace=spec):
            return expr.str.replace_all(spec.pattern, spec.with_)
        case ToList(separator=sep):
            items = pl.element().str.strip_chars()
            return expr.str.split(sep).list.eval(items.filter(items != "")).list.join(";")
        case Lookup(lookup=spec):
            found = expr.replace(spec.values) if spec.values else expr
            if spec.default is None:
                return found
            return pl.when(expr.is_in(list(spec.values))).then(found).when(expr.is_not_null()).then(pl.lit(spec.default))
    raise ValueError(f"unknown transform {step!r}")


def _origin(cm: ColumnMap) -> pl.Expr:
    if cm.constant is not None:
        return pl.lit(cm.constant, dtype=pl.Utf8)
    if cm.concat is not None:
        joined = pl.concat_str([pl.col(c) for c in cm.concat], separator=cm.sep, ignore_nulls=True)
        return pl.when(pl.any_horizontal([pl.col(c).is_not_null() for c in cm.concat])).then(joined)
    if cm.coalesce is not None:
        return pl.coalesce([_blank_is_null(pl.col(c)) for c in cm.coalesce])
    if cm.template is not None:
        # Every placeholder must have a value: a key made of a blank part is no key.
        parts = []
        for literal, name, _, _ in string.Formatter().parse(cm.template):
            parts += [pl.lit(literal)] if literal else []
            parts += [_blank_is_null(pl.col(name))] if name is not None else []
        return pl.concat_str(parts, ignore_nulls=False)
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


def times(value: str, factor: Decimal, whole: bool) -> str:
    """A number's text multiplied by `factor` in exact decimal arithmetic ("1250" by 0.01:
    "12.50"); a whole number stays whole where the product is. Not a number: as it is."""
    if not NUMBER.fullmatch(value):
        return value
    with localcontext(prec=80):
        product = Decimal(value) * factor
    if whole and product == product.to_integral_value():
        product = product.quantize(Decimal(1))
    return format(product, "f")


def _column(cm: ColumnMap, kind: Kind, dialect: Dialect) -> pl.Expr:
    expr = _origin(cm)
    for step in cm.transforms:
        expr = _transform(expr, step)
    if cm.values:
        expr = expr.replace(cm.values)
    expr = _dialect(expr, kind, cm.read_with(dialect))
    if cm.factor is not None:
        factor, whole = cm.factor, kind is Kind.INT
        expr = expr.map_elements(lambda v: times(v, factor, whole), return_dtype=pl.Utf8)
    expr = _blank_is_null(expr)
    return expr if cm.default is None else pl.coalesce(expr, pl.lit(cm.default, dtype=pl.Utf8))


def unpivot_problem(emap: EntityMap, header: list[str]) -> str | None:
    """Why a file's header does not fit the mapping's unpivot, if it does not."""
    u = emap.unpivot
    if u is None:
        return None
    if not u.cells(header):
        return f"no column of the header matches the unpivot's {u.matching!r}" if u.matching else None
    clash = [c for c in (u.name, u.value) if c in header]
    if clash:
        return (f"the file has a column {clash[0]}, which the unpivot names for its own column: "
                "give unpivot.name and unpivot.value names the file does not use")
    return None


def unpivoted(emap: EntityMap, rows: pl.DataFrame) -> pl.DataFrame:
    """A line's unpivoted columns as rows of their own, line after line as in the file (a row per
    column, in the header's order), each naming its column in `_cell`."""
    u = emap.unpivot
    if u is None:
        return rows
    cells = u.cells([c for c in rows.columns if c != LINE])
    long = rows.unpivot(on=cells, index=[c for c in rows.columns if c not in cells], variable_name=u.name,
                        value_name=u.value)
    return long.with_columns(pl.col(u.name).alias(CELL)).sort(LINE, maintain_order=True)


def _skip_test(rule: SkipRule) -> pl.Expr:
    col = pl.col(rule.source_column)
    if rule.blank is not None:
        return col.is_null() | (col.str.strip_chars() == "")
    if rule.matches is not None:
        return col.str.contains(rule.matches).fill_null(False)
    if rule.in_ is not None:
        return col.str.strip_chars().is_in(rule.in_).fill_null(False)
    return (~col.str.strip_chars().is_in(rule.not_in)).fill_null(True)


def skipping(emap: EntityMap, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows no skip rule matches, and those it does (SKIPPED_SCHEMA, with the first rule each
    matches, its column as the file names it)."""
    if not emap.skip:
        return rows, pl.DataFrame(schema=SKIPPED_SCHEMA)
    which = pl.when(_skip_test(emap.skip[0])).then(0)
    for i, rule in enumerate(emap.skip[1:], start=1):
        which = which.when(_skip_test(rule)).then(i)
    tagged = rows.with_columns(which.alias("_skip"))
    virtual = _virtual(emap)
    skipped = [
        hit.select(pl.col(LINE).alias("line"),
                   (pl.col(CELL) if rule.source_column in virtual else pl.lit(rule.source_column)).alias("column"),
                   pl.col(rule.source_column).alias("value"), pl.lit(str(rule)).alias("rule"))
        for i, rule in enumerate(emap.skip)
        if not (hit := tagged.filter(pl.col("_skip") == i)).is_empty()
    ]
    out = pl.concat(skipped).sort("line", maintain_order=True) if skipped else pl.DataFrame(schema=SKIPPED_SCHEMA)
    return tagged.filter(pl.col("_skip").is_null()).drop("_skip"), out


@dataclass
class Mapped:
    # The entity's columns as text, `_line` (and `_cell` where unpivoted), and each column's value as sent.
    rows: pl.DataFrame
    skipped: pl.DataFrame  # SKIPPED_SCHEMA


def map_rows(entity: Entity, emap: EntityMap, dialect: Dialect, rows: pl.DataFrame) -> Mapped:
    """Rows of a brand-format file (its own columns, text, `_line`) as the entity's: unpivoted,
    skipped, mapped. Beside each column made from the file's values, its value as sent."""
    rows, skipped = skipping(emap, unpivoted(emap, rows))
    exprs = []
    for name, cm in emap.columns.items():
        exprs.append(_column(cm, entity.column(name).kind, dialect).alias(name))
        if cm.constant is None:
            exprs.append(_origin(cm).alias(sent(name)))
    return Mapped(rows.select(*exprs, pl.col(LINE), *([pl.col(CELL)] if emap.unpivot else [])), skipped)


def to_platform(entity: Entity, emap: EntityMap, dialect: Dialect, rows: pl.DataFrame) -> pl.DataFrame:
    """Rows of a brand-format file (its own columns, text) as the entity's columns (text) plus
    `_line` (and `_cell` where the mapping unpivots); rows a skip rule matches left out."""
    mapped = map_rows(entity, emap, dialect, rows).rows
    return mapped.drop(sent(n) for n in emap.columns if sent(n) in mapped.columns)


def _virtual(emap: EntityMap) -> set[str]:
    """The columns an unpivot makes, which no file has."""
    return {emap.unpivot.name, emap.unpivot.value} if emap.unpivot else set()


def lineage(emap: EntityMap) -> dict[str, str]:
    """For each platform column, the source column(s) it came from, as a reject should name them;
    `_cell` stands for the column an unpivoted row came from (see `rules.label`)."""
    virtual = _virtual(emap)
    out = {}
    for name, cm in emap.columns.items():
        parts = list(dict.fromkeys(CELL if c in virtual else c for c in cm.source_columns))
        out[name] = "+".join(parts) if parts else f"{name} (constant)"
    return out


def source_columns(emap: EntityMap) -> list[str]:
    """Columns a brand-format file must carry in its header for the mapping to work."""
    unpivoted_columns = (emap.unpivot.columns or []) if emap.unpivot else []
    return list(dict.fromkeys([*(c for c in emap.read_columns if c not in _virtual(emap)), *unpivoted_columns]))
