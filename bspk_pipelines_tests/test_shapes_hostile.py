"""An attacker's (or a careless export's) files in every shape, through the real pipeline on SQLite
and PostgreSQL: zip archives that lie, bombs, odd member names, gzip oddities, JSON that is deep or
huge or holds numbers no float holds, Parquet whose names clash, Excel that is not Excel, fixed
width with tabs, trailers and skips that eat the file, `||` with `|` inside. What a careful user
expects: nothing lost silently, the original kept, a clear one-line failure or a reject with its
line, a rerun changing nothing, memory bounded."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from bspk_pipelines_tests.builders import brand_harness

PROJECT = Path(__file__).resolve().parent.parent
CSV = "Artikel,Bezeichnung\nA-1,Mantel\nA-2,Schal\n"
COLUMNS = {"product_ref": {"from": "Artikel"}, "name": {"from": "Bezeichnung"}, "published": {"constant": "TRUE"}}


def erp(engine, tmp_path, dialect: dict | None = None, pattern: str = "ART_*.csv", columns: dict | None = None):
    source = {"format": "csv", "drop": "drop/acme/erp", "dialect": dialect or {},
              "files": [{"pattern": pattern, "entity": "products", "columns": columns or COLUMNS}]}
    return brand_harness({"brand": "acme", "company_name": "Acme", "sources": {"erp": source}}, engine, tmp_path)


def zipped(members: dict, method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def names(h) -> list[tuple]:
    with h.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("select name, status from files order by name"))]


def refs(h) -> list[tuple]:
    return [(p["product_ref"], p["name"]) for p in h.rows("products", "product_ref")]


def ingest_key(h, key: str, source: str = "erp") -> dict:
    """A later delivery (`name@2`) run as its partition's run runs it (h.ingest takes the drop's name only)."""
    from bspk_pipelines.ingest.apply import apply_pending
    from bspk_pipelines.ingest.check import validate_file
    from bspk_pipelines.ingest.contribute import map_file
    from bspk_pipelines.ingest.drop import classify, delivery_number, dropped_name
    from bspk_pipelines.ingest.land import land
    from bspk_pipelines.ingest.parse import FileFailure

    delivery = classify(h.brand, source, dropped_name(key))
    if key != dropped_name(key):
        delivery = delivery.again(delivery_number(key))
    land(h.engine, h.layout, h.brand, delivery)
    for entity in delivery.entities:
        try:
            validate_file(h.engine, h.layout, h.brand, source, entity, key)
        except FileFailure:
            continue
        map_file(h.engine, h.layout, h.brand, source, entity, key)
        apply_pending(h.engine, h.layout, h.brand, entity)
    return h.file(key, source)


def in_a_subprocess(engine, tmp_path, dialect: dict, pattern: str, name: str, data: bytes, limit_gib: int = 3,
                    setup: str = "", record: str | None = None) -> tuple[int, dict]:
    """Drop and ingest in a child process whose address space is limited: a bomb kills the child,
    never the test run (nor the machine). Returns the child's exit status and the file's record."""
    (tmp_path / "payload").write_bytes(data)
    script = textwrap.dedent(f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({limit_gib} << 30, {limit_gib} << 30))
        from pathlib import Path
        from bspk_pipelines.warehouse.engine import engine_for
        from bspk_pipelines_tests.builders import brand_harness
        {setup}
        source = {{"format": "csv", "drop": "drop/acme/erp", "dialect": {dialect!r},
                   "files": [{{"pattern": {pattern!r}, "entity": "products", "columns": {COLUMNS!r}}}]}}
        h = brand_harness({{"brand": "acme", "company_name": "Acme", "sources": {{"erp": source}}}},
                          engine_for(sys.argv[1]), Path({str(tmp_path)!r}))
        h.drop({name!r}, Path({str(tmp_path / "payload")!r}).read_bytes(), source="erp")
        for key in h.planned() or [{name!r}]:
            h.ingest(key, source="erp")
        print(json.dumps({{k: v for k, v in h.file({record or name!r}, source="erp").items() if isinstance(v, (str, int))}}))
    """)
    url = engine.url.render_as_string(hide_password=False)
    done = subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True, timeout=600,
                          cwd=PROJECT, env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"})
    last = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
    try:
        record = json.loads(last[0]) if last else {}
    except ValueError:
        record = {}
    return done.returncode, record | {"_stderr": done.stderr[-2000:]}


# ---------------------------------------------------------------- zip archives


def _lying(data: bytes, declared: int) -> bytes:
    """The archive with its (only) member's uncompressed size rewritten in both headers."""
    info = zipfile.ZipFile(io.BytesIO(data)).infolist()[0]
    bad = bytearray(data)
    struct.pack_into("<I", bad, info.header_offset + 22, declared)
    struct.pack_into("<I", bad, data.rfind(b"PK\x01\x02") + 24, declared)
    return bytes(bad)


def test_a_zip_member_whose_header_lies_about_its_size_is_refused_without_breaking_the_look(engine, tmp_path):
    """The central directory says 10 bytes; the member expands to 5 MB. The size check must not
    trust the header, and a look at the drop folder must not crash (a crashed sensor tick takes
    none of the brand's other files)."""
    h = erp(engine, tmp_path)
    h.drop("ART_0.csv", CSV, source="erp")  # an ordinary file beside it: still taken
    h.drop("batch.zip", _lying(zipped({"ART_1.csv": CSV + "A-3,x\n" * 800_000}), 10), source="erp")
    assert h.planned() == ["ART_0.csv"]
    record = h.file("batch.zip!ART_1.csv", source="erp")  # no more than the 10 bytes declared is ever read
    assert record.get("status") == "refused" and record["error"].startswith(
        "batch.zip!ART_1.csv: refused: member 'ART_1.csv' of batch.zip is damaged (Bad CRC-32"), record
    assert "\n" not in record["error"]


def test_a_zip_bomb_member_is_read_with_bounded_memory(engine, tmp_path):
    """400 MB of rows packed into about 1 MB, below the limit: taken and read as a stream, the
    child's address space capped at 16 GiB; every row applied. Before batches were bounded by bytes
    (`read.BATCH_BYTES`), one allocation asked for 6.4 GB. (Left: polars reserves address space
    well beyond what it touches, and its peak RSS reading such a file is about twice the file, 880
    MB: it reads ahead of the batches, a bound of the plain-CSV path not yet made.)"""
    pad = "p" * 200_000
    text = "Artikel,Bezeichnung,Pad\n" + "".join(f"A-{i},x,{pad}\n" for i in range(2000))
    bomb = zipped({"ART_1.csv": text})
    assert len(bomb) < 2 << 20 and len(text) > 400_000_000
    status, record = in_a_subprocess(engine, tmp_path, {}, "ART_*.csv", "batch.zip", bomb, limit_gib=16,
                                     record="batch.zip!ART_1.csv")
    assert status == 0, record["_stderr"]
    assert (record["status"], record["rows_read"], record["inserted"]) == ("applied", 2000, 2000)


def test_a_zip_in_a_zip_is_said_to_be_an_archive_not_read_as_text(engine, tmp_path):
    h = erp(engine, tmp_path, pattern="ART_*")
    h.drop("batch.zip", zipped({"ART_1.zip": zipped({"ART_2.csv": CSV})}), source="erp")
    assert h.planned() == ["batch.zip!ART_1.zip"]
    record = h.ingest("batch.zip!ART_1.zip", source="erp")
    assert record["status"] == "failed" and refs(h) == []
    assert "zip" in record["error"].split(": ", 1)[1], record["error"]  # not "not valid utf-8 text (byte offset 12 ...)"


def test_a_symlink_member_is_read_as_its_bytes_never_followed(engine, tmp_path):
    """A member whose unix mode says symlink to /etc/passwd: its bytes are the text '/etc/passwd'."""
    link = zipfile.ZipInfo("ART_1.csv")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    h = erp(engine, tmp_path)
    h.drop("batch.zip", zipped({link: "/etc/passwd"}), source="erp")
    record = h.ingest("batch.zip!ART_1.csv", source="erp")
    assert record["status"] == "failed" and "'/etc/passwd'" in record["error"] and "root:" not in record["error"]
    assert h.layout.landed("acme", "erp", "batch.zip!ART_1.csv").read_bytes() == b"/etc/passwd"
    assert refs(h) == []


def test_a_zip_of_ten_thousand_tiny_members_is_refused_promptly(engine, tmp_path):
    """Each member would be a delivery with a run of its own: past MAX_MEMBERS (1,000) the archive is
    refused whole, within 2 minutes (the look runs in a child process, killed past that: listing
    every member took over 6 minutes of CPU)."""
    h = erp(engine, tmp_path)
    h.drop("batch.zip", zipped({f"ART_{i}.csv": f"Artikel,Bezeichnung\nA-{i},x\n" for i in range(10_000)}), source="erp")
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from bspk_pipelines.warehouse.engine import engine_for
        from bspk_pipelines_tests.builders import brand_harness
        source = {{"format": "csv", "drop": "drop/acme/erp", "dialect": {{}},
                   "files": [{{"pattern": "ART_*.csv", "entity": "products", "columns": {COLUMNS!r}}}]}}
        h = brand_harness({{"brand": "acme", "company_name": "Acme", "sources": {{"erp": source}}}},
                          engine_for(sys.argv[1]), Path({str(tmp_path)!r}))
        planned = h.planned()
        print(len(planned), h.file("batch.zip", source="erp")["status"])
    """)
    try:
        done = subprocess.run([sys.executable, "-c", script, engine.url.render_as_string(hide_password=False)],
                              capture_output=True, text=True, timeout=120, cwd=PROJECT,
                              env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"})
    except subprocess.TimeoutExpired:
        pytest.fail("listing a zip of 10,000 members took over 120 s")
    assert done.stdout.split() == ["0", "refused"], done.stderr[-2000:]
    assert "it has more than 1,000 members" in h.file("batch.zip", source="erp")["error"]


def test_a_member_named_with_two_dots_inside_is_a_legitimate_delivery(engine, tmp_path):
    """`a..b.csv` leaves no folder: `..` is only a path part when it is the whole part."""
    h = erp(engine, tmp_path, pattern="*.csv")
    h.drop("batch.zip", zipped({"ART_1..2.csv": CSV}), source="erp")
    assert h.planned() == ["batch.zip!ART_1..2.csv"], names(h)


def test_a_file_named_with_two_dots_inside_is_a_legitimate_delivery(engine, tmp_path):
    h = erp(engine, tmp_path, pattern="*.csv")
    h.drop("ART_v1..2.csv", CSV, source="erp")
    assert h.planned() == ["ART_v1..2.csv"], names(h)
    assert h.ingest("ART_v1..2.csv", source="erp")["inserted"] == 2


def test_member_names_with_a_backslash_or_a_bang_are_delivered_by_their_file_name(engine, tmp_path):
    h = erp(engine, tmp_path, pattern="*.csv")
    h.drop("batch.zip", zipped({"export\\ART_3.csv": "Artikel,Bezeichnung\nB-1,Hut\n",
                                "ART_c!d.csv": "Artikel,Bezeichnung\nC-1,Kappe\n"}), source="erp")
    planned = h.planned()
    assert planned == ["batch.zip!ART_3.csv", "batch.zip!ART_c!d.csv"]
    for key in planned:
        assert h.ingest(key, source="erp")["status"] == "applied"
    assert refs(h) == [("B-1", "Hut"), ("C-1", "Kappe")]


def test_a_member_with_a_control_character_in_its_name_is_refused_with_a_clear_line(engine, tmp_path):
    h = erp(engine, tmp_path, pattern="*.csv")
    h.drop("batch.zip", zipped({"ART_\x01.csv": CSV, "ART_2.csv": CSV}), source="erp")
    planned = h.planned()
    assert "batch.zip!ART_2.csv" in planned and not any("\x01" in p for p in planned)
    bad = h.file("batch.zip!ART_\x01.csv", source="erp")
    assert bad["status"] in ("failed", "refused") and "control character" in bad["error"] and "\n" not in bad["error"]


def test_the_same_archive_twice_then_one_member_changed_is_one_new_delivery(engine, tmp_path):
    h = erp(engine, tmp_path)
    first = zipped({"ART_1.csv": CSV, "ART_2.csv": "Artikel,Bezeichnung\nB-1,Hut\n"})
    h.drop("batch.zip", first, source="erp")
    for key in h.planned():
        assert h.ingest(key, source="erp")["status"] == "applied"
    h.drop("batch.zip", zipped({"ART_1.csv": CSV, "ART_2.csv": "Artikel,Bezeichnung\nB-1,Hut\n"}), source="erp")
    assert h.planned() == []  # the same members again (the archive's bytes may differ: times): nothing new
    h.drop("batch.zip", zipped({"ART_1.csv": CSV, "ART_2.csv": "Artikel,Bezeichnung\nB-1,Hut neu\n"}), source="erp")
    assert h.planned() == ["batch.zip!ART_2.csv@2"]
    assert ingest_key(h, "batch.zip!ART_2.csv@2")["status"] == "applied"
    assert refs(h) == [("A-1", "Mantel"), ("A-2", "Schal"), ("B-1", "Hut neu")]
    assert h.planned() == []


# ---------------------------------------------------------------- gzip


def test_a_gzip_of_a_gzip_is_said_to_be_compressed_twice(engine, tmp_path):
    h = erp(engine, tmp_path)
    data = gzip.compress(gzip.compress(CSV.encode()))
    h.drop("ART_1.csv.gz", data, source="erp")
    record = h.ingest("ART_1.csv.gz", source="erp")
    if record["status"] == "applied":  # read through both: as good
        assert refs(h) == [("A-1", "Mantel"), ("A-2", "Schal")]
    else:
        assert "gzip" in record["error"], record["error"]  # not "not valid utf-8 text (byte offset 1 ...)"
    assert h.layout.landed("acme", "erp", "ART_1.csv.gz").read_bytes() == data


def test_a_gz_file_that_is_not_gzip_is_read_as_the_text_it_is_and_kept(engine, tmp_path):
    h = erp(engine, tmp_path)
    h.drop("ART_1.csv.gz", CSV, source="erp")
    record = h.ingest("ART_1.csv.gz", source="erp")
    assert (record["status"], record["inserted"]) == ("applied", 2)
    assert h.layout.landed("acme", "erp", "ART_1.csv.gz").read_text() == CSV


def test_a_gzip_with_trailing_garbage_does_not_claim_nothing_was_read(engine, tmp_path):
    """gunzip reads the member and warns of the garbage; the failure (if it fails) must not say
    "after 0 bytes of its content: was it cut short?" when the whole content was read."""
    h = erp(engine, tmp_path)
    h.drop("ART_1.csv.gz", gzip.compress(CSV.encode()) + b"garbage!!", source="erp")
    record = h.ingest("ART_1.csv.gz", source="erp")
    if record["status"] != "applied":
        assert "after 0 bytes" not in record["error"], record["error"]
        assert "trailing" in record["error"] or f"after {len(CSV)} bytes" in record["error"], record["error"]


def test_a_gzip_bomb_past_the_limit_fails_with_bounded_memory(engine, tmp_path):
    bomb = gzip.compress(b"\0" * (64 << 20), 9)
    setup = ("from bspk_pipelines.ingest.shapes import compressed; compressed.MAX_EXPANDED_BYTES = 16 << 20")
    status, record = in_a_subprocess(engine, tmp_path, {}, "ART_*.csv", "ART_1.csv.gz", bomb, setup=setup)
    assert status == 0, record["_stderr"]
    assert record["status"] == "failed" and "expands past" in record["error"]


# ---------------------------------------------------------------- JSON Lines and JSON

JSONL = {"shape": "jsonl"}


def test_a_jsonl_line_of_two_mebibytes_is_a_reject_on_its_line_and_the_rest_goes_on(engine, tmp_path):
    h = erp(engine, tmp_path, JSONL, "ART_*.jsonl")
    h.drop("ART_1.jsonl", '{"Artikel":"A-1","Bezeichnung":"%s"}\n{"Artikel":"A-2","Bezeichnung":"Schal"}\n'
           % ("x" * (2 << 20)), source="erp")
    record = h.ingest("ART_1.jsonl", source="erp")
    assert (record["status"], record["inserted"], record["rejected"]) == ("applied", 1, 1)
    assert [r[0] for r in h.rejects("ART_1.jsonl")] == [1]


def test_a_jsonl_file_with_a_bom_and_crlf_reads_every_line(engine, tmp_path):
    h = erp(engine, tmp_path, JSONL, "ART_*.jsonl")
    data = '\ufeff{"Artikel":"A-1","Bezeichnung":"Mantel"}\r\n{"Artikel":"A-2","Bezeichnung":"Schal"}\r\n'.encode()
    h.drop("ART_1.jsonl", data, source="erp")
    assert h.ingest("ART_1.jsonl", source="erp")["inserted"] == 2
    assert refs(h) == [("A-1", "Mantel"), ("A-2", "Schal")]
    assert h.layout.landed("acme", "erp", "ART_1.jsonl").read_bytes() == data


def test_a_nul_in_jsonl_is_a_reject_on_its_line_on_either_warehouse(engine, tmp_path):
    """A raw NUL line is a reject (json); an escaped \\u0000 inside a value must not reach
    PostgreSQL's text (which refuses NUL) as a failure of the whole file: a reject on its line."""
    h = erp(engine, tmp_path, JSONL, "ART_*.jsonl")
    h.drop("ART_1.jsonl", '{"Artikel":"A-1","Bezeichnung":"Mantel"}\n\0\n{"Artikel":"A-2","Bezeichnung":"Sc\\u0000hal"}\n',
           source="erp")
    record = h.ingest("ART_1.jsonl", source="erp")
    assert record["status"] == "applied", record.get("error")
    assert ("A-1", "Mantel") in refs(h)
    lines = [r[0] for r in h.rejects("ART_1.jsonl")]
    assert 2 in lines
    assert all("\0" not in (name or "") for _, name in refs(h)), refs(h)  # a NUL is no text a platform column holds


def test_a_json_document_nested_100000_levels_deep_fails_in_one_line_with_bounded_memory(engine, tmp_path):
    """200 KB of `[[[[...]]]]`: without a bound it took 21 GB and the OOM killer."""
    status, record = in_a_subprocess(engine, tmp_path, {"shape": "json"}, "ART_*.json", "ART_1.json",
                                     b"[" * 100_000 + b"]" * 100_000)
    assert status == 0, record["_stderr"]
    assert record["status"] == "failed" and record["error"].startswith("ART_1.json: ") and "\n" not in record["error"]


def test_a_deeply_nested_json_record_fails_the_document_in_one_line_with_bounded_memory(engine, tmp_path):
    """A streamed document cannot set one record aside and go on once it is inside it: nesting past
    64 levels fails the file, naming it."""
    doc = b'[{"Artikel":"A-1","Bezeichnung":"M","x":' + b"[" * 100_000 + b"]" * 100_000 + b'},' \
          b'{"Artikel":"A-2","Bezeichnung":"S"}]'
    status, record = in_a_subprocess(engine, tmp_path, {"shape": "json"}, "ART_*.json", "ART_1.json", doc)
    assert status == 0, record["_stderr"]
    assert record.get("status") == "failed" and "nested more than 64 levels deep" in record["error"], record


def test_a_deeply_nested_jsonl_line_is_a_reject_on_its_line(engine, tmp_path):
    h = erp(engine, tmp_path, JSONL, "ART_*.jsonl")
    h.drop("ART_1.jsonl", '{"Artikel":"A-1","Bezeichnung":"M","x":' + "[" * 100_000 + "]" * 100_000 + '}\n'
           '{"Artikel":"A-2","Bezeichnung":"S"}\n', source="erp")
    record = h.ingest("ART_1.jsonl", source="erp")
    assert (record["inserted"], record["rejected"]) == (1, 1)
    assert [(r[0], r[3]) for r in h.rejects("ART_1.jsonl")] == [(1, "json")]


@pytest.mark.parametrize("shape", ["json", "jsonl"])
def test_json_numbers_no_float_holds_are_read_as_the_file_writes_them(engine, tmp_path, shape):
    """12345678901234567890123 and 1e400 are exact: never rounded, never `inf` (1e400 as its decimal, 1E+400)."""
    h = erp(engine, tmp_path, {"shape": shape}, f"ART_*.{shape}")
    records = ['{"Artikel":12345678901234567890123,"Bezeichnung":1e400}', '{"Artikel":"A-2","Bezeichnung":0.1}']
    h.drop(f"ART_1.{shape}", ("[" + ",".join(records) + "]") if shape == "json" else "\n".join(records) + "\n",
           source="erp")
    h.ingest(f"ART_1.{shape}", source="erp")
    assert refs(h) == [("12345678901234567890123", "1E+400"), ("A-2", "0.1")]


# ---------------------------------------------------------------- Parquet and Excel


def test_a_parquet_column_named_star_is_one_column_and_mapping_it_is_a_config_error(engine, tmp_path):
    import polars as pl
    from pydantic import ValidationError

    buffer = io.BytesIO()
    pl.DataFrame({"Artikel": ["A-1"], "*": ["x"], "Bezeichnung": ["Mantel"]}).write_parquet(buffer)
    h = erp(engine, tmp_path, {"shape": "parquet"}, "ART_*.parquet")
    h.drop("ART_1.parquet", buffer.getvalue(), source="erp")
    assert h.ingest("ART_1.parquet", source="erp")["inserted"] == 1
    assert refs(h) == [("A-1", "Mantel")]
    with pytest.raises(ValidationError, match="a column named '\\*' cannot be read"):
        erp(engine, tmp_path, {"shape": "parquet"}, "ART_*.parquet", columns=COLUMNS | {"description": {"from": "*"}})


def test_a_parquet_flat_column_and_nested_field_of_the_same_dotted_name_fail_naming_the_clash(engine, tmp_path):
    """`a.b` (a column) and `a: {b}` (a struct's field) are both `a.b`: which one the mapping reads
    must not be picked silently."""
    import polars as pl

    buffer = io.BytesIO()
    pl.DataFrame({"Artikel": ["A-1"], "a.b": ["flat"], "a": [{"b": "nested"}]}).write_parquet(buffer)
    h = erp(engine, tmp_path, {"shape": "parquet"}, "ART_*.parquet",
            columns={"product_ref": {"from": "Artikel"}, "name": {"from": "a.b"}, "published": {"constant": "TRUE"}})
    h.drop("ART_1.parquet", buffer.getvalue(), source="erp")
    record = h.ingest("ART_1.parquet", source="erp")
    assert record["status"] == "failed", refs(h)
    assert "a.b" in record["error"] and "\n" not in record["error"]


def test_an_xlsx_that_is_a_zip_of_something_else_fails_in_one_line(engine, tmp_path):
    h = erp(engine, tmp_path, {"shape": "excel"}, "ART_*.xlsx")
    data = zipped({"hello.txt": "hi"})
    h.drop("ART_1.xlsx", data, source="erp")
    record = h.ingest("ART_1.xlsx", source="erp")
    assert record["status"] == "failed" and record["error"].startswith("ART_1.xlsx: not readable as an Excel workbook")
    assert "\n" not in record["error"]
    assert h.layout.landed("acme", "erp", "ART_1.xlsx").read_bytes() == data


def test_an_excel_cell_of_40000_characters_is_a_reject_on_its_row(engine, tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["Artikel", "Bezeichnung"])
    book.active.append(["A-1", "y" * 40_000])
    book.active.append(["A-2", "Schal"])
    buffer = io.BytesIO()
    book.save(buffer)
    h = erp(engine, tmp_path, {"shape": "excel"}, "ART_*.xlsx")
    h.drop("ART_1.xlsx", buffer.getvalue(), source="erp")
    record = h.ingest("ART_1.xlsx", source="erp")
    assert (record["inserted"], record["rejected"]) == (1, 1)
    assert [(r[0], r[1]) for r in h.rejects("ART_1.xlsx")] == [(2, "Bezeichnung")]


# ---------------------------------------------------------------- text shapes

FIXED = {"shape": "fixed_width", "fixed": [{"name": "Artikel", "start": 1, "width": 4},
                                           {"name": "Bezeichnung", "start": 5, "width": 6}]}


def test_a_fixed_width_file_counts_characters_and_a_tab_is_no_part_of_a_key(engine, tmp_path):
    """Multi-byte characters count as one; a tab where padding should be is either rejected on its
    line or trimmed as padding, never kept inside the key (`A-2\\t` is another product than `A-2`)."""
    h = erp(engine, tmp_path, FIXED, "ART_*.dat")
    h.drop("ART_1.dat", "A-1 Écharp\nA-2\tSchal \nA-3 東京東京東京\n", source="erp")
    h.ingest("ART_1.dat", source="erp")
    rows = refs(h)
    assert ("A-1", "Écharp") in rows and ("A-3", "東京東京東京") in rows
    assert all("\t" not in ref for ref, _ in rows), rows
    assert ("A-2", "Schal") in rows or [r[0] for r in h.rejects("ART_1.dat")] == [2]


def test_a_trailer_pattern_matching_every_line_shows_every_line_it_passed_over(engine, tmp_path):
    from bspk_pipelines.ingest.check import validate_file
    from bspk_pipelines.ingest.drop import classify
    from bspk_pipelines.ingest.land import land

    h = erp(engine, tmp_path, {"trailer_pattern": "."})
    h.drop("ART_1.csv", CSV, source="erp")
    land(h.engine, h.layout, h.brand, classify(h.brand, "erp", "ART_1.csv"))
    checked = validate_file(h.engine, h.layout, h.brand, "erp", "products", "ART_1.csv")
    assert checked.rows == 0
    assert [(p.line, p.text) for p in checked.passed_over] == [(2, "A-1,Mantel"), (3, "A-2,Schal")]


def test_skip_lines_past_the_end_fails_in_one_line_naming_the_setting(engine, tmp_path):
    h = erp(engine, tmp_path, {"skip_lines": 50})
    h.drop("ART_1.csv", CSV, source="erp")
    record = h.ingest("ART_1.csv", source="erp")
    assert record["status"] == "failed" and refs(h) == []
    assert record["error"] == "ART_1.csv: the file ends before its header (line 51, after skip_lines: 50)"


def test_a_double_pipe_delimiter_keeps_single_pipes_in_fields(engine, tmp_path):
    h = erp(engine, tmp_path, {"delimiter": "||"})
    h.drop("ART_1.csv", "Artikel||Bezeichnung\nA-1||a|\nA-2|||b\nA-3||c||\n", source="erp")
    record = h.ingest("ART_1.csv", source="erp")
    assert (record["inserted"], record["rejected"]) == (2, 1)
    assert refs(h) == [("A-1", "a|"), ("A-2", "|b")]
    assert h.rejects("ART_1.csv") == [(4, "*", "A-3||c||", "field_count")]


@pytest.mark.parametrize("delimiter", [",", "||"])
def test_a_header_less_file_with_a_bom_reads_its_first_key_without_it(engine, tmp_path, delimiter):
    h = erp(engine, tmp_path, {"header": False, "columns": ["Artikel", "Bezeichnung"], "delimiter": delimiter})
    data = f"\ufeffA-1{delimiter}Mantel\nA-2{delimiter}Schal\n".encode()
    h.drop("ART_1.csv", data, source="erp")
    assert h.ingest("ART_1.csv", source="erp")["inserted"] == 2
    assert refs(h) == [("A-1", "Mantel"), ("A-2", "Schal")]
    assert hashlib.sha256(h.layout.landed("acme", "erp", "ART_1.csv").read_bytes()).digest() == hashlib.sha256(data).digest()
    again = h.ingest("ART_1.csv", source="erp")  # a rerun changes nothing
    assert again["inserted"] == 2 and len(h.rows("products")) == 2
