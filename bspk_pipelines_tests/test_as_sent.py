"""The brand's data as sent: decimals read back exactly as written, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from bspk_pipelines.warehouse.engine import engine_for
from bspk_pipelines.warehouse.schema import ENTITY_TABLES
from bspk_pipelines_tests.builders import NATIVE, PRICES, PRODUCT, THREE_SHOPPERS, brand_harness, header, older_schema

TWO_PRODUCTS = PRODUCT + "P1,Bag,,,en,,TRUE\nP2,Belt,,,en,,TRUE\n"
# Prices as a brand writes them: a whole amount with cents, a trailing zero, a sum floats get
# wrong (0.1 + 0.2), zero padding and a negative zero.
PRICE_ROWS = [("P1", "1250.00"), ("P2", "349.90"), ("P3", "0.30"), ("P4", "0007.50"), ("P5", "-0.00"),
              ("P6", "0.1000000001")]


def prices_file(rows) -> str:
    return PRICES + "".join(f"{p},*,{price},EUR,,,,\n" for p, price in rows)


def stored(engine, table: str, *columns: str) -> dict:
    t = ENTITY_TABLES[table]
    with engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa.select(*[t.c[c] for c in columns]).order_by(t.c[columns[0]]))}


def with_products(engine, tmp_path, refs=("P1", "P2", "P3", "P4", "P5", "P6")):
    h = brand_harness(NATIVE, engine, tmp_path)
    h.drop("PRODUCT_V2_Acme_202401010000.csv", PRODUCT + "".join(f"{r},Bag,,,en,,TRUE\n" for r in refs))
    h.ingest("PRODUCT_V2_Acme_202401010000.csv")
    return h


def test_prices_read_back_exactly_as_sent(engine, tmp_path):
    h = with_products(engine, tmp_path)
    h.drop("PRODUCT-PRICES_V2_Acme_202401020000.csv", prices_file(PRICE_ROWS))
    assert h.ingest("PRODUCT-PRICES_V2_Acme_202401020000.csv")["inserted"] == 6
    prices = {ref: price for ref, (price,) in stored(engine, "product_prices", "product_ref", "price").items()}
    expected = {"P1": "1250.00", "P2": "349.90", "P3": "0.30", "P4": "7.50", "P5": "0.00", "P6": "0.1000000001"}
    assert {k.upper(): str(v) for k, v in prices.items()} == expected
    assert all(type(v) is Decimal for v in prices.values())
    assert prices[min(prices)] == Decimal("1250") and Decimal("0.1") + Decimal("0.2") in prices.values()


def test_the_same_prices_again_change_nothing_and_a_new_scale_is_a_change(engine, tmp_path):
    h = with_products(engine, tmp_path)
    h.drop("PRODUCT-PRICES_V2_Acme_202401020000.csv", prices_file(PRICE_ROWS))
    h.ingest("PRODUCT-PRICES_V2_Acme_202401020000.csv")
    h.drop("PRODUCT-PRICES_V2_Acme_202401030000.csv", prices_file(PRICE_ROWS[:3] + [("P4", "7.50")]))
    again = h.ingest("PRODUCT-PRICES_V2_Acme_202401030000.csv")
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 4)
    h.drop("PRODUCT-PRICES_V2_Acme_202401040000.csv", prices_file([("P2", "349.9"), ("P3", "0.3")]))
    later = h.ingest("PRODUCT-PRICES_V2_Acme_202401040000.csv")
    assert (later["updated"], later["unchanged"]) == (2, 0)  # the brand now writes them so: the row shows it
    prices = {k.upper(): str(v) for k, (v,) in stored(engine, "product_prices", "product_ref", "price").items()}
    assert (prices["P2"], prices["P3"]) == ("349.9", "0.3")


def test_sales_amounts_are_exact_through_the_month_store_and_held_rows(engine, tmp_path):
    h = with_products(engine, tmp_path, ("P1",))
    sales = header("sales") + "T1,P1,1,1250.00,EUR,2024-01-05T10:00:00,,S1,,\nT2,P1,0.5,349.90,EUR,2024-01-06T10:00:00,,S2,,\n"
    h.drop("SALE_V2_Acme_202401020000.csv", sales)
    assert h.ingest("SALE_V2_Acme_202401020000.csv")["held"] == 2  # no shoppers yet: held as JSON
    h.drop("SHOPPER_V3_Acme_202401030000.csv", THREE_SHOPPERS)
    h.ingest("SHOPPER_V3_Acme_202401030000.csv")
    h.rebuild_pending_months()
    rows = stored(engine, "sales", "sale_ref", "quantity", "price")
    assert {k: tuple(map(str, v)) for k, v in rows.items()} == {"T1": ("1", "1250.00"), "T2": ("0.5", "349.90")}
    again = h.rebuild_pending_months() or {}
    assert all(c.updated == 0 for c in again.values())


def test_a_warehouse_with_inexact_decimals_is_migrated_and_keeps_its_values(warehouse_url):
    old = older_schema(inexact_decimals=True)
    before = sa.create_engine(warehouse_url)
    with before.begin() as conn:
        old.create_all(conn)
        conn.execute(old.tables["product_prices"].insert().values(
            brand="acme", product_ref="p1", sku="*", price=349.90, currency_code="EUR", store_refs="", starting_on="",
            discounted=False, _file="f.csv", _updated_at=sa.func.now()))
    before.dispose()
    engine = engine_for(warehouse_url)
    with engine.connect() as conn:
        price = conn.execute(sa.select(ENTITY_TABLES["product_prices"].c.price)).scalar_one()
        decimal_type = sa.inspect(conn).get_columns("product_prices")
    assert type(price) is Decimal and price == Decimal("349.9")
    price_type = next(c["type"] for c in decimal_type if c["name"] == "price")
    assert isinstance(price_type, sa.Text) if engine.dialect.name == "sqlite" else price_type.scale is None
    with engine.begin() as conn:  # the table takes exact values from now on, its index and key intact
        conn.execute(ENTITY_TABLES["product_prices"].update().values(price="349.90"))
        assert str(conn.execute(sa.select(ENTITY_TABLES["product_prices"].c.price)).scalar_one()) == "349.90"
        assert {i["name"] for i in sa.inspect(conn).get_indexes("sales")} == {"ix_sales_month"}
