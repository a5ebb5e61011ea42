"""A brand's product refs and SKUs are stored exactly as it last sent them and matched whatever
their case, on SQLite and PostgreSQL: `A-100` and `a-100` are one product in every table, file,
source, held row, month and older warehouse."""

from __future__ import annotations

import json

import sqlalchemy as sa

from bspk_pipelines.ingest.apply import apply_pending
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.engine import engine_for
from bspk_pipelines.warehouse.schema import ENTITY_TABLES
from bspk_pipelines_tests.builders import (
    HISTORY_CONFIG, IMAGES, INVENTORY, NATIVE, PRICES, PRODUCT, SALE, THREE_SHOPPERS, VARIANTS, brand_harness, older_schema,
)

TWO_SOURCES = {**HISTORY_CONFIG, "sources": {
    "pos": {"format": "bspk", "drop": "drop/acme/pos"}, "erp": {"format": "bspk", "drop": "drop/acme/erp"}}}


def product(ref: str, name: str = "Bag") -> str:
    return f"{ref},{name},,,en,,TRUE\n"


def variant(ref: str, sku: str) -> str:
    return f"{ref},{sku},,,,,,,,en,,TRUE\n"


def sale(ticket: str, ref: str, sku: str, at: str = "2024-01-05T10:00:00", shopper: str = "S1") -> str:
    return f"{ticket},{ref},1,10.00,EUR,{at},{sku},{shopper},,\n"


def refs(h, table: str, *columns: str) -> list[tuple]:
    return sorted(tuple(r[c] for c in columns) for r in h.rows(table))


def test_a_ref_is_stored_as_sent_and_a_later_case_updates_the_one_record(engine, tmp_path):
    h = brand_harness(NATIVE, engine, tmp_path)
    h.drop("PRODUCT_V2_Acme_202401010000.csv", PRODUCT + product("A-100"))
    assert h.ingest("PRODUCT_V2_Acme_202401010000.csv")["inserted"] == 1
    assert refs(h, "products", "product_ref", "name") == [("A-100", "Bag")]
    # The same ref in another case, nothing else changed: the same record, its ref as now sent.
    h.drop("PRODUCT_V2_Acme_202401020000.csv", PRODUCT + product("a-100"))
    f = h.ingest("PRODUCT_V2_Acme_202401020000.csv")
    assert (f["inserted"], f["updated"]) == (0, 1)
    assert refs(h, "products", "product_ref", "name") == [("a-100", "Bag")]


def test_two_sources_sending_one_ref_in_two_cases_merge_into_one_record(engine, tmp_path):
    h = brand_harness(TWO_SOURCES, engine, tmp_path)
    for source, ref, name in (("pos", "A-100", "Bag"), ("erp", "a-100", "Lune bag")):
        h.drop("PRODUCT_V2_Acme_202401010000.csv", PRODUCT + product(ref, name), source)
        assert h.ingest("PRODUCT_V2_Acme_202401010000.csv", source)["status"] == "applied"
    # Each source's row as it sent it; one merged record, its ref as the last delivery sent it.
    assert refs(h, "products__by_source", "source", "product_ref") == [("erp", "a-100"), ("pos", "A-100")]
    assert len(h.rows("products")) == 1 and h.rows("products")[0]["product_ref"] == "a-100"
    h.drop("PRODUCT_V2_Acme_202401020000.csv", PRODUCT + product("A-100", "Moon bag"), "pos")
    assert h.ingest("PRODUCT_V2_Acme_202401020000.csv", "pos")["updated"] == 1
    assert refs(h, "products", "product_ref") == [("A-100",)]
    assert refs(h, "products__by_source", "source", "product_ref") == [("erp", "a-100"), ("pos", "A-100")]


def test_a_sale_naming_a_ref_in_another_case_lands_in_its_month(engine, tmp_path):
    h = brand_harness(HISTORY_CONFIG, engine, tmp_path)
    h.drop("SHOPPER_V3_Acme_202401010000.csv", THREE_SHOPPERS)
    h.drop("PRODUCT_V2_Acme_202401010000.csv", PRODUCT + product("A-100"))
    h.ingest("SHOPPER_V3_Acme_202401010000.csv")
    h.ingest("PRODUCT_V2_Acme_202401010000.csv")
    h.drop("SALE_V2_Acme_202406010000.csv", SALE + sale("T1", "a-100", "Sku-Blk"))
    f = h.ingest("SALE_V2_Acme_202406010000.csv")
    assert (f["inserted"], f["held"]) == (1, 0) and h.rows("held") == []
    assert refs(h, "sales", "sale_ref", "product_ref", "sku") == [("T1", "a-100", "Sku-Blk")]
    assert refs(h, "products", "product_ref") == [("A-100",)]
    # The same line again in other cases, and a line of another month: the month rebuilt keeps one
    # line for the key, as the later file sent it.
    h.drop("SALE_V2_Acme_202406020000.csv", SALE + sale("T1", "A-100", "SKU-BLK") + sale("T2", "a-100", "", "2024-02-01T10:00:00"))
    h.ingest("SALE_V2_Acme_202406020000.csv")
    assert refs(h, "sales", "sale_ref", "product_ref", "sku") == [("T1", "A-100", "SKU-BLK"), ("T2", "a-100", "")]
    assert h.rows("held") == []


def test_a_variant_held_for_its_ref_in_another_case_is_released_when_the_product_arrives(engine, tmp_path):
    h = brand_harness(NATIVE, engine, tmp_path)
    h.drop("PRODUCT-VARIANTS_V2_Acme_202401010000.csv", VARIANTS + variant("a-100", "Sku-1"))
    assert h.ingest("PRODUCT-VARIANTS_V2_Acme_202401010000.csv")["held"] == 1
    # The same SKU again in another case, still waiting: it takes the place of the row held.
    h.drop("PRODUCT-VARIANTS_V2_Acme_202401020000.csv", VARIANTS + variant("a-100", "SKU-1"))
    assert h.ingest("PRODUCT-VARIANTS_V2_Acme_202401020000.csv")["held"] == 1
    assert [r["key"] for r in h.rows("held")] == ["sku-1"]
    h.drop("PRODUCT_V2_Acme_202401030000.csv", PRODUCT + product("A-100"))
    h.ingest("PRODUCT_V2_Acme_202401030000.csv")
    _, released = apply_pending(engine, h.layout, h.brand, "product_variants")  # as the sensor asks once it arrived
    assert released.released == 1 and h.rows("held") == []
    assert refs(h, "product_variants", "product_ref", "sku") == [("a-100", "SKU-1")]
    assert refs(h, "products", "product_ref") == [("A-100",)]


def test_prices_inventory_and_images_naming_a_ref_in_another_case_find_their_product(engine, tmp_path):
    h = brand_harness(NATIVE, engine, tmp_path)
    h.drop("PRODUCT_V2_Acme_202401010000.csv", PRODUCT + product("A-100"))
    h.ingest("PRODUCT_V2_Acme_202401010000.csv")
    for name, body in (("PRODUCT-PRICES_V2_Acme_202401020000.csv", PRICES + "a-100,*,10.00,EUR,,,,\n"),
                       ("PRODUCT-INVENTORY_V2_Acme_202401020000.csv", INVENTORY + "a-100,Sku-1,5,B32,2024-01-02T10:00:00\n"),
                       ("PRODUCT-IMAGES_V2_Acme_202401020000.csv",
                        IMAGES + "a-100,,https://cdn.example.com/1.jpg,1\na-100,,https://cdn.example.com/2.jpg,2\n")):
        h.drop(name, body)
        f = h.ingest(name)
        assert (f["inserted"], f["held"]) == (body.count("\n") - 1, 0), name
    # The same scopes in other cases: the same records, as now sent; an image set for the product
    # in another case replaces the product's set.
    h.drop("PRODUCT-PRICES_V2_Acme_202401030000.csv", PRICES + "A-100,*,12.00,EUR,,,,\n")
    h.drop("PRODUCT-INVENTORY_V2_Acme_202401030000.csv", INVENTORY + "A-100,SKU-1,7,B32,2024-01-03T10:00:00\n")
    h.drop("PRODUCT-IMAGES_V2_Acme_202401030000.csv", IMAGES + "A-100,,https://cdn.example.com/3.jpg,1\n")
    assert h.ingest("PRODUCT-PRICES_V2_Acme_202401030000.csv")["updated"] == 1
    assert h.ingest("PRODUCT-INVENTORY_V2_Acme_202401030000.csv")["updated"] == 1
    images = h.ingest("PRODUCT-IMAGES_V2_Acme_202401030000.csv")
    assert (images["updated"], images["deleted"]) == (1, 1)
    assert [(r["product_ref"], str(r["price"])) for r in h.rows("product_prices")] == [("A-100", "12.00")]
    assert refs(h, "product_inventory", "product_ref", "sku", "quantity") == [("A-100", "SKU-1", 7)]
    assert refs(h, "product_images", "product_ref", "position", "image_url") == [("A-100", 1, "https://cdn.example.com/3.jpg")]


def test_a_file_sending_one_key_in_two_cases_rejects_the_later_line(engine, tmp_path):
    h = brand_harness(NATIVE, engine, tmp_path)
    h.drop("PRODUCT_V2_Acme_202401010000.csv", PRODUCT + product("a-100") + product("A-100", "Other"))
    f = h.ingest("PRODUCT_V2_Acme_202401010000.csv")
    assert (f["inserted"], f["rejected"]) == (1, 1)
    # The reject shows the ref the brand wrote on that line.
    assert h.rejects("PRODUCT_V2_Acme_202401010000.csv") == [(3, "product_ref+language_code", "A-100|en", "duplicate_key")]
    assert refs(h, "products", "product_ref", "name") == [("a-100", "Bag")]
    h.drop("PRODUCT-VARIANTS_V2_Acme_202401020000.csv", VARIANTS + variant("A-100", "SKU-1") + variant("a-100", "sku-1"))
    h.ingest("PRODUCT-VARIANTS_V2_Acme_202401020000.csv")
    assert h.rejects("PRODUCT-VARIANTS_V2_Acme_202401020000.csv") == [(3, "sku", "sku-1", "duplicate_key")]
    assert refs(h, "product_variants", "product_ref", "sku") == [("A-100", "SKU-1")]


def test_an_older_warehouse_keeps_its_lower_cased_refs_and_matches_them_in_any_case(warehouse_url, tmp_path):
    old = older_schema()
    before = sa.create_engine(warehouse_url)
    with before.begin() as conn:  # as version 2 left it: refs lower-cased, in the primary key
        old.create_all(conn)
        conn.execute(old.tables["products"].insert(), [
            {"brand": "acme", "product_ref": ref, "language_code": "en", "name": "Bag", "published": True, "_file": "old.csv",
             "_updated_at": now()} for ref in ("p-1", "p-2")])
        conn.execute(old.tables["product_variants"].insert().values(
            brand="acme", product_ref="p-1", sku="sku-1", language_code="en", published=True, _file="old.csv",
            _updated_at=now()))
        payload = {c.name: None for c in old.tables["product_variants"].columns if c.name in VARIANTS.strip().split(",")}
        conn.execute(old.tables["held"].insert().values(
            brand="acme", entity="product_variants", key="sku-3", source="main", file="old.csv", line=2, cause="reference",
            reason="product_ref 'p-3' is not a known products record yet", held_at=now(),
            payload=json.dumps(payload | {"product_ref": "p-3", "sku": "sku-3", "language_code": "en", "published": True,
                                          "_line": 2})))
    before.dispose()
    engine = engine_for(warehouse_url)
    with engine.connect() as conn:
        key = sa.inspect(conn).get_pk_constraint("products")["constrained_columns"]
        stored = conn.execute(sa.select(ENTITY_TABLES["products"].c.product_ref, ENTITY_TABLES["products"].c._product_ref_key)
                              .order_by(ENTITY_TABLES["products"].c.product_ref)).all()
    assert key == ["brand", "_product_ref_key", "language_code"]
    assert [tuple(r) for r in stored] == [("p-1", "p-1"), ("p-2", "p-2")]  # kept as they were
    h = brand_harness(NATIVE, engine, tmp_path)
    # A variant naming an older product in another case resolves; the same SKU in another case is its record.
    h.drop("PRODUCT-VARIANTS_V2_Acme_202401010000.csv", VARIANTS + variant("P-2", "SKU-1"))
    f = h.ingest("PRODUCT-VARIANTS_V2_Acme_202401010000.csv")
    assert (f["inserted"], f["updated"], f["held"]) == (0, 1, 0)
    # An older product sent again in another case: the same record, as now sent; the row held
    # before the migration is released when its product arrives, in whatever case.
    h.drop("PRODUCT_V2_Acme_202401020000.csv", PRODUCT + product("P-1") + product("P-3"))
    f = h.ingest("PRODUCT_V2_Acme_202401020000.csv")
    assert (f["inserted"], f["updated"]) == (1, 1)
    assert apply_pending(engine, h.layout, h.brand, "product_variants")[1].released == 1
    assert refs(h, "products", "product_ref") == [("P-1",), ("P-3",), ("p-2",)]
    assert refs(h, "product_variants", "product_ref", "sku") == [("P-2", "SKU-1"), ("p-3", "sku-3")]
    assert h.rows("held") == []
