"""The platform's rules as the warehouse applies them, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bspk_pipelines_tests.builders import (
    ADDRESS, IMAGES, INVENTORY, PRICES, PRODUCT, SHOPPER, STORE, VARIANTS, brand_harness,
)


def shopper(ref: str, city: str = "Paris", email: str = "a@example.com", phone: str = "") -> str:
    return f"{ref},Marie,Curie,,,F,{email},,{phone},,,,,,{city},,,FR,,,,,TRUE,FALSE\n"


def test_only_changed_rows_are_written_and_blank_resets(harness):
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1") + shopper("S2"))
    first = harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    assert (first["inserted"], first["updated"], first["unchanged"]) == (2, 0, 0)
    # Once applied, only the landed original stays on disk; the intermediate parts are gone.
    assert harness.layout.landed("acme", "main", "SHOPPER_V3_Acme_202401010000.csv").exists()
    for layer in ("validated", "mapped"):
        assert not harness.layout.work("acme", "main", "shoppers", first["name"], first["claim"], layer).exists()
    assert not any((harness.layout.data_dir / "acme" / "work" / "main" / "shoppers" / "claims").iterdir())
    stamp = {r["shopper_ref"]: r["_file"] for r in harness.rows("shoppers")}
    # S1 unchanged, S2 sends a blank email: a blank non-required value resets the attribute.
    harness.drop("SHOPPER_V3_Acme_202401020000.csv", SHOPPER + shopper("S1") + shopper("S2", email=""))
    second = harness.ingest("SHOPPER_V3_Acme_202401020000.csv")
    assert (second["inserted"], second["updated"], second["unchanged"]) == (0, 1, 1)
    rows = {r["shopper_ref"]: r for r in harness.rows("shoppers")}
    assert rows["S2"]["email"] is None
    assert rows["S1"]["_file"] == stamp["S1"]  # the unchanged row was not rewritten


def test_same_rows_delivered_again_change_nothing(harness):
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1") + shopper("S2"))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    before = harness.rows("shoppers")
    # The same rows in another order: other bytes, same content.
    harness.drop("SHOPPER_V3_Acme_202401020000.csv", SHOPPER + shopper("S2") + shopper("S1"))
    again = harness.ingest("SHOPPER_V3_Acme_202401020000.csv")
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert harness.rows("shoppers") == before
    # The very same file name again: imported once, nothing recorded twice.
    assert harness.ingest("SHOPPER_V3_Acme_202401020000.csv") == again


def test_soft_delete_flag_keeps_the_record(harness):
    harness.drop("STORE_V2_Acme_202401010000.csv", STORE + "ST1,Saint Honore,,Paris,,,FR,EUR,,,,,TRUE\n")
    harness.ingest("STORE_V2_Acme_202401010000.csv")
    harness.drop("STORE_V2_Acme_202401020000.csv", STORE + "ST1,Saint Honore,,Paris,,,FR,EUR,,,,,FALSE\n")
    f = harness.ingest("STORE_V2_Acme_202401020000.csv")
    assert f["updated"] == 1
    (store,) = harness.rows("stores")
    assert store["active"] in (False, 0)


def test_product_refs_are_case_insensitive_across_files(harness):
    harness.drop("PRODUCT_V2_Acme_202401010000.csv", PRODUCT + "B234c9,Jacket,,Coats>>Rain; Outdoor,en,Acme,TRUE\n")
    harness.ingest("PRODUCT_V2_Acme_202401010000.csv")
    harness.drop("PRODUCT_V2_Acme_202401020000.csv", PRODUCT + "b234C9,Rain Jacket,,Coats>>Rain; Outdoor,en,Acme,TRUE\n")
    f = harness.ingest("PRODUCT_V2_Acme_202401020000.csv")
    assert (f["inserted"], f["updated"]) == (0, 1)
    (product,) = harness.rows("products")
    # One record, its ref as last sent; the key matches on the folded copy.
    assert (product["product_ref"], product["_product_ref_key"]) == ("b234C9", "b234c9")
    assert product["name"] == "Rain Jacket"
    assert product["categories"] == "Coats>>Rain;Outdoor" and product["product_brand"] == "Acme"
    harness.drop("PRODUCT-VARIANTS_V2_Acme_202401030000.csv", VARIANTS + "B234C9,SKU-1,,Color,Green,,,,,en,,TRUE\n")
    variant = harness.ingest("PRODUCT-VARIANTS_V2_Acme_202401030000.csv")
    assert (variant["inserted"], variant["held"]) == (1, 0)
    ((ref, sku),) = [(r["product_ref"], r["sku"]) for r in harness.rows("product_variants")]
    assert (ref, sku) == ("B234C9", "SKU-1")


def test_images_replace_the_whole_set_of_a_product(harness):
    harness.drop("PRODUCT_V2_Acme_202401010000.csv", PRODUCT + "300,Bag,,,en,,TRUE\n301,Belt,,,en,,TRUE\n")
    harness.ingest("PRODUCT_V2_Acme_202401010000.csv")
    harness.drop("PRODUCT-IMAGES_V2_Acme_202401010100.csv",
                 IMAGES + "300,,https://cdn.example.com/image1.jpg,1\n300,,https://cdn.example.com/image2.jpg,2\n301,,https://cdn.example.com/belt.jpg,1\n")
    harness.ingest("PRODUCT-IMAGES_V2_Acme_202401010100.csv")
    harness.drop("PRODUCT-IMAGES_V2_Acme_202401020000.csv",
                 IMAGES + '300,,https://cdn.example.com/image-var1.1.jpg,1\n300,VAR1;VAR2,https://cdn.example.com/image-var1.2.jpg,3\n')
    f = harness.ingest("PRODUCT-IMAGES_V2_Acme_202401020000.csv")
    assert (f["inserted"], f["updated"], f["deleted"]) == (1, 1, 1)
    images = [(r["product_ref"], r["position"], r["image_url"].rsplit("/", 1)[1], r["skus"])
              for r in harness.rows("product_images", "product_ref, position")]
    assert images == [
        ("300", 1, "image-var1.1.jpg", None),
        ("300", 3, "image-var1.2.jpg", "VAR1;VAR2"),
        ("301", 1, "belt.jpg", None),  # another product's set is untouched
    ]


def test_inventory_keeps_the_latest_measurement_whatever_the_file_order(harness):
    harness.drop("PRODUCT_V2_Acme_202401010000.csv", PRODUCT + "P1,Bag,,,en,,TRUE\n")
    harness.ingest("PRODUCT_V2_Acme_202401010000.csv")
    harness.drop("PRODUCT-INVENTORY_V2_Acme_202401020000.csv",
                 INVENTORY + "P1,SKU1,5,B32,2024-01-02T10:00:00\nP1,SKU1,7,B32,2024-01-02T12:00:00\n")
    first = harness.ingest("PRODUCT-INVENTORY_V2_Acme_202401020000.csv")
    assert first["inserted"] == 1
    # A later file carrying an older measurement does not win.
    harness.drop("PRODUCT-INVENTORY_V2_Acme_202401030000.csv", INVENTORY + "P1,SKU1,3,B32,2024-01-01T09:00:00\n")
    late = harness.ingest("PRODUCT-INVENTORY_V2_Acme_202401030000.csv")
    assert (late["updated"], late["unchanged"]) == (0, 1)
    (row,) = harness.rows("product_inventory")
    assert row["quantity"] == 7


def test_prices_scheduled_beside_current_and_discount_needs_discounted(harness):
    harness.drop("PRODUCT_V2_Acme_202401010000.csv", PRODUCT + "P1,Bag,,,en,,TRUE\n")
    harness.ingest("PRODUCT_V2_Acme_202401010000.csv")
    harness.drop("PRODUCT-PRICES_V2_Acme_202401020000.csv", PRICES +
                 "P1,*,399.99,USD,,,,\n"
                 "P1,*,449.00,USD,,2030-01-01,,FALSE\n"
                 "P1,*,299.00,USD,B32;C85,2024-06-01,2024-06-30,TRUE\n"
                 "P1,*,199.00,USD,,,2024-06-30,FALSE\n")
    f = harness.ingest("PRODUCT-PRICES_V2_Acme_202401020000.csv")
    assert f["inserted"] == 3 and harness.rejects("PRODUCT-PRICES_V2_Acme_202401020000.csv") == [
        (5, "ending_on", "2024-06-30", "ending_on_needs_discount")]
    harness.drop("PRODUCT-PRICES_V2_Acme_202401030000.csv", PRICES + "P1,*,379.99,USD,,,,\n")
    newer = harness.ingest("PRODUCT-PRICES_V2_Acme_202401030000.csv")
    assert (newer["inserted"], newer["updated"]) == (0, 1)  # a newer standard price replaces the current one
    prices = sorted((float(r["price"]), str(r["starting_on"] or "")[:10], r["discounted"] in (True, 1)) for r in harness.rows("product_prices"))
    assert prices == [(299.0, "2024-06-01", True), (379.99, "", False), (449.0, "2030-01-01", False)]


def test_held_address_applied_when_its_shopper_arrives(harness):
    harness.drop("SHOPPER-ADDRESS_V3_Acme_202401010000.csv", ADDRESS + "S9,HOME,1 rue X,,,,,,,Paris,,,France,FR,75001\n")
    f = harness.ingest("SHOPPER-ADDRESS_V3_Acme_202401010000.csv")
    assert (f["inserted"], f["held"]) == (0, 1)
    harness.drop("SHOPPER_V3_Acme_202401020000.csv", SHOPPER + shopper("S9"))
    harness.ingest("SHOPPER_V3_Acme_202401020000.csv")
    from bspk_pipelines.ingest.apply import apply_pending

    _, released = apply_pending(harness.engine, harness.layout, harness.brand, "shopper_addresses")
    assert released.released == 1 and released.inserted == 1
    assert [r["address_ref"] for r in harness.rows("shopper_addresses")] == ["HOME"]
    assert harness.rows("held") == []


MULTI = {
    "brand": "maison", "company_name": "Maison",
    "sources": {
        "pos": {"format": "csv", "drop": "drop/pos", "dialect": {"delimiter": ";"}, "files": [{
            "pattern": "ART_*.csv", "entity": "products",
            "columns": {"product_ref": {"from": "ART"}, "name": {"from": "LIB"}, "description": {"from": "DESC"},
                        "published": {"constant": "TRUE"}},
        }]},
        "erp": {"format": "csv", "drop": "drop/erp", "files": [{
            "pattern": "items_*.csv", "entity": "products",
            "columns": {"product_ref": {"from": "item"}, "name": {"from": "title"}, "description": {"from": "long_text"},
                        "published": {"from": "live", "values": {"yes": "TRUE", "no": "FALSE"}}},
        }]},
    },
    "precedence": {"products": {"default": ["erp", "pos"], "name": ["pos", "erp"], "description": ["erp"]}},
}


@pytest.fixture
def maison(engine, tmp_path):
    return brand_harness(MULTI, engine, tmp_path)


def test_precedence_picks_each_attribute_from_its_owner(maison):
    maison.drop("ART_1.csv", "ART;LIB;DESC\nP1;Sac Kelly;pos text\nP2;Carre;\n", source="pos")
    f = maison.ingest("ART_1.csv", source="pos")
    assert (f["inserted"], f["held"]) == (2, 0)
    (p1, p2) = maison.rows("products", "product_ref")
    assert (p1["name"], p1["description"], p1["published"] in (True, 1)) == ("Sac Kelly", None, True)
    maison.drop("items_1.csv", "item,title,long_text,live\nP1,KELLY BAG,Hand-stitched calfskin,no\n", source="erp")
    f = maison.ingest("items_1.csv", source="erp")
    assert f["updated"] == 1
    (p1, p2) = maison.rows("products", "product_ref")
    # Name stays POS's; description is ERP's (POS never owns it); published is ERP's first.
    assert (p1["name"], p1["description"], p1["published"] in (False, 0)) == ("Sac Kelly", "Hand-stitched calfskin", True)
    # POS sends a blank description: not its attribute, so nothing is blanked.
    maison.drop("ART_2.csv", "ART;LIB;DESC\nP1;Sac Kelly 25;\n", source="pos")
    maison.ingest("ART_2.csv", source="pos")
    (p1, _) = maison.rows("products", "product_ref")
    assert (p1["name"], p1["description"]) == ("Sac Kelly 25", "Hand-stitched calfskin")
    # ERP, the owner, blanks it: the blank-resets rule applies to the owning source.
    maison.drop("items_2.csv", "item,title,long_text,live\nP1,KELLY BAG,,no\n", source="erp")
    maison.ingest("items_2.csv", source="erp")
    (p1, _) = maison.rows("products", "product_ref")
    assert p1["description"] is None and p1["name"] == "Sac Kelly 25"


def test_record_waits_for_the_source_that_owns_a_required_attribute(engine, tmp_path):
    config = {**MULTI, "precedence": {"products": {"name": ["pos"], "default": ["erp", "pos"]}}}
    h = brand_harness(config, engine, tmp_path)
    h.drop("items_1.csv", "item,title,long_text,live\nP7,ERP TITLE,text,yes\n", source="erp")
    f = h.ingest("items_1.csv", source="erp")
    assert (f["inserted"], f["held"]) == (0, 1)  # no name until POS, its owner, sends it
    h.drop("ART_1.csv", "ART;LIB;DESC\nP7;Foulard;\n", source="pos")
    f = h.ingest("ART_1.csv", source="pos")
    (p7,) = h.rows("products")
    assert (f["inserted"], p7["name"], p7["description"]) == (1, "Foulard", "text")
