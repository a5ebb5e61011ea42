"""The shapes a brand's export comes in (issue 17), as the brand's systems write them: any
encoding Python's codecs name, aliases included, and UTF-16 as Excel's "Unicode text" writes it;
null values; lines before the header and trailers; files without a header; delimiters of several
characters; fixed width; gzip files and zip archives. On SQLite and PostgreSQL; the original is
landed byte for byte and rejects keep their line. (Excel, JSON and Parquet: test_shapes_*.py.)"""

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


def erp(engine, tmp_path, dialect: dict, pattern: str = "ARTIKEL_*.csv"):
    """A brand whose ERP sends products in the given dialect (columns Artikel, Bezeichnung, Sprache)."""
    source = {"format": "csv", "drop": "drop/acme/erp", "dialect": dialect, "files": [PRODUCTS | {"pattern": pattern}]}
    return brand_harness({"brand": "acme", "company_name": "Acme", "sources": {"erp": source}}, engine, tmp_path)


COLUMNS = ["Artikel", "Bezeichnung", "Sprache"]


@pytest.mark.parametrize("plain", [True, False], ids=["polars-path", "csv-path"])
def test_a_file_without_a_header_is_read_by_the_dialects_columns(engine, tmp_path, plain):
    h = erp(engine, tmp_path, {"delimiter": ";", "header": False, "columns": ["Artikel", "Lager", "Bezeichnung", "Sprache"]})
    second = '"Schal; rot"' if not plain else "Schal"
    h.drop("ARTIKEL_1.csv", f"\ufeffA-1;L1;Mantel;de\nA-2;L1;{second};xx\nA-3;L2;Hut\n", source="erp")
    record = h.ingest("ARTIKEL_1.csv", source="erp")
    assert (record["status"], record["rows_read"], record["inserted"]) == ("applied", 3, 1)
    assert [p["product_ref"] for p in h.rows("products")] == ["A-1"]  # the BOM is no part of the first value
    assert h.rejects("ARTIKEL_1.csv") == [(2, "Sprache", "xx", "language"), (3, "*", "A-3;L2;Hut", "field_count")]


def test_a_header_less_dialect_lacking_a_mapped_column_fails_naming_it(engine, tmp_path):
    h = erp(engine, tmp_path, {"header": False, "columns": ["Artikel", "Name", "Sprache"]})
    h.drop("ARTIKEL_1.csv", "A-1,Mantel,de\n", source="erp")
    error = h.ingest("ARTIKEL_1.csv", source="erp")["error"]
    assert error == ("ARTIKEL_1.csv: the mapping reads column Bezeichnung, which the dialect's columns (Artikel, Name, "
                     "Sprache) do not name: add it to `columns` where the file has it, or read another column")


@pytest.mark.parametrize("plain", [True, False], ids=["polars-path", "csv-path"])
@pytest.mark.parametrize("trailer", [{"trailer_lines": 2}, {"trailer_pattern": "^(TOTAL|EOF)"}], ids=["count", "pattern"])
def test_trailer_lines_are_passed_over_counted_and_shown(engine, tmp_path, plain, trailer):
    from bspk_pipelines.ingest.check import validate_file
    from bspk_pipelines.ingest.drop import classify
    from bspk_pipelines.ingest.land import land

    h = erp(engine, tmp_path, {"skip_lines": 1, **trailer})
    second = '"Schal, rot"' if not plain else "Schal"
    h.drop("ARTIKEL_1.csv", f"Artikelstamm\nArtikel,Bezeichnung,Sprache\nA-1,Mantel,de\nA-2,{second},de\n\n"
                            "TOTAL,2\nEOF\n\n", source="erp")
    land(h.engine, h.layout, h.brand, classify(h.brand, "erp", "ARTIKEL_1.csv"))
    # What validation gives is what the validated asset's metadata shows.
    checked = validate_file(h.engine, h.layout, h.brand, "erp", "products", "ARTIKEL_1.csv")
    assert (checked.rows, checked.rejected) == (2, 0)
    why = next(iter(trailer))
    assert [(p.line, p.text, p.why) for p in checked.passed_over] == [
        (1, "Artikelstamm", "skip_lines"), (6, "TOTAL,2", why), (7, "EOF", why)]


@pytest.mark.parametrize("plain", [True, False], ids=["polars-path", "csv-path"])
def test_a_file_without_its_trailer_fails_as_cut_short(engine, tmp_path, plain):
    h = erp(engine, tmp_path, {"trailer_pattern": "^EOF$"})
    last = '"Schal, rot"' if not plain else "Schal"
    h.drop("ARTIKEL_1.csv", f"Artikel,Bezeichnung,Sprache\nA-1,Mantel,de\nA-2,{last},de\n", source="erp")
    record = h.ingest("ARTIKEL_1.csv", source="erp")
    assert (record["status"], h.rows("products")) == ("failed", [])
    assert record["error"] == (f"ARTIKEL_1.csv: the file does not end with a trailer matching '^EOF$' (trailer_pattern); "
                               f"its last line, line 3, is 'A-2,{last},de': is it cut short? If the source writes no "
                               "trailer, drop the setting")


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_a_delimiter_of_several_characters_splits_every_line(engine, tmp_path, encoding):
    h = erp(engine, tmp_path, {"delimiter": "||", "encoding": encoding})
    h.drop("ARTIKEL_1.csv", 'Artikel||Bezeichnung||Sprache\nA-1||Mantel "Ü"||de\nA-2||a|b||de\nA-3||x\n'.encode(encoding),
           source="erp")
    record = h.ingest("ARTIKEL_1.csv", source="erp")
    assert (record["inserted"], record["rejected"]) == (2, 1)
    assert [p["name"] for p in h.rows("products", "product_ref")] == ['Mantel "Ü"', "a|b"]  # quotes are text
    assert h.rejects("ARTIKEL_1.csv") == [(4, "*", "A-3||x", "field_count")]


FIXED = {"shape": "fixed_width", "encoding": "cp1252", "skip_lines": 1, "trailer_pattern": "^99",
         "fixed": [{"name": "Artikel", "start": 1, "width": 6}, {"name": "Bezeichnung", "start": 7, "end": 18},
                   {"name": "Sprache", "start": 19, "width": 2}]}


def test_a_fixed_width_file_is_sliced_by_its_columns_and_a_ragged_line_is_rejected(engine, tmp_path):
    h = erp(engine, tmp_path, FIXED, pattern="ARTIKEL_*.dat")
    data = ("HDR ARTIKEL 20260105  \r\n"
            "A-1   Écharpe     fr\r\n"
            "A-2   Mantel aus Wde\r\n"
            "A-3  Hut         de\r\n"  # shifted: one character short
            "A-4               de\r\n"  # a blank name: required
            "99 TRAILER 000004\r\n").encode("cp1252")
    h.drop("ARTIKEL_1.dat", data, source="erp")
    record = h.ingest("ARTIKEL_1.dat", source="erp")
    assert (record["status"], record["inserted"], record["rejected"]) == ("applied", 2, 2)
    assert [(p["product_ref"], p["name"]) for p in h.rows("products", "product_ref")] == [
        ("A-1", "Écharpe"), ("A-2", "Mantel aus W")]
    assert h.rejects("ARTIKEL_1.dat") == [(4, "*", "A-3  Hut         de", "width"), (5, "Bezeichnung", "", "required")]
    assert h.layout.landed("acme", "erp", "ARTIKEL_1.dat").read_bytes() == data
    again = h.ingest("ARTIKEL_1.dat", source="erp")
    assert again["inserted"] == 2 and len(h.rows("products")) == 2  # a rerun changes nothing


def test_fixed_columns_that_overlap_are_a_config_error():
    bad = FIXED | {"fixed": [{"name": "Artikel", "start": 1, "width": 6}, {"name": "Bezeichnung", "start": 6, "end": 18}]}
    with pytest.raises(ValidationError, match=r"fixed columns 'Artikel' \(1-6\) and 'Bezeichnung' \(6-18\) overlap"):
        Brand.model_validate({"brand": "acme", "company_name": "Acme", "sources": {"erp": {
            "format": "csv", "drop": "d", "dialect": bad, "files": [PRODUCTS]}}})


def test_a_setting_of_another_shape_is_a_config_error():
    with pytest.raises(ValidationError, match="delimiter is a setting of shape csv, not of fixed_width"):
        Brand.model_validate({"brand": "acme", "company_name": "Acme", "sources": {"erp": {
            "format": "csv", "drop": "d", "dialect": FIXED | {"delimiter": ";"}, "files": [PRODUCTS]}}})


CSV = "Artikel,Bezeichnung,Sprache\nA-1,Mantel,de\nA-2,Schal,xx\n"


def test_a_gzip_file_is_landed_as_it_came_and_read_as_the_file_it_holds(engine, tmp_path):
    import gzip

    h = erp(engine, tmp_path, {})
    data = gzip.compress(CSV.encode())
    h.drop("ARTIKEL_1.csv.gz", data, source="erp")
    assert h.planned() == ["ARTIKEL_1.csv.gz"]  # `ARTIKEL_*.csv` fits it without its .gz
    record = h.ingest("ARTIKEL_1.csv.gz", source="erp")
    assert (record["inserted"], record["rejected"]) == (1, 1)
    assert h.rejects("ARTIKEL_1.csv.gz") == [(3, "Sprache", "xx", "language")]
    assert h.layout.landed("acme", "erp", "ARTIKEL_1.csv.gz").read_bytes() == data


def test_a_gzip_file_cut_short_fails_whole(engine, tmp_path):
    import gzip

    h = erp(engine, tmp_path, {})
    h.drop("ARTIKEL_1.csv.gz", gzip.compress((CSV * 2000).encode())[:-40], source="erp")
    record = h.ingest("ARTIKEL_1.csv.gz", source="erp")
    assert (record["status"], h.rows("products")) == ("failed", [])
    assert record["error"].startswith("ARTIKEL_1.csv.gz: not a whole gzip file (")
    assert "was it cut short? Send it again" in record["error"]


def zipped(members: dict[str, str]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in members.items():
            z.writestr(name, text)
    return buffer.getvalue()


def test_each_member_of_a_zip_is_a_delivery_of_its_own(engine, tmp_path):
    h = erp(engine, tmp_path, {})
    second = "Artikel,Bezeichnung,Sprache\nA-3,Hut,de\n"
    h.drop("batch.zip", zipped({"export/ARTIKEL_1.csv": CSV, "ARTIKEL_2.csv": second, "__MACOSX/._ARTIKEL_2.csv": "x",
                                "export/": "", ".DS_Store": "x"}), source="erp")
    assert h.planned() == ["batch.zip!ARTIKEL_1.csv", "batch.zip!ARTIKEL_2.csv"]
    first = h.ingest("batch.zip!ARTIKEL_1.csv", source="erp")
    assert (first["inserted"], first["rejected"], first["sha256"]) == (1, 1, hashlib.sha256(CSV.encode()).hexdigest())
    assert h.rejects("batch.zip!ARTIKEL_1.csv") == [(3, "Sprache", "xx", "language")]
    assert h.ingest("batch.zip!ARTIKEL_2.csv", source="erp")["inserted"] == 1
    assert h.layout.landed("acme", "erp", "batch.zip!ARTIKEL_2.csv").read_text() == second  # the member's bytes
    assert [p["product_ref"] for p in h.rows("products", "product_ref")] == ["A-1", "A-3"]
    assert h.planned() == []  # taken: nothing more to request while the archive stays


@pytest.mark.parametrize("members, reason", [
    ({"ARTIKEL_1.csv": CSV, "../ARTIKEL_2.csv": CSV}, "member '../ARTIKEL_2.csv' has a path that leaves the archive"),
    ({"/etc/ARTIKEL_2.csv": CSV}, "member '/etc/ARTIKEL_2.csv' has a path that leaves the archive"),
    ({"a/ARTIKEL_1.csv": CSV, "b/ARTIKEL_1.csv": CSV}, "members 'a/ARTIKEL_1.csv' and 'b/ARTIKEL_1.csv' have the same"),
], ids=["dot-dot", "absolute", "same-name"])
def test_a_zip_with_a_member_that_leaves_it_or_clashes_is_refused_whole(engine, tmp_path, members, reason):
    h = erp(engine, tmp_path, {})
    h.drop("batch.zip", zipped(members), source="erp")
    assert h.planned() == []  # no member is taken
    record = h.file("batch.zip", source="erp")
    assert record["status"] == "refused" and record["error"].startswith(f"batch.zip: refused: {reason}")
    assert "the archive is refused whole" in record["error"]


def test_a_zip_expanding_past_the_limit_is_refused_whole(engine, tmp_path, monkeypatch):
    from bspk_pipelines.ingest.stores import archives

    monkeypatch.setattr(archives, "MAX_EXPANDED_BYTES", len(CSV) * 3 // 2)  # one member fits, two do not
    h = erp(engine, tmp_path, {})
    h.drop("batch.zip", zipped({"ARTIKEL_1.csv": CSV, "ARTIKEL_2.csv": CSV}), source="erp")
    assert h.planned() == []
    assert "its members expand past" in h.file("batch.zip", source="erp")["error"]


def test_a_zip_being_written_is_refused_until_it_is_whole_then_taken(engine, tmp_path):
    h = erp(engine, tmp_path, {})
    data = zipped({"ARTIKEL_1.csv": CSV})
    h.drop("batch.zip", data[: len(data) // 2], source="erp")
    assert h.planned() == []
    assert "not a readable zip archive" in h.file("batch.zip", source="erp")["error"]
    h.drop("batch.zip", data, source="erp")
    assert h.planned() == ["batch.zip!ARTIKEL_1.csv"]


def test_preview_shows_the_lines_a_dialect_passes_over(tmp_path, capsys):
    from bspk_pipelines.cli.preview import report
    from bspk_pipelines.ingest.check import dry_run

    brand = Brand.model_validate({"brand": "acme", "company_name": "Acme", "sources": {"erp": {
        "format": "csv", "drop": "drop/acme/erp", "dialect": {"skip_lines": 1, "trailer_lines": 1}, "files": [PRODUCTS | {
            "pattern": "ARTIKEL_*.csv"}]}}})
    path = tmp_path / "ARTIKEL_1.csv"
    path.write_text(f"Artikelstamm 05.01.2026\n{CSV}TOTAL,2\n")
    text = report(dry_run(brand, "erp", "products", path))
    assert "  passed over (skip_lines): line 1: 'Artikelstamm 05.01.2026'" in text
    assert "  passed over (trailer_lines): line 5: 'TOTAL,2'" in text


@pytest.mark.parametrize("plain", [True, False], ids=["polars-path", "csv-path"])
def test_header_names_polars_would_expand_are_read_as_names(engine, tmp_path, plain):
    """`*` and `^...$` select every column, or a pattern of them, in a polars expression: a header
    naming them is still one column each, read as any other."""
    h = erp(engine, tmp_path, {})
    second = '"Schal, rot"' if not plain else "Schal"
    h.drop("ARTIKEL_1.csv", f"Artikel,*,Bezeichnung,^S.*$,Sprache\nA-1,x,Mantel,y,de\nA-2,x,{second},y,de\n", source="erp")
    record = h.ingest("ARTIKEL_1.csv", source="erp")
    assert (record["status"], record["inserted"]) == ("applied", 2)
    assert [p["name"] for p in h.rows("products", "product_ref")] == ["Mantel", "Schal, rot" if not plain else "Schal"]


def test_check_config_names_a_sources_shape_where_it_is_not_delimited_text():
    from bspk_pipelines.cli.check_config import _kind

    brand = Brand.model_validate({"brand": "acme", "company_name": "Acme", "sources": {
        "erp": {"format": "csv", "drop": "d", "dialect": FIXED, "files": [PRODUCTS | {"pattern": "A_*.dat"}]},
        "pos": {"format": "csv", "drop": "p", "files": [PRODUCTS]}}})
    assert (_kind(brand.sources["erp"]), _kind(brand.sources["pos"])) == ("csv, fixed_width", "csv")
