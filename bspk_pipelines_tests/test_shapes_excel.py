"""Excel workbooks as a brand's export writes them (issue 17), through the pipeline on SQLite and
PostgreSQL: the sheet named or the first, a header row below a report's title, cells read as the
brand sees them (dates in the dialect's format, whole numbers without `.0`, no float noise), a
text cell in a date column rejected on its own row, rows numbered as Excel shows them; a missing
sheet or a file that is no workbook fails naming why. The landed copy is the file byte for byte.

The workbooks are written with openpyxl, which writes .xlsx only: no well-kept library writes
.xls (xlwt stopped in 2017), so that format, which calamine reads alike, has no test here."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
from decimal import Decimal

import openpyxl
import pytest
import sqlalchemy as sa

from bspk_pipelines.ingest import read
from bspk_pipelines.ingest.parse import FileFailure
from bspk_pipelines.model.entities import LINE
from bspk_pipelines.model.mapping import Dialect
from bspk_pipelines_tests.builders import brand_harness

PRODUCTS = {"pattern": "ARTIKEL_*.xlsx", "entity": "products",
            "columns": {"product_ref": {"from": "Artikel"}, "name": {"from": "Bezeichnung"},
                        "published": {"constant": "TRUE"}, "language_code": {"from": "Sprache"}}}
PRICES = {"pattern": "PREISE_*.xlsx", "entity": "product_prices",
          "columns": {"product_ref": {"from": "Artikel"}, "sku": {"constant": "*"}, "price": {"from": "Preis"},
                      "currency_code": {"constant": "EUR"}, "starting_on": {"from": "Gültig ab"}}}
HEADER = ["Artikel", "Bezeichnung", "Sprache"]


def workbook(*sheets: tuple[str, str, list[list]]) -> bytes:
    """An .xlsx of the given sheets, each (title, the cell its first row starts at, rows); None is
    an empty cell. Dates and numbers are written as such, text as text."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, corner, rows in sheets:
        sheet = book.create_sheet(title)
        top = sheet[corner]
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                if value is not None:
                    sheet.cell(top.row + i, top.column + j, value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def exports(engine, tmp_path, **dialect):
    source = {"format": "csv", "drop": "drop/acme/erp", "dialect": {"shape": "excel", **dialect},
              "files": [PRODUCTS, PRICES]}
    return brand_harness({"brand": "acme", "company_name": "Acme", "sources": {"erp": source}}, engine, tmp_path)


def test_a_named_sheet_is_read_below_its_header_row_and_rows_keep_the_number_excel_shows(engine, tmp_path):
    """The data starts at B3 (rows 1-2 and column A empty, which calamine leaves out of the sheet's
    used range): the reject is on row 5 as Excel numbers it, past a blank row 6 comes row 7."""
    h = exports(engine, tmp_path, sheet="Articles", skip_lines=2)
    name = "ARTIKEL_20260105.xlsx"
    h.drop(name, workbook(("Cover", "A1", [["Artikelstamm Nordhaus GmbH"]]),
                          ("Articles", "B3", [HEADER, ["A-1", "Mantel", "de"], ["A-2", "Schal", "xx"], [],
                                              ["A-3", "Stiefel", "de"]])), source="erp")
    record = h.ingest(name, source="erp")
    assert (record["status"], record["inserted"], record["rejected"]) == ("applied", 2, 1)
    assert h.rejects(name) == [(5, "Sprache", "xx", "language")]
    assert [(p["product_ref"], p["name"]) for p in h.rows("products", "product_ref")] == [
        ("A-1", "Mantel"), ("A-3", "Stiefel")]


def test_the_first_sheet_is_read_when_the_dialect_names_none(engine, tmp_path):
    h = exports(engine, tmp_path)
    name = "ARTIKEL_20260105.xlsx"
    h.drop(name, workbook(("Export", "A1", [HEADER, ["A-1", "Mantel", "de"]]),
                          ("Notes", "A1", [HEADER, ["B-9", "Not a product", "de"]])), source="erp")
    assert h.ingest(name, source="erp")["inserted"] == 1
    assert [p["product_ref"] for p in h.rows("products")] == ["A-1"]


def test_cells_read_as_the_brand_sees_them_and_a_text_in_a_date_column_is_rejected_on_its_row(engine, tmp_path):
    """A German export (decimal comma, thousands dot, dates as 05.01.2026): article numbers stored
    as numbers (1001, not 1001.0), a price summed in floating point (0.1 + 0.7 is
    0.7999999999999999, shown as 0.8), one of ten decimals, one over a thousand (which must not
    lose its decimal mark to the thousands separator), dates and a datetime at midnight as dates;
    in the same date column, text that is no date (an impossible day, a word) reaches the checks
    as that text."""
    h = exports(engine, tmp_path, date_format="%d.%m.%Y", decimal=",", thousands=".")
    refs = [1001, 1002, 1003, 1004, 1005]
    h.drop("ARTIKEL_20260105.xlsx", workbook(("Artikel", "A1", [HEADER] + [[r, "Mantel", "de"] for r in refs])),
           source="erp")
    assert h.ingest("ARTIKEL_20260105.xlsx", source="erp")["inserted"] == 5
    name = "PREISE_20260105.xlsx"
    h.drop(name, workbook(("Preise", "A1", [["Artikel", "Preis", "Gültig ab"],
                                            [1001, 0.1 + 0.7, datetime.date(2026, 1, 5)],
                                            [1002, 1234.5, datetime.datetime(2026, 2, 1)],
                                            [1003, 0.1000000001, datetime.date(2026, 3, 1)],
                                            [1004, 12, "31/02/2026"],
                                            [1005, 12, "soon"]])), source="erp")
    record = h.ingest(name, source="erp")
    assert (record["status"], record["inserted"], record["rejected"]) == ("applied", 3, 2)
    assert h.rejects(name) == [(5, "Gültig ab", "31/02/2026", "date"), (6, "Gültig ab", "soon", "date")]
    with h.engine.connect() as conn:  # each names the sheet, beside its row and column
        messages = conn.execute(sa.text("select message from rejects where file = :f order by line"), {"f": name}).scalars()
        assert [m.split(": ")[0] for m in messages] == ["sheet 'Preise', row 5", "sheet 'Preise', row 6"]
    assert [(p["product_ref"], Decimal(str(p["price"])), str(p["starting_on"]))
            for p in h.rows("product_prices", "product_ref")] == [
        ("1001", Decimal("0.8"), "2026-01-05"), ("1002", Decimal("1234.5"), "2026-02-01"),
        ("1003", Decimal("0.1000000001"), "2026-03-01")]


def test_a_header_that_does_not_fit_fails_naming_the_file_the_sheet_and_the_row(engine, tmp_path):
    h = exports(engine, tmp_path, sheet="Articles", skip_lines=1)
    name = "ARTIKEL_20260105.xlsx"
    h.drop(name, workbook(("Articles", "A1", [["Artikelstamm"], ["Artikel", "Bezeichnung"], ["A-1", "Mantel"]])),
           source="erp")
    record = h.ingest(name, source="erp")
    assert record["status"] == "failed"
    assert record["error"] == f"{name}: sheet 'Articles': line 2: the header does not fit: missing column Sprache"


def test_a_sheet_the_workbook_does_not_have_fails_naming_the_sheets_it_has(engine, tmp_path):
    h = exports(engine, tmp_path, sheet="Articles")
    name = "ARTIKEL_20260105.xlsx"
    h.drop(name, workbook(("Cover", "A1", [["Export"]]), ("Artikel", "A1", [HEADER])), source="erp")
    record = h.ingest(name, source="erp")
    assert record["status"] == "failed"
    assert record["error"] == f"{name}: no sheet 'Articles' in the workbook; its sheets are 'Cover', 'Artikel'"


@pytest.mark.parametrize("data", [
    "Artikel;Bezeichnung;Sprache\nA-1;Mantel;de\n".encode(),  # a CSV export named .xlsx
    workbook(("Artikel", "A1", [HEADER, ["A-1", "Mantel", "de"]]))[:2000],  # a workbook cut short
], ids=["csv-text", "truncated"])
def test_a_file_that_is_no_workbook_fails_with_one_line_saying_so(engine, tmp_path, data):
    h = exports(engine, tmp_path)
    name = "ARTIKEL_20260105.xlsx"
    h.drop(name, data, source="erp")
    record = h.ingest(name, source="erp")
    assert record["status"] == "failed"
    assert record["error"].startswith(f"{name}: not readable as an Excel workbook (")
    assert "is it an .xlsx or .xls workbook?" in record["error"] and "\n" not in record["error"]


def test_the_landed_copy_is_the_workbook_byte_for_byte_and_the_same_rows_again_change_nothing(engine, tmp_path):
    h = exports(engine, tmp_path)
    rows = [HEADER, ["A-1", "Mantel", "de"], ["A-2", "Schal", "de"]]
    data = workbook(("Artikel", "A1", rows))
    h.drop("ARTIKEL_20260105.xlsx", data, source="erp")
    record = h.ingest("ARTIKEL_20260105.xlsx", source="erp")
    landed = h.layout.landed("acme", "erp", "ARTIKEL_20260105.xlsx").read_bytes()
    assert landed == data and hashlib.sha256(data).hexdigest() == record["sha256"]
    before = h.rows("products", "product_ref")
    again = h.ingest("ARTIKEL_20260105.xlsx", source="erp")
    assert (again["status"], again["inserted"]) == ("applied", 2) and h.rows("products", "product_ref") == before
    # The same rows in the next delivery, in other bytes (the same bytes are a duplicate, not read again).
    h.drop("ARTIKEL_20260106.xlsx", workbook(("Export", "A1", rows)), source="erp")
    later = h.ingest("ARTIKEL_20260106.xlsx", source="erp")
    assert (later["inserted"], later["updated"], later["unchanged"]) == (0, 0, 2)
    assert h.rows("products", "product_ref") == before


def test_rows_come_in_batches_with_their_rows_and_a_sheet_of_only_a_header_gives_one_empty_batch(tmp_path):
    """Straight through the reader: batches of `batch_rows`, what `set_aside` keeps (it sees every
    column and `_line`), and a gzip copy of the workbook read as the workbook it holds."""
    path = tmp_path / "ARTIKEL.xlsx.gz"
    path.write_bytes(gzip.compress(workbook(("Artikel", "A2", [HEADER] + [[f"A-{i}", "Mantel", "de"]
                                                                          for i in range(1, 6)]))))
    dialect = Dialect(shape="excel", skip_lines=1)
    seen = []

    def set_aside(header, rows):
        seen.append((header, rows.columns))
        return rows.filter(rows["Artikel"] != "A-2")

    batches = list(read.read_batches(path, dialect, HEADER, batch_rows=2, set_aside=set_aside))
    assert [b.rows[LINE].to_list() for b in batches] == [[3], [5, 6], [7]]
    assert [b.set_aside for b in batches] == [1, 0, 0]
    assert seen[0] == (HEADER, [*HEADER, LINE])
    empty = tmp_path / "EMPTY.xlsx"
    empty.write_bytes(workbook(("Artikel", "A1", [HEADER])))
    [batch] = read.read_batches(empty, Dialect(shape="excel"), HEADER)
    assert batch.rows.columns == [*HEADER, LINE] and batch.rows.is_empty()


def test_a_sheet_that_ends_before_its_header_row_fails_naming_the_row(tmp_path):
    path = tmp_path / "ARTIKEL.xlsx"
    path.write_bytes(workbook(("Artikel", "A1", [["Artikelstamm"]])))
    with pytest.raises(FileFailure, match=r"^ARTIKEL.xlsx: sheet 'Artikel': the sheet ends before its header \(row 3, "):
        list(read.read_batches(path, Dialect(shape="excel", skip_lines=2), HEADER))


def test_rows_above_the_header_are_passed_over_with_their_cells(tmp_path):
    path = tmp_path / "ARTIKEL.xlsx"
    path.write_bytes(workbook(("Artikel", "A1", [["Artikelstamm", None, "05.01.2026"], [], HEADER, ["A-1", "Mantel", "de"]])))
    [batch] = read.read_batches(path, Dialect(shape="excel", skip_lines=2), HEADER)
    assert [(p.line, p.text, p.why) for p in batch.passed_over] == [
        (1, "Artikelstamm | 05.01.2026", "skip_lines"), (2, "", "skip_lines")]
    assert batch.rows[LINE].to_list() == [4]


def test_a_boolean_cell_reads_as_excel_shows_it_and_text_spelling_one_stays_text(tmp_path):
    path = tmp_path / "ARTIKEL.xlsx"
    path.write_bytes(workbook(("Artikel", "A1", [[*HEADER, "Aktiv"], ["A-1", "Mantel", "de", True],
                                                 ["A-2", "Schal", "de", False], ["A-3", "Hut", "de", "true"]])))
    [batch] = read.read_batches(path, Dialect(shape="excel"), HEADER, ["Aktiv"])
    assert batch.rows["Aktiv"].to_list() == ["TRUE", "FALSE", "true"]
