"""Shopify deliveries: the reader turns a landed JSONL file (the shop on line 1, then nodes as
Shopify's bulk operations write them, children joined to their parents by id wherever they are)
into rows named by Shopify field path, and the built-in mapping takes them through the same
checks, rejects and apply as a brand's own files, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from bspk_pipelines.ingest.check import dry_run
from bspk_pipelines.ingest.mapping import source_columns
from bspk_pipelines.ingest.parse import FileFailure
from bspk_pipelines.model.entities import LINE
from bspk_pipelines.model.shopify import builtin_files
from bspk_pipelines.shopify import records
from bspk_pipelines.shopify.records import NODES, read_batches
from bspk_pipelines_tests.builders import brand_harness, header, shopper_row

SHOP = {"id": "gid://shopify/Shop/1", "name": "Maison", "currencyCode": "EUR", "myshopifyDomain": "maison.myshopify.com"}


def jsonl(*nodes: dict) -> str:
    return "".join(json.dumps(n) + "\n" for n in (SHOP, *nodes))


def customer(n: int, **fields) -> dict:
    return {"id": f"gid://shopify/Customer/{n}", "firstName": "Jane", "lastName": "Smith", "locale": "fr-CA",
            "tags": ["vip", "repeat"], "createdAt": "2025-12-01T09:30:00Z",
            "defaultEmailAddress": {"emailAddress": f"c{n}@example.com"},
            "defaultPhoneNumber": {"phoneNumber": f"+3361234567{n % 10}"},
            "emailMarketingConsent": {"marketingState": "SUBSCRIBED"}, "smsMarketingConsent": None,
            "defaultAddress": {"address1": "1 rue de la Paix", "address2": None, "city": "Paris", "province": "Paris",
                               "zip": "75002", "countryCodeV2": "FR"}, **fields}


def product(n: int, status: str = "ACTIVE") -> dict:
    return {"id": f"gid://shopify/Product/{n}", "title": f"Shoe {n}", "status": status, "vendor": "Acme",
            "productType": "Shoes", "tags": ["red"], "descriptionHtml": "<p>A shoe</p>"}


def variant(n: int, parent: int, sku: str | None, price: str = "19.99", compare: str | None = None) -> dict:
    return {"id": f"gid://shopify/ProductVariant/{n}", "sku": sku, "barcode": None, "price": price,
            "compareAtPrice": compare, "selectedOptions": [{"name": "Size", "value": "42"}],
            "__parentId": f"gid://shopify/Product/{parent}"}


def media(n: int, parent: int, kind: str = "IMAGE") -> dict:
    node = {"id": f"gid://shopify/{'MediaImage' if kind == 'IMAGE' else 'Video'}/{n}", "mediaContentType": kind,
            "__parentId": f"gid://shopify/Product/{parent}"}
    return node | ({"image": {"url": f"https://cdn.shopify.com/{n}.jpg", "altText": None}} if kind == "IMAGE" else {})


def order(n: int, customer_id: int | None, test: bool = False) -> dict:
    return {"id": f"gid://shopify/Order/{n}", "name": f"#{n}", "test": test, "createdAt": "2026-01-15T10:00:00Z",
            "processedAt": "2026-01-14T09:00:00Z", "cancelledAt": None,
            "customer": {"id": f"gid://shopify/Customer/{customer_id}"} if customer_id else None}


def line_item(n: int, parent: int, product_id: int | None, quantity: int = 2, current: int = 2) -> dict:
    return {"id": f"gid://shopify/LineItem/{n}", "sku": f"SKU-{product_id}", "quantity": quantity,
            "currentQuantity": current,
            "originalUnitPriceSet": {"shopMoney": {"amount": "19.99", "currencyCode": "EUR"}},
            "product": {"id": f"gid://shopify/Product/{product_id}"} if product_id else None,
            "variant": None, "__parentId": f"gid://shopify/Order/{parent}"}


LOCATION = {"id": "gid://shopify/Location/77", "name": "Paris Opéra", "isActive": True,
            "address": {"address1": "1 rue Auber", "address2": "2e étage", "city": "Paris", "province": None,
                        "zip": "75009", "countryCode": "FR", "phone": "+33140000000"}}


def rows_of(path: Path, entity: str, batch_rows: int = 100_000) -> pl.DataFrame:
    batches = list(read_batches(path, entity, batch_rows))
    assert all(not b.problems for b in batches)
    return pl.concat([b.rows for b in batches])


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- the reader ----------------------------------------------------------------------------------


def test_a_customer_is_a_row_of_text_columns_named_by_field_path(tmp_path):
    path = write(tmp_path, "customers_pull_20261202T013000123456Z.jsonl",
                 jsonl(customer(1), customer(2, tags=[], defaultPhoneNumber=None, locale=None)))
    rows = rows_of(path, "shoppers")
    assert rows.schema[LINE] == pl.Int64 and all(t == pl.Utf8 for c, t in rows.schema.items() if c != LINE)
    expected = {"id": "gid://shopify/Customer/1", "defaultAddress.city": "Paris",
                "defaultPhoneNumber.phoneNumber": "+33612345671", "emailMarketingConsent.marketingState": "SUBSCRIBED",
                "smsMarketingConsent.marketingState": None, "tags": "vip;repeat", "shop.currencyCode": "EUR", LINE: 2}
    first = rows.row(0, named=True)
    assert {k: first[k] for k in expected} == expected
    second = rows.row(1, named=True)
    assert (second["tags"], second["defaultPhoneNumber.phoneNumber"], second["locale"], second[LINE]) == (None, None, None, 3)


def test_a_customer_who_calls_herself_parentid_is_no_child_line(tmp_path):
    """Shoppers write their own names: a value that reads `__parentId` is a value, not the key."""
    path = write(tmp_path, "customers_pull_20261202T013000123456Z.jsonl",
                 jsonl(customer(1, firstName="__parentId"), customer(2, note='say "__parentId": twice')))
    rows = rows_of(path, "shoppers")
    assert rows["firstName"].to_list() == ["__parentId", "Jane"] and rows["note"].to_list()[1] == 'say "__parentId": twice'


def test_children_before_and_after_their_parent_carry_its_fields_and_their_own_line(tmp_path):
    path = write(tmp_path, "products_bulk_20261202T013000123456Z.jsonl", jsonl(
        variant(21, 2, "B-1"),                      # before its product
        product(1), variant(11, 1, "A-1", compare="25.00"), media(101, 1), media(102, 1, "VIDEO"),
        product(2, status="DRAFT"),
        media(103, 1), variant(12, 1, "A-2", price="30.00", compare="30.00")))  # after another product
    variants = rows_of(path, "product_variants", batch_rows=1)
    assert variants.select("sku", "product.id", "product.status", "selectedOptions[0].name", LINE).rows() == [
        ("B-1", "gid://shopify/Product/2", "DRAFT", "Size", 2), ("A-1", "gid://shopify/Product/1", "ACTIVE", "Size", 4),
        ("A-2", "gid://shopify/Product/1", "ACTIVE", "Size", 9)]
    # On sale only where compareAtPrice is above price; another compareAtPrice is none.
    prices = rows_of(path, "product_prices")
    assert prices.select("sku", "price", "compareAtPrice", "onSale").rows() == [
        ("B-1", "19.99", None, "FALSE"), ("A-1", "19.99", "25.00", "TRUE"), ("A-2", "30.00", None, "FALSE")]
    # Images are numbered among their product's images, across batches; a video is not an image.
    images = rows_of(path, "product_images", batch_rows=1)
    assert images.select("mediaContentType", "image.url", "position", LINE).rows() == [
        ("IMAGE", "https://cdn.shopify.com/101.jpg", "1", 5), ("VIDEO", None, None, 6),
        ("IMAGE", "https://cdn.shopify.com/103.jpg", "2", 8)]
    assert rows_of(path, "products").select("id", LINE).rows() == [("gid://shopify/Product/1", 3),
                                                                   ("gid://shopify/Product/2", 7)]


def test_a_line_item_is_a_row_of_its_own_line_with_its_orders_fields(tmp_path):
    path = write(tmp_path, "orders_pull_20261202T013000123456Z.jsonl", jsonl(
        line_item(1, 1001, 1), order(1001, 5), order(1002, None), line_item(2, 1002, None), line_item(3, 1001, 2)))
    rows = rows_of(path, "sales", batch_rows=2)
    assert rows.select("order.name", "order.customer.id", "product.id", "currentQuantity",
                       "originalUnitPriceSet.shopMoney.amount", "order.test", LINE).rows() == [
        ("#1001", "gid://shopify/Customer/5", "gid://shopify/Product/1", "2", "19.99", "false", 2),
        ("#1002", None, None, "2", "19.99", "false", 5),
        ("#1001", "gid://shopify/Customer/5", "gid://shopify/Product/2", "2", "19.99", "false", 6)]
    assert "order.cancelledAt" not in rows.columns  # of a parent, only what the mapping reads is kept


@pytest.mark.parametrize("entity", list(NODES))
def test_every_column_the_built_in_mapping_reads_is_one_the_reader_gives(tmp_path, entity):
    obj = next(o for o in ("customers", "products", "orders", "locations")
               if entity in builtin_files(o, "en")[0].feeds)
    path = write(tmp_path, f"{obj}_pull_20261202T013000123456Z.jsonl", jsonl())
    columns = set(rows_of(path, entity).columns)
    assert set(source_columns(builtin_files(obj, "en")[0].feeds[entity])) <= columns


@pytest.mark.parametrize("content, problem", [
    ("", "line 1: expected the shop's node"),
    (json.dumps(customer(1)) + "\n", "line 1: expected the shop's node"),
    (jsonl(customer(1)) + "{not json\n", "line 3: not JSON"),
    (jsonl(customer(1)) + "[1, 2]\n", "line 3: a JSON list, not a node"),
    (jsonl(customer(1)) + "\n" + json.dumps(customer(2)) + "\n", "line 3: a blank line"),
    (jsonl(customer(1), customer(2) | {"defaultAddress": "1 rue de la Paix"}), "not in the shape"),
])
def test_a_file_that_is_no_delivery_fails_naming_the_line(tmp_path, content, problem):
    path = write(tmp_path, "customers_pull_20261202T013000123456Z.jsonl", content)
    with pytest.raises(FileFailure, match=problem) as e:
        rows_of(path, "shoppers")
    assert str(e.value).startswith(path.name) and "Pull it again" in str(e.value)


def test_a_line_over_the_most_a_row_may_hold_fails_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "MAX_ROW_BYTES", 1000)
    path = write(tmp_path, "customers_pull_20261202T013000123456Z.jsonl",
                 jsonl(customer(1), customer(2, note="x" * 2500), customer(3)))
    with pytest.raises(FileFailure, match="line 3: longer than 1,000 bytes"):
        rows_of(path, "shoppers")


# --- through the pipeline ------------------------------------------------------------------------

BRAND = {"brand": "acme", "company_name": "Acme", "sources": {"shop": {
    "format": "shopify", "shop": "x.myshopify.com", "api_version": "2026-01", "token_env": "X_TOKEN", "language": "fr"}}}
STAMP = "20261202T013000123456Z"


def shop_harness(engine, tmp_path):
    h = brand_harness(BRAND, engine, tmp_path)
    assert h.layout.drop(h.brand, "shop") == tmp_path / "data" / "acme" / "shopify" / "shop"
    return h


def deliver(h, obj: str, *nodes: dict) -> str:
    name = f"{obj}_pull_{STAMP}.jsonl"
    h.drop(name, jsonl(*nodes), source="shop")
    h.ingest(name, source="shop")
    return name


def test_a_shop_reaches_the_warehouse_and_its_rejects_name_shopifys_fields(engine, tmp_path):
    h = shop_harness(engine, tmp_path)
    customers = deliver(h, "customers", customer(5), customer(6, defaultPhoneNumber={"phoneNumber": "06 12 34"},
                                                               smsMarketingConsent={"marketingState": "UNSUBSCRIBED"}))
    assert h.rejects(customers) == [(3, "defaultPhoneNumber.phoneNumber", "06 12 34", "e164_phone")]
    [shopper] = h.rows("shoppers")
    assert {k: shopper[k] for k in ("shopper_ref", "email", "mobile_phone", "city", "state", "zip_code", "country_code",
                                    "preferences", "languages", "email_contact", "chat_contact")} == {
        "shopper_ref": "5", "email": "c5@example.com", "mobile_phone": "+33612345675", "city": "Paris", "state": "Paris",
        "zip_code": "75002", "country_code": "FR", "preferences": "vip;repeat", "languages": "fr",
        "email_contact": True, "chat_contact": None}
    assert str(shopper["creation_date"]) == "2025-12-01"

    deliver(h, "locations", LOCATION)
    [store] = h.rows("stores")
    assert (store["store_ref"], store["name"], store["address"], store["currency_code"], store["phone"], store["active"]) == (
        "77", "Paris Opéra", "1 rue Auber, 2e étage", "EUR", "+33140000000", True)

    products = deliver(h, "products", media(101, 1), product(1), variant(11, 1, "A-1", compare="25.00"),
                       variant(12, 1, None), product(2, status="DRAFT"), variant(21, 2, "B-1"), media(102, 1, "VIDEO"),
                       media(103, 1))
    assert [(r["product_ref"], r["name"], r["published"]) for r in h.rows("products", "product_ref")] == [
        ("1", "Shoe 1", True), ("2", "Shoe 2", False)]
    assert [(r["sku"], r["product_ref"], r["option_1_name"], r["option_1_value"], r["language_code"], r["published"])
            for r in h.rows("product_variants", "sku")] == [("A-1", "1", "Size", "42", "fr", True),
                                                              ("B-1", "2", "Size", "42", "fr", False)]
    assert sorted((r["sku"], Decimal(str(r["price"])), r["discounted"], r["currency_code"])
                  for r in h.rows("product_prices")) == [
        ("A-1", Decimal("19.99"), True, "EUR"), ("A-1", Decimal("25.00"), False, "EUR"),
        ("B-1", Decimal("19.99"), False, "EUR")]
    assert [(r["product_ref"], r["image_url"], r["position"]) for r in h.rows("product_images", "position")] == [
        ("1", "https://cdn.shopify.com/101.jpg", 1), ("1", "https://cdn.shopify.com/103.jpg", 2)]
    # The variant without a SKU is rejected as a variant and as a price, saying why.
    assert h.rejects(products) == [(5, "sku", "", "required")] * 2
    assert h.file(products, "shop", "product_images")["skipped"] == 1  # the video

    orders = deliver(h, "orders", line_item(1, 1001, 1), order(1001, 5), line_item(2, 1001, 2, quantity=1, current=0),
                     order(1002, None), line_item(3, 1002, 1), order(1003, 5, test=True), line_item(4, 1003, 1),
                     line_item(5, 1001, None))
    assert [(r["sale_ref"], r["product_ref"], r["sku"], Decimal(str(r["quantity"])), r["shopper_ref"],
             str(r["created_at"])[:19]) for r in h.rows("sales", "sku")] == [
        ("#1001", "1", "SKU-1", Decimal(2), "5", "2026-01-14 09:00:00"),
        ("#1001", "2", "SKU-2", Decimal(0), "5", "2026-01-14 09:00:00")]
    assert h.rejects(orders) == [(6, "order.customer.id", "", "required"), (9, "product.id", "", "required")]
    sales = h.file(orders, "shop", "sales")
    assert (sales["rows_read"], sales["rejected"], sales["skipped"]) == (5, 2, 1)
    assert {m["month"] for m in h.rows("months")} >= {"2026-01"}


def test_rejects_say_why_shopify_left_a_required_value_out(engine, tmp_path):
    h = shop_harness(engine, tmp_path)
    path = write(tmp_path, f"orders_pull_{STAMP}.jsonl", jsonl(order(1002, None), line_item(3, 1002, None)))
    sales = dry_run(h.brand, "shop", "sales", path)
    assert [(p.line, p.column, p.rule) for p in sales.rejects] == [(3, "order.customer.id", "required"),
                                                                    (3, "product.id", "required")]
    assert "guest orders cannot be held" in sales.rejects[0].message
    assert "deleted in Shopify, or it is a custom item" in sales.rejects[1].message
    path = write(tmp_path, f"products_pull_{STAMP}.jsonl", jsonl(product(1), variant(12, 1, None)))
    variants = dry_run(h.brand, "shop", "product_variants", path)
    assert [(p.line, p.column, p.rule) for p in variants.rejects] == [(3, "sku", "required")]
    assert "give the variant a SKU in Shopify" in variants.rejects[0].message


def test_shopify_and_a_pos_share_a_shopper_by_precedence(engine, tmp_path):
    """The shop owns the email and the marketing consent, the POS the names: each source's
    delivery sets only what precedence gives it, whichever comes first."""
    config = {**BRAND, "sources": {**BRAND["sources"], "pos": {"format": "bspk", "drop": "drop/acme"}},
              "precedence": {"shoppers": {"default": ["pos", "shop"], "email": ["shop", "pos"],
                                          "email_contact": ["shop", "pos"]}}}
    h = brand_harness(config, engine, tmp_path)
    deliver(h, "customers", customer(5, firstName="Janet"))
    pos = "SHOPPER_V3_Acme_202612020200.csv"
    h.drop(pos, header("shoppers") + "\n" + shopper_row("5", first="Jeanne", email="pos@example.com") + "\n", "pos")
    h.ingest(pos, "pos")
    [shopper] = h.rows("shoppers")
    assert (shopper["first_name"], shopper["email"], shopper["email_contact"]) == ("Jeanne", "c5@example.com", True)
