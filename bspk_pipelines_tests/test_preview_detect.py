"""`bspk preview --detect`: what an unknown file looks like, and dialect lines that read it.

Every file is written to tmp_path as a brand's system would write it, and looked at through the
CLI's entry point; the suggested dialect is taken back from the printed YAML, validated as the
brand file would validate it, and (for text) its rows compared with the file's.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import polars as pl
import pytest
import yaml

from bspk_pipelines import cli
from bspk_pipelines.cli import detect
from bspk_pipelines.model.mapping import Dialect
from bspk_pipelines_tests.test_deliveries import ERP

PROJECT = Path(__file__).parent.parent


def _preview(capsys, path: Path, *args: str) -> tuple[int, str, str]:
    code = cli.main(["preview", str(path), *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _suggested(out: str) -> dict:
    """The dialect the output suggests, read back from its YAML as a brand file would be, and
    validated as a source's dialect."""
    start = out.index("suggested dialect, to paste under the source:\n") + len("suggested dialect, to paste under the source:\n")
    block = out[start:].split("\n\n")[0]
    settings = yaml.safe_load(textwrap.dedent(block))["dialect"]
    Dialect(**settings)
    return settings


def _seen(out: str, label: str) -> str:
    """The text after a label of what was seen (`  encoding   cp1252 ...`)."""
    return next(line.split(None, 1)[1] for line in out.splitlines() if line.startswith(f"  {label} "))


def _rows_read(found: detect.Detection, column: str, values: list[str]) -> None:
    """The rows the suggestion reads, through the shape's reader."""
    assert found.rows is not None, found.rows_note
    assert found.rows[column].to_list() == values


def test_a_cp1252_semicolon_file_with_a_title_and_decimal_commas(capsys, tmp_path):
    path = tmp_path / "Artikel.csv"
    path.write_bytes("Export Artikel 31.12.2024\r\n"
                     "ART;NAME;PRICE;DATE\r\n"
                     "A-1;Sac été;12,50;31/12/2024\r\n"
                     "A-2;Belt “Noir”;1.250,00;01/11/2024\r\n"
                     "A-3;Hat;3,00;02/11/2024\r\n".encode("cp1252"))
    code, out, err = _preview(capsys, path)
    assert code == 0 and err == ""
    assert _suggested(out) == {"encoding": "cp1252", "delimiter": ";", "skip_lines": 1, "decimal": ",",
                               "thousands": ".", "date_format": "%d/%m/%Y"}
    assert _seen(out, "encoding").startswith("not UTF-8 (line 3: ")
    assert "cp1252 (windows-1252) decodes it" in _seen(out, "encoding")
    assert "'Export Artikel 31.12.2024'" in _seen(out, "before")
    assert _seen(out, "header").startswith("line 2 names the columns: ART, NAME, PRICE, DATE")
    # The rows shown are the file's, read by the suggestion through the real reader.
    found = detect.detect(path)
    assert found.rows.to_dicts() == [
        {"ART": "A-1", "NAME": "Sac été", "PRICE": "12,50", "DATE": "31/12/2024"},
        {"ART": "A-2", "NAME": "Belt “Noir”", "PRICE": "1.250,00", "DATE": "01/11/2024"},
        {"ART": "A-3", "NAME": "Hat", "PRICE": "3,00", "DATE": "02/11/2024"}]
    assert "│ A-2 ┆ Belt “Noir” ┆ 1.250,00 ┆ 01/11/2024 │" in out


def test_excels_unicode_text_is_utf16_with_tabs(capsys, tmp_path):
    path = tmp_path / "export.txt"
    path.write_text("ART\tNAME\tPRICE\nA-1\tBag\t12.5\nA-2\tÉtole\t3\n", encoding="utf-16")
    assert path.read_bytes().startswith(b"\xff\xfe")
    code, out, _ = _preview(capsys, path, "--detect")
    assert code == 0
    assert _suggested(out) == {"encoding": "utf-16", "delimiter": "\t"}
    assert '    delimiter: "\\t"' in out
    assert detect.detect(path).rows["NAME"].to_list() == ["Bag", "Étole"]


def test_a_file_without_a_header_gets_placeholder_columns(capsys, tmp_path):
    path = tmp_path / "stock.csv"
    path.write_text("A-1,Bag,4\nA-2,Belt,0\nA-3,Hat,12\n")
    code, out, _ = _preview(capsys, path)
    assert code == 0
    assert _suggested(out) == {"header": False, "columns": ["column_1", "column_2", "column_3"]}
    assert _seen(out, "header").startswith("none: line 1 is a row ('4' is a number)")
    assert detect.detect(path).rows["column_1"].to_list() == ["A-1", "A-2", "A-3"]


def test_a_header_of_text_over_rows_of_text_is_said_to_be_a_guess(capsys, tmp_path):
    path = tmp_path / "names.csv"
    path.write_text("first,last\nAda,Lovelace\nAlan,Turing\n")
    _, out, _ = _preview(capsys, path)
    assert _suggested(out) == {}
    assert "dialect: {}  # the defaults read it" in out
    assert "so this is a guess: if it is a row, set header: false" in _seen(out, "header")


def test_a_delimiter_of_two_characters(capsys, tmp_path):
    path = tmp_path / "pipes.txt"
    path.write_text("ART||NAME||NOTE\nA-1||Bag||a | b\nA-2||Belt||\n")
    code, out, _ = _preview(capsys, path)
    assert code == 0
    assert _suggested(out) == {"delimiter": "||"}
    assert detect.detect(path).rows.to_dicts() == [{"ART": "A-1", "NAME": "Bag", "NOTE": "a | b"},
                                                   {"ART": "A-2", "NAME": "Belt", "NOTE": None}]


def test_an_eof_marker_is_a_trailer_pattern_and_a_count_line_trailer_lines(capsys, tmp_path):
    marked = tmp_path / "marked.csv"
    marked.write_text("ART,NAME\nA-1,Bag\nA-2,Belt\nEOF\n")
    _, out, _ = _preview(capsys, marked)
    assert _suggested(out) == {"trailer_pattern": "^EOF"}
    assert _seen(out, "trailer") == "'EOF'"
    assert detect.detect(marked).rows["ART"].to_list() == ["A-1", "A-2"]
    counted = tmp_path / "counted.csv"
    counted.write_text("ART;NAME\nA-1;Bag\nA-2;Belt\n2 rows\n\n")
    _, out, _ = _preview(capsys, counted)
    assert _suggested(out) == {"delimiter": ";", "trailer_lines": 1}
    assert detect.detect(counted).rows["ART"].to_list() == ["A-1", "A-2"]


def test_a_fixed_width_file(capsys, tmp_path):
    path = tmp_path / "stock.txt"
    path.write_text("CODE  NAME      QTY   PRICE\n"
                    "A-1   Bag         4   12,50\n"
                    "A-22  Belt      120    3,00\n"
                    "A-3   Hat         0  140,00\n")
    code, out, _ = _preview(capsys, path)
    assert code == 0
    assert _suggested(out) == {"shape": "fixed_width", "skip_lines": 1, "fixed": [
        {"name": "code", "start": 1, "width": 6}, {"name": "name", "start": 7, "width": 10},
        {"name": "qty", "start": 17, "width": 5}, {"name": "price", "start": 22, "width": 6}]}
    assert _seen(out, "shape").startswith("fixed width: lines of 27 characters, 4 columns")
    assert detect.detect(path).rows.to_dicts()[1] == {"code": "A-22", "name": "Belt", "qty": "120", "price": "3,00"}


def test_a_gzip_of_a_csv_is_looked_at_inside(capsys, tmp_path):
    path = tmp_path / "articles.csv.gz"
    path.write_bytes(gzip.compress("ART;PRICE\nA-1;2,5\nA-2;3\n".encode()))
    code, out, _ = _preview(capsys, path)
    assert code == 0
    assert _seen(out, "compressed").startswith("gzip, 24 bytes inside: read through its decompression")
    assert _suggested(out) == {"delimiter": ";", "decimal": ","}
    assert detect.detect(path).rows["PRICE"].to_list() == ["2,5", "3"]


def _write_xlsx(path: Path, sheets: dict[str, list[list]]) -> None:
    """A workbook with the least an .xlsx needs, written by hand (no xlsxwriter in the project's
    dependencies, and polars' write_excel needs it): inline strings, numbers as numbers."""
    def cell(ref: str, value) -> str:
        if isinstance(value, str):
            return f'<c r="{ref}" t="inlineStr"><is><t>{escape(value)}</t></is></c>'
        return f'<c r="{ref}"><v>{value}</v></c>'

    main = "http://schemas.openxmlformats.org"
    rel = f"{main}/officeDocument/2006/relationships"
    numbers = range(1, len(sheets) + 1)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", f'<Types xmlns="{main}/package/2006/content-types">'
                   '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                   '<Default Extension="xml" ContentType="application/xml"/>'
                   '<Override PartName="/xl/workbook.xml" '
                   'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
                   + "".join(f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/'
                             'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>' for i in numbers)
                   + "</Types>")
        z.writestr("_rels/.rels", f'<Relationships xmlns="{main}/package/2006/relationships"><Relationship Id="rId1" '
                                  f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", f'<workbook xmlns="{main}/spreadsheetml/2006/main" xmlns:r="{rel}"><sheets>'
                   + "".join(f'<sheet name="{escape(n)}" sheetId="{i}" r:id="rId{i}"/>' for i, n in zip(numbers, sheets))
                   + "</sheets></workbook>")
        z.writestr("xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{main}/package/2006/relationships">'
                   + "".join(f'<Relationship Id="rId{i}" Type="{rel}/worksheet" Target="worksheets/sheet{i}.xml"/>'
                             for i in numbers) + "</Relationships>")
        for i, rows in zip(numbers, sheets.values()):
            data = "".join(f'<row r="{r}">' + "".join(cell(f"{chr(65 + c)}{r}", v) for c, v in enumerate(row)) + "</row>"
                           for r, row in enumerate(rows, 1))
            z.writestr(f"xl/worksheets/sheet{i}.xml",
                       f'<worksheet xmlns="{main}/spreadsheetml/2006/main"><sheetData>{data}</sheetData></worksheet>')


def test_a_workbook_names_its_sheets(capsys, tmp_path):
    path = tmp_path / "export.xlsx"
    _write_xlsx(path, {"Articles": [["ART", "PRICE"], ["A-1", 12.5], ["A-2", 3]], "Read me": [["notes"]]})
    code, out, _ = _preview(capsys, path)
    assert code == 0
    assert _suggested(out) == {"shape": "excel"}
    assert _seen(out, "shape") == "Excel workbook (a zip holding xl/workbook.xml)"
    assert _seen(out, "sheets") == "Articles, Read me (the first, Articles, is read; `sheet:` names another)"
    assert detect.detect(path).rows["ART"].to_list() == ["A-1", "A-2"]


def test_a_json_document_suggests_the_path_to_its_records(capsys, tmp_path):
    path = tmp_path / "products.json"
    path.write_text(json.dumps({"meta": {"links": [{"href": "/next"}]},
                                "data": {"items": [{"sku": "A-1", "price": 12.5}, {"sku": "A-2", "price": 3}]}}, indent=2))
    code, out, _ = _preview(capsys, path)
    assert code == 0
    assert _suggested(out) == {"shape": "json", "records": "data.items"}
    assert "meta.links: 1 object" in out and "data.items: 2 objects" in out
    assert _seen(out, "keys") == "sku, price"
    _rows_read(detect.detect(path), "sku", ["A-1", "A-2"])


def test_a_json_document_cut_short_by_the_sample_still_shows_its_records(tmp_path):
    """Past the first HEAD_BYTES the document is not read: its paths are found in what was."""
    text = json.dumps({"export": {"rows": [{"id": i, "name": "x" * 50} for i in range(120_000)]}})
    path = tmp_path / "big.json"
    path.write_text(text)
    assert len(text) > detect.HEAD_BYTES
    found = detect.detect(path, rows=2)
    assert found.dialect == {"shape": "json", "records": "export.rows"}
    assert "export.rows: 1,000+ objects" in dict(found.seen)["records"]


def test_json_lines(capsys, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"sku": "A-1", "qty": 1}\n{"sku": "A-2", "qty": 2, "store": "S1"}\n')
    code, out, _ = _preview(capsys, path)
    assert code == 0
    assert _suggested(out) == {"shape": "jsonl"}
    assert _seen(out, "keys") == "sku, qty, store"


def test_a_parquet_file_shows_its_columns_and_types(capsys, tmp_path):
    path = tmp_path / "sales.parquet"
    pl.DataFrame({"sku": ["A-1", "A-2"], "qty": [1, 2], "amount": [1.5, 2.0]}).write_parquet(path)
    code, out, _ = _preview(capsys, path)
    assert code == 0
    assert _suggested(out) == {"shape": "parquet"}
    assert "  columns  sku: String\n           qty: Int64\n           amount: Float64\n" in out
    _rows_read(detect.detect(path), "qty", ["1", "2"])


def test_dates_without_a_day_over_12_are_ambiguous_and_not_suggested(capsys, tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("ORDER,DAY,AT\nO-1,01/02/2024,2024-02-01 10:00:00\nO-2,03/04/2024,2024-04-03 11:30:00\n")
    _, out, _ = _preview(capsys, path)
    assert _suggested(out) == {"datetime_format": "%Y-%m-%d %H:%M:%S"}
    assert _seen(out, "dates") == ("01/02/2024: ambiguous (no day over 12): %d/%m/%Y or %m/%d/%Y; "
                                   "set date_format yourself")


@pytest.mark.parametrize("content, says", [
    (b"", "the file is empty"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00", "not text: it holds NUL bytes and starts b'\\x7fELF"),
    (gzip.compress(b"ART\nA-1\n", mtime=0)[:12], "not a whole gzip file"),
])
def test_a_file_that_cannot_be_looked_at_is_one_line_and_exit_1(capsys, tmp_path, content, says):
    path = tmp_path / "odd.bin"
    path.write_bytes(content)
    code, out, err = _preview(capsys, path)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"odd.bin: {says}")


def test_a_zip_archive_lists_its_members_and_suggests_nothing(capsys, tmp_path):
    path = tmp_path / "exports.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("clients.csv", "a,b\n1,2\n")
        z.writestr("stock.csv", "x\n")
    code, out, _ = _preview(capsys, path)
    assert code == 1
    assert "clients.csv (8 bytes)" in out and "stock.csv (2 bytes)" in out
    assert "suggested dialect" not in out


def test_without_any_brand_config_through_the_installed_command(tmp_path):
    """A new brand's first file: no mappings folder, no warehouse, no DAGSTER_HOME needed."""
    path = tmp_path / "first.csv"
    path.write_text("SKU;QTY\nA-1;3\n")
    env = os.environ | {"BSPK_MAPPINGS_DIR": str(tmp_path / "no-such-folder"), "PYTHONPATH": str(PROJECT)}
    shown = subprocess.run([sys.executable, "-m", "bspk_pipelines.cli", "preview", str(path)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    assert _suggested(shown.stdout) == {"delimiter": ";"}
    assert not (tmp_path / "data").exists() and not (tmp_path / ".dagster_home").exists()


def test_a_file_that_fits_none_of_the_brands_files_is_detected_too(capsys, monkeypatch, tmp_path):
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "acme.yaml").write_text(yaml.safe_dump(ERP))
    monkeypatch.setenv("BSPK_MAPPINGS_DIR", str(tmp_path / "mappings"))
    monkeypatch.setenv("BSPK_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "PRICES_2026.csv"
    path.write_text("ART|PRICE\nA-1|2.5\n")
    code, out, err = _preview(capsys, path, "--brand", "acme")
    assert code == 1
    assert err.startswith("PRICES_2026.csv: ") and err.count("\n") == 1
    assert _suggested(out) == {"delimiter": "|"}
    # Asked for, the detection replaces the dry run even for a file the brand's patterns fit.
    fits = tmp_path / "ARTICLES_20260101.csv"
    fits.write_text("ART;NAME\nA-1;Bag\n")
    code, out, err = _preview(capsys, fits, "--brand", "acme", "--detect")
    assert code == 0 and err == ""
    assert out.startswith("ARTICLES_20260101.csv: what it looks like") and "a dry run" not in out


def test_json_lines_with_a_bad_line_are_still_json_lines_and_nested_keys_are_dotted(tmp_path):
    from bspk_pipelines.cli.detect import detect

    path = tmp_path / "clients.jsonl"
    path.write_text('{"id": "C1", "address": {"city": "Paris"}}\nnot json\n{"id": "C2", "address": {"city": "Lyon"}}\n'
                    '{"id": "C3"}\n')
    found = detect(path)
    assert found.dialect == {"shape": "jsonl"}
    assert found.columns == ["id", "address.city"]
    assert any("1 of the first 4 lines are not JSON objects" in text for _, text in found.seen)
