"""A brand's own exports end to end, on SQLite and PostgreSQL: rows its mapping skips are counted
and never rejected, a file with one column per store or currency is unpivoted into rows that keep
their line (a duplicate or a bad cell costs that cell alone), and a reject shows the value as the
brand sent it with what to change in the mapping."""

from __future__ import annotations

import sqlalchemy as sa

from bspk_pipelines.cli.sync import summary
from bspk_pipelines.ingest import check as check_step
from bspk_pipelines.ingest.check import validate_file
from bspk_pipelines.ingest.drop import classify
from bspk_pipelines.ingest.land import land
from bspk_pipelines_tests.builders import Harness, brand_harness
from bspk_pipelines_tests.test_bad_inputs import applied

ARTICLES = {
    "pattern": "ARTICLES_*.csv",
    "entities": {
        "products": {
            "skip": [{"column": "REF", "matches": "^TEST-"}],
            "columns": {"product_ref": {"from": "REF"}, "name": {"from": "NAME"}, "published": {"constant": "TRUE"}},
        },
        "product_images": {
            # An article without an image, deleted or a draft, or a test article, sends no image.
            "skip": [{"blank": "IMAGE_URL"}, {"column": "STATUS", "in": ["DELETED", "DRAFT"]},
                     {"column": "REF", "matches": "^TEST-"}],
            "columns": {"product_ref": {"from": "REF"}, "image_url": {"from": "IMAGE_URL"}, "position": {"constant": "1"}},
        },
    },
}
STOCK = {
    "pattern": "STOCK_*.csv",
    "entity": "product_inventory",
    "unpivot": {"matching": "^STOCK_", "name": "STORE", "value": "QTY"},
    "skip": [{"blank": "QTY"}],
    "columns": {"product_ref": {"from": "REF"}, "sku": {"from": "SKU"}, "quantity": {"from": "QTY"}, "at": {"from": "AT"},
                "store_ref": {"from": "STORE", "transforms": [{"strip_prefix": "STOCK_"}]}},
}
PRICES = {
    "pattern": "PRICES_*.csv",
    "entity": "product_prices",
    "unpivot": {"columns": ["PRICE_EUR", "PRICE_USD"], "name": "CURRENCY", "value": "PRICE"},
    "skip": [{"blank": "PRICE"}],
    "columns": {"product_ref": {"from": "REF"}, "sku": {"constant": "*"}, "price": {"from": "PRICE"},
                "currency_code": {"from": "CURRENCY", "transforms": [{"strip_prefix": "PRICE_"}]}},
}
TICKETS = {
    "pattern": "TICKETS_*.csv",
    "entity": "sales",
    # A sales summary with a column per day: its rows are dated by their column.
    "unpivot": {"matching": r"^\d{4}-\d{2}-\d{2}$", "name": "DAY", "value": "QTY"},
    "skip": [{"blank": "QTY"}],
    "columns": {"sale_ref": {"template": "{TICKET}-{DAY}"}, "product_ref": {"from": "REF"}, "quantity": {"from": "QTY"},
                "price": {"from": "PRICE"}, "currency_code": {"constant": "EUR"}, "created_at": {"from": "DAY"},
                "shopper_ref": {"from": "CLIENT"}},
}
GERMAN_PRICES = {
    "pattern": "PREISE_*.csv",
    "entity": "product_prices",
    "columns": {"product_ref": {"from": "Artikel"}, "sku": {"constant": "*"}, "price": {"from": "Preis"},
                "currency_code": {"constant": "EUR"}, "discounted": {"from": "Aktion"}},
}
ARTICLES_FILE = "ARTICLES_20260101.csv"
ARTICLE_LINES = (
    "REF;NAME;IMAGE_URL;STATUS\n"
    "A1;Tote;https://cdn.example/a1.jpg;ACTIVE\n"
    "A2;Bag;;ACTIVE\n"
    "A3;Scarf;https://cdn.example/a3.jpg;DELETED\n"
    "TEST-4;Test;https://cdn.example/t.jpg;ACTIVE\n"
    "A5;Belt;https://cdn.example/a5.jpg;DRAFT\n"
    "A6;Hat;not-a-url;ACTIVE\n"
)


def exports(engine, tmp_path, *files: dict, dialect: dict | None = None) -> Harness:
    source = {"format": "csv", "drop": "drop/acme/erp", "dialect": {"delimiter": ";", **(dialect or {})}, "files": list(files)}
    return brand_harness({"brand": "acme", "company_name": "Acme", "sources": {"erp": source}}, engine, tmp_path)


def record(h: Harness, name: str, entity: str) -> dict:
    with h.engine.connect() as conn:
        return dict(conn.execute(sa.text("select * from files where brand='acme' and name=:n and entity=:e"),
                                 {"n": name, "e": entity}).mappings().one())


def rejects(h: Harness, name: str, entity: str) -> list[tuple]:
    with h.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            'select line, "column", value, rule, message from rejects where brand=\'acme\' and file=:f and entity=:e '
            'order by line, "column"'), {"f": name, "e": entity})]


def accounted(f: dict) -> bool:
    """Every row the file gave is applied, rejected, superseded or skipped."""
    return applied(f) + f["rejected"] + f["superseded"] + f["skipped"] == f["rows_read"]


def ingest_articles(h: Harness) -> None:
    h.drop(ARTICLES_FILE, ARTICLE_LINES, "erp")
    h.ingest(ARTICLES_FILE, "erp")


# --- skip rules ----------------------------------------------------------------------------------


def test_skipped_rows_are_counted_with_their_rule_and_never_rejected(engine, tmp_path):
    h = exports(engine, tmp_path, ARTICLES)
    ingest_articles(h)
    products, images = record(h, ARTICLES_FILE, "products"), record(h, ARTICLES_FILE, "product_images")
    assert (products["rows_read"], products["skipped"], products["rejected"], products["inserted"]) == (6, 1, 0, 5)
    # A2 has no image, A3 is deleted, TEST-4 a test, A5 a draft: skipped. A6's URL is a reject.
    assert (images["rows_read"], images["skipped"], images["rejected"], images["inserted"]) == (6, 4, 1, 1)
    assert accounted(products) and accounted(images)
    assert [r[:4] for r in rejects(h, ARTICLES_FILE, "product_images")] == [(7, "IMAGE_URL", "not-a-url", "url")]
    assert rejects(h, ARTICLES_FILE, "products") == []
    assert [r["product_ref"] for r in h.rows("product_images")] == ["A1"]
    assert [r["product_ref"] for r in h.rows("products", order_by="product_ref")] == ["A1", "A2", "A3", "A5", "A6"]


def test_checking_a_file_says_what_it_skipped_and_why(engine, tmp_path):
    h = exports(engine, tmp_path, ARTICLES)
    h.drop(ARTICLES_FILE, ARTICLE_LINES, "erp")
    land(h.engine, h.layout, h.brand, classify(h.brand, "erp", ARTICLES_FILE))
    result = validate_file(h.engine, h.layout, h.brand, "erp", "product_images", ARTICLES_FILE)
    assert (result.status, result.rows, result.skipped, result.rejected) == ("validated", 1, 4, 1)
    assert result.skips == [
        {"line": 3, "column": "IMAGE_URL", "value": None, "rule": "blank: IMAGE_URL"},
        {"line": 4, "column": "STATUS", "value": "DELETED", "rule": "STATUS in [DELETED, DRAFT]"},
        {"line": 5, "column": "REF", "value": "TEST-4", "rule": "REF matches '^TEST-'"},
        {"line": 6, "column": "STATUS", "value": "DRAFT", "rule": "STATUS in [DELETED, DRAFT]"},
    ]
    assert validate_file(h.engine, h.layout, h.brand, "erp", "product_images", ARTICLES_FILE).skipped == 0  # checked once


def test_the_sync_summary_shows_skipped_rows(engine, tmp_path):
    h = exports(engine, tmp_path, ARTICLES)
    ingest_articles(h)
    header, *lines = summary(h.engine, ["acme"]).splitlines()
    cols = header.split()[2:]
    table = {line.split()[1]: dict(zip(cols, line.split()[2:])) for line in lines}
    assert "skipped" in cols
    assert (table["product_images"]["rows_read"], table["product_images"]["skipped"], table["product_images"]["rejected"]) == (
        "6", "4", "1")
    assert table["products"]["skipped"] == "1"


# --- unpivot -------------------------------------------------------------------------------------------


def test_an_inventory_file_with_a_column_per_store_gives_a_row_per_store(engine, tmp_path):
    h = exports(engine, tmp_path, ARTICLES, STOCK)
    ingest_articles(h)
    name = "STOCK_20260102.csv"
    h.drop(name, "SKU;REF;AT;STOCK_PARIS;STOCK_LYON\n"
                 "K1;A1;2026-01-02T08:00:00;3;5\n"
                 "K2;A1;2026-01-02T08:00:00;0;\n"  # not stocked in Lyon: skipped
                 "K3;A1;2026-01-02T08:00:00;beaucoup;2\n", "erp")
    f = h.ingest(name, "erp")
    assert (f["status"], f["rows_read"], f["inserted"], f["skipped"], f["rejected"]) == ("applied", 6, 4, 1, 1)
    assert accounted(f)
    stock = h.rows("product_inventory", order_by="sku, store_ref")
    assert [(r["sku"], r["store_ref"], r["quantity"]) for r in stock] == [
        ("K1", "LYON", 5), ("K1", "PARIS", 3), ("K2", "PARIS", 0), ("K3", "LYON", 2)]
    # The bad cell names its line and the file's column it came from; the line's other cell is applied.
    assert [r[:4] for r in rejects(h, name, "product_inventory")] == [(4, "STOCK_PARIS", "beaucoup", "integer")]


def test_a_file_without_the_columns_its_unpivot_reads_fails_naming_them(engine, tmp_path):
    h = exports(engine, tmp_path, ARTICLES, STOCK)
    name = "STOCK_20260102.csv"
    h.drop(name, "SKU;REF;AT;LAGER_PARIS\nK1;A1;2026-01-02T08:00:00;3\n", "erp")
    f = h.ingest(name, "erp")
    assert (f["status"], f["error"]) == ("failed", f"{name}: line 1: no column of the header matches the unpivot's '^STOCK_'")


def test_a_duplicate_cell_is_rejected_without_losing_its_lines_other_cells(engine, tmp_path):
    h = exports(engine, tmp_path, ARTICLES, PRICES)
    ingest_articles(h)
    name = "PRICES_20260102.csv"
    h.drop(name, "REF;PRICE_EUR;PRICE_USD\n"
                 "A1;100;\n"  # no dollar price: skipped
                 "A1;100;120\n"  # the euro price again: that cell a duplicate, the dollar one applied
                 "A5;abc;50\n"
                 "A6;10;11\n", "erp")
    f = h.ingest(name, "erp")
    assert (f["rows_read"], f["inserted"], f["skipped"], f["rejected"]) == (8, 5, 1, 2) and accounted(f)
    assert [r[:4] for r in rejects(h, name, "product_prices")] == [
        (3, "REF+sku (constant)+PRICE_EUR", "A1|*|EUR", "duplicate_key"),
        (4, "PRICE_EUR", "abc", "decimal"),
    ]
    assert rejects(h, name, "product_prices")[0][4] == "same key as line 2 (PRICE_EUR)"
    prices = h.rows("product_prices", order_by="product_ref, currency_code")
    assert [(r["product_ref"], r["currency_code"], str(r["price"])) for r in prices] == [
        ("A1", "EUR", "100"), ("A1", "USD", "120"), ("A5", "USD", "50"), ("A6", "EUR", "10"), ("A6", "USD", "11")]


def test_an_unpivoted_file_sent_again_sets_aside_only_lines_whose_every_row_passed(engine, tmp_path, monkeypatch):
    h = exports(engine, tmp_path, ARTICLES, PRICES)
    ingest_articles(h)
    content = "REF;PRICE_EUR;PRICE_USD\nA1;100;\nA1;100;120\nA5;abc;50\nA6;10;11\n"
    h.drop("PRICES_20260102.csv", content, "erp")
    first = h.ingest("PRICES_20260102.csv", "erp")
    seen = []
    real = check_step.validate
    monkeypatch.setattr(check_step, "validate", lambda entity, rows, *args: seen.append(rows.height) or real(entity, rows, *args))
    h.drop("PRICES_20260103.csv", content + "A2;5;6\n", "erp")
    again = h.ingest("PRICES_20260103.csv", "erp")
    # A6's line passed whole: set aside. The lines with a skipped or rejected cell are read again,
    # so the bad cells are rejected again rather than counted unchanged; A2's line is new.
    assert seen == [7]  # rows sent to the rules: A1's skipped dollar cell is not one
    assert (again["rows_read"], again["unchanged"], again["skipped"], again["rejected"], again["inserted"]) == (10, 5, 1, 2, 2)
    assert accounted(again)
    assert [r[:4] for r in rejects(h, "PRICES_20260103.csv", "product_prices")] == [
        r[:4] for r in rejects(h, "PRICES_20260102.csv", "product_prices")]
    assert first["inserted"] == 5


def test_unpivoted_sales_are_split_by_month_row_by_row(engine, tmp_path):
    h = exports(engine, tmp_path, ARTICLES, TICKETS)
    ingest_articles(h)
    name = "TICKETS_20260102.csv"
    h.drop(name, "TICKET;REF;PRICE;CLIENT;1985-06-01;2024-03-01;2024-04-01\n"
                 "T1;A1;10;C1;2;3;\n", "erp")
    f = h.ingest(name, "erp")
    # 1985 is before the brand's history: that row alone is rejected; March waits for its shopper.
    assert (f["rows_read"], f["rejected"], f["skipped"], f["held"]) == (3, 1, 1, 1) and accounted(f)
    assert [r[:4] for r in rejects(h, name, "sales")] == [(2, "1985-06-01", "1985-06-01 00:00:00", "outside_history")]


# --- values as sent, and what to change ----------------------------------------------------------------


def test_a_reject_shows_the_value_as_sent_and_the_setting_that_would_read_it(engine, tmp_path):
    h = exports(engine, tmp_path, ARTICLES, GERMAN_PRICES, dialect={"decimal": ",", "thousands": "."})
    ingest_articles(h)
    name = "PREISE_20260102.csv"
    h.drop(name, "Artikel;Preis;Aktion\nA1;1.250,00;\nA5;1 250.00;\nA6;12,50;ja\n", "erp")
    f = h.ingest(name, "erp")
    assert (f["inserted"], f["rejected"]) == (1, 2) and accounted(f)
    assert rejects(h, name, "product_prices") == [
        # As the brand wrote it, not "1 25000" (the dialect's thousands dropped, its comma made a point).
        (3, "Preis", "1 250.00", "decimal",
         'not a number such as 399.99; set decimal: "." and thousands: " " on the source\'s dialect or the column'),
        (4, "Aktion", "ja", "boolean", 'expected TRUE or FALSE; map the file\'s values with values: {"ja": "TRUE", "nein": "FALSE"}'),
    ]
    assert [str(r["price"]) for r in h.rows("product_prices")] == ["1250.00"]


def test_the_validated_asset_shows_rows_skipped_and_a_preview_with_their_rule(tmp_path, warehouse_url, dagster_home):
    import dagster as dg

    from bspk_pipelines.cli.sync import sync_brand
    from bspk_pipelines.defs.project import build_definitions
    from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource

    h = exports(None, tmp_path, ARTICLES)
    defs = build_definitions([h.brand], {"warehouse": WarehouseResource(url=warehouse_url),
                                         "folders": BrandFoldersResource(data_dir=str(h.layout.data_dir))})
    h.drop(ARTICLES_FILE, ARTICLE_LINES, "erp")
    with dg.DagsterInstance.get() as instance:
        assert all(r.success for r in sync_brand(defs, h.brand, instance, settle_seconds=0.05, out=lambda *_: None))
        event = instance.get_latest_materialization_event(dg.AssetKey(["acme", "validated", "erp", "product_images"]))
    meta = event.asset_materialization.metadata
    assert (meta["rows_read"].value, meta["rows_skipped"].value, meta["rejected"].value) == (6, 4, 1)
    assert meta["dagster/partition_row_count"].value == 1
    assert meta["rejected_percent"].value == 50.0  # of the rows checked: skipped rows are not checked
    preview = meta["skipped_preview"].value
    assert "| line | column | value | rule |" in preview and "| 4 | STATUS | DELETED | STATUS in [DELETED, DRAFT] |" in preview
