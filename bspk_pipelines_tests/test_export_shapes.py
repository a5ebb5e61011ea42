"""The shapes a brand's export comes in (issue 17), as the brand's systems write them: here the
encodings any of Python's codecs name, aliases included, and UTF-16 as Excel's "Unicode text"
writes it (tab-delimited, a byte-order mark, CRLF). On SQLite and PostgreSQL; the original is
landed byte for byte and rejects keep their line."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from bspk_pipelines.model.brand import Brand
from bspk_pipelines_tests.builders import brand_harness

PRODUCTS = {"pattern": "ARTIKEL_*.txt", "entity": "products",
            "columns": {"product_ref": {"from": "Artikel"}, "name": {"from": "Bezeichnung"},
                        "published": {"constant": "TRUE"}, "language_code": {"from": "Sprache"}}}


def exports(engine, tmp_path, encoding: str, delimiter: str = "\t"):
    source = {"format": "csv", "drop": "drop/acme/erp", "dialect": {"delimiter": delimiter, "encoding": encoding},
              "files": [PRODUCTS]}
    return brand_harness({"brand": "acme", "company_name": "Acme", "sources": {"erp": source}}, engine, tmp_path)


TEXT = ("Artikel\tBezeichnung\tSprache\r\n"
        "A-1\tMantel aus Wolle\tde\r\n"
        "A-2\tÉcharpe 東京\txx\r\n"  # a language that is no ISO 639-1 code: rejected on line 3
        "A-3\tStiefel\tde\r\n")


@pytest.mark.parametrize("encoding, data", [
    ("utf-16", b"\xff\xfe" + TEXT.encode("utf-16-le")),  # Excel's "Unicode text": a BOM, little-endian
    ("utf-16", TEXT.encode("utf-16-le")),  # no BOM: little-endian, as Windows writes it
    ("utf-16-be", TEXT.encode("utf-16-be")),
    ("utf-16-le", b"\xff\xfe" + TEXT.encode("utf-16-le")),  # the codec keeps the BOM: not part of the header
    ("UTF8", TEXT.encode("utf-8")),
    ("gb18030", TEXT.encode("gb18030")),
], ids=["utf-16-bom", "utf-16-no-bom", "utf-16-be", "utf-16-le-bom", "utf8-alias", "gb18030"])
def test_a_file_in_any_codec_is_read_kept_byte_for_byte_and_rejects_keep_their_line(engine, tmp_path, encoding, data):
    h = exports(engine, tmp_path, encoding)
    name = "ARTIKEL_20260105.txt"
    h.drop(name, data, source="erp")
    record = h.ingest(name, source="erp")
    assert (record["status"], record["inserted"], record["rejected"]) == ("applied", 2, 1)
    assert [(p["product_ref"], p["name"]) for p in h.rows("products", "product_ref")] == [
        ("A-1", "Mantel aus Wolle"), ("A-3", "Stiefel")]
    assert h.rejects(name) == [(3, "Sprache", "xx", "language")]
    landed = h.layout.landed("acme", "erp", name).read_bytes()
    assert hashlib.sha256(landed).hexdigest() == hashlib.sha256(data).hexdigest() == record["sha256"]


def test_windows_1252_is_cp1252_by_its_alias(engine, tmp_path):
    h = exports(engine, tmp_path, "windows-1252", delimiter=";")
    h.drop("ARTIKEL_20260105.txt", "Artikel;Bezeichnung;Sprache\nA-1;Écharpe €;fr\n".encode("cp1252"), source="erp")
    assert h.ingest("ARTIKEL_20260105.txt", source="erp")["inserted"] == 1
    assert [p["name"] for p in h.rows("products")] == ["Écharpe €"]


def test_a_utf16_file_that_does_not_decode_fails_naming_its_line(engine, tmp_path):
    """A lone surrogate on line 3 (0x0A bytes inside characters must not be counted as lines)."""
    h = exports(engine, tmp_path, "utf-16")
    body = "Artikel\tBezeichnung\tSprache\r\n\u0a0aA-1\tMantel\tde\r\n".encode("utf-16-le")
    name = "ARTIKEL_20260105.txt"
    h.drop(name, b"\xff\xfe" + body + b"\x00\xd8" + "A-2\tSchal\tde\r\n".encode("utf-16-le"), source="erp")
    record = h.ingest(name, source="erp")
    assert record["status"] == "failed"
    assert record["error"].startswith(f"{name}: line 3: not valid utf-16 text (byte offset {2 + len(body)}")


@pytest.mark.parametrize("encoding", ["klingon", "base64", "zlib"])
def test_an_encoding_python_does_not_know_as_text_is_a_config_error(encoding):
    source = {"format": "csv", "drop": "drop/acme/erp", "dialect": {"encoding": encoding}, "files": [PRODUCTS]}
    with pytest.raises(ValidationError, match=f"an encoding Python knows, such as utf-8, cp1252 .*; found '{encoding}'"):
        Brand.model_validate({"brand": "acme", "company_name": "Acme", "sources": {"erp": source}})


def test_an_upload_in_utf16_is_checked_as_validation_reads_it(engine, tmp_path):
    """The upload API decodes what it receives with the source's codec, as validation will."""
    from bspk_pipelines.api.imports import Checker
    from bspk_pipelines.ingest.drop import classify

    h = exports(engine, tmp_path, "utf-16")
    data = b"\xff\xfe" + TEXT.encode("utf-16-le")
    for first in (len(data), 1):  # the byte-order mark whole, or split across the first chunks
        checker = Checker(h.brand, classify(h.brand, "erp", "ARTIKEL_20260105.txt"), limit=1 << 20)
        checker.feed(data[:first])
        checker.feed(data[first:], final=True)
        assert checker.header_checked and checker.size == len(data)


def test_a_utf16_row_over_a_mebibyte_of_the_files_bytes_is_rejected_and_the_file_goes_on(engine, tmp_path):
    """The row limit counts the file's bytes: 600,000 characters of UTF-16 are 1.2 MB, over it."""
    from bspk_pipelines.ingest.parse import MAX_ROW_BYTES

    h = exports(engine, tmp_path, "utf-16")
    long = "x" * 600_000
    assert len(long) < MAX_ROW_BYTES < len(long.encode("utf-16-le"))
    text = f"Artikel\tBezeichnung\tSprache\r\nA-1\t{long}\tde\r\nA-2\tSchal\tde\r\n"
    h.drop("ARTIKEL_20260105.txt", b"\xff\xfe" + text.encode("utf-16-le"), source="erp")
    record = h.ingest("ARTIKEL_20260105.txt", source="erp")
    assert (record["inserted"], record["rejected"]) == (1, 1)
    assert [(line, rule) for line, _, _, rule in h.rejects("ARTIKEL_20260105.txt")] == [(2, "length")]


@pytest.mark.parametrize("plain", [True, False], ids=["polars-path", "csv-path"])
def test_null_values_read_as_blank_on_either_reading_path(engine, tmp_path, plain):
    """`NULL`, `-` and `N/A` as the source writes them are blanks: an optional column is cleared, a
    required one rejected; other text (`NULLS`, `n/a`) stays. A quoted field with the delimiter in
    it sends the file down the csv path, which must read them alike."""
    source = {"format": "csv", "drop": "drop/acme/erp", "dialect": {"delimiter": ";", "null_values": ["NULL", "-", "N/A"]},
              "files": [{"pattern": "ARTIKEL_*.csv", "entity": "products", "columns": {
                  "product_ref": {"from": "Artikel"}, "name": {"from": "Bezeichnung"}, "description": {"from": "Text"},
                  "published": {"constant": "TRUE"}}}]}
    h = brand_harness({"brand": "acme", "company_name": "Acme", "sources": {"erp": source}}, engine, tmp_path)
    last = '"Schal; rot"' if not plain else "Schal"
    h.drop("ARTIKEL_20260105.csv", "Artikel;Bezeichnung;Text\nA-1;Mantel;NULL\nA-2;N/A;Warm\nA-3;Stiefel; - \n"
                                   f"A-4;NULLS;n/a\nA-5;{last};-\n", source="erp")
    record = h.ingest("ARTIKEL_20260105.csv", source="erp")
    assert (record["inserted"], record["rejected"]) == (4, 1)
    assert h.rejects("ARTIKEL_20260105.csv") == [(3, "Bezeichnung", "", "required")]
    assert [(p["product_ref"], p["name"], p["description"]) for p in h.rows("products", "product_ref")] == [
        ("A-1", "Mantel", None), ("A-3", "Stiefel", None), ("A-4", "NULLS", "n/a"),
        ("A-5", "Schal; rot" if not plain else "Schal", None)]


def report(engine, tmp_path, skip: int):
    source = {"format": "csv", "drop": "drop/acme/erp", "dialect": {"delimiter": ";", "skip_lines": skip},
              "files": [{"pattern": "ARTIKEL_*.csv", "entity": "products", "columns": {
                  "product_ref": {"from": "Artikel"}, "name": {"from": "Bezeichnung"},
                  "language_code": {"from": "Sprache"}, "published": {"constant": "TRUE"}}}]}
    return brand_harness({"brand": "acme", "company_name": "Acme", "sources": {"erp": source}}, engine, tmp_path)


PREAMBLE = "Artikelstamm Nordhaus GmbH\nExportiert am 05.01.2026 06:00\n\n"


@pytest.mark.parametrize("plain", [True, False], ids=["polars-path", "csv-path"])
def test_lines_before_the_header_are_skipped_and_rows_keep_their_lines_in_the_file(engine, tmp_path, plain):
    h = report(engine, tmp_path, skip=3)
    quoted = '"Schal; rot"' if not plain else "Schal"  # a quoted delimiter takes the csv path
    h.drop("ARTIKEL_20260105.csv", PREAMBLE + f"Artikel;Bezeichnung;Sprache\nA-1;Mantel;de\nA-2;{quoted};xx\n",
           source="erp")
    record = h.ingest("ARTIKEL_20260105.csv", source="erp")
    assert (record["status"], record["rows_read"], record["inserted"], record["rejected"]) == ("applied", 2, 1, 1)
    assert h.rejects("ARTIKEL_20260105.csv") == [(6, "Sprache", "xx", "language")]  # line 6 of the file


@pytest.mark.parametrize("plain", [True, False], ids=["polars-path", "csv-path"])
def test_a_header_that_does_not_fit_after_skipped_lines_names_its_own_line(engine, tmp_path, plain):
    h = report(engine, tmp_path, skip=2)  # one line too few: the blank third line is taken as the header
    h.drop("ARTIKEL_20260105.csv", PREAMBLE + "Artikel;Bezeichnung;Sprache\nA-1;" + ('"a;b"' if not plain else "a")
           + ";de\n", source="erp")
    record = h.ingest("ARTIKEL_20260105.csv", source="erp")
    assert record["status"] == "failed"
    assert record["error"] == "ARTIKEL_20260105.csv: line 3: expected a header, found an empty line"
    h2 = report(engine, tmp_path / "b", skip=1)  # the export date taken as the header
    h2.drop("ARTIKEL_20260106.csv", PREAMBLE + "Artikel;Bezeichnung;Sprache\n", source="erp")
    error = h2.ingest("ARTIKEL_20260106.csv", source="erp")["error"]
    assert error.startswith("ARTIKEL_20260106.csv: line 2: expected a header naming the columns")


@pytest.mark.parametrize("content", ["only a title\n", 'a "quoted" title\n'], ids=["polars-path", "csv-path"])
def test_a_file_that_ends_before_its_header_says_so(engine, tmp_path, content):
    h = report(engine, tmp_path, skip=3)
    h.drop("ARTIKEL_20260105.csv", content, source="erp")
    record = h.ingest("ARTIKEL_20260105.csv", source="erp")
    assert record["error"] == "ARTIKEL_20260105.csv: the file ends before its header (line 4, after skip_lines: 3)"


def test_an_upload_with_lines_before_its_header_is_checked_at_its_header(engine, tmp_path):
    from fastapi import HTTPException

    from bspk_pipelines.api.imports import Checker
    from bspk_pipelines.ingest.drop import classify

    h = report(engine, tmp_path, skip=3)
    delivery = classify(h.brand, "erp", "ARTIKEL_20260105.csv")
    checker = Checker(h.brand, delivery, limit=1 << 20)
    checker.feed((PREAMBLE + "Artikel;Bezeichnung;Sprache\nA-1;Mantel;de\n").encode(), final=True)
    assert checker.header_checked
    checker = Checker(h.brand, delivery, limit=1 << 20)
    with pytest.raises(HTTPException) as e:
        checker.feed((PREAMBLE + "Artikel;Name;Sprache\n").encode(), final=True)
    assert e.value.detail.startswith("ARTIKEL_20260105.csv: line 4: the header does not fit: missing column Bezeichnung")
