"""A Shopify brand from the command line, as a data engineer runs it: `bspk check-config`, `bspk
sync` (the first pull a bulk load, then what changed), `bspk backfill --source`, through the
Dagster jobs the schedule and the sensor run, against the Shopify stand-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from bspk_pipelines.cli import main
from bspk_pipelines.demo.shopify_standin import ShopifyStandin

TOKEN = "shpat_cli"
SCOPES = ["read_customers", "read_products", "read_orders", "read_all_orders", "read_locations"]


def ago(seconds: int) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def shop_cli(tmp_path, monkeypatch):
    mappings, data = tmp_path / "mappings", tmp_path / "data"
    mappings.mkdir()
    with ShopifyStandin(TOKEN, scopes=SCOPES, currency="EUR") as shop:
        (mappings / "lune.yaml").write_text(
            "brand: lune\ncompany_name: Lune\nhistory_start: '2024-01'\nsources:\n  shop:\n    format: shopify\n"
            f"    shop: {shop.domain}\n    api_version: '2026-01'\n    token_env: LUNE_TOKEN\n    endpoint: {shop.url}\n"
            "    language: fr\n")
        monkeypatch.setenv("LUNE_TOKEN", TOKEN)
        monkeypatch.setenv("BSPK_MAPPINGS_DIR", str(mappings))
        monkeypatch.setenv("BSPK_DATA_DIR", str(data))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
        monkeypatch.delenv("BSPK_WAREHOUSE_URL", raising=False)
        yield shop, sa.create_engine(f"sqlite:///{data / 'warehouse.sqlite'}")


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"select count(*) from {table} where brand = 'lune'")).scalar()


def test_a_shop_synced_then_changed_then_reloaded(shop_cli, capsys):
    shop, engine = shop_cli
    shop.now = "2026-06-01T10:00:00Z"
    marie = shop.add_customer(firstName="Marie", lastName="Curie", email="marie@example.com", phone="+33612345678",
                              tags=["vip", "newsletter"])
    shop.add_customer(firstName="Bad", phone="not a number")
    paris = shop.add_location(name="Paris", address={"city": "Paris", "countryCode": "FR"})
    tote = shop.add_product(title="Tote", vendor="Lune", status="ACTIVE",
                            variants=[{"sku": "TOTE-BLK", "price": "300.00", "compareAtPrice": "350.00",
                                       "selectedOptions": [{"name": "Couleur", "value": "Noir"}]}],
                            media=[{"url": "https://cdn.example.com/tote.jpg"}])
    variant = shop.store.lookup(tote)["variants"][0]["id"]
    shop.add_order(customer=marie, line_items=[{"sku": "TOTE-BLK", "quantity": 1, "price": "300.00",
                                                "product": tote, "variant": variant}])
    shop.add_order(customer=None, line_items=[{"sku": "TOTE-BLK", "quantity": 1, "price": "300.00", "product": tote}])
    shop.now = "2026-06-01T10:05:00Z"

    assert main(["check-config"]) == 0
    assert "lune: ok (shop (shopify)" in capsys.readouterr().out
    assert main(["sync", "--brand", "lune", "--settle", "0.05"]) == 0  # rejected rows are kept, not failures
    out = capsys.readouterr().out
    assert "shop: customers: bulk of everything: 2 customers (2 lines)" in out
    assert "shop: orders: bulk of everything: 2 orders (4 lines)" in out
    assert count(engine, "shoppers") == 1 and count(engine, "stores") == 1 and count(engine, "sales") == 1
    assert count(engine, "product_prices") == 2  # the standard price and the sale price
    with engine.connect() as conn:
        rejects = {tuple(r) for r in conn.execute(sa.text('select entity, "column", value, rule from rejects'))}
    assert ("shoppers", "defaultPhoneNumber.phoneNumber", "not a number", "e164_phone") in rejects
    assert ("sales", "order.customer.id", "", "required") in rejects
    with engine.connect() as conn:
        assert conn.execute(sa.text("select store_ref from stores")).scalar() == paris.rsplit("/", 1)[1]

    shop.now = "2026-06-01T10:10:00Z"
    shop.update_customer(marie, firstName="Maria")
    shop.now = "2026-06-01T10:15:00Z"
    main(["sync", "--brand", "lune", "--settle", "0.05"])
    out = capsys.readouterr().out
    assert "shop: customers: pull of since 2026-06-01T10:04:58Z: 1 customers (1 lines)" in out
    assert "shop: products: pull of since 2026-06-01T10:04:58Z: no products changed" in out
    with engine.connect() as conn:
        assert conn.execute(sa.text("select first_name from shoppers")).scalar() == "Maria"

    main(["backfill", "--brand", "lune", "--source", "shop"])
    out = capsys.readouterr().out
    assert "shop: customers: bulk of everything: 2 customers" in out
    assert count(engine, "shoppers") == 1

    shop_key = dg.AssetKey(["lune", "shopify", "shop"])
    with dg.DagsterInstance.get() as instance:
        materialised = instance.fetch_materializations(shop_key, limit=10).records
    assert len(materialised) == 3
    assert materialised[0].asset_materialization.metadata["customers_nodes"].value == 2


def test_a_revoked_token_fails_the_sync_in_one_line(shop_cli, capsys):
    shop, _ = shop_cli
    shop.revoke_token()
    assert main(["sync", "--brand", "lune", "--settle", "0.05"]) == 1
    out = capsys.readouterr().out
    [line] = [x for x in out.splitlines() if "pull FAILED" in x]
    assert "LUNE_TOKEN" in line and "Traceback" not in out


def test_the_shop_feeds_the_raw_deliveries_in_the_lineage():
    from bspk_pipelines.defs.project import build_definitions
    from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
    from bspk_pipelines.model.brand import Brand

    brand = Brand.model_validate({"brand": "lune", "company_name": "Lune", "sync": {"interval": "5m"}, "sources": {
        "shop": {"format": "shopify", "shop": "lune.myshopify.com", "api_version": "2026-01", "token_env": "T"}}})
    # Definitions resolved with an instance of their own: one left current by an earlier test of
    # the worker (a CLI run's) may be disposed.
    with dg.instance_for_test():
        defs = build_definitions([brand], {"warehouse": WarehouseResource(url="sqlite://"),
                                           "folders": BrandFoldersResource(data_dir="/tmp")})
        graph = defs.resolve_asset_graph()
        raw = dg.AssetKey(["lune", "raw", "shop"])
        assert dg.AssetKey(["lune", "shopify", "shop"]) in graph.get(raw).parent_keys
        assert defs.resolve_schedule_def("lune__shop__pull_schedule").cron_schedule == "*/5 * * * *"
        assert defs.resolve_job_def("lune__shop__pull")


def test_a_schedule_tick_while_a_pull_runs_starts_none():
    """A bulk load may run for hours: the schedule's ticks meanwhile start no pull behind it, and
    the pull is limited by its own tag, not by the brand's (which would hold the brand's writes)."""
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    from bspk_pipelines.defs import names
    from bspk_pipelines.defs.project import build_definitions
    from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
    from bspk_pipelines.model.brand import Brand

    brand = Brand.model_validate({"brand": "lune", "company_name": "Lune", "sync": {"interval": "5m"}, "sources": {
        "shop": {"format": "shopify", "shop": "lune.myshopify.com", "api_version": "2026-01", "token_env": "T"}}})
    with dg.instance_for_test() as instance:
        defs = build_definitions([brand], {"warehouse": WarehouseResource(url="sqlite://"),
                                           "folders": BrandFoldersResource(data_dir="/tmp")})
        schedule = defs.resolve_schedule_def("lune__shop__pull_schedule")
        [request] = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests
        assert request.tags[names.PULL_TAG] == "lune.shop" and names.BRAND_TAG not in request.tags
        instance.add_run(DagsterRun(job_name="lune__shop__pull", run_id="a" * 32, status=DagsterRunStatus.STARTED,
                                    tags={names.PULL_TAG: "lune.shop"}))
        skipped = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert not skipped.run_requests and "still pulls lune.myshopify.com" in skipped.skip_message
