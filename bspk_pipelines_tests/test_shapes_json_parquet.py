"""JSON Lines, JSON documents and Parquet files as a brand's export writes them (issue 17), through
the pipeline on SQLite and PostgreSQL: nested fields read by dotted names, typed values as the
text the checks read, a bad record a reject on its line, a file that cannot be read failed in one
line naming where; the original landed byte for byte, and the same rows again change nothing."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
from decimal import Decimal

import polars as pl
import pytest

from bspk_pipelines.ingest.parse import MAX_ROW_BYTES
from bspk_pipelines_tests.builders import brand_harness

SHOPPERS = {"pattern": "customers_*", "entity": "shoppers",
            "columns": {"shopper_ref": {"from": "id"}, "first_name": {"from": "name.first"},
                        "last_name": {"from": "name.last"}, "email": {"from": "contact.email"},
                        "city": {"from": "address.city"}, "country_code": {"from": "address.country"}}}
PRODUCTS = {"pattern": "articles_*", "entity": "products",
            "columns": {"product_ref": {"from": "ref"}, "name": {"from": "label.en"},
                        "published": {"from": "live"}}}  # a JSON boolean reads TRUE/FALSE
PRICES = {"pattern": "prices_*", "entity": "product_prices",
          "columns": {"product_ref": {"from": "ref"}, "sku": {"constant": "*"}, "price": {"from": "price.amount"},
                      "currency_code": {"from": "price.currency"}, "starting_on": {"from": "from"},
                      "discounted": {"from": "sale"}}}


def exports(engine, tmp_path, **dialect):
    source = {"format": "csv", "drop": "drop/acme/erp", "dialect": dialect, "files": [SHOPPERS, PRODUCTS, PRICES]}
    return brand_harness({"brand": "acme", "company_name": "Acme", "sources": {"erp": source}}, engine, tmp_path)


def customer(ref: str, first: str, email: str, country: str = "FR", **more) -> dict:
    return {"id": ref, "name": {"first": first, "last": "Curie"}, "contact": {"email": email, "phones": ["+33 6"]},
            "address": {"city": "Paris", "country": country}, **more}


def lines(*records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def parquet(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_parquet(out)
    return out.getvalue()


def test_json_lines_read_nested_fields_by_dotted_names_and_a_bad_line_is_a_reject_on_its_line(engine, tmp_path):
    """Line 2 is blank (skipped, still counted), line 4 is no JSON, line 5 an array: both rejected
    on their line, the others applied; a field a record lacks (S3's city) is blank."""
    h = exports(engine, tmp_path, shape="jsonl")
    name = "customers_20260105.jsonl"
    no_city = customer("S3", "Irène", "irene@example.com")
    del no_city["address"]["city"]
    h.drop(name, lines(customer("S1", "Marie", "marie@example.com"), "", customer("S2", "Pierre", "pierre@example.com"),
                       '{"id": "S9", "name": {"first": "Eve"', '["S8", "Nope"]', no_city), source="erp")
    record = h.ingest(name, source="erp")
    assert (record["status"], record["inserted"], record["rejected"]) == ("applied", 3, 2)
    assert [(line, column, rule) for line, column, _, rule in h.rejects(name)] == [(4, "*", "json"), (5, "*", "json")]
    assert h.rejects(name)[0][2] == '{"id": "S9", "name": {"first": "Eve"'
    assert [(s["shopper_ref"], s["first_name"], s["email"], s["city"], s["country_code"])
            for s in h.rows("shoppers", "shopper_ref")] == [
        ("S1", "Marie", "marie@example.com", "Paris", "FR"), ("S2", "Pierre", "pierre@example.com", "Paris", "FR"),
        ("S3", "Irène", "irene@example.com", None, "FR")]


def test_a_json_line_over_the_row_limit_is_a_reject_and_the_lines_after_it_are_read(engine, tmp_path):
    h = exports(engine, tmp_path, shape="jsonl")
    name = "customers_20260105.jsonl"
    long = customer("S2", "x" * (MAX_ROW_BYTES + 10), "long@example.com")
    h.drop(name, lines(customer("S1", "Marie", "marie@example.com"), long, customer("S3", "Irène", "irene@example.com")),
           source="erp")
    record = h.ingest(name, source="erp")
    assert (record["inserted"], record["rejected"]) == (2, 1)
    assert [(line, rule) for line, _, _, rule in h.rejects(name)] == [(2, "length")]
    assert [s["shopper_ref"] for s in h.rows("shoppers", "shopper_ref")] == ["S1", "S3"]


def test_a_mapped_field_no_record_has_fails_naming_the_nearest_fields(engine, tmp_path):
    """`contact.mail` for `contact.email`: read as a column of blanks, every email would be cleared."""
    source = {"format": "csv", "drop": "drop/acme/erp", "dialect": {"shape": "jsonl"},
              "files": [{**SHOPPERS, "columns": {**SHOPPERS["columns"], "email": {"from": "contact.mail"}}}]}
    h = brand_harness({"brand": "acme", "company_name": "Acme", "sources": {"erp": source}}, engine, tmp_path)
    name = "customers_20260105.jsonl"
    h.drop(name, lines(customer("S1", "Marie", "marie@example.com")), source="erp")
    record = h.ingest(name, source="erp")
    assert record["status"] == "failed"
    assert record["error"].startswith(f"{name}: lines 1 to 1 (the first batch): no field 'contact.mail', which the "
                                      "mapping reads: the nearest fields there are 'contact.email'")
    assert h.rows("shoppers") == []


def test_a_json_document_is_read_at_its_records_path_with_numbers_as_sent_not_as_floats(engine, tmp_path):
    """Records numbered from 1 in their array (a non-object record 2 is rejected as record 2);
    0.1 + 0.7 stored as 0.7999999999999999 reads 0.8, 12.0 reads 12, integers as their digits."""
    h = exports(engine, tmp_path, shape="json", records="data.items")

    def document(items) -> bytes:
        return json.dumps({"meta": {"exported": "2026-01-05"}, "data": {"count": len(items), "items": items}},
                          indent=2).encode()

    h.drop("articles_20260105.json", document([{"ref": ref, "label": {"en": f"Coat {ref}"}, "live": True}
                                               for ref in (1001, 1002, 1003)]), source="erp")
    assert h.ingest("articles_20260105.json", source="erp")["inserted"] == 3
    name = "prices_20260105.json"
    h.drop(name, document([
        {"ref": 1001, "price": {"amount": 0.1 + 0.7, "currency": "EUR"}, "from": "2026-01-05", "sale": False},
        "not a record",
        {"ref": 1002, "price": {"amount": 12.0, "currency": "EUR"}, "from": None, "sale": False},
        {"ref": 1003, "price": {"amount": 1234.56, "currency": "XEU"}, "sale": False},
    ]), source="erp")
    record = h.ingest(name, source="erp")
    assert (record["status"], record["inserted"], record["rejected"]) == ("applied", 2, 2)
    assert h.rejects(name) == [(2, "*", '"not a record"', "json"), (4, "price.currency", "XEU", "currency")]
    # A blank starting_on is stored as '' (part of the price's key).
    assert [(p["product_ref"], Decimal(str(p["price"])), str(p["starting_on"]))
            for p in h.rows("product_prices", "product_ref")] == [
        ("1001", Decimal("0.8"), "2026-01-05"), ("1002", Decimal("12"), "")]
    assert [p["product_ref"] for p in h.rows("products", "product_ref")] == ["1001", "1002", "1003"]


def test_a_records_path_the_document_does_not_have_fails_naming_the_keys_where_it_stops(engine, tmp_path):
    h = exports(engine, tmp_path, shape="json", records="data.items")
    name = "articles_20260105.json"
    h.drop(name, json.dumps({"data": {"count": 1, "products": [{"ref": "A-1"}]}}).encode(), source="erp")
    record = h.ingest(name, source="erp")
    assert record["status"] == "failed"
    assert record["error"] == (f"{name}: the records path 'data.items' is not in the document: key 'data' has no key "
                               "'items' (its keys: 'count', 'products'): correct the dialect's records path")


def test_a_records_path_to_something_else_than_an_array_fails_saying_what_it_is(engine, tmp_path):
    h = exports(engine, tmp_path, shape="json", records="data.items")
    name = "articles_20260105.json"
    h.drop(name, b'{"data": {"items": {"ref": "A-1"}}}', source="erp")
    record = h.ingest(name, source="erp")
    assert record["error"] == (f"{name}: the records path 'data.items' leads to an object, not an array of records: "
                               "correct the dialect's records path")


def test_a_document_that_does_not_parse_fails_naming_its_line_and_column(engine, tmp_path):
    h = exports(engine, tmp_path, shape="json")
    name = "articles_20260105.json"
    h.drop(name, b'[\n  {"ref": "A-1", "label": {"en": "Coat"}, "live": true},\n  {"ref": "A-2", label: "Bag"}\n]\n',
           source="erp")
    record = h.ingest(name, source="erp")
    assert record["status"] == "failed"
    assert record["error"].startswith(f"{name}: line 3, column 18 (byte 77): not valid JSON (")
    assert "near 'label: \"Bag\"}" in record["error"] and "\n" not in record["error"]
    assert h.rows("products") == []


def test_a_document_cut_short_fails_saying_so(engine, tmp_path):
    h = exports(engine, tmp_path, shape="json")
    name = "articles_20260105.json"
    data = json.dumps([{"ref": "A-1", "label": {"en": "Coat"}, "live": True}] * 3).encode()[:-20]
    h.drop(name, data, source="erp")
    record = h.ingest(name, source="erp")
    assert record["error"].startswith(f"{name}: not a whole JSON document (")
    assert record["error"].endswith(f"it ends at byte {len(data):,} before its last value is closed: is the file cut short?")


def test_parquet_typed_columns_read_as_text_the_checks_accept(engine, tmp_path):
    """Integer refs, float prices (0.1 + 0.7 as 0.8), dates written in the dialect's date format,
    booleans as TRUE/FALSE, a struct's fields by dotted names."""
    h = exports(engine, tmp_path, shape="parquet")
    h.drop("articles_20260105.parquet", parquet(pl.DataFrame({
        "ref": [1001, 1002, 1003], "label": [{"en": "Coat"}, {"en": "Bag"}, {"en": "Hat"}], "live": [True, True, False],
    })), source="erp")
    assert h.ingest("articles_20260105.parquet", source="erp")["inserted"] == 3
    name = "prices_20260105.parquet"
    h.drop(name, parquet(pl.DataFrame({
        "ref": [1001, 1002, 1003],
        "price": [{"amount": 0.1 + 0.7, "currency": "EUR"}, {"amount": 12.0, "currency": "EUR"},
                  {"amount": -1.5, "currency": "EUR"}],
        "from": [datetime.date(2026, 1, 5), None, datetime.date(2026, 3, 1)],
        "sale": [False, True, False],
    })), source="erp")
    record = h.ingest(name, source="erp")
    assert (record["status"], record["inserted"], record["rejected"]) == ("applied", 2, 1)
    assert h.rejects(name) == [(3, "price.amount", "-1.5", "minimum")]
    assert [(p["product_ref"], Decimal(str(p["price"])), str(p["starting_on"]), bool(p["discounted"]))
            for p in h.rows("product_prices", "product_ref")] == [
        ("1001", Decimal("0.8"), "2026-01-05", False), ("1002", Decimal("12"), "", True)]
    assert [(p["product_ref"], p["name"], bool(p["published"])) for p in h.rows("products", "product_ref")] == [
        ("1001", "Coat", True), ("1002", "Bag", True), ("1003", "Hat", False)]


def test_a_parquet_file_lacking_a_mapped_column_fails_naming_it_and_the_nearest(engine, tmp_path):
    h = exports(engine, tmp_path, shape="parquet")
    name = "articles_20260105.parquet"
    h.drop(name, parquet(pl.DataFrame({"ref": ["A-1"], "label": [{"fr": "Manteau", "de": "Mantel"}], "live": [True]})),
           source="erp")
    record = h.ingest(name, source="erp")
    assert record["status"] == "failed"
    assert record["error"].startswith(f"{name}: the file's schema: no field 'label.en', which the mapping reads: ")
    assert "'label.de'" in record["error"]


@pytest.mark.parametrize("data", [b"ref,label.en,live\nA-1,Coat,true\n", b"PAR1 and then nothing"],
                         ids=["csv-text", "no-footer"])
def test_a_file_that_is_not_parquet_fails_with_one_line_saying_so(engine, tmp_path, data):
    h = exports(engine, tmp_path, shape="parquet")
    name = "articles_20260105.parquet"
    h.drop(name, data, source="erp")
    record = h.ingest(name, source="erp")
    assert record["status"] == "failed"
    assert record["error"].startswith(f"{name}: not a Parquet file: it does not ")
    assert "with the bytes PAR1" in record["error"] and "\n" not in record["error"]


@pytest.mark.parametrize("shape", ["jsonl", "json", "parquet"])
def test_the_landed_copy_is_the_file_byte_for_byte_and_the_same_rows_again_change_nothing(engine, tmp_path, shape):
    h = exports(engine, tmp_path, shape=shape)
    records = [customer("S1", "Marie", "marie@example.com"), customer("S2", "Pierre", "pierre@example.com")]

    def written(records, spaced: bool = False) -> bytes:
        """The records in the shape; `spaced`: the same values in other bytes."""
        if shape == "jsonl":
            return "".join(json.dumps(r) + ("\r\n" if spaced else "\n") for r in records).encode()
        if shape == "json":
            return json.dumps(records, indent=2 if spaced else None).encode()
        return parquet(pl.DataFrame(records[::-1] if spaced else records))

    data = written(records)
    first = f"customers_20260105.{shape}"
    h.drop(first, data, source="erp")
    record = h.ingest(first, source="erp")
    assert (record["status"], record["inserted"]) == ("applied", 2)
    landed = h.layout.landed("acme", "erp", first).read_bytes()
    assert landed == data and hashlib.sha256(data).hexdigest() == record["sha256"]
    before = h.rows("shoppers", "shopper_ref")
    # The same rows in the next delivery, in other bytes (the same bytes are a duplicate, not read again).
    later_file = f"customers_20260106.{shape}"
    h.drop(later_file, written(records, spaced=True), source="erp")
    later = h.ingest(later_file, source="erp")
    assert (later["inserted"], later["updated"], later["unchanged"]) == (0, 0, 2)
    assert h.rows("shoppers", "shopper_ref") == before
