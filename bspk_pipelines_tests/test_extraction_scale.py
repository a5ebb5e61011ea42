"""The Extraction API at scale (issue 18): a page costs what its rows cost at any depth. Keyset
pages seek (PostgreSQL's plan shows an index condition, not a filter, at a size where a scan would
show), the count is kept by triggers and carried by the cursors, page numbers reach a bounded way
into a listing from either end, and a 304 is answered before anything is counted or shaped. On
SQLite and PostgreSQL, with the same semantics."""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa

from bspk_pipelines.api import extraction
from bspk_pipelines.warehouse import counts
from bspk_pipelines.warehouse.engine import migrate
from bspk_pipelines.warehouse.platform import clients
from bspk_pipelines_tests.builders import make_world, statements_sent

URL = "/api/extraction/v1/clients"
START = datetime(2025, 1, 1)


def load_clients(engine: sa.Engine, brand: str, n: int, start: int = 0) -> None:
    """`n` clients straight into the table, a second apart, two by two on the same second (ties on
    updated_at are broken by id)."""
    rows = [dict(brand=brand, shopper_ref=f"C{i:06d}", created_at=START, updated_at=START + timedelta(seconds=i // 2))
            for i in range(start, start + n)]
    with engine.begin() as conn:
        conn.execute(clients.insert(), rows)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE clients")


def walk(world, brand: str, per_page: int) -> list[dict]:
    """Every record of a listing, following `next` links from page 1."""
    response = world.get(brand, URL, params={"per_page": per_page})
    records = response.json()
    while "next" in response.links:
        response = world.client.get(response.links["next"]["url"], headers=world.auth(brand))
        assert response.status_code == 200
        records += response.json()
    return records


def test_next_pages_and_deep_page_numbers_give_the_listing_in_order(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(extraction, "MAX_OFFSET", 6)
    world = make_world(engine, tmp_path)
    load_clients(engine, "acme", 23)
    load_clients(engine, "bravo", 5, start=100)  # another brand's rows: in neither count nor pages
    records = walk(world, "acme", 2)
    assert [r["client_id"] for r in records] == [f"C{i:06d}" for i in range(23)]
    first = world.get("acme", URL, params={"per_page": 2})
    assert first.headers["x-total-count"] == "23"
    as_of = httpx.URL(first.links["last"]["url"]).params["as_of"]
    assert httpx.URL(first.links["last"]["url"]).params["page"] == "12"
    by_number = {}
    for page in (1, 4, 9, 11, 12, 13):  # 4 starts at record 7, past MAX_OFFSET; 9 to 12 are near the end
        r = world.get("acme", URL, params={"per_page": 2, "page": page, "as_of": as_of})
        assert r.status_code == 200 and r.headers["x-total-count"] == "23", (page, r.text)
        by_number[page] = [c["client_id"] for c in r.json()]
    assert by_number == {1: ["C000000", "C000001"], 4: ["C000006", "C000007"], 9: ["C000016", "C000017"],
                         11: ["C000020", "C000021"], 12: ["C000022"], 13: []}
    # A page read from the end links on to the next one by cursor, as any page does.
    eleven = world.get("acme", URL, params={"per_page": 2, "page": 11, "as_of": as_of})
    after = world.client.get(eleven.links["next"]["url"], headers=world.auth("acme")).json()
    assert [c["client_id"] for c in after] == ["C000022"]
    middle = world.get("acme", URL, params={"per_page": 2, "page": 5, "as_of": as_of})
    assert middle.status_code == 422
    assert middle.json()["error"]["message"] == (
        "page 5 starts at record 9 of 23: a page number reaches 6 records into a listing from either end; to go "
        "deeper, follow the Link header's next URLs (each page starts where the one before ended), or narrow the "
        "listing with from and to")


def test_a_cursor_carries_the_count_and_one_of_an_earlier_version_is_still_followed(engine, tmp_path):
    world = make_world(engine, tmp_path)
    load_clients(engine, "acme", 5)
    first = world.get("acme", URL, params={"per_page": 2})
    with statements_sent(engine, "clients") as seen:
        second = world.client.get(first.links["next"]["url"], headers=world.auth("acme"))
    assert second.headers["x-total-count"] == "5"
    assert not any("count(" in s.lower() for s, _ in seen)  # carried, not counted again
    rows = first.json()
    at = datetime.fromisoformat(rows[-1]["updated_at"].removesuffix("Z"))
    old = base64.urlsafe_b64encode(json.dumps([at.isoformat(), rows[-1]["id"]]).encode()).decode().rstrip("=")
    as_of = httpx.URL(first.links["next"]["url"]).params["as_of"]
    again = world.get("acme", URL, params={"per_page": 2, "as_of": as_of, "after": old})
    assert [c["client_id"] for c in again.json()] == [c["client_id"] for c in second.json()]
    assert again.headers["x-total-count"] == "5"


def test_a_matching_if_none_match_is_answered_before_anything_is_counted_or_shaped(engine, tmp_path):
    world = make_world(engine, tmp_path)
    load_clients(engine, "acme", 5)
    first = world.get("acme", URL, params={"per_page": 2})
    view, shaped = extraction.VIEWS["clients"], []
    real = view.shape
    object.__setattr__(view, "shape", lambda row: shaped.append(row) or real(row))  # a frozen View, the app's own
    try:
        with statements_sent(engine, "clients") as seen:
            again = world.get("acme", URL, params={"per_page": 2}, headers={"If-None-Match": first.headers["etag"]})
    finally:
        object.__setattr__(view, "shape", real)
    assert again.status_code == 304 and again.headers["etag"] == first.headers["etag"]
    assert len(seen) == 1 and "count(" not in seen[0][0].lower()  # the page's one query
    assert shaped == []
    with engine.begin() as conn:  # an edit that keeps updated_at: the ETag still sees it
        conn.execute(clients.update().where(clients.c.shopper_ref == "C000001").values(first_name="Zoé"))
    changed = world.get("acme", URL, params={"per_page": 2}, headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200 and "Zoé" in changed.text


def test_the_counts_the_triggers_keep_are_exact_through_inserts_deletes_and_a_new_migration(engine, tmp_path):
    if engine.dialect.name != "postgresql":
        with engine.connect() as conn:
            assert not counts.kept_for(conn, clients)  # SQLite counts each listing
        return
    world = make_world(engine, tmp_path)
    load_clients(engine, "acme", 30)
    load_clients(engine, "bravo", 4, start=100)
    with engine.begin() as conn:
        conn.execute(clients.delete().where(clients.c.shopper_ref.in_(["C000003", "C000004"])))
        conn.execute(clients.update().where(clients.c.shopper_ref == "C000005").values(updated_at=datetime(2030, 1, 1)))

    def kept(brand):
        with engine.connect() as conn:
            return conn.execute(sa.select(counts.kept_rows(clients, brand))).scalar_one()

    assert (kept("acme"), kept("bravo"), kept("nobody")) == (28, 4, 0)
    listing = world.get("acme", URL, params={"as_of": "2029-01-01T00:00:00Z"})
    assert listing.headers["x-total-count"] == "27"  # C000005 is past the snapshot
    with engine.begin() as conn:  # a warehouse migrated before the counts existed
        conn.exec_driver_sql("DROP TRIGGER listing_count_added ON clients")
        conn.exec_driver_sql("DROP TABLE listing_counts")
    migrate(engine)
    load_clients(engine, "acme", 2, start=500)
    assert (kept("acme"), kept("bravo")) == (30, 4)


def explain(conn: sa.Connection, statement: str, parameters) -> str:
    return "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))


def test_postgresql_plans_a_deep_next_page_as_an_index_range_and_the_count_without_a_scan(engine, tmp_path):
    """At 20,000 clients a scan would show. SQLite gives the same pages (its plans have no target)."""
    world = make_world(engine, tmp_path)
    load_clients(engine, "acme", 20_000)
    load_clients(engine, "bravo", 2_000, start=50_000)
    first = world.get("acme", URL, params={"per_page": 100})
    as_of = httpx.URL(first.links["next"]["url"]).params["as_of"]
    with engine.connect() as conn:  # the row at 99% depth, as a cursor
        at, row_id = conn.execute(sa.select(clients.c.updated_at, clients.c.id).where(clients.c.brand == "acme")
                                  .order_by(clients.c.updated_at, clients.c.id).offset(19_800).limit(1)).one()
    cursor = extraction.encode_cursor(at, row_id, 20_000)
    with statements_sent(engine, "clients") as page:
        deep = world.get("acme", URL, params={"per_page": 100, "as_of": as_of, "after": cursor})
    assert deep.status_code == 200 and len(deep.json()) == 100 and deep.json()[0]["client_id"] == "C019801"
    if engine.dialect.name != "postgresql":
        return
    with statements_sent(engine, "clients") as counted:
        world.get("acme", URL, params={"per_page": 100})
    [(page_sql, page_params)] = page
    count_sql, count_params = next((s, p) for s, p in counted if "count(" in s.lower())
    with engine.connect() as conn:
        page_plan, count_plan = explain(conn, page_sql, page_params), explain(conn, count_sql, count_params)
    lines = [line.strip() for line in page_plan.splitlines()]
    scan = next(i for i, line in enumerate(lines) if "Index Scan using ix_clients_updated on clients" in line)
    assert lines[scan + 1].startswith("Index Cond: ((brand = ") and "ROW(updated_at, id) > ROW(" in lines[scan + 1], page_plan
    assert not lines[scan + 2].startswith("Filter"), page_plan  # the cursor is no filter on the rows read
    assert "Seq Scan on clients" not in count_plan and "ix_clients_updated" in count_plan, count_plan
    assert "listing_counts" in count_plan, count_plan
    assert math.ceil(20_000 / 100) == int(httpx.URL(first.links["last"]["url"]).params["page"])
