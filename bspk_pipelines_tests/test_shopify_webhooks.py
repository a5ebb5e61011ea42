"""Shopify's webhooks at `bspk serve`: the stand-in sends them as Shopify does (signed, with its
headers) to the real service on 127.0.0.1; what they do is read back from the warehouse and the
drop folder."""

from __future__ import annotations

import http.client
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from bspk_pipelines.api.app import create_app
from bspk_pipelines.demo.shopify_standin import ShopifyStandin
from bspk_pipelines.shopify.pull import pull_source
from bspk_pipelines.settings import ApiSettings
from bspk_pipelines.warehouse.engine import migrate
from bspk_pipelines_tests.builders import brand_harness, serving

TOKEN, SECRET = "shpat_hooks", "hook-secret"


def config(url: str) -> dict:
    return {"brand": "lune", "company_name": "Lune", "sources": {"shop": {
        "format": "shopify", "shop": "bspk-demo.myshopify.com", "api_version": "2026-01", "token_env": "LUNE_TOKEN",
        "endpoint": url, "webhook_secret_env": "LUNE_HOOK_SECRET", "objects": ["customers"]}}}


@pytest.fixture
def setup(monkeypatch, tmp_path, engine):
    monkeypatch.setenv("LUNE_TOKEN", TOKEN)
    monkeypatch.setenv("LUNE_HOOK_SECRET", SECRET)
    with ShopifyStandin(TOKEN) as shop:
        shop.now = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        harness = brand_harness(config(shop.url), engine, tmp_path)
        migrate(engine)
        app = create_app(engine, [harness.brand], harness.layout.data_dir, ApiSettings())
        with serving(app) as base:
            yield shop, harness, f"{base}/webhooks/shopify/lune"


def taken(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("select webhook_id, topic, resource, action from shopify_webhooks"))]


def wait_for(condition, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail("not within the time")


def drop_files(harness) -> list:
    folder = harness.layout.drop(harness.brand, "shop")
    return sorted(p for p in folder.iterdir() if p.suffix == ".jsonl") if folder.exists() else []


def test_a_signed_webhook_is_answered_at_once_and_pulls_in_the_background(setup):
    shop, harness, url = setup
    customer = shop.add_customer(firstName="Marie", email="marie@example.com")
    shop.slow_next(3, 1.5)  # the shop is slow: the answer must not wait for the pull
    started = time.monotonic()
    answer = shop.send_webhook(url, "customers/create", shop.rest_payload(customer), SECRET, "wh-1")
    assert time.monotonic() - started < 1.0
    assert answer.status_code == 200 and answer.json() == {"taken": True, "duplicate": False, "action": "pull customers"}
    [delivery] = wait_for(lambda: drop_files(harness))
    assert customer in delivery.read_text()
    assert taken(harness.engine) == [("wh-1", "customers/create", customer.rsplit("/", 1)[1], "pull customers")]


def test_the_change_a_webhook_tells_of_is_in_the_pull_it_asks_for(setup):
    """Shopify sends the webhook the moment the change is made: the pull waits until the change
    is inside its window (which ends a settling time before the shop's clock) before it asks."""
    shop, harness, url = setup
    customer = shop.add_customer(firstName="Before")
    pull_source(harness.engine, harness.layout, harness.brand, "shop")
    shop.clock = lambda: datetime.now(UTC)
    shop.update_customer(customer, firstName="Just now")
    assert shop.send_webhook(url, "customers/update", shop.rest_payload(customer), SECRET).status_code == 200
    wait_for(lambda: any("Just now" in p.read_text() for p in drop_files(harness)))


def test_a_webhook_sent_again_is_taken_once(setup):
    shop, harness, url = setup
    customer = shop.add_customer(firstName="Once")
    first = shop.send_webhook(url, "customers/update", shop.rest_payload(customer), SECRET, "wh-same")
    again = shop.send_webhook(url, "customers/update", shop.rest_payload(customer), SECRET, "wh-same")
    assert first.json()["taken"] and again.status_code == 200 and again.json()["duplicate"]
    assert len(taken(harness.engine)) == 1


@pytest.mark.parametrize("tamper, secret", [(True, SECRET), (False, "not-the-secret")])
def test_a_bad_signature_is_refused_before_anything(setup, tamper, secret):
    shop, harness, url = setup
    customer = shop.add_customer(firstName="Forged")
    answer = shop.send_webhook(url, "customers/update", shop.rest_payload(customer), secret, "wh-forged", tamper=tamper)
    assert answer.status_code == 401 and "signature" in answer.json()["error"]["message"]
    assert taken(harness.engine) == [] and drop_files(harness) == []


def test_the_old_secret_still_verifies_during_a_rotation(setup, monkeypatch):
    shop, harness, url = setup
    monkeypatch.setenv("LUNE_HOOK_SECRET", f"new-secret {SECRET}")
    customer = shop.add_customer(firstName="Rotated")
    assert shop.send_webhook(url, "customers/update", shop.rest_payload(customer), SECRET).status_code == 200


def test_before_the_signature_every_refusal_is_the_same(setup, monkeypatch):
    """Another shop, another brand, a source whose secret is not set: one 401, naming none of them."""
    shop, harness, url = setup
    customer = shop.add_customer(firstName="Elsewhere")
    payload = shop.rest_payload(customer)
    shop.domain = "another-shop.myshopify.com"
    answers = [shop.send_webhook(url, "customers/update", payload, SECRET)]
    shop.domain = "bspk-demo.myshopify.com"
    answers.append(shop.send_webhook(url.replace("/lune", "/nobody"), "customers/update", payload, SECRET))
    monkeypatch.delenv("LUNE_HOOK_SECRET")
    answers.append(shop.send_webhook(url, "customers/update", payload, SECRET))
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert len({a.text for a in answers}) == 1 and "lune" not in answers[0].text
    assert taken(harness.engine) == []


def test_a_body_declared_too_large_is_refused_unread(setup):
    _, _, url = setup
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("POST", parts.path)
    conn.putheader("Content-Length", str(3 << 20))  # and no body follows: it is never read
    conn.endheaders()
    try:
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_a_body_without_its_length_is_refused(setup):
    _, _, url = setup
    assert httpx.post(url, content=iter([b"{}"])).status_code == 411


def applied_customer(shop, harness, **fields) -> tuple[str, str]:
    customer = shop.add_customer(**fields)
    [pulled], _ = pull_source(harness.engine, harness.layout, harness.brand, "shop")
    harness.ingest(pulled.delivery, "shop")
    return customer, customer.rsplit("/", 1)[1]


def test_a_deleted_customer_is_deleted_on_the_platform_before_the_answer(setup):
    """customers/delete, which no pull can see: the client applied from Shopify is marked deleted
    in the transaction that takes the webhook, so a crash after the answer loses nothing."""
    shop, harness, url = setup
    customer, ref = applied_customer(shop, harness, firstName="Gone", email="gone@example.com")
    [client] = harness.rows("clients")
    assert client["shopper_ref"] == ref and client["deleted_at"] is None
    shop.delete_customer(customer)
    answer = shop.send_webhook(url, "customers/delete", {"id": int(ref)}, SECRET)
    assert answer.json()["action"] == "delete customers"
    assert harness.rows("clients")[0]["deleted_at"] is not None


def test_a_signed_body_sent_again_as_a_deletion_deletes_nothing(setup):
    """An update's signed body replayed under customers/delete with a new webhook id: the shop's
    API says the customer is still there, so nothing is deleted."""
    shop, harness, url = setup
    customer, _ = applied_customer(shop, harness, firstName="Still", email="still@example.com")
    answer = shop.send_webhook(url, "customers/delete", shop.rest_payload(customer), SECRET, "wh-replayed")
    assert answer.status_code == 200 and answer.json()["action"] == "none: the customer is still in the shop"
    assert harness.rows("clients")[0]["deleted_at"] is None


def test_a_deletion_the_shop_cannot_confirm_is_sent_again_later(setup):
    """The shop's API refuses the token: the deletion is not taken (503), so Shopify retries it."""
    shop, harness, url = setup
    customer, ref = applied_customer(shop, harness, firstName="Later")
    shop.delete_customer(customer)
    shop.revoke_token()
    answer = shop.send_webhook(url, "customers/delete", {"id": int(ref)}, SECRET, "wh-later")
    assert answer.status_code == 503 and taken(harness.engine) == []
    assert harness.rows("clients")[0]["deleted_at"] is None


def test_a_shopify_delivery_cannot_be_uploaded(setup, tmp_path):
    """The upload API routes a file by its name: a Shopify source's names are its pulls'."""
    shop, harness, url = setup
    from bspk_pipelines_tests.builders import make_world

    world = make_world(harness.engine, tmp_path / "world", extra=[harness.brand])
    answer = world.post("lune", "/api/platform/v1/imports",
                        files={"file": ("customers_pull_20260101T000000000000Z.jsonl", b"{}\n")})
    assert answer.status_code == 422 and "Shopify shop" in answer.json()["error"]["message"]
