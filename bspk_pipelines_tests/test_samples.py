"""The bundled sample brands: their YAML loads, their files are reproducible, and every file goes
through land, validate, map and apply with exactly the rejects and held sales it was built to show."""

from __future__ import annotations

import csv
import gzip
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bspk_pipelines.model.brand_file import load_brand
from bspk_pipelines.ingest.drop import Delivery, classify
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.warehouse.special_orders import needing_action
from bspk_pipelines.demo.samples import LATE_SHOPPERS, SHOPPERS, UPDATED_SHOPPERS, generate_samples
from bspk_pipelines_tests.builders import Harness

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"


def sample_brand(name: str):
    return load_brand(MAPPINGS / f"{name}.yaml")


def test_sample_brand_files_load():
    acme, maison = sample_brand("acme"), sample_brand("maison")
    assert acme.company_name == "Acme" and acme.sources["main"].format == "bspk"
    assert acme.schedule_cron == "*/15 * * * *"
    assert maison.company_name == "Maison" and set(maison.sources) == {"pos", "erp"}
    assert maison.schedule_cron == "0 * * * *"
    assert maison.attribute_owners("products", "name") == ["pos", "erp"]
    assert maison.attribute_owners("products", "description") == ["erp", "pos"]
    assert maison.attribute_owners("products", "published") == ["erp", "pos"]
    nordhaus = sample_brand("nordhaus")
    [articles] = nordhaus.sources["erp"].files
    assert list(articles.feeds) == ["products", "product_prices", "product_images"]
    assert nordhaus.attribute_owners("products", "name") == ["pos", "erp"]


def test_same_seed_writes_the_same_bytes(tmp_path):
    def contents(root: Path, seed: int) -> dict[Path, bytes]:
        written = generate_samples(root, seed)
        return {p.relative_to(root): p.read_bytes() for paths in written.values() for p in paths}

    first, again, other = contents(tmp_path / "a", 7), contents(tmp_path / "b", 7), contents(tmp_path / "c", 8)
    assert first == again
    assert first.keys() == other.keys() and first != other
    assert not list(tmp_path.rglob("*.part"))


Trail = list[tuple[Delivery, dict, set[str]]]


def ingest_samples(engine: sa.Engine, tmp_path: Path, brand_name: str) -> tuple[Harness, Trail]:
    """Generate the samples into the harness's data folder and ingest every file, first in first out.

    Returns, per file in the order applied: its delivery, its `files` row and the sale_refs held after it.
    """
    harness = Harness(sample_brand(brand_name), Layout(tmp_path / "data"), engine)
    paths = generate_samples(harness.layout.data_dir)[brand_name]
    source_of = {harness.layout.drop(harness.brand, s): s for s in harness.brand.sources}
    deliveries = sorted((classify(harness.brand, source_of[p.parent], p.name) for p in paths), key=lambda d: d.sort_key)
    trail = []
    for d in deliveries:
        row = harness.ingest(d.name, d.source)
        with engine.connect() as conn:
            held = {k.split("|")[0] for k in conn.execute(
                sa.text("select key from held where brand=:b and entity='sales'"), {"b": brand_name}).scalars()}
        trail.append((d, row, held))
    return harness, trail


def check_common(harness: Harness, trail: Trail, expected_rejects: dict[str, int], rules: set[str]) -> None:
    assert [(d.name, row["status"]) for d, row, _ in trail] == [(d.name, "applied") for d, _, _ in trail]
    assert {d.name: row["rejected"] for d, row, _ in trail if row["rejected"]} == expected_rejects
    assert {r[3] for name in expected_rejects for r in harness.rejects(name)} == rules

    # The full load's sales hold the late shoppers' lines; the delta's SHOPPER file brings the
    # shoppers, which marks those lines' months pending, and their rebuild applies the lines.
    sale_files = [i for i, (d, _, _) in enumerate(trail) if d.entities == ("sales",)]
    shopper_files = [i for i, (d, _, _) in enumerate(trail) if d.entities == ("shoppers",)]
    first_sales, last_sales = sale_files[0], sale_files[-1]
    held = trail[first_sales][2]
    assert len(held) == LATE_SHOPPERS and trail[first_sales][1]["held"] == LATE_SHOPPERS
    assert shopper_files[-1] > first_sales
    assert trail[shopper_files[-1]][2] == set()
    assert trail[last_sales][2] == set()
    assert held <= {r["sale_ref"] for r in harness.rows("sales")}

    delta_shoppers = trail[shopper_files[-1]][1]
    assert (delta_shoppers["inserted"], delta_shoppers["updated"]) == (LATE_SHOPPERS, UPDATED_SHOPPERS)
    assert len(harness.rows("shoppers")) == SHOPPERS + LATE_SHOPPERS
    sale_rows = [row for i, (_, row, _) in enumerate(trail) if i in sale_files]
    assert len(harness.rows("sales")) == sum(r["rows_read"] - r["rejected"] for r in sale_rows)


def test_acme_samples_ingest(engine, tmp_path):
    harness, trail = ingest_samples(engine, tmp_path, "acme")
    assert len(trail) == 20
    assert trail[0][0].name == "STORE-REGION_V2_Acme_202601050200.csv"
    assert trail[-1][0].name == "SPECIAL-ORDER-EVENTS_V2_Acme_202601120200.csv"
    check_common(
        harness, trail,
        {"SHOPPER_V3_Acme_202601050200.csv": 2, "PRODUCT-PRICES_V2_Acme_202601050200.csv": 1,
         "SALE_V2_Acme_202601050200.csv": 1, "METAFIELDS_V1_Acme_202601050200.csv": 1,
         "SPECIAL-ORDERS_V2_Acme_202601050200.csv": 1, "SPECIAL-ORDER-EVENTS_V2_Acme_202601050200.csv": 1,
         "SPECIAL-ORDER-EVENTS_V2_Acme_202601120200.csv": 1},
        {"e164_phone", "country", "date", "datetime", "value_type", "required_with", "length", "overflow", "append_only"},
    )
    # Special orders: six orders, their lines, events; the delta clears one alert and raises another.
    assert [len(harness.rows(t)) for t in ("special_orders", "special_order_line_items", "special_order_events")] == [
        6, 9, 20]
    with engine.connect() as conn:
        assert [(a["order_ref"], a["sequence"]) for a in needing_action(conn, "acme")] == [("SO-5005", 3), ("SO-5001", 4)]
    # Metafields: the late shopper's waited for the delta's SHOPPER file; the delta removed one tier.
    metafields = harness.rows("metafields")
    assert len(metafields) == 64 and sum(not m["active"] for m in metafields) == 1
    assert harness.file("METAFIELDS_V1_Acme_202601050200.csv")["inserted"] == 64


def read_csv(path: Path, encoding: str, delimiter: str) -> list[dict]:
    with path.open(encoding=encoding, newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def test_maison_samples_ingest(engine, tmp_path):
    harness, trail = ingest_samples(engine, tmp_path, "maison")
    assert len(trail) == 11
    # The ERP's catalogue (02:00) comes before the POS export (03:00) of the same night.
    assert [d.source for d, _, _ in trail[:5]] == ["erp"] * 4 + ["pos"]
    check_common(
        harness, trail,
        {"erp_prices_20260105T0200.csv": 1, "CLIENTS_20260105_0300.csv": 2, "TICKETS_20260105_0300.csv": 1},
        {"e164_phone", "country", "datetime", "decimal"},
    )

    # Precedence: the name is the POS's, although the ERP sent one too; the description the ERP's.
    drop = harness.layout.data_dir / "drop" / "maison"
    articles = read_csv(drop / "pos" / "ARTICLES_20260105_0300.csv", "cp1252", ";")
    pos_names = {r["REF_ARTICLE"]: r["LIBELLE"] for r in articles}  # refs stored as the brand sends them
    erp = {r["item_code"]: r for r in read_csv(drop / "erp" / "erp_products_20260105T0200.csv", "utf-8-sig", ",")}
    products = harness.rows("products")
    assert len(products) == len(pos_names) == len(erp)
    for p in products:
        assert p["name"] == pos_names[p["product_ref"]] != erp[p["product_ref"]]["item_label"]
        assert p["description"] == erp[p["product_ref"]]["description"]

    # Tickets are written in Paris time and stored in UTC; client numbers lose the POS's zero padding.
    ticket = read_csv(drop / "pos" / "TICKETS_20260105_0300.csv", "cp1252", ";")[0]
    local = datetime.strptime(ticket["DATE_HEURE"], "%d/%m/%Y %H:%M").replace(tzinfo=ZoneInfo("Europe/Paris"))
    sale_ref = f"{ticket['CODE_BOUTIQUE']}-{ticket['NUM_TICKET']}"
    sale = next(r for r in harness.rows("sales") if r["sale_ref"] == sale_ref and r["sku"] == ticket["REF_SKU"])
    assert str(sale["created_at"])[:19] == local.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S")
    assert sale["shopper_ref"] == ticket["NUM_CLIENT"].lstrip("0")
    # The amount exactly as the POS wrote it, in the platform's decimal form (SQLite gives its text).
    assert str(sale["price"]) == ticket["PRIX_UNITAIRE"].replace(".", "").replace(",", ".")


def test_nordhaus_samples_ingest_with_a_redelivery_under_a_fixed_name(warehouse_url, tmp_path, dagster_home):
    """The third sample brand, through Dagster as `make demo` runs it: the ERP's article file lands
    once and feeds products, prices and images (articles without a photo skipped, a price written
    as text rejected); stock arrives one column per store; the POS's fixed-name article file,
    written again, is the next delivery under its name and its names win."""
    import dagster as dg

    from bspk_pipelines.cli.sync import sync_brand
    from bspk_pipelines.defs.project import build_definitions
    from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
    from bspk_pipelines.demo.samples import NORDHAUS_PRODUCTS, NORDHAUS_STORES, redeliver_samples

    brand = sample_brand("nordhaus")
    data = tmp_path / "data"
    defs = build_definitions([brand], {"warehouse": WarehouseResource(url=warehouse_url),
                                       "folders": BrandFoldersResource(data_dir=str(data))})
    generate_samples(data)
    with dg.DagsterInstance.get() as instance:
        assert all(r.success for r in sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None))
        redeliver_samples(data)
        lines = []
        assert all(r.success for r in sync_brand(defs, brand, instance, settle_seconds=0.05, out=lines.append))
    assert [line.split(":")[0].strip() for line in lines] == ["pos_artikel.csv@2"]
    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        files = {(r.name, r.entity): r for r in conn.execute(sa.text("select * from files where brand = 'nordhaus'"))}
        rows = lambda table: conn.execute(sa.text(f"select * from {table} where brand = 'nordhaus'")).mappings().all()  # noqa: E731
        products, prices, images, stock = rows("products"), rows("product_prices"), rows("product_images"), rows("product_inventory")
    engine.dispose()
    article = "ARTIKEL_20260105.csv.gz"  # a report: a title and a date before its header, a total after its rows
    assert {e for (n, e) in files if n == article} == {"products", "product_prices", "product_images"}
    assert len({files[(article, e)].claim for e in ("products", "product_prices", "product_images")}) == 1
    assert files[(article, "product_prices")].rejected == 1
    assert files[(article, "product_images")].skipped == NORDHAUS_PRODUCTS // 4  # every fourth has no photo
    assert len(products) == NORDHAUS_PRODUCTS and len(prices) == NORDHAUS_PRODUCTS - 1
    assert len(images) == NORDHAUS_PRODUCTS - NORDHAUS_PRODUCTS // 4
    # German amounts (1.250,50) read as the platform's decimals (1250.50), exactly.
    report = gzip.decompress((data / "drop" / "nordhaus" / "erp" / article).read_bytes()).decode().splitlines()
    assert report[0].startswith("Nordhaus GmbH") and report[-1] == f"ENDE;{NORDHAUS_PRODUCTS} Artikel"
    sent = list(csv.DictReader(report[2:-1], delimiter=";"))
    expected = {r["Artikelnummer"]: r["VK_Preis"].replace(".", "").replace(",", ".") for r in sent
                if r["VK_Preis"] != "auf Anfrage"}
    assert {p["product_ref"]: str(p["price"]) for p in prices} == expected
    assert any(float(v) > 1000 for v in expected.values())
    assert len(stock) == NORDHAUS_PRODUCTS * len(NORDHAUS_STORES)
    assert {s["store_ref"] for s in stock} == {code for code, _, _ in NORDHAUS_STORES}
    names = {p["product_ref"]: p["name"] for p in products}
    assert names["NH-10000"] == "Wollmantel 1 (Neu)" and names["NH-10002"] == "Lederstiefel 1"  # the POS's, latest
    assert files[("pos_artikel.csv@2", "products")].status == "applied"


def test_the_demo_says_which_entity_keeps_a_brand_from_simulated_activity():
    """Associates at work need the brand's shoppers and its associates: the demo names what a
    sample brand does not send (Lune's shop has no associates; Nordhaus sends neither)."""
    from bspk_pipelines.cli.demo import _missing_for_activity
    from bspk_pipelines.model.brand_file import load_brands

    brands = {b.brand: b for b in load_brands(Path(__file__).resolve().parent.parent / "mappings")}
    assert _missing_for_activity(brands["lune"]) == "the brand sends no associates"
    assert _missing_for_activity(brands["nordhaus"]) == "the brand sends no shoppers and no associates"
