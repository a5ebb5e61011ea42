"""Pulling a shop: the connector against the Shopify stand-in (a real HTTP server on 127.0.0.1 that
answers as Shopify documents), on a real warehouse; what the pulls write is read back as a brand
engineer would, from the drop folder and the `pulls` table."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bspk_pipelines.demo.shopify_standin import ShopifyStandin
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.shopify import queries
from bspk_pipelines.shopify.client import ShopifyError
from bspk_pipelines.shopify.pull import pull_source
from bspk_pipelines.warehouse.engine import engine_for, migrate

TOKEN = "shpat_test_token"


def shop_brand(url: str, objects=("customers",), **extra) -> Brand:
    return Brand.model_validate({"brand": "lune", "company_name": "Lune", "sources": {"shop": {
        "format": "shopify", "shop": "bspk-demo.myshopify.com", "api_version": "2026-01", "token_env": "LUNE_TOKEN",
        "endpoint": url, "objects": list(objects)} | extra}})


@pytest.fixture
def shop(monkeypatch) -> ShopifyStandin:
    monkeypatch.setenv("LUNE_TOKEN", TOKEN)
    with ShopifyStandin(TOKEN, scopes=["read_customers", "read_products", "read_orders", "read_all_orders",
                                       "read_locations"]) as s:
        yield s


@pytest.fixture
def world(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    migrate(engine)
    return engine, Layout(tmp_path / "data")


class Sleeps(list):
    """A sleep that only records how long it was asked to sleep."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def deliveries(layout: Layout, brand: Brand) -> list[Path]:
    return sorted(p for p in layout.drop(brand, "shop").iterdir() if p.suffix == ".jsonl")


def watermark(engine, obj: str = "customers") -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.text("select watermark from pulls where object = :o"), {"o": obj}).scalar()


def ago(seconds: int) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def first_pull(shop, engine, layout, brand) -> None:
    """The shop's first load, at a fixed time: later changes are made after it, as in a shop."""
    shop.now = ago(100)
    pull_source(engine, layout, brand, "shop", sleep=Sleeps())


def test_first_pull_is_a_bulk_load_then_only_what_changed(shop, world):
    engine, layout = world
    shop.now = ago(60)
    ids = [shop.add_customer(firstName=f"C{i}", email=f"c{i}@example.com") for i in range(5)]
    shop.now = ago(50)
    brand = shop_brand(shop.url)

    [first], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert (first.how, first.nodes, first.lines) == ("bulk", 5, 5)
    [bulk] = deliveries(layout, brand)
    assert bulk.name.startswith("customers_bulk_") and bulk.name == first.delivery
    assert (bulk.parent / f"{bulk.name}.done").exists()  # whole at once: the sensor need not watch it settle
    shop_line, *nodes = lines(bulk)
    assert shop_line["currencyCode"] == "USD" and shop_line["id"].startswith("gid://shopify/Shop/")
    assert sorted(n["id"] for n in nodes) == sorted(ids)
    assert watermark(engine) == first.until

    [nothing], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert (nothing.how, nothing.delivery, nothing.since) == ("pull", None, first.until)
    assert len(deliveries(layout, brand)) == 1

    shop.now = ago(40)
    shop.update_customer(ids[1], firstName="Changed")
    shop.update_customer(ids[3], firstName="Changed too")
    shop.now = ago(30)
    [changed], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert (changed.how, changed.nodes) == ("pull", 2)
    _, *nodes = lines(layout.drop(brand, "shop") / changed.delivery)
    assert sorted((n["id"], n["firstName"]) for n in nodes) == sorted([(ids[1], "Changed"), (ids[3], "Changed too")])


def test_ties_at_a_page_boundary_are_delivered_once(shop, world, monkeypatch):
    """Seven customers updated in the same second, read three to a page: each arrives once."""
    engine, layout = world
    brand = shop_brand(shop.url)
    first_pull(shop, engine, layout, brand)
    monkeypatch.setitem(queries.PAGE_SIZE, "customers", 3)
    shop.now = ago(90)
    ids = [shop.add_customer(firstName=f"Tie{i}") for i in range(7)]
    shop.now = ago(80)
    [pulled], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    _, *nodes = lines(layout.drop(brand, "shop") / pulled.delivery)
    assert sorted(n["id"] for n in nodes) == sorted(ids)
    pages = [r for r in shop.requests if r.query and "customers(first: 3" in r.query]
    assert len(pages) == 3


def test_windows_tile_time_so_an_update_in_the_last_second_is_not_lost(shop, world):
    """A customer updated after a pull, in the second its window ended, is in the next window."""
    engine, layout = world
    brand = shop_brand(shop.url)
    shop.now = ago(100)
    pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    end = watermark(engine)
    shop.now = end  # the first second the last window did not cover
    ref = shop.add_customer(firstName="Edge")
    shop.now = ago(80)
    [pulled], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert pulled.since == end
    assert [n["id"] for n in lines(layout.drop(brand, "shop") / pulled.delivery)[1:]] == [ref]


class FakeTime(Sleeps):
    """The bucket's clock, moved on only by the pull's sleeps: throttling plays out in no time."""

    now = 0.0

    def __call__(self, seconds: float) -> None:
        super().__call__(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def on_fake_time(shop: ShopifyStandin, maximum: float = 1000, rate: float = 50) -> FakeTime:
    fake = FakeTime()
    shop.bucket.monotonic, shop.bucket.maximum_available, shop.bucket.restore_rate = fake.monotonic, maximum, rate
    shop.bucket.fill()
    return fake


def test_pages_wait_for_the_bucket_instead_of_being_throttled(shop, world):
    """Each customers page asks for 903 points of a bucket of 1,000 that refills 50 a second
    (the unused part of each page's cost is refunded): the pull waits for the bucket before each
    page, as Shopify advises, is never throttled, and gets everything."""
    engine, layout = world
    brand = shop_brand(shop.url)
    first_pull(shop, engine, layout, brand)
    shop.now = ago(90)
    ids = {shop.add_customer(firstName=f"T{i}") for i in range(400)}
    shop.now = ago(80)
    fake = on_fake_time(shop)
    [pulled], client = pull_source(engine, layout, brand, "shop", sleep=fake)
    assert {n["id"] for n in lines(layout.drop(brand, "shop") / pulled.delivery)[1:]} == ids
    assert client.throttle.waits == 2 and client.throttle.waited_seconds == pytest.approx(sum(fake))
    assert shop.throttled == 0


def test_a_throttled_query_waits_and_goes_on(shop, world):
    """The bucket is empty when the bulk operation is asked for: Shopify answers THROTTLED, the
    pull waits what the answer says it lacks, and asks again."""
    engine, layout = world
    brand = shop_brand(shop.url)
    shop.now = ago(10)
    shop.add_customer(firstName="Throttled")
    fake = on_fake_time(shop)
    shop.bucket.take(999)  # another app of the shop used the bucket: one point left, for the shop query
    [pulled], client = pull_source(engine, layout, brand, "shop", sleep=fake)
    assert pulled.nodes == 1
    assert shop.throttled >= 1 and client.throttle.waits >= 1


def test_a_query_throttled_many_times_in_a_row_still_waits_and_goes_on(shop, world):
    """Another app of the shop drains the bucket while the pull waits, nine times over: a throttle
    is no failed try, so the pull waits as often as the bucket asks (up to MAX_THROTTLE_WAITS)."""
    engine, layout = world
    brand = shop_brand(shop.url)
    shop.now = ago(10)
    shop.add_customer(firstName="Patient")
    fake = on_fake_time(shop)
    drains = iter(range(9))

    def sleep(seconds: float) -> None:
        fake(seconds)
        if next(drains, None) is not None:
            shop.bucket.take(int(shop.bucket.status()["currentlyAvailable"]))

    shop.bucket.take(999)
    [pulled], client = pull_source(engine, layout, brand, "shop", sleep=sleep)
    assert pulled.nodes == 1 and shop.throttled >= 9 and client.throttle.waits >= 9


def test_server_errors_and_429_are_retried(shop, world):
    engine, layout = world
    brand = shop_brand(shop.url)
    shop.now = ago(10)
    shop.add_customer(firstName="Once")
    shop.fail_next(2, 502)
    shop.fail_next(1, 429)
    sleeps = Sleeps()
    [pulled], _ = pull_source(engine, layout, brand, "shop", sleep=sleeps)
    assert pulled.nodes == 1
    assert sleeps[:3] == [1.0, 2.0, 1.0]  # back-off, back-off, Retry-After


def test_a_shop_that_keeps_failing_moves_nothing(shop, world):
    engine, layout = world
    brand = shop_brand(shop.url)
    shop.fail_next(20, 503)
    with pytest.raises(ShopifyError, match="answered HTTP 503 6 times in a row; nothing was applied"):
        pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert watermark(engine) is None and deliveries(layout, brand) == []


def test_a_revoked_token_is_one_clear_failure(shop, world):
    engine, layout = world
    brand = shop_brand(shop.url)
    shop.revoke_token()
    with pytest.raises(ShopifyError) as failure:
        pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    message = str(failure.value)
    assert "\n" not in message and "LUNE_TOKEN" in message and "HTTP 401" in message
    assert len(shop.requests) == 1  # no retry of a refused token


def test_a_failed_bulk_operation_delivers_nothing(shop, world):
    engine, layout = world
    brand = shop_brand(shop.url)
    shop.now = ago(10)
    for i in range(3):
        shop.add_customer(firstName=f"B{i}")
    shop.bulk_fail = "INTERNAL_SERVER_ERROR"
    with pytest.raises(ShopifyError, match="ended FAILED .INTERNAL_SERVER_ERROR.; nothing was applied, partial"):
        pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert deliveries(layout, brand) == [] and watermark(engine) is None


def test_orders_hidden_by_the_60_day_window_are_said(shop, world):
    engine, layout = world
    brand = shop_brand(shop.url, objects=("orders",))
    shop.scopes.remove("read_all_orders")
    shop.now = ago(90 * 86400)
    shop.add_order(line_items=[{"sku": "OLD", "quantity": 1, "price": "10.00"}])
    shop.now = ago(10)
    shop.add_order(line_items=[{"sku": "NEW", "quantity": 1, "price": "10.00"}])
    [pulled], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert pulled.nodes == 1
    assert any("read_all_orders" in note and "60 days" in note for note in pulled.notes)


def test_products_bring_their_variants_and_images_as_child_lines(shop, world, monkeypatch):
    """A paginated pull writes what a bulk operation writes: children on lines of their own,
    a product with more variants than a page reads them on."""
    engine, layout = world
    brand = shop_brand(shop.url, objects=("products",))
    first_pull(shop, engine, layout, brand)
    monkeypatch.setattr(queries, "CHILD_PAGE_SIZE", 4)
    shop.now = ago(90)
    product = shop.add_product(title="Tote", variants=[{"sku": f"T-{i}", "price": "10.00"} for i in range(55)],
                               media=[{"url": "https://cdn.example.com/1.jpg"}])
    shop.now = ago(80)
    [pulled], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    _, root, *children = lines(layout.drop(brand, "shop") / pulled.delivery)
    assert root["id"] == product and "variants" not in root and "media" not in root
    skus = [c["sku"] for c in children if c["id"].startswith("gid://shopify/ProductVariant/")]
    assert skus == [f"T-{i}" for i in range(55)]
    assert all(c["__parentId"] == product for c in children) and len(children) == 56


def test_locations_are_delivered_when_they_change(shop, world):
    engine, layout = world
    brand = shop_brand(shop.url, objects=("locations",))
    shop.add_location(name="Paris", address={"city": "Paris", "countryCode": "FR"})
    [first], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    [same], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert first.delivery and same.delivery is None
    shop.add_location(name="Lyon", address={"city": "Lyon", "countryCode": "FR"})
    [changed], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert changed.delivery and changed.nodes == 2


def test_every_page_query_stays_under_the_cost_cap():
    for obj in queries.OBJECTS:
        assert queries.requested_cost(obj) <= 1000, obj


def test_two_pulls_of_one_source_at_once_deliver_each_change_once(shop, world):
    """A schedule's pull and a webhook's at the same moment: one waits for the other, then asks
    from where the other left off."""
    engine, layout = world
    brand = shop_brand(shop.url)
    first_pull(shop, engine, layout, brand)
    shop.now = ago(90)
    ids = {shop.add_customer(firstName=f"Both{i}") for i in range(30)}
    shop.now = ago(80)
    results = []
    threads = [threading.Thread(target=lambda: results.append(pull_source(engine, layout, brand, "shop",
                                                                          sleep=Sleeps())[0][0])) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.nodes for r in results) == [0, 30]
    delivered = [n["id"] for p in deliveries(layout, brand) for n in lines(p)[1:]]
    assert sorted(delivered) == sorted(ids)


def test_a_shop_clock_that_goes_back_never_moves_the_watermark_back(shop, world):
    engine, layout = world
    brand = shop_brand(shop.url)
    first_pull(shop, engine, layout, brand)
    mark = watermark(engine)
    shop.now = ago(300)
    pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert watermark(engine) == mark


def test_a_change_search_found_late_is_still_delivered_and_nothing_twice(shop, world):
    """Shopify's search may show a change after the window that should have held it: each window
    looks back OVERLAP before its watermark, and delivers only what it has not delivered as it is."""
    engine, layout = world
    brand = shop_brand(shop.url)
    shop.now = ago(200)
    seen = shop.add_customer(firstName="Seen")
    shop.now = ago(190)
    [bulk], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert bulk.nodes == 1
    shop.now = ago(180)
    shop.update_customer(seen, firstName="Seen again")
    shop.now = ago(170)
    [window], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert window.nodes == 1
    late = shop.add_customer(firstName="Late", updatedAt=ago(175))  # before the last window's end: found only now
    shop.now = ago(160)
    [next_window], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert [n["id"] for n in lines(layout.drop(brand, "shop") / next_window.delivery)[1:]] == [late]
    shop.now = ago(150)
    [nothing], _ = pull_source(engine, layout, brand, "shop", sleep=Sleeps())
    assert nothing.delivery is None


def test_a_pull_killed_while_writing_leaves_no_part_behind_the_next(shop, world):
    engine, layout = world
    brand = shop_brand(shop.url)
    folder = layout.drop(brand, "shop")
    folder.mkdir(parents=True)
    (folder / "customers_bulk_20260101T000000000000Z.jsonl.part").write_bytes(b"x" * 1000)
    first_pull(shop, engine, layout, brand)
    assert not list(folder.glob("*.part"))


@pytest.mark.parametrize("version, ok", [("2025-04", True), ("2026-01", True), ("2025-01", False), ("2024-13", False)])
def test_an_api_version_older_than_the_fields_the_pulls_read_is_refused(version, ok):
    from pydantic import ValidationError

    if ok:
        assert shop_brand("http://127.0.0.1:1/", api_version=version)
        return
    with pytest.raises(ValidationError, match="2025-04 or later|pattern"):
        shop_brand("http://127.0.0.1:1/", api_version=version)


def test_a_query_that_times_out_is_tried_again(shop, world, monkeypatch):
    from bspk_pipelines.shopify import client as client_code

    engine, layout = world
    brand = shop_brand(shop.url)
    shop.now = ago(10)
    shop.add_customer(firstName="Slow")
    monkeypatch.setattr(client_code, "TIMEOUT_SECONDS", 0.5)
    shop.slow_next(1, 2.0)
    sleeps = Sleeps()
    [pulled], _ = pull_source(engine, layout, brand, "shop", sleep=sleeps)
    assert pulled.nodes == 1 and sleeps[0] == 1.0  # one back-off, then the answer
