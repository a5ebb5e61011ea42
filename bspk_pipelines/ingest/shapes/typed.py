"""Typed values (an Excel cell, a JSON number, a Parquet column) written as the text the source's
dialect reads, so that one mapping and one set of checks serve every shape.

A date is written in the dialect's `date_format`, a datetime in its `datetime_format` (one with a
zone first converted to the dialect's `timezone`, whose naive times the checks read), a time as
HH:MM:SS, a boolean as `TRUE`/`FALSE` (as Excel shows one, and as the platform's files write them), an integer as its digits, a list or an object as its JSON
text. A float is written to 15
significant digits, the precision Excel shows and keeps, so a sum stored as 0.30000000000000004
reads 0.3, and a whole number stored as a float (every number in a sheet is one) reads 1001, not
1001.0; its decimal mark is the dialect's. Blank text and the dialect's `null_values` read as null,
as in a delimited file.
"""

from __future__ import annotations

import polars as pl

from bspk_pipelines.ingest.parse import blank_as_null
from bspk_pipelines.model.mapping import Dialect

# Past 2**53 a float holds no exact integer: such a number keeps its float text.
_EXACT_INTEGERS = 2.0**53


def as_text(frame: pl.DataFrame, dialect: Dialect, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """Every column of `frame` (but those in `keep`, left as they are) as text the dialect reads."""
    # Columns by position: a name such as `*` or `^a$` would be expanded by pl.col.
    return frame.select(pl.nth(i) if name in keep else blank_as_null(column_text(pl.nth(i), dtype, dialect), dialect).alias(name)
                        for i, (name, dtype) in enumerate(frame.schema.items()))


def column_text(value: pl.Expr, dtype: pl.DataType, dialect: Dialect) -> pl.Expr:
    """The text of one typed column (see the module's docstring)."""
    if dtype == pl.Utf8:
        return value
    if dtype == pl.Boolean:
        return pl.when(value).then(pl.lit("TRUE")).when(value.not_()).then(pl.lit("FALSE"))
    if dtype.is_integer():
        return value.cast(pl.Utf8)
    if dtype.is_float():
        whole = (value == value.floor()) & (value.abs() < _EXACT_INTEGERS)
        text = pl.when(whole).then(value.cast(pl.Int64, strict=False).cast(pl.Utf8)).otherwise(
            value.round_sig_figs(15).cast(pl.Utf8))
        return _decimal_mark(text, dialect)
    if dtype.is_decimal():
        return _decimal_mark(value.cast(pl.Utf8), dialect)
    if dtype == pl.Date:
        return value.dt.strftime(dialect.date_format)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            value = value.dt.convert_time_zone(dialect.timezone).dt.replace_time_zone(None)
        return value.dt.strftime(dialect.datetime_format)
    if dtype == pl.Time:
        return value.dt.strftime("%H:%M:%S")
    if isinstance(dtype, pl.Struct):
        return pl.when(value.is_not_null()).then(value.struct.json_encode())
    if isinstance(dtype, (pl.List, pl.Array)):
        # A list as its JSON text: encoded inside an object of one field, which is then taken off.
        wrapped = pl.struct(value.alias("v")).struct.json_encode()
        return pl.when(value.is_not_null()).then(wrapped.str.slice(5).str.strip_suffix("}"))
    return value.cast(pl.Utf8)


def _decimal_mark(text: pl.Expr, dialect: Dialect) -> pl.Expr:
    return text.str.replace(".", dialect.decimal, literal=True) if dialect.decimal != "." else text
