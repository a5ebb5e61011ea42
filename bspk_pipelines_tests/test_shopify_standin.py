"""The Shopify stand-in over real HTTP: the connector's own documents (queries.py) answered,
pagination over ties, search, cost and throttling, faults, the 60-day order window, bulk JSONL,
and signed webhooks. Time is a settable clock where a test needs it, so nothing waits long."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import phonenumbers
import pytest
import requests

from bspk_pipelines.demo.shopify_standin import ShopifyStandin
from bspk_pipelines.shopify import queries as q

NOW = "2026-03-01T12:00:00Z"
ALL_SCOPES = ["read_customers", "read_products", "read_orders", "read_locations", "read_all_orders"]


@pytest.fixture
def shop() -> Iterator[ShopifyStandin]:
    with ShopifyStandin(scopes=ALL_SCOPES, restore_rate=1_000_000) as standin:
        standin.now = NOW
        standin.bulk_delay = 0.02
        yield standin


def post(shop: ShopifyStandin, document: str, *, token: str | None = None, **variables) -> requests.Response:
    return requests.post(shop.url, json={"query": document, "variables": variables}, timeout=10,
                         headers={"X-Shopify-Access-Token": shop.token if token is None else token})


def data(shop: ShopifyStandin, document: str, **variables) -> dict:
    body = post(shop, document, **variables).json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def run_bulk(shop: ShopifyStandin, inner: str) -> dict:
    """Start a bulk operation and poll it (as the connector does) until it stops running."""
    started = data(shop, q.BULK_RUN, query=inner)["bulkOperationRunQuery"]
    assert started["userErrors"] == [] and started["bulkOperation"]["status"] == "CREATED"
    for _ in range(500):
        status = data(shop, q.BULK_STATUS, id=started["bulkOperation"]["id"])["node"]
        if status["status"] not in ("CREATED", "RUNNING"):
            return status
        time.sleep(0.02)
    raise AssertionError("bulk operation never finished")


def jsonl(url: str) -> list[dict]:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and int(response.headers["Content-Length"]) == len(response.content)
    return [json.loads(line) for line in response.text.splitlines()]


def field_names(fields: str) -> set[str]:
    """The top-level field names of a selection like queries.CUSTOMER."""
    depth, names = 0, set()
    for token in fields.replace("{", " { ").replace("}", " } ").split():
        depth += token == "{"
        depth -= token == "}"
        if depth == 0 and token not in ("{", "}", "...", "on") and token[0].islower():
            names.add(token)
    return names


def test_a_wrong_or_revoked_token_gets_401_and_another_version_404(shop):
    response = post(shop, q.SHOP, token="shpat_wrong")
    assert response.status_code == 401
    assert response.json() == {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    assert post(shop, q.SHOP).status_code == 200
    shop.revoke_token()
    assert post(shop, q.SHOP, token="shpat_standin").status_code == 401
    other = requests.post(shop.url.replace("2026-01", "2019-04"), json={"query": q.SHOP}, timeout=10)
    assert other.status_code == 404
    assert [r.status for r in shop.requests] == [401, 200, 401, 404]


@pytest.mark.parametrize("obj", list(q.OBJECTS))
def test_each_page_query_returns_nodes_with_its_fields_at_its_documented_cost(shop, obj):
    shop.generate(customers=20, products=8, orders=12, lines_per_order=2, locations=3, seed=3)
    root, fields, children = q.OBJECTS[obj]
    response = post(shop, q.page_query(obj), cursor=None, q=None).json()
    assert "errors" not in response
    nodes = response["data"][root]["nodes"]
    assert nodes and all(set(n) == field_names(fields) | {c for c, _, _ in children} for n in nodes)
    assert response["extensions"]["cost"]["requestedQueryCost"] == q.requested_cost(obj)
    assert 0 < response["extensions"]["cost"]["actualQueryCost"] < q.requested_cost(obj)


def test_child_pages_read_on_a_parents_nested_connection(shop):
    product = shop.add_product(title="Sock", variants=[{"sku": f"SOCK-{i}", "price": "5.00"} for i in range(130)])
    seen, cursor = [], None
    while True:
        page = data(shop, q.child_page_query("products", "variants"), id=product, cursor=cursor)["node"]["variants"]
        seen += [v["sku"] for v in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        cursor = page["pageInfo"]["endCursor"]
    assert seen == [f"SOCK-{i}" for i in range(130)]
    first = data(shop, q.page_query("products"), cursor=None, q=None)["products"]["nodes"][0]["variants"]
    assert len(first["nodes"]) == 50 and first["pageInfo"]["hasNextPage"]


@pytest.mark.parametrize("reverse", [False, True])
def test_pages_over_ties_on_updated_at_return_each_customer_exactly_once(shop, reverse):
    shop.add_customer(firstName="early", updatedAt="2026-02-01T00:00:00Z")
    for i in range(7):
        shop.add_customer(firstName=f"tied{i}")  # all at NOW: seven ties
    shop.add_customer(firstName="late", updatedAt="2026-03-02T00:00:00Z")
    query = """query($after: String, $reverse: Boolean) { customers(first: 3, after: $after, sortKey: UPDATED_AT,
        reverse: $reverse) { edges { cursor node { id firstName updatedAt } } pageInfo { hasNextPage endCursor } } }"""
    names, after = [], None
    while True:
        page = data(shop, query, after=after, reverse=reverse)["customers"]
        names += [e["node"]["firstName"] for e in page["edges"]]
        assert page["pageInfo"]["endCursor"] == (page["edges"][-1]["cursor"] if page["edges"] else None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    expected = ["early"] + [f"tied{i}" for i in range(7)] + ["late"]  # ties in id order
    assert names == (expected[::-1] if reverse else expected)


def test_search_filters_on_quoted_timestamps_and_ids_and_ignores_unknown_terms(shop):
    ids = [shop.add_customer(firstName=f"c{d}", updatedAt=f"2026-02-{d:02d}T10:00:00Z") for d in (1, 2, 3, 4)]

    def names(search: str) -> list[str]:
        query = "query($q: String) { customers(first: 10, query: $q, sortKey: UPDATED_AT) { nodes { firstName } } }"
        return [n["firstName"] for n in data(shop, query, q=search)["customers"]["nodes"]]

    assert names(q.since("2026-02-02T10:00:00Z")) == ["c2", "c3", "c4"]
    assert names('updated_at:>"2026-02-02T10:00:00Z" AND updated_at:<=\'2026-02-03T10:00:00Z\'') == ["c3"]
    assert names("updated_at:<'2026-02-02T10:00:00Z' tag:vip") == ["c1"]  # tag: is not modelled, so ignored
    assert names(f"id:>={ids[3].rsplit('/', 1)[1]}") == ["c4"]
    assert names("updated_at:>=2026-02-02T23:59:59Z") == ["c2", "c3", "c4"]  # unquoted: the date only


def test_first_over_250_and_a_missing_first_are_errors_not_crashes(shop):
    over = post(shop, "{ customers(first: 251) { nodes { id } } }").json()
    assert over["errors"][0]["message"] == "first cannot exceed 250" and "data" not in over
    missing = post(shop, "{ products { nodes { id } } }").json()
    assert missing["errors"][0]["message"] == "you must provide one of first or last"


def test_an_unknown_field_gets_validation_errors(shop):
    response = post(shop, "{ customers(first: 1) { nodes { id email } } }")
    assert response.status_code == 200
    assert response.json()["errors"][0]["message"] == "Cannot query field 'email' on type 'Customer'."
    assert "errors" in post(shop, "{ customers(first: 1) {").json()


def test_a_query_costing_over_1000_is_refused_with_max_cost_exceeded(shop):
    query = "{ products(first: 50) { nodes { id variants(first: 20) { nodes { id } } } } }"  # 2 + 50 x 23
    error = post(shop, query).json()["errors"][0]
    assert error["extensions"] == {"code": "MAX_COST_EXCEEDED", "cost": 1152, "maxCost": 1000}
    assert shop.throttled == 0


def test_a_small_bucket_throttles_and_recovers_at_the_restore_rate():
    clock = [0.0]
    with ShopifyStandin(maximum_available=50, restore_rate=10, monotonic=lambda: clock[0]) as shop:
        for i in range(10):
            shop.add_customer(firstName=f"c{i}", defaultAddress={"city": "Paris"})
        query = "{ customers(first: 10) { nodes { id defaultAddress { city } } } }"  # 2 + 10 x 2 = 22
        first, second, third = (post(shop, query).json() for _ in range(3))
        assert first["extensions"]["cost"]["actualQueryCost"] == 22
        assert second["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 6.0
        assert third["errors"] == [{"message": "Throttled", "extensions": {
            "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}]
        assert "data" not in third and third["extensions"]["cost"] == {
            "requestedQueryCost": 22, "actualQueryCost": None,
            "throttleStatus": {"maximumAvailable": 50.0, "currentlyAvailable": 6.0, "restoreRate": 10.0}}
        assert shop.throttled == 1
        clock[0] += 1.6  # 6 + 16 = 22 points
        assert "errors" not in post(shop, query).json()


def test_a_page_of_fewer_nodes_refunds_the_difference():
    with ShopifyStandin(monotonic=lambda: 0.0) as shop:
        shop.add_customer(firstName="only")
        cost = post(shop, "{ customers(first: 100) { nodes { id } pageInfo { hasNextPage } } }").json()["extensions"]["cost"]
        assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (103, 4)
        assert cost["throttleStatus"]["currentlyAvailable"] == 996.0


def test_fail_next_and_slow_next_answer_the_faults_then_recover(shop):
    shop.fail_next(2, status=502)
    assert [post(shop, q.SHOP).status_code for _ in range(3)] == [502, 502, 200]
    shop.fail_next(1, status=429)
    limited = post(shop, q.SHOP)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1.0"
    shop.slow_next(1, 0.5)
    with pytest.raises(requests.Timeout):
        requests.post(shop.url, json={"query": q.SHOP}, headers={"X-Shopify-Access-Token": shop.token}, timeout=0.2)
    assert post(shop, q.SHOP).status_code == 200


def test_orders_older_than_60_days_are_invisible_without_read_all_orders():
    with ShopifyStandin(restore_rate=1_000_000) as shop:
        shop.now = NOW
        shop.bulk_delay = 0.01
        recent = shop.add_order(createdAt="2026-02-20T00:00:00Z", line_items=[{"sku": "A", "quantity": 1}])
        old = shop.add_order(createdAt="2025-11-01T00:00:00Z", line_items=[{"sku": "B", "quantity": 1}])
        ids = [n["id"] for n in data(shop, q.page_query("orders"), cursor=None, q=None)["orders"]["nodes"]]
        assert ids == [recent]
        assert data(shop, "query($id: ID!) { node(id: $id) { id } }", id=old)["node"] is None
        status = run_bulk(shop, q.bulk_query("orders", None))
        assert (status["rootObjectCount"], status["objectCount"]) == ("1", "2")
        shop.scopes.append("read_all_orders")
        assert len(data(shop, q.page_query("orders"), cursor=None, q=None)["orders"]["nodes"]) == 2
        assert {"handle": "read_all_orders"} in data(shop, q.SCOPES)["currentAppInstallation"]["accessScopes"]


def test_a_missing_scope_denies_its_root(shop):
    shop.scopes.remove("read_customers")
    error = post(shop, q.page_query("customers"), cursor=None, q=None).json()["errors"][0]
    assert error["extensions"]["code"] == "ACCESS_DENIED" and error["path"] == ["customers"]


def test_a_bulk_operation_writes_jsonl_with_parent_ids_and_counts(shop):
    shop.generate(products=30, seed=5)
    status = run_bulk(shop, q.bulk_query("products", None))
    assert status["status"] == "COMPLETED" and status["errorCode"] is None and status["partialDataUrl"] is None
    lines = jsonl(status["url"])
    roots = [line for line in lines if "__parentId" not in line]
    children = [line for line in lines if "__parentId" in line]
    assert (status["objectCount"], status["rootObjectCount"]) == (str(len(lines)), "30")
    assert len(roots) == 30 and all(set(r) == field_names(q.PRODUCT) for r in roots)
    assert {c["__parentId"] for c in children} <= {r["id"] for r in roots}
    variants = [c for c in children if "/ProductVariant/" in c["id"]]
    media = [c for c in children if "/MediaImage/" in c["id"]]
    assert len(variants) + len(media) == len(children) and len(variants) >= 30
    assert all(m["image"]["url"].startswith("https://") and m["mediaContentType"] == "IMAGE" for m in media)
    assert all(isinstance(v["selectedOptions"], list) for v in variants)  # nested objects stay inline
    assert lines[1].get("__parentId") is None  # a child is not promised to follow its parent


def test_a_bulk_query_filter_applies(shop):
    for day in (1, 2, 3):
        shop.add_customer(firstName=f"c{day}", updatedAt=f"2026-02-0{day}T00:00:00Z")
    status = run_bulk(shop, q.bulk_query("customers", q.since("2026-02-02T00:00:00Z")))
    assert [line["firstName"] for line in jsonl(status["url"])] == ["c2", "c3"]


def test_an_order_bulk_counts_every_line_item(shop):
    shop.generate(customers=10, products=5, orders=40, lines_per_order=3, seed=1)
    status = run_bulk(shop, q.bulk_query("orders", None))
    lines = jsonl(status["url"])
    parents = Counter(line["__parentId"] for line in lines if "__parentId" in line)
    assert status["rootObjectCount"] == "40" and status["objectCount"] == "160"
    assert set(parents.values()) == {3} and len(parents) == 40


@pytest.mark.parametrize("inner, message", [
    ("{ customers { edges { node { id nickname } } } }", "Cannot query field 'nickname'"),
    ("{ orders { edges { node { lineItems { edges { node { product { variants { edges { node { id } } } } } } } } } } }",
     "nesting depth greater than 2"),
    ("{ customers { edges { node { id } } } products { edges { node { variants { edges { node { id } } } media "
     "{ edges { node { id } } } } } } orders { edges { node { lineItems { edges { node { id } } } } } } "
     "locations { edges { node { id } } } }", "more than 5 connections"),
    ("{ shop { id } }", "connections at the top level"),
])
def test_an_invalid_bulk_query_gets_user_errors(shop, inner, message):
    payload = data(shop, q.BULK_RUN, query=inner)["bulkOperationRunQuery"]
    assert payload["bulkOperation"] is None and message in payload["userErrors"][0]["message"]


def test_five_bulk_operations_may_run_at_once_but_not_six(shop):
    shop.bulk_delay = 1.0
    for _ in range(5):
        assert data(shop, q.BULK_RUN, query=q.bulk_query("locations", None))["bulkOperationRunQuery"]["userErrors"] == []
    run = "mutation($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation { id } userErrors { code message } } }"
    refused = data(shop, run, q=q.bulk_query("locations", None))["bulkOperationRunQuery"]
    assert refused["bulkOperation"] is None and refused["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"


def test_a_failed_bulk_operation_has_partial_data_and_an_expired_one_no_url(shop):
    shop.generate(customers=40, seed=2)
    done = run_bulk(shop, q.bulk_query("customers", None))
    shop.bulk_fail = "INTERNAL_SERVER_ERROR"
    failed = run_bulk(shop, q.bulk_query("customers", None))
    assert (failed["status"], failed["errorCode"], failed["url"]) == ("FAILED", "INTERNAL_SERVER_ERROR", None)
    partial = jsonl(failed["partialDataUrl"])
    assert 0 < len(partial) < 40 and str(len(partial)) == failed["objectCount"]
    shop.bulk_expire(done["id"])
    expired = data(shop, q.BULK_STATUS, id=done["id"])["node"]
    assert (expired["status"], expired["url"]) == ("EXPIRED", None)
    assert requests.get(done["url"], timeout=10).status_code == 404


class _Catcher(BaseHTTPRequestHandler):
    received: list[tuple[bytes, dict]] = []

    def do_POST(self):
        self.received.append((self.rfile.read(int(self.headers["Content-Length"])), dict(self.headers)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_is_signed_as_shopify_signs_it_and_tampering_breaks_the_signature(shop):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Catcher)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        customer = shop.add_customer(firstName="Ada", email="ada@example.com", tags=["vip", "repeat"])
        shop.now = "2026-03-01T13:00:00Z"
        shop.update_customer(customer, lastName="Lovelace")
        payload = shop.rest_payload(customer)
        assert payload["id"] == int(customer.rsplit("/", 1)[1]) and payload["admin_graphql_api_id"] == customer
        assert (payload["tags"], payload["email"], payload["last_name"]) == ("vip, repeat", "ada@example.com", "Lovelace")
        assert datetime.fromisoformat(payload["updated_at"]) == datetime(2026, 3, 1, 13, tzinfo=UTC)
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
        assert shop.send_webhook(url, "customers/update", payload, "s3cret", "wh-1").status_code == 200
        shop.send_webhook(url, "customers/update", payload, "s3cret", tamper=True)
        (good, headers), (bad, bad_headers) = _Catcher.received[-2:]

        def valid(body: bytes, header: str) -> bool:
            digest = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
            return hmac.compare_digest(digest, header)

        assert valid(good, headers["X-Shopify-Hmac-Sha256"]) and json.loads(good) == payload
        assert not valid(bad, bad_headers["X-Shopify-Hmac-Sha256"])
        assert headers["X-Shopify-Topic"] == "customers/update" and headers["X-Shopify-Webhook-Id"] == "wh-1"
        assert headers["X-Shopify-Shop-Domain"] == shop.domain and headers["X-Shopify-API-Version"] == "2026-01"
        assert {"X-Shopify-Triggered-At", "X-Shopify-Event-Id"} <= set(headers)
        assert bad_headers["X-Shopify-Webhook-Id"] != "wh-1"
    finally:
        server.shutdown()
        server.server_close()


def test_generate_fills_a_benchmark_sized_shop_in_seconds_with_realistic_values(shop):
    started = time.perf_counter()
    shop.generate(customers=200_000, products=500, orders=250_000, lines_per_order=4, seed=11)
    assert time.perf_counter() - started < 5
    page = data(shop, q.page_query("customers"), cursor=None, q=q.since("2026-01-01T00:00:00Z"))["customers"]
    assert len(page["nodes"]) == 150 and page["pageInfo"]["hasNextPage"]
    assert all(n["updatedAt"] >= "2026-01-01T00:00:00Z" for n in page["nodes"])
    phones = [n["defaultPhoneNumber"]["phoneNumber"] for n in page["nodes"] if n["defaultPhoneNumber"]]
    assert phones and all(phonenumbers.is_valid_number(phonenumbers.parse(p)) for p in phones)
    orders = [shop.store.lookup(f"gid://shopify/Order/{n}") for n in range(1_000_000_000_001, 1_000_000_002_001)]
    assert any(o["customer"] is None for o in orders) and any(o["test"] for o in orders)
    assert any(o["cancelledAt"] for o in orders)
    assert any(li["currentQuantity"] < li["quantity"] for o in orders for li in o["lineItems"])
    years = {o["createdAt"][:4] for o in orders}
    assert len(years) >= 4
    recent = datetime.fromisoformat(NOW) - timedelta(days=60)
    assert any(datetime.fromisoformat(o["createdAt"]) >= recent for o in orders)
