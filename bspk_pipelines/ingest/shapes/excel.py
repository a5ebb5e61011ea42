"""Reading one sheet of an Excel workbook (.xlsx, .xlsm, .xls; whatever calamine, through fastexcel,
reads) into rows of text that remember their row, or failing the whole file.

A cell is read as the brand sees it, whatever its column holds besides: a text cell as its text
(`31/02/2024`, `soon`, `1001.0` typed as text), a number, a date or a boolean as `typed.as_text`
writes that type in the source's dialect. Letting calamine infer one type for each column would
turn a column of dates with one text cell in it into text, the dates in calamine's own rendering,
which the dialect's date format does not read; so every cell is classified on its own, from four
readings of the sheet, each forcing one type on every cell (see `_as_seen`). A row's `_line` is its row number
as Excel shows it, counted from the top of the sheet, whatever rows or columns are empty above or
before the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, time
from pathlib import Path

import fastexcel
import polars as pl

from bspk_pipelines.ingest.parse import FileFailure, ParsedBatch, PassedOver, SetAside, check_header
from bspk_pipelines.ingest.shapes import typed
from bspk_pipelines.model.entities import LINE
from bspk_pipelines.model.mapping import Dialect

# The text fastexcel gives a boolean cell read as text (a text cell spelling it has no boolean reading).
_BOOLEAN_TEXT = ("true", "false")
# Where calamine puts a time of day without a date (serial numbers below 1, Excel's "day 0").
_DAY_ZERO = date(1899, 12, 31)


def read_batches(
    path: Path,
    dialect: Dialect,
    expected: list[str],
    optional: list[str] = (),
    exact: bool = False,
    batch_rows: int = 100_000,
    set_aside: SetAside | None = None,
) -> Iterator[ParsedBatch]:
    """The rows of the dialect's sheet (the first if it names none) in batches (see
    `parse.read_batches`, whose arguments every shape takes). The header is on row
    `skip_lines + 1`; rows wholly blank are skipped, as blank lines of a CSV file are. calamine
    reads a sheet whole (at most Excel's 1,048,576 rows); the rows are handed on in batches."""
    workbook = _open(path)
    sheet = _sheet(path.name, workbook, dialect)
    where = f"{path.name}: sheet {sheet!r}"
    at = dialect.skip_lines + 1  # the header's row
    try:
        cells = _as_seen(workbook, sheet, dialect)
    except fastexcel.FastExcelError as e:
        raise FileFailure(f"{where}: not readable ({_first_line(e)}): is the workbook damaged? "
                          "Open it in Excel and save it again") from None
    if cells.height < at:
        raise FileFailure(f"{where}: the sheet ends before its header (row {at}, after skip_lines: "
                          f"{dialect.skip_lines})")
    header_cells = [(name, (text or "").strip()) for name, text in cells.row(at - 1, named=True).items()]
    if not any(text for _, text in header_cells):
        raise FileFailure(f"{where}: row {at}: expected a header, found an empty row")
    data = cells.slice(at).with_row_index(LINE, offset=at + 1).with_columns(pl.col(LINE).cast(pl.Int64))
    data = data.filter(~pl.all_horizontal(_blank(pl.col(name)) for name, _ in header_cells))
    # The used range can be wider than the table (a report's title in a column left of it): a
    # column with no header and nothing below it is no column of the file.
    columns = [(name, text) for name, text in header_cells if text or data[name].is_not_null().any()]
    header = [text for _, text in columns]
    check_header(where, header, expected, list(optional), exact, line=at)
    rows = typed.as_text(data.select(*(pl.col(name).alias(text) for name, text in columns), LINE), dialect,
                         keep=(LINE,))
    # The rows above the header (a report's title, its date), as their cells read, counted and shown.
    passed_over = [PassedOver(n, " | ".join(v for v in row if v)[:200], "skip_lines")
                   for n, row in enumerate(cells.slice(0, at - 1).iter_rows(), start=1)]
    for i, part in enumerate(rows.iter_slices(batch_rows) if not rows.is_empty() else [rows]):
        yield _batch(header, part, set_aside, passed_over if i == 0 else [], sheet)


def _open(path: Path) -> fastexcel.ExcelReader:
    """The workbook, recognised by its content (a gzip delivery's copy keeps the `.gz` name)."""
    try:
        return fastexcel.read_excel(path.read_bytes())
    except fastexcel.FastExcelError as e:
        raise FileFailure(f"{path.name}: not readable as an Excel workbook ({_first_line(e)}): is it an .xlsx or "
                          ".xls workbook? A CSV or text export is read with the source's dialect shape: csv") from None


def _sheet(name: str, workbook: fastexcel.ExcelReader, dialect: Dialect) -> str:
    """The sheet the dialect names, or the workbook's first."""
    sheets = workbook.sheet_names
    if dialect.sheet is None:
        if not sheets:
            raise FileFailure(f"{name}: the workbook has no sheet")
        return sheets[0]
    if dialect.sheet not in sheets:
        raise FileFailure(f"{name}: no sheet {dialect.sheet!r} in the workbook; its sheets are "
                          f"{', '.join(repr(s) for s in sheets)}")
    return dialect.sheet


def _first_line(error: Exception) -> str:
    """fastexcel's message without its context lines (which name a path or bytes, not the file)."""
    return str(error).splitlines()[0].removeprefix("calamine error: ")


def _as_seen(workbook: fastexcel.ExcelReader, sheet: str, dialect: Dialect) -> pl.DataFrame:
    """Every cell of the sheet as text (null where empty), row i of the frame being row i + 1.

    Each reading forces one type on every cell, converting what it can and leaving the rest
    null: as text every cell has its text (a number to nine decimals, a date as calamine writes
    it); as a boolean only boolean and number cells have a value (text never converts); as a
    float text that spells a number converts too, but a date never does; as a datetime numbers
    convert (as serial days), text never does. So a number cell is one with a boolean reading
    that is no boolean, a boolean cell one whose boolean reading is its text, a date cell one with
    a datetime reading but no float reading, and any other (text) keeps its text. A cell in error
    (#DIV/0!) reads as empty.
    calamine parses the sheet again for each reading: four times the time of one, the price of
    every cell read right (a sheet tops out at Excel's row limit; bulk exports come as CSV).
    """
    def reading(dtype: str, suffix: str = "") -> pl.DataFrame:
        # No header row and no rows skipped: fastexcel then starts at the sheet's first row, empty or not.
        frame = workbook.load_sheet(sheet, header_row=None, skip_rows=0, dtypes=dtype).to_polars()
        return frame.rename(lambda c: c + suffix)

    text = reading("string")
    truth, number, moment = (reading(dtype, f":{dtype}") for dtype in ("boolean", "float", "datetime"))
    seen = []
    for c in text.columns:
        cell = pl.col(c)
        is_number = pl.col(f"{c}:boolean").is_not_null() & ~cell.is_in(_BOOLEAN_TEXT)
        is_moment = pl.col(f"{c}:float").is_null() & pl.col(f"{c}:datetime").is_not_null()
        is_boolean = pl.col(f"{c}:boolean").is_not_null() & cell.is_in(_BOOLEAN_TEXT)
        seen.append(pl.when(is_number).then(typed.column_text(pl.col(f"{c}:float"), pl.Float64, dialect))
                    .when(is_boolean).then(typed.column_text(pl.col(f"{c}:boolean"), pl.Boolean, dialect))
                    .when(is_moment).then(_moment_text(pl.col(f"{c}:datetime"), dialect))
                    .otherwise(cell).alias(c))
    return pl.concat([text, truth, number, moment], how="horizontal").select(seen)


def _moment_text(moment: pl.Expr, dialect: Dialect) -> pl.Expr:
    """A date cell's text: Excel keeps dates, times and datetimes all as serial days, so one at
    midnight is a date, one on day 0 a time of day, any other a datetime. Rounded to the second,
    as Excel shows it (a serial's float can fall a millisecond short)."""
    moment = moment.dt.round("1s")
    return (pl.when(moment.dt.date() == _DAY_ZERO).then(typed.column_text(moment.dt.time(), pl.Time, dialect))
            .when(moment.dt.time() == time(0)).then(typed.column_text(moment.dt.date(), pl.Date, dialect))
            .otherwise(typed.column_text(moment, pl.Datetime("ms"), dialect)))


def _blank(cell: pl.Expr) -> pl.Expr:
    """An empty cell, or one of blanks only: what shows as nothing."""
    return cell.is_null() | (cell.str.strip_chars() == "")


def _batch(header: list[str], rows: pl.DataFrame, set_aside: SetAside | None,
           passed_over: list[PassedOver], sheet: str) -> ParsedBatch:
    kept = set_aside(header, rows) if set_aside else rows
    return ParsedBatch(kept, [], rows.height - kept.height, passed_over, sheet)
