"""The REST API: every endpoint and parameter rule of the Extraction API, the Platform API and the
import upload, through FastAPI's test client, on SQLite and PostgreSQL; one test on a real
uvicorn server. The brand isolation matrix is in test_api_isolation.py, the schema fuzzing in
test_api_fuzz.py; all build their world with `make_world` (builders.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bspk_pipelines.api.app import create_app
from bspk_pipelines.api.imports import MAX_NAME_BYTES, import_id
from bspk_pipelines.api.keys import create_key, list_keys, revoke_key
from bspk_pipelines.api.models import RECORDS
from bspk_pipelines.api.ratelimit import RateLimiter
from bspk_pipelines.model.brand_file import load_brand
from bspk_pipelines.defs.ingest.sensors import load_cursor, plan_runs
from bspk_pipelines.engagement.activity import Platform
from bspk_pipelines.ingest.mapping import source_columns
from bspk_pipelines.outbound.views import VIEWS
from bspk_pipelines.outbound.webhooks.fanout import fan_out
from bspk_pipelines.outbound.webhooks.signing import parse_secrets
from bspk_pipelines.settings import ApiSettings
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines_tests.builders import (
    BASE,
    SHOPPER,
    World,
    make_world,
    seed,
    serving,
    shopper_row,
    url,
    view_records,
)

PROJECT = Path(__file__).resolve().parent.parent
LISTS = [name for name, view in VIEWS.items() if view.paginated]


@pytest.fixture
def world(engine, tmp_path) -> World:
    w = make_world(engine, tmp_path)
    seed(w, "acme", ("S1", "S2", "S3"))
    seed(w, "bravo", ("B1", "B2"), associates=("Karl,Lagerfeld", "Yves,Saint Laurent"))
    return w



# --- authentication, keys and rate limits -----------------------------------------------------

def test_requests_without_a_valid_key_are_401_in_json(bare):
    client = bare.client
    key = bare.keys["acme"]
    wrong_secret = key[:-1] + ("B" if key[-1] == "A" else "A")
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer bspk_000000000000_" + "x" * 43},
                    {"Authorization": f"Bearer {wrong_secret}"}, {"Authorization": f"Bearer {key} extra"},
                    {"Authorization": "Bearer not-a-key"}):
        r = client.get(url("clients"), headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["status"] == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert client.post("/api/platform/v1/clients", json={"nonsense": 1}).status_code == 401  # before the body
    assert client.get("/openapi.json").status_code == 200  # the document is public


def test_keys_are_stored_hashed_several_per_brand_and_revocable(world):
    second_id, second = create_key(world.engine, "acme", "second integration")
    with world.engine.connect() as conn:
        stored = conn.execute(sa.text("select key_id, key_hash from api_keys")).all()
        assert [k.key_id for k in list_keys(conn, "acme")] == [world.key_ids["acme"], second_id]
    secret = second.split("_", 2)[2]
    assert all(secret not in row.key_hash and row.key_hash.startswith("scrypt$") for row in stored)
    both = [world.get("acme", url("clients")), world.client.get(url("clients"), headers={"Authorization": f"Bearer {second}"})]
    assert [r.status_code for r in both] == [200, 200] and both[0].json() == both[1].json()
    assert revoke_key(world.engine, "acme", second_id) and not revoke_key(world.engine, "acme", second_id)
    assert not revoke_key(world.engine, "bravo", world.key_ids["acme"])  # another brand's key
    assert world.client.get(url("clients"), headers={"Authorization": f"Bearer {second}"}).status_code == 401
    assert world.get("acme", url("clients")).status_code == 200


def test_rate_limit_per_key_per_window(bare):
    ticks = [1000.0]
    bare.app.state.service.limiter = RateLimiter(3, 10.0, clock=lambda: ticks[0])
    answers = [bare.get("acme", url("calls")) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert all(r.headers["x-ratelimit-limit"] == "3" for r in answers)
    over = answers[-1]
    assert over.json()["error"]["status"] == 429 and int(over.headers["retry-after"]) >= 1
    assert bare.get("bravo", url("calls")).status_code == 200  # each key has its own window
    ticks[0] += 10
    assert bare.get("acme", url("calls")).headers["x-ratelimit-remaining"] == "2"


def test_errors_are_json_without_stack_traces(bare, monkeypatch):
    from bspk_pipelines.api import extraction

    def broken(*args, **kwargs):
        raise RuntimeError("connection string postgres://secret@db")

    monkeypatch.setattr(extraction, "page_rows", broken)
    r = bare.get("acme", url("notes"))
    assert r.status_code == 500 and r.json() == {"error": {"status": 500, "message": "internal error"}}
    assert "secret" not in r.text and "Traceback" not in r.text
    for method, path in (("GET", "/api/nowhere"), ("DELETE", url("notes")), ("PUT", "/api/platform/v1/clients")):
        r = bare.request("acme", method, path)
        assert r.status_code in (404, 405) and set(r.json()["error"]) == {"status", "message"}


# --- Extraction API ----------------------------------------------------------------------------

def test_every_endpoint_returns_the_views_records_with_every_field(world):
    for name, view in VIEWS.items():
        r = world.get("acme", url(name))
        assert r.status_code == 200, (name, r.text)
        records = r.json()
        assert records and records == view_records(world, name), name
        fields = set(RECORDS[name].model_fields)
        assert all(set(rec) == fields for rec in records), name  # nulls present, never left out
        assert all(rec["updated_at"].endswith("Z") and rec["created_at"].endswith("Z") for rec in records)
        assert r.headers["etag"].startswith('W/"')
        if view.paginated:
            assert r.headers["x-total-count"] == str(len(records)) and 'rel="last"' in r.headers["link"]
        else:
            assert "x-total-count" not in r.headers and "link" not in r.headers
    calls = world.get("acme", url("calls")).json()
    assert calls[0]["to"] == "+33612345678" and calls[0]["sales_associate_name"] == "Jeanne Lanvin"
    assert calls[0]["created_at"] == "2025-03-01T09:00:00.000Z"
    clients = world.get("acme", url("clients")).json()
    assert {c["client_id"] for c in clients} == {"S1", "S2", "S3"} and clients[0]["birthday"] is None
    assert world.get("acme", url("calls.json")).json() == calls  # the platform's examples say calls.json


def test_client_ids_and_sales_associate_ids_filter_and_exclude_each_other(world):
    notes = world.get("acme", url("messages"), params={"client_ids": "S2"}).json()
    assert [n["client_id"] for n in notes] == ["S2"]
    assert world.get("acme", url("messages"), params={"client_ids": "S1,S3"}).json() == []
    by_associate = world.get("acme", url("calls"), params={"sales_associate_ids": "SA1, SA2"}).json()
    assert [c["sales_associate_id"] for c in by_associate] == ["SA1"]
    clients = world.get("acme", url("clients"), params={"client_ids": "S1,S3,NOPE"}).json()
    assert sorted(c["client_id"] for c in clients) == ["S1", "S3"]
    slices = world.get("acme", url("slices"), params={"sales_associate_ids": "SA2"}).json()
    assert slices == []
    associates = world.get("acme", url("sales_associates"), params={"sales_associate_ids": "SA1"}).json()
    assert [(a["associate_id"], a["username"]) for a in associates] == [("SA1", "jlanvin")]
    for name in VIEWS:
        r = world.get("acme", url(name), params={"client_ids": "S1", "sales_associate_ids": "SA1"})
        assert r.status_code == 422, name
        assert "cannot be combined" in r.json()["error"]["message"] or "does not take" in r.json()["error"]["message"]


def test_parameters_an_endpoint_does_not_take_are_422(bare):
    refused = [("slices", {"client_ids": "S1"}), ("sales_associates", {"client_ids": "S1"}),
               ("ideabook_actions", {"page": "1"}), ("ideabook_actions", {"per_page": "10"}),
               ("calls", {"sort": "desc"}), ("clients", {"client_id": "S1"})]
    for name, params in refused:
        r = bare.get("acme", url(name), params=params)
        assert r.status_code == 422 and "does not take" in r.json()["error"]["message"], (name, params)


@pytest.mark.parametrize("params", [
    {"page": "0"}, {"page": "-1"}, {"page": "x"}, {"page": "1000001"}, {"per_page": "0"}, {"per_page": "101"},
    {"per_page": "ten"}, {"from": "yesterday"}, {"to": "2024-13-01T00:00:00"}, {"client_ids": ""},
    {"client_ids": " , "}, {"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, {"after": "garbage"},
    {"as_of": "soon"}, {"from": "0001-01-01T00:00:00+01:00"},
])
def test_bad_parameter_values_are_422(bare, params):
    r = bare.get("acme", url("calls"), params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["status"] == 422 and r.json()["error"]["message"]


def cursor(updated_at: str, row_id) -> str:
    """An `after` cursor as the API writes them, around any values."""
    return base64.urlsafe_b64encode(json.dumps([updated_at, row_id]).encode()).decode().rstrip("=")


def test_cursors_whose_id_the_query_cannot_compare_are_422_on_every_list(bare):
    for name in LISTS:
        text_ids = name == "sales_associates"
        fine = ["SA\u00e9 1", "\U0001f600"] if text_ids else [2**63 - 1, -(2**63), 0]
        wrong = [1, True, None, "\x00", "SA\x00", "\ud800"] if text_ids else [2**63, 2**64, -(2**63) - 1, "1", True, 1.5]
        for row_id in wrong:
            r = bare.get("acme", url(name), params={"after": cursor("2025-01-01T00:00:00", row_id)})
            assert r.status_code == 422, (name, row_id, r.text)
            assert r.json()["error"]["message"].startswith("after: "), (name, row_id)
        for row_id in fine:
            r = bare.get("acme", url(name), params={"after": cursor("2025-01-01T00:00:00", row_id)})
            assert r.status_code == 200 and r.json() == [], (name, row_id, r.text)
    r = bare.get("acme", url("calls"), params={"after": cursor("2025-01-01T00:00:00+01:00", 1)})
    assert r.status_code == 200  # an offset is converted, as from/to are
    r = bare.get("acme", url("calls"), params={"after": cursor("0001-01-01T00:00:00+01:00", 1)})
    assert r.status_code == 422 and r.json()["error"]["message"] == "after: out of range"


def test_page_and_per_page_defaults_and_limits(engine, tmp_path):
    world = make_world(engine, tmp_path)
    seed(world, "acme", ("S1", "S2"))
    platform = world.platform("acme", BASE + timedelta(days=1))
    for i in range(35):
        platform.write_note("SA1", "S1", f"note {i}")
    first = world.get("acme", url("notes"))
    assert len(first.json()) == 30 and first.headers["x-total-count"] == "36"
    assert 'rel="next"' in first.headers["link"] and "page=2" in first.headers["link"]
    everything = world.get("acme", url("notes"), params={"per_page": 100}).json()
    assert len(everything) == 36 and 'rel="next"' not in world.get("acme", url("notes"), params={"per_page": 100}).headers["link"]
    ordered = [(n["updated_at"], n["id"]) for n in everything]
    assert ordered == sorted(ordered)
    page2 = world.get("acme", url("notes"), params={"page": 2, "per_page": 30}).json()
    assert page2 == everything[30:]
    beyond = world.get("acme", url("notes"), params={"page": 9})
    assert beyond.status_code == 200 and beyond.json() == [] and beyond.headers["x-total-count"] == "36"


def _rel(response: httpx.Response, rel: str) -> str | None:
    found = response.links.get(rel)
    return found["url"] if found else None


def test_from_and_to_bound_the_updated_time_inclusively(world):
    platform = world.platform("acme", datetime(2025, 6, 1, 12, 0))
    first = platform.book_appointment("SA1", "S1", "Later", BASE + timedelta(days=30))  # 12:00
    platform.book_appointment("SA1", "S2", "Later too", BASE + timedelta(days=31))  # 12:01
    platform.mark_done("appointments", first)  # 12:02: its updated time moves, its created time does not
    window = {"from": "2025-06-01T12:01:00Z", "to": "2025-06-01T12:02:00Z"}
    found = world.get("acme", url("appointments"), params=window).json()
    assert [a["title"] for a in found] == ["Later too", "Later"]  # both ends inclusive, updated order
    assert found[1]["created_at"] == "2025-06-01T12:00:00.000Z" and found[1]["is_done"] is True
    offset = world.get("acme", url("appointments"), params={"from": "2025-06-01T14:01:30+02:00"}).json()
    assert [a["title"] for a in offset] == ["Later"]  # an offset is converted to UTC
    naive = world.get("acme", url("appointments"), params={"to": "2025-06-01T11:59:59"}).json()
    assert [a["title"] for a in naive] == ["Fitting"]


def test_pages_are_stable_while_rows_are_added_and_edited(engine, tmp_path):
    world = make_world(engine, tmp_path)
    seed(world, "acme", ("S1", "S2"))
    platform = world.platform("acme", BASE + timedelta(days=1))
    booked = [platform.book_appointment("SA1", "S1", f"A{i}", BASE + timedelta(days=10 + i)) for i in range(6)]
    # Seven appointments in the listing: the seeded one (A-) and A0..A5, in (updated time, id) order.
    first = world.get("acme", url("appointments"), params={"per_page": 3})
    assert [a["title"] for a in first.json()] == ["Fitting", "A0", "A1"] and first.headers["x-total-count"] == "7"
    # Meanwhile: A0 (already read) and A3 (not yet read) are edited, two appointments are booked.
    live = Platform(world.engine, "acme")  # the real clock: after the listing's as_of
    live.mark_done("appointments", booked[0])
    live.mark_done("appointments", booked[3])
    live.book_appointment("SA1", "S2", "New1", BASE + timedelta(days=40))
    live.book_appointment("SA1", "S2", "New2", BASE + timedelta(days=41))
    # An offset over the live order would now skip A2 (A0 left the front); the next link does not.
    by_offset = world.get("acme", url("appointments"), params={"per_page": 3, "page": 2}).json()
    assert by_offset[0]["title"] != "A2"
    second = world.client.get(_rel(first, "next"), headers=world.auth("acme"))
    assert [a["title"] for a in second.json()] == ["A2", "A4", "A5"]
    # The count the first page made, carried: A0 and A3 moved past the snapshot (the next sync has
    # them), so the listing ends a page early.
    assert second.headers["x-total-count"] == "7"
    assert _rel(second, "next") is None
    as_of = httpx.URL(_rel(first, "last")).params["as_of"]
    assert as_of == httpx.URL(_rel(second, "last")).params["as_of"]
    following = world.get("acme", url("appointments"), params={"from": as_of}).json()
    assert [a["title"] for a in following] == ["A0", "A3", "New1", "New2"]


def test_etag_and_if_none_match(world):
    r = world.get("acme", url("clients"))
    etag = r.headers["etag"]
    again = world.get("acme", url("clients"), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert world.get("acme", url("clients"), headers={"If-None-Match": f'W/"other", {etag}'}).status_code == 304
    assert world.get("acme", url("clients"), headers={"If-None-Match": etag.removeprefix("W/")}).status_code == 304
    assert world.get("acme", url("clients"), headers={"If-None-Match": "*"}).status_code == 304
    assert world.get("acme", url("clients"), headers={"If-None-Match": 'W/"nope"'}).status_code == 200
    world.platform("acme", now()).update_client("S1", {"segment": "VIP"}, by="SA1")
    changed = world.get("acme", url("clients"), headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    ideabook = world.get("acme", url("ideabook_actions"))
    assert world.get("acme", url("ideabook_actions"), headers={"If-None-Match": ideabook.headers["etag"]}).status_code == 304


# --- Platform API: clients ---------------------------------------------------------------------

def events(world: World, brand: str) -> list[tuple[str, dict]]:
    with world.engine.connect() as conn:
        rows = conn.execute(sa.text("select event_name, payload from webhook_events where brand=:b order by id"),
                            {"b": brand}).all()
    return [(name, json.loads(payload)) for name, payload in rows if name.startswith("client.")]


@pytest.mark.parametrize("path,wrapper", [("clients", "client"), ("shoppers", "shopper")])
def test_client_upsert_creates_then_updates_through_the_platform_write_path(world, path, wrapper):
    endpoint = f"/api/platform/v1/{path}"
    body = {"shopper_ref": "NEW1", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
            "email_contact": "true", "phone_call_contact": "false", "chat_contact": True, "birthday": "1815-12-10",
            "languages": "en;fr", "gender": "F", "store_ref": "ST1", "sales_associate_ref": "SA1"}
    created = world.post("acme", endpoint, json={wrapper: body})
    assert created.status_code == 201, created.text
    record = created.json()
    assert record == next(c for c in view_records(world, "clients") if c["client_id"] == "NEW1")
    assert record["communication_preferences"]["email_opt_in"] is True and record["birthday"] == "1815-12-10"
    assert record["current_sales_associate_name"] == "Jeanne Lanvin" and record["current_store_name"] == "Saint Honore"
    assert set(record) == set(RECORDS["clients"].model_fields)
    updated = world.post("acme", endpoint, json={wrapper: {"shopper_ref": "NEW1", "first_name": "Augusta", "last_name": "King",
                                                           "email": "", "ignore_columns": "first_name; birthday"}})
    assert updated.status_code == 200, updated.text
    after = updated.json()
    assert (after["first_name"], after["last_name"], after["email"]) == ("Ada", "King", None)  # "" clears, ignored stays
    assert after["birthday"] == "1815-12-10" and after["id"] == record["id"]
    same = world.post("acme", endpoint, json={wrapper: {"shopper_ref": "NEW1", "last_name": "King"}})
    assert same.status_code == 200 and same.json()["updated_at"] == after["updated_at"]  # nothing changed
    happened = [(name, payload.get("changes"), payload.get("origin")) for name, payload in events(world, "acme")]
    assert happened == [("client.created", None, None),
                        ("client.updated", {"last_name": {"old": "Lovelace", "new": "King"},
                                            "email": {"old": "ada@example.com", "new": None}}, "api")]
    with world.engine.connect() as conn:
        origins = conn.execute(sa.text("select kind, origin, changed_by from client_changes where shopper_ref='NEW1' "
                                       "order by id")).all()
    assert [tuple(o) for o in origins] == [("created", "api", f"api-key:{world.key_ids['acme']}"),
                                           ("updated", "api", f"api-key:{world.key_ids['acme']}")]


def test_a_shopper_file_client_is_updated_by_the_api(world):
    r = world.post("acme", "/api/platform/v1/clients", json={"client": {"shopper_ref": "S1", "segment": "VIP"}})
    assert r.status_code == 200 and r.json()["segment"] == "VIP" and r.json()["first_name"] == "Marie"


@pytest.mark.parametrize("client,message", [
    ({"shopper_ref": "X", "email": "not-an-email"}, "email"),
    ({"shopper_ref": "X", "mobile_phone": "0612345678"}, "E.164"),
    ({"shopper_ref": "X", "country_code": "XX"}, "country"),
    ({"shopper_ref": "X", "gender": "Z"}, "gender"),
    ({"shopper_ref": "X", "email_contact": "yes"}, "email_contact"),
    ({"shopper_ref": "X", "birthday": "01/05/2022"}, "birthday"),
    ({"shopper_ref": "X", "languages": "en;xx"}, "language"),
    ({"shopper_ref": "X", "shoe_size": "38"}, "shoe_size"),
    ({"shopper_ref": "X", "ignore_columns": "first_name;shoe_size"}, "shoe_size"),
    ({"shopper_ref": ""}, "shopper_ref"),
    ({"shopper_ref": "X", "first_name": "A\x00B"}, "NUL"),
    ({"first_name": "Ada"}, "shopper_ref"),
])
def test_client_upsert_refuses_what_a_shopper_file_would_reject(bare, client, message):
    r = bare.post("acme", "/api/platform/v1/clients", json={"client": client})
    assert r.status_code == 422 and message in r.json()["error"]["message"], r.text
    assert not [c for c in view_records(bare, "clients") if c["client_id"] == "X"]


def test_client_upsert_body_shape_errors(world):
    for body in ({"shopper": {"shopper_ref": "X"}}, {}, [], {"client": "X"}):
        assert world.post("acme", "/api/platform/v1/clients", json=body).status_code == 422
    for body in (b"{not json", b"\xff\xfe"):
        r = world.post("acme", "/api/platform/v1/clients", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["status"] == 400
    world.platform("acme").delete_client("S3", by="SA1")
    gone = world.post("acme", "/api/platform/v1/clients", json={"client": {"shopper_ref": "S3", "first_name": "X"}})
    assert gone.status_code == 422 and "S3" in gone.json()["error"]["message"]


# --- Platform API: webhook endpoints -----------------------------------------------------------

WEBHOOKS = "/api/platform/v1/webhook_endpoints"


def test_webhook_endpoints_create_list_get_update_delete(world):
    r = world.post("acme", WEBHOOKS, json={"target_url": "https://crm.example.com/hooks", "events": ["client.created", "shopper.updated"]})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["is_enabled"] is True and created["origin"] == "api"
    [(secret, key)] = parse_secrets(created["secret"], "the answer")
    assert secret.startswith("whsec_") and len(key) == 32
    second = world.post("acme", WEBHOOKS, json={"target_url": "https://crm.example.com/other", "events": ["file_import.finished"],
                                                "is_enabled": False}).json()
    assert second["secret"] != created["secret"]
    listed = world.get("acme", WEBHOOKS).json()
    assert [e["id"] for e in listed] == [created["id"], second["id"]] and all("secret" not in e for e in listed)
    one = world.get("acme", f"{WEBHOOKS}/{created['id']}").json()
    assert one == {k: v for k, v in created.items() if k != "secret"}
    patched = world.request("acme", "PATCH", f"{WEBHOOKS}/{created['id']}", json={"events": ["client.updated"], "is_enabled": False})
    assert patched.status_code == 200 and patched.json()["events"] == ["client.updated"] and not patched.json()["is_enabled"]
    assert patched.json()["target_url"] == created["target_url"]
    clash = world.request("acme", "PATCH", f"{WEBHOOKS}/{created['id']}", json={"target_url": second["target_url"]})
    assert clash.status_code == 409
    assert world.post("acme", WEBHOOKS, json={"target_url": second["target_url"], "events": ["client.created"]}).status_code == 409
    assert world.request("acme", "DELETE", f"{WEBHOOKS}/{created['id']}").status_code == 204
    assert world.get("acme", f"{WEBHOOKS}/{created['id']}").status_code == 404
    assert world.request("acme", "DELETE", f"{WEBHOOKS}/{created['id']}").status_code == 404
    assert [e["id"] for e in world.get("acme", WEBHOOKS).json()] == [second["id"]]


def test_an_api_endpoint_receives_the_api_clients_events(world):
    endpoint = world.post("acme", WEBHOOKS, json={"target_url": "https://crm.example.com/in", "events": ["client.created"]}).json()
    world.post("acme", "/api/platform/v1/clients", json={"client": {"shopper_ref": "NEW9"}})
    with world.engine.begin() as conn:
        fan_out(conn, world.harness["acme"].brand)
        deliveries = conn.execute(sa.text("select endpoint_id, status from webhook_deliveries where brand='acme'")).all()
    assert [tuple(d) for d in deliveries] == [(endpoint["id"], "pending")]
    # Deleting the endpoint takes its deliveries with it: nothing stays queued for a receiver that is gone.
    assert world.request("acme", "DELETE", f"{WEBHOOKS}/{endpoint['id']}").status_code == 204
    with world.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from webhook_deliveries")).scalar() == 0


def test_webhook_endpoint_rules(bare):
    for body in ({"target_url": "ftp://x.example.com", "events": ["client.created"]},
                 {"target_url": "https://x.example.com", "events": []},
                 {"target_url": "https://x.example.com", "events": ["order.created"]},
                 {"target_url": "https://x.example.com"}, {"events": ["client.created"]},
                 {"target_url": "https://x.example.com", "events": ["client.created"], "secret": "mine"}):
        assert bare.post("acme", WEBHOOKS, json=body).status_code == 422, body
    for bad_id in ("0", "x", str(2**63)):
        assert bare.get("acme", f"{WEBHOOKS}/{bad_id}").status_code == 422
    with bare.engine.begin() as conn:
        conn.execute(sa.text("insert into webhook_endpoints (brand, target_url, events, is_enabled, origin, secret_env, "
                             "created_at, updated_at) values ('acme', 'http://127.0.0.1:9/c', '[\"client.created\"]', "
                             ":t, 'config', 'X', :now, :now)"), {"t": True, "now": now()})
        config_id = conn.execute(sa.text("select id from webhook_endpoints where origin='config'")).scalar()
    assert bare.get("acme", f"{WEBHOOKS}/{config_id}").json()["origin"] == "config"
    assert bare.request("acme", "PATCH", f"{WEBHOOKS}/{config_id}", json={"is_enabled": False}).status_code == 409
    assert bare.request("acme", "DELETE", f"{WEBHOOKS}/{config_id}").status_code == 409


def test_patch_is_enabled_clears_a_410_disable(bare):
    created = bare.post("acme", WEBHOOKS, json={"target_url": "https://crm.example.com/gone", "events": ["client.created"]}).json()
    with bare.engine.begin() as conn:
        conn.execute(sa.text("update webhook_endpoints set disabled_reason='410 Gone' where id=:i"), {"i": created["id"]})
    assert bare.get("acme", f"{WEBHOOKS}/{created['id']}").json()["disabled_reason"] == "410 Gone"
    enabled = bare.request("acme", "PATCH", f"{WEBHOOKS}/{created['id']}", json={"is_enabled": True}).json()
    assert enabled["disabled_reason"] is None and enabled["is_enabled"] is True


# --- import upload -----------------------------------------------------------------------------

IMPORTS = "/api/platform/v1/imports"
NAME = "SHOPPER_V3_Acme_202402010000.csv"


def dropped(world: World, brand: str = "acme") -> set[str]:
    folder = world.layout.data_dir / "drop" / brand
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def upload(world: World, name: str, content: bytes, brand: str = "acme", **data) -> httpx.Response:
    return world.post(brand, IMPORTS, files={"file": (name, content, "text/csv")}, data=data)


def test_upload_lands_in_the_drop_folder_atomically_and_is_followed(world):
    content = (SHOPPER + shopper_row("S7") + shopper_row("S8", email="bad-email")).encode()
    r = upload(world, NAME, content)
    assert r.status_code == 202, r.text
    status = r.json()
    folder = world.layout.drop(world.harness["acme"].brand, "main")
    assert (folder / NAME).read_bytes() == content
    assert [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part")] == []
    assert (status["status"], status["landed"], status["entity"], status["source"]) == ("received", False, "shoppers", "main")
    assert status["size"] == len(content) and len(status["sha256"]) == 64 and status["id"] == import_id("main", NAME)
    follow = world.get("acme", f"{IMPORTS}/{status['id']}").json()
    assert (follow["status"], follow["landed"], follow["sha256"]) == ("received", False, None)
    # The drop sensor's logic picks it up (two looks, as it waits for a file to settle) ...
    h = world.harness["acme"]
    cursor = load_cursor(None)
    assert plan_runs(h.brand, world.layout, world.engine, cursor).runs == []
    plan = plan_runs(h.brand, world.layout, world.engine, plan_runs(h.brand, world.layout, world.engine, cursor).cursor)
    assert [run.partition_key for run in plan.runs] == [NAME]
    # ... and its run lands, validates, maps and applies it.
    assert h.ingest(NAME)["status"] == "applied"
    done = world.get("acme", f"{IMPORTS}/{status['id']}").json()
    assert (done["status"], done["landed"], done["sha256"], done["error"]) == ("applied", True, status["sha256"], None)
    assert done["counts"]["rows_read"] == 2 and done["counts"]["inserted"] == 1 and done["counts"]["rejected"] == 1
    assert done["applied_at"].endswith("Z") and done["rejects"]["count"] == 1
    rejects = world.get("acme", done["rejects"]["href"])
    assert rejects.status_code == 200 and rejects.headers["x-total-count"] == "1"
    assert [(x["line"], x["column"], x["rule"]) for x in rejects.json()] == [(3, "email", "email")]
    assert {c["client_id"] for c in world.get("acme", url("clients")).json()} >= {"S7"}
    again = upload(world, NAME, content)
    assert again.status_code == 409 and "the same bytes as its last delivery" in again.json()["error"]["message"]
    # New bytes under the same name: the next delivery, followed under its own id.
    changed = content.replace(b"S7", b"S8")
    later = upload(world, NAME, changed)
    assert later.status_code == 202 and later.json()["file_name"] == f"{NAME}@2", later.json()
    assert (world.layout.drop(h.brand, "main") / NAME).read_bytes() == changed
    assert world.get("acme", f"{IMPORTS}/{later.json()['id']}").json()["status"] == "received"
    waiting = upload(world, NAME, changed + b"\n")
    assert waiting.status_code == 409 and "waiting in the drop folder" in waiting.json()["error"]["message"]
    plan = plan_runs(h.brand, world.layout, world.engine, plan_runs(h.brand, world.layout, world.engine, cursor).cursor)
    assert [run.partition_key for run in plan.runs] == [f"{NAME}@2"]


@pytest.mark.parametrize("name,message", [
    ("../SHOPPER_V3_Acme_202402010000.csv", "path separators"),
    ("sub/SHOPPER_V3_Acme_202402010000.csv", "path separators"),
    ("SHOPPER_V3_Acme_202402010000.csv\\x", "path separators"),
    ("..SHOPPER_V3_Acme_202402010000.csv", "hidden names"),  # `..` inside a name is a name; a leading dot hides it
    (".SHOPPER_V3_Acme_202402010000.csv", "hidden"),
    ("SHOPPER_V3_Acme_202402010000.csv.part", "hidden"),
    ("SHOPPER_V3_Bravo_202402010000.csv", "company name should be Acme"),
    ("SHOPPER_V9_Acme_202402010000.csv", "version"),
    ("CUSTOMER_V3_Acme_202402010000.csv", "unknown file TYPE"),
    ("SHOPPER_V3_Acme_202413010000.csv", "timestamp"),
    ("shoppers.csv", "expected <TYPE>"),
])
def test_upload_names_must_follow_a_naming_rule(bare, name, message):
    before = dropped(bare)
    r = upload(bare, name, SHOPPER.encode())
    assert r.status_code == 422 and message in r.json()["error"]["message"], r.text
    assert dropped(bare) == before and not any((bare.layout.data_dir).rglob("*SHOPPER_V3_Acme_2024020*"))


@pytest.mark.parametrize("content,message", [
    (b"", "line 1"),
    (b"\n" + SHOPPER.encode(), "line 1"),
    (b"shopper_ref,first_name\nS1,Ada\n", "missing column"),
    (SHOPPER.replace("\n", ",shoe_size\n").encode(), "unknown column"),
    (SHOPPER.encode() + "S1,Zo\xe9".encode("latin-1") + b"\n", "not utf-8"),
    (b"\xff\xfe" + SHOPPER.encode("utf-16-le"), "not utf-8"),
])
def test_upload_content_is_checked_before_it_reaches_the_drop_folder(bare, content, message):
    before = dropped(bare)
    r = upload(bare, NAME, content)
    assert r.status_code == 422 and message in r.json()["error"]["message"], r.text
    assert dropped(bare) == before


def test_upload_accepts_a_byte_order_mark_and_crlf(bare):
    assert upload(bare, NAME, b"\xef\xbb\xbf" + SHOPPER.replace("\n", "\r\n").encode()).status_code == 202


def test_upload_size_limits(engine, tmp_path):
    world = make_world(engine, tmp_path, ApiSettings(rate_limit=1000, max_upload_bytes=2000))
    big = SHOPPER.encode() + b"".join(shopper_row(f"S{i}").encode() for i in range(40))
    assert len(big) > 2000
    r = upload(world, NAME, big)
    assert r.status_code == 413 and r.json()["error"]["status"] == 413  # counted while streaming
    huge = SHOPPER.encode() + b"x" * (2000 + 70 * 1024)
    r = upload(world, NAME, huge)
    assert r.status_code == 413  # refused from its Content-Length, before the body is read
    chunked = world.client.post(IMPORTS, headers={**world.auth("acme"), "Content-Type": "multipart/form-data; boundary=x"},
                                content=iter([b"--x\r\n", b"--x--\r\n"]))
    assert chunked.status_code == 411
    assert dropped(world) == set()
    assert upload(world, NAME, SHOPPER.encode() + shopper_row("S1").encode()).status_code == 202


def test_upload_conflicts_and_form_errors(bare):
    assert upload(bare, NAME, SHOPPER.encode()).status_code == 202
    waiting = upload(bare, NAME, SHOPPER.encode())
    assert waiting.status_code == 409 and "waiting" in waiting.json()["error"]["message"]
    assert bare.post("acme", IMPORTS, data={"source": "main"}).status_code == 422  # no file
    assert upload(bare, "SHOPPER_V3_Acme_202402020000.csv", SHOPPER.encode(), source="pos").status_code == 422
    assert upload(bare, "SHOPPER_V3_Acme_202402020000.csv", SHOPPER.encode(), source="main").status_code == 202


def test_upload_into_a_csv_source_checks_its_encoding_and_header(engine, tmp_path):
    maison = load_brand(PROJECT / "mappings" / "maison.yaml")
    world = make_world(engine, tmp_path, extra=[maison])
    stores = next(f for f in maison.sources["pos"].files if f.entity == "stores")
    head = ";".join(source_columns(stores)) + "\r\n"
    r = upload(world, "BOUTIQUES_20240101_1200.csv", (head + "B1;Boutique Élysée\r\n").encode("cp1252"), brand="maison")
    assert r.status_code == 202, r.text
    assert (r.json()["source"], r.json()["entity"]) == ("pos", "stores")
    assert (world.layout.data_dir / "drop" / "maison" / "pos" / "BOUTIQUES_20240101_1200.csv").exists()
    wrong = upload(world, "BOUTIQUES_20240101_1300.csv", b"CODE_BOUTIQUE;NOM\r\n", brand="maison")
    assert wrong.status_code == 422 and "missing columns" in wrong.json()["error"]["message"]


def test_upload_names_over_the_byte_limit_are_422(engine, tmp_path):
    maison = load_brand(PROJECT / "mappings" / "maison.yaml")
    world = make_world(engine, tmp_path, extra=[maison])
    stores = next(f for f in maison.sources["pos"].files if f.entity == "stores")
    content = (";".join(source_columns(stores)) + "\r\nB1;Boutique\r\n").encode("cp1252")
    longest = "BOUTIQUES_" + "x" * (MAX_NAME_BYTES - 28) + "_20240101_1200.csv"
    assert len(longest.encode()) == MAX_NAME_BYTES == 240
    ok = upload(world, longest, content, brand="maison")
    assert ok.status_code == 202, ok.text
    assert world.get("maison", f"{IMPORTS}/{ok.json()['id']}").json()["status"] == "received"
    for name in ("BOUTIQUES_" + "x" * 252 + "_20240101_1200.csv",  # 280 bytes
                 "BOUTIQUES_" + "\u00e9" * 112 + "_20240101_1200.csv"):  # 140 characters, 252 bytes
        r = upload(world, name, content, brand="maison")
        assert r.status_code == 422 and "the limit is 240 bytes" in r.json()["error"]["message"], r.text
        assert world.get("maison", f"{IMPORTS}/{import_id('pos', name)}").status_code == 404
    assert [p.name for p in (world.layout.data_dir / "drop" / "maison" / "pos").iterdir()] == [longest]


def test_import_ids_that_are_not_the_brands_are_404(bare):
    for value in ("nope", import_id("main", "SHOPPER_V3_Acme_209901010000.csv"), import_id("main", "../../etc/passwd"),
                  import_id("other", NAME), "%00"):
        assert bare.get("acme", f"{IMPORTS}/{value}").status_code == 404, value
        assert bare.get("acme", f"{IMPORTS}/{value}/rejects").status_code == 404, value


def test_every_declared_operation_has_models_and_errors():
    app = create_app(sa.create_engine("sqlite://"), [], "/nonexistent", ApiSettings())
    spec = app.openapi()
    operations = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(operations) == 20
    for path, method, op in operations:
        responses = op["responses"]
        ok = [code for code in responses if code.startswith("2")]
        assert ok, (path, method)
        for code in ok:
            if code != "204":
                assert "application/json" in responses[code]["content"], (path, method, code)
            assert {"X-RateLimit-Limit", "X-RateLimit-Remaining"} <= set(responses[code].get("headers", {})), (path, method)
        for code in ("401", "422", "429", "500"):
            assert responses[code]["content"]["application/json"]["schema"]["$ref"].endswith("/Error"), (path, method, code)
        assert op["security"] == [{"ApiKey": []}]
        if "{" in path:
            assert "404" in responses
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


# --- a real server -----------------------------------------------------------------------------

@pytest.fixture
def server(world) -> Iterator[str]:
    with serving(world.app) as base:
        yield base


def test_a_real_uvicorn_server_serves_the_api(world, server):
    with httpx.Client(base_url=server, timeout=10) as http:
        assert http.get("/openapi.json").json()["info"]["title"] == "BSPK data-integration API"
        assert http.get("/api/extraction/v1/clients").status_code == 401
        r = http.get("/api/extraction/v1/clients", headers=world.auth("acme"), params={"per_page": 2})
        assert r.status_code == 200 and len(r.json()) == 2 and r.headers["x-total-count"] == "3"
        nxt = http.get(r.links["next"]["url"], headers=world.auth("acme"))
        assert [c["client_id"] for c in nxt.json()] == ["S3"]
        up = http.post("/api/platform/v1/imports", headers=world.auth("acme"),
                       files={"file": (NAME, SHOPPER.encode() + shopper_row("S9").encode(), "text/csv")})
        assert up.status_code == 202 and http.get(f"/api/platform/v1/imports/{up.json()['id']}",
                                                  headers=world.auth("acme")).json()["status"] == "received"
        made = http.post("/api/platform/v1/clients", headers=world.auth("acme"), json={"client": {"shopper_ref": "R1"}})
        assert made.status_code == 201 and int(made.headers["x-ratelimit-remaining"]) >= 0


def test_links_and_redirects_never_name_the_requests_host(world, server):
    up = upload(world, NAME, SHOPPER.encode())
    rejects = f"{IMPORTS}/{up.json()['id']}/rejects"
    evil = {**world.auth("acme"), "Host": "evil.example"}
    answers = [world.client.get(url("clients"), params={"per_page": 1}, headers=evil),
               world.client.get(rejects, headers=evil)]
    assert all(r.status_code == 200 and r.headers["link"].startswith("<http://testserver/api/") for r in answers)
    slash = world.client.get(url("clients") + "/", headers=evil, follow_redirects=False)
    assert slash.status_code == 307 and slash.headers["location"] == "http://testserver" + url("clients")
    assert world.client.get("/docs/", headers=evil, follow_redirects=False).headers["location"] == "http://testserver/docs"
    # On a real server, the address the connection reached: its own socket's, not a header's.
    with httpx.Client(base_url=server, timeout=10) as http:
        r = http.get(url("clients"), params={"per_page": 1}, headers=evil)
        assert [link["url"].startswith(f"{server}/api/") for link in r.links.values()] == [True, True]
        assert "evil" not in http.get(rejects, headers=evil).headers["link"]
        assert http.get("/docs/", headers=evil, follow_redirects=False).headers["location"] == f"{server}/docs"


def test_links_name_the_configured_public_url(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("BSPK_API_PUBLIC_URL", "https://api.example.com")
    world = make_world(engine, tmp_path, replace(ApiSettings.from_env(), rate_limit=100_000))
    seed(world, "acme", ("S1", "S2"))
    r = world.get("acme", url("clients"), params={"per_page": 1}, headers={"Host": "evil.example"})
    assert r.links["next"]["url"].startswith("https://api.example.com/api/extraction/v1/clients?per_page=1&page=2&")
    assert r.links["last"]["url"].startswith("https://api.example.com/api/extraction/v1/clients?")
    assert world.client.get("/docs/", follow_redirects=False).headers["location"] == "https://api.example.com/docs"
    assert ApiSettings(public_url="http://[::1]:8080/").public_url == "http://[::1]:8080/"


@pytest.mark.parametrize("value", ["api.example.com", "ftp://api.example.com", "https://", "https://api.example.com/v1",
                                   "https://api.example.com/?x=1", "https://u:p@api.example.com", "https://bücher.example"])
def test_a_public_url_that_is_not_an_origin_is_refused(value):
    with pytest.raises(ValueError, match="BSPK_API_PUBLIC_URL"):
        ApiSettings(public_url=value)


# --- the command line ----------------------------------------------------------------------------

def test_api_keys_command_creates_lists_and_revokes(warehouse_url, tmp_path, monkeypatch, capsys):
    from bspk_pipelines.cli import main

    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "acme.yaml").write_text("brand: acme\ncompany_name: Acme\nsources:\n  main: {format: bspk, drop: drop/acme}\n")
    monkeypatch.setenv("BSPK_MAPPINGS_DIR", str(mappings))
    monkeypatch.setenv("BSPK_WAREHOUSE_URL", warehouse_url)
    assert main(["api-keys", "create", "--brand", "acme", "--name", "CRM sync"]) == 0
    said = capsys.readouterr()
    key = said.out.strip()
    assert key.startswith("bspk_") and len(key.splitlines()) == 1
    # The warehouse the key is in is named (without a password), as `bspk serve` must read that one.
    assert f"created in {sa.make_url(warehouse_url).render_as_string(hide_password=True)};" in said.err
    key_id = key.split("_")[1]
    assert main(["api-keys", "list", "--brand", "acme"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "active" in listed and "CRM sync" in listed and key.split("_", 2)[2] not in listed
    assert main(["api-keys", "revoke", "--brand", "acme", "--key-id", key_id]) == 0
    assert main(["api-keys", "revoke", "--brand", "acme", "--key-id", key_id]) == 1
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["api-keys", "list", "--brand", "nobody"])


def test_a_link_in_the_drop_folder_shows_as_refused_and_nothing_of_its_target(bare, tmp_path):
    """A link to a private server file: the import API says refused and why, never a line of the file."""
    private = tmp_path / "private.conf"
    private.write_text("TOP-SECRET-LINE password=hunter2\n")
    drop = bare.layout.drop(bare.harness["acme"].brand, "main")
    drop.mkdir(parents=True, exist_ok=True)
    (drop / NAME).symlink_to(private)
    brand = bare.harness["acme"].brand
    cursor = plan_runs(brand, bare.layout, bare.engine, load_cursor(None)).cursor
    assert plan_runs(brand, bare.layout, bare.engine, cursor).runs == []
    found = bare.get("acme", f"{IMPORTS}/{import_id('main', NAME)}")
    assert found.status_code == 200 and found.json()["status"] == "refused", found.text
    assert "a symbolic link" in found.json()["error"] and "TOP-SECRET" not in found.text and "hunter2" not in found.text
    assert not (bare.layout.data_dir / "acme" / "landing").exists()


def test_a_link_waiting_in_the_drop_folder_is_no_import_and_a_refused_name_can_be_uploaded(bare, tmp_path):
    private = tmp_path / "private.conf"
    private.write_text(SHOPPER + shopper_row("S1"))
    drop = bare.layout.drop(bare.harness["acme"].brand, "main")
    drop.mkdir(parents=True, exist_ok=True)
    (drop / NAME).symlink_to(private)
    assert bare.get("acme", f"{IMPORTS}/{import_id('main', NAME)}").status_code == 404  # no size or time of the target
    brand = bare.harness["acme"].brand
    plan_runs(brand, bare.layout, bare.engine, load_cursor(None))
    (drop / NAME).unlink()
    r = upload(bare, NAME, (SHOPPER + shopper_row("S1")).encode())
    assert r.status_code == 202, r.text
