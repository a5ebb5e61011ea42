"""Two sources of one brand may send the same file name: a delivery is its brand, source and name.
Rows held for a shopper or product not known yet name their delivery's source, so each delivery
is credited exactly its own released rows and the table asset sums exactly its own rejects; an
older warehouse's held rows are given their source, and an older month store still rebuilds."""

from __future__ import annotations

import dagster as dg
import polars as pl
import sqlalchemy as sa

from bspk_pipelines.defs.ingest.assets import build_platform_table
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
from bspk_pipelines.ingest.apply import apply_pending
from bspk_pipelines.warehouse.engine import migrate
from bspk_pipelines_tests.builders import (
    HISTORY_CONFIG, NATIVE, SHOPPER, TWO_PRODUCTS, VARIANTS, Harness, brand_harness, sales_file, shopper_row,
)

TWO_SOURCES = {"brand": "acme", "company_name": "Acme", "history_start": "2023-11", "sources": {
    "pos": {"format": "bspk", "drop": "drop/acme/pos"}, "erp": {"format": "bspk", "drop": "drop/acme/erp"}}}
VARIANTS_FILE = "PRODUCT-VARIANTS_V2_Acme_202401030000.csv"  # the name both sources send
PRODUCTS_FILE = "PRODUCT_V2_Acme_202401040000.csv"
SHOPPERS_FILE = "SHOPPER_V3_Acme_202401050000.csv"
SALES_FILE = "SALE_V2_Acme_202406010000.csv"


def variant(product: str, sku: str, published: str = "TRUE") -> str:
    return f"{product},{sku},,,,,,,,en,,{published}\n"


# Before any product is known: pos sends two variants of P1 and a rejected line, erp one variant
# of P2 and two rejected lines.
SENT = {
    "pos": VARIANTS + variant("P1", "sku-1") + variant("P1", "sku-2") + variant("P1", "sku-x", "maybe"),
    "erp": VARIANTS + variant("P2", "sku-3") + variant("P2", "sku-y", "maybe") + variant("P2", "sku-z", "maybe"),
}


def credited(h: Harness) -> dict[str, tuple[int, int, int]]:
    """Each source's variants delivery as `files` records it: (inserted, held, rejected)."""
    return {s: tuple(h.file(VARIANTS_FILE, s)[k] for k in ("inserted", "held", "rejected")) for s in SENT}


def held_rows(h: Harness) -> list[tuple]:
    return sorted((r["source"], r["file"], r["key"].split("|")[0]) for r in h.rows("held"))


def both_variants_held(h: Harness) -> None:
    for source, body in SENT.items():
        h.drop(VARIANTS_FILE, body, source)
        assert h.ingest(VARIANTS_FILE, source)["status"] == "applied"
    assert credited(h) == {"pos": (0, 2, 1), "erp": (0, 1, 2)}


def products_arrive(h: Harness) -> None:
    h.drop(PRODUCTS_FILE, TWO_PRODUCTS, "pos")
    assert h.ingest(PRODUCTS_FILE, "pos")["status"] == "applied"


def test_each_delivery_is_credited_exactly_its_own_released_rows(engine, tmp_path):
    h = brand_harness(TWO_SOURCES, engine, tmp_path)
    both_variants_held(h)
    products_arrive(h)
    _, released = apply_pending(engine, h.layout, h.brand, "product_variants")
    assert (released.released, released.inserted) == (3, 3)
    assert credited(h) == {"pos": (2, 0, 1), "erp": (1, 0, 2)}
    assert h.rows("held") == [] and len(h.rows("product_variants")) == 3


def test_the_table_asset_sums_the_rejects_of_the_deliveries_it_applied(warehouse_url, engine, tmp_path):
    h = brand_harness(TWO_SOURCES, engine, tmp_path)
    asset = build_platform_table(h.brand, "product_variants", engine.dialect)
    resources = {"warehouse": WarehouseResource(url=warehouse_url),
                 "folders": BrandFoldersResource(data_dir=str(h.layout.data_dir))}

    def materialised() -> dict:
        [event] = dg.materialize([asset], resources=resources).get_asset_materialization_events()
        metadata = event.materialization.metadata
        return {k: metadata[k].value for k in ("files_applied", "rejected", "released")}

    for source, rejected in (("pos", 1), ("erp", 2)):  # one run each: a run sums only its own files
        h.drop(VARIANTS_FILE, SENT[source], source)
        h.contribute(VARIANTS_FILE, source)
        assert materialised() == {"files_applied": 1, "rejected": rejected, "released": 0}
    products_arrive(h)
    assert materialised() == {"files_applied": 0, "rejected": 0, "released": 3}
    assert credited(h) == {"pos": (2, 0, 1), "erp": (1, 0, 2)}


def test_sales_of_two_sources_under_one_name_land_and_wait_apart(engine, tmp_path):
    h = brand_harness(TWO_SOURCES, engine, tmp_path)
    products_arrive(h)
    for source, sale, shopper in (("pos", "T1", "S1"), ("erp", "T2", "S2")):
        h.drop(SALES_FILE, sales_file([(sale, "P1", "2024-01-05T10:00:00", shopper)]), source)
        assert h.ingest(SALES_FILE, source)["status"] == "applied"
    assert held_rows(h) == [("erp", SALES_FILE, "T2"), ("pos", SALES_FILE, "T1")]
    h.drop(SHOPPERS_FILE, SHOPPER + shopper_row("S1", email="s1@example.com") + shopper_row("S2", email="s2@example.com"), "pos")
    assert h.ingest(SHOPPERS_FILE, "pos")["status"] == "applied"
    assert sorted(r["sale_ref"] for r in h.rows("sales")) == ["T1", "T2"] and h.rows("held") == []


def test_an_older_warehouse_gives_its_held_rows_their_source(engine, tmp_path):
    h = brand_harness(TWO_SOURCES, engine, tmp_path)
    both_variants_held(h)
    with engine.begin() as conn:  # as a version before `held.source` left them
        conn.execute(sa.text("alter table held drop column source"))
    migrate(engine)
    assert held_rows(h) == [("erp", VARIANTS_FILE, "sku-3"), ("pos", VARIANTS_FILE, "sku-1"), ("pos", VARIANTS_FILE, "sku-2")]
    products_arrive(h)
    apply_pending(engine, h.layout, h.brand, "product_variants")
    assert credited(h) == {"pos": (2, 0, 1), "erp": (1, 0, 2)}


def test_an_older_month_store_still_rebuilds_and_its_rows_wait_without_a_source(engine, tmp_path):
    h = brand_harness(HISTORY_CONFIG, engine, tmp_path)
    h.drop(PRODUCTS_FILE, TWO_PRODUCTS)
    h.ingest(PRODUCTS_FILE)
    h.drop(SALES_FILE, sales_file([("T1", "P1", "2024-01-05T10:00:00", "S1")]))
    h.contribute(SALES_FILE)
    for part in (h.layout.data_dir / "acme" / "work" / "months").rglob("*.parquet"):  # landed by a version before sources
        pl.read_parquet(part).drop("_source").write_parquet(part)
    h.rebuild_pending_months()
    assert held_rows(h) == [(None, SALES_FILE, "T1")]
    h.drop(SHOPPERS_FILE, SHOPPER + shopper_row("S1"))
    h.ingest(SHOPPERS_FILE)
    assert [r["sale_ref"] for r in h.rows("sales")] == ["T1"] and h.rows("held") == []


def test_a_held_row_a_later_delivery_replaces_is_counted_superseded_not_held_for_ever(engine, tmp_path):
    """Two files send variant sku-1 of a product not known yet: the later one's row takes the held
    row's place, and the earlier file's record says so rather than counting a row held that is not."""
    h = brand_harness(NATIVE, engine, tmp_path)
    early, late = "PRODUCT-VARIANTS_V2_Acme_202401010000.csv", "PRODUCT-VARIANTS_V2_Acme_202401020000.csv"
    h.drop(early, VARIANTS + variant("P1", "sku-1"))
    assert h.ingest(early)["held"] == 1
    h.drop(late, VARIANTS + variant("P1", "sku-1", "FALSE"))
    assert h.ingest(late)["held"] == 1
    assert (h.file(early)["held"], h.file(early)["superseded"]) == (0, 1)
    h.drop(PRODUCTS_FILE, TWO_PRODUCTS)
    h.ingest(PRODUCTS_FILE)
    apply_pending(h.engine, h.layout, h.brand, "product_variants")
    assert [(v["sku"], v["published"]) for v in h.rows("product_variants")] == [("sku-1", False)]
    for name in (early, late):
        f = h.file(name)
        assert f["rows_read"] == f["inserted"] + f["updated"] + f["unchanged"] + f["rejected"] + f["held"] + (
            f["superseded"] or 0), name
