"""Clients as the platform sees them: the brand's files and the associates both change them, every
change is recorded, and each reaches the outbox in the same transaction. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from bspk_pipelines.engagement.activity import ActivityError, Platform
from bspk_pipelines.engagement.clients import ClientError
from bspk_pipelines.outbound.views import VIEWS
from bspk_pipelines_tests.builders import NATIVE, SHOPPER, STORE, brand_harness, header

ASSOCIATE = header("sales_associates")


def shopper(ref: str, city: str = "Paris", email: str = "a@example.com") -> str:
    return f"{ref},Marie,Curie,,,F,{email},,,,,,,,{city},,,FR,,,,,TRUE,FALSE\n"


def events(harness, name: str | None = None) -> list[dict]:
    rows = harness.rows("webhook_events", order_by="id")
    return [dict(r, payload=json.loads(r["payload"])) for r in rows if name is None or r["event_name"] == name]


def changes(harness) -> list[dict]:
    return [dict(r, fields=json.loads(r["fields"]) if r["fields"] else None)
            for r in harness.rows("client_changes", order_by="id")]


@pytest.fixture
def store_and_associate(harness):
    harness.drop("STORE_V2_Acme_202401010000.csv", STORE + "ST1,Saint Honore,,Paris,,,FR,EUR,,,,,TRUE\n")
    harness.ingest("STORE_V2_Acme_202401010000.csv")
    harness.drop("SALES-ASSOCIATE_V2_Acme_202401010000.csv", ASSOCIATE + "SA1,Jeanne,Lanvin,,,ST1,TRUE\n")
    harness.ingest("SALES-ASSOCIATE_V2_Acme_202401010000.csv")
    return harness


def test_imported_shoppers_become_clients_without_echo(harness):
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1") + shopper("S2"))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    clients = harness.rows("clients", order_by="shopper_ref")
    assert [(c["shopper_ref"], c["city"], c["email"]) for c in clients] == [("S1", "Paris", "a@example.com"),
                                                                           ("S2", "Paris", "a@example.com")]
    assert len({c["id"] for c in clients}) == 2
    assert [(c["shopper_ref"], c["kind"], c["origin"], c["changed_by"]) for c in changes(harness)] == [
        ("S1", "created", "import", "SHOPPER_V3_Acme_202401010000.csv"),
        ("S2", "created", "import", "SHOPPER_V3_Acme_202401010000.csv")]
    # The brand sent them: by default nothing about them is sent back; the file's outcome is.
    assert [e["event_name"] for e in events(harness)] == ["file_import.finished"]
    finished = events(harness)[0]["payload"]
    assert finished["file_name"] == "SHOPPER_V3_Acme_202401010000.csv" and finished["type"] == "SHOPPER"
    assert finished["status"] == "applied" and finished["counts"]["inserted"] == 2


def test_a_changed_shopper_changes_only_its_changed_client_fields(harness):
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1") + shopper("S2"))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    before = {c["shopper_ref"]: c for c in harness.rows("clients")}
    harness.drop("SHOPPER_V3_Acme_202401020000.csv", SHOPPER + shopper("S1", city="Lyon") + shopper("S2"))
    harness.ingest("SHOPPER_V3_Acme_202401020000.csv")
    after = {c["shopper_ref"]: c for c in harness.rows("clients")}
    assert after["S1"]["city"] == "Lyon" and after["S1"]["updated_at"] > before["S1"]["updated_at"]
    assert after["S2"] == before["S2"]
    update = [c for c in changes(harness) if c["kind"] == "updated"]
    assert [(c["shopper_ref"], c["fields"], c["origin"]) for c in update] == [
        ("S1", {"city": {"old": "Paris", "new": "Lyon"}}, "import")]
    assert not events(harness, "client.updated")


def test_echo_imports_sends_the_brands_own_changes_back(engine, tmp_path):
    harness = brand_harness(NATIVE | {"webhooks": {"echo_imports": True}}, engine, tmp_path)
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1"))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    harness.drop("SHOPPER_V3_Acme_202401020000.csv", SHOPPER + shopper("S1", email="b@example.com"))
    harness.ingest("SHOPPER_V3_Acme_202401020000.csv")
    created, updated = events(harness, "client.created"), events(harness, "client.updated")
    assert [e["payload"]["external_id"] for e in created] == ["S1"]
    assert created[0]["payload"]["email"] == "a@example.com" and created[0]["ordering_key"] == "client:S1"
    assert [e["payload"]["changes"] for e in updated] == [{"email": {"old": "a@example.com", "new": "b@example.com"}}]
    assert updated[0]["payload"]["origin"] == "import"


def test_an_associates_edit_survives_a_file_that_does_not_change_that_field(store_and_associate):
    h = store_and_associate
    h.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1"))
    h.ingest("SHOPPER_V3_Acme_202401010000.csv")
    platform = Platform(h.engine, "acme")
    changed = platform.update_client("S1", {"email": "new@example.com", "city": "Paris"}, by="SA1")
    assert changed == {"email": {"old": "a@example.com", "new": "new@example.com"}}
    [event] = events(h, "client.updated")
    assert event["payload"]["changes"] == changed and event["payload"]["origin"] == "platform"
    assert event["payload"]["updated_by"] == "SA1" and event["ordering_key"] == "client:S1"
    # The brand's next file changes the city only: the associate's email stays, the city follows.
    h.drop("SHOPPER_V3_Acme_202401020000.csv", SHOPPER + shopper("S1", city="Lyon"))
    h.ingest("SHOPPER_V3_Acme_202401020000.csv")
    [client] = h.rows("clients")
    assert (client["email"], client["city"]) == ("new@example.com", "Lyon")
    # The brand's own record is never touched by the platform's edit.
    assert h.rows("shoppers")[0]["email"] == "a@example.com"
    assert platform.update_client("S1", {"email": "new@example.com"}, by="SA1") == {}
    assert len(events(h, "client.updated")) == 1


def test_platform_clients_are_created_and_deleted_with_events(store_and_associate):
    h = store_and_associate
    platform = Platform(h.engine, "acme")
    client_id = platform.create_client("P1", {"first_name": "Ada", "email": "ada@example.com"}, by="SA1")
    with pytest.raises(ClientError, match="exists already"):
        platform.create_client("P1", {}, by="SA1")
    with pytest.raises(ClientError, match="unknown client field"):
        platform.update_client("P1", {"shoe_size": "38"}, by="SA1")
    created = platform.upsert_client("P1", {"first_name": "Adah", "last_name": "Lovelace"}, by="key1",
                                        ignore=["first_name"])
    assert created is False
    platform.delete_client("P1", by="SA1")
    names = [(e["event_name"], e["payload"]["id"]) for e in events(h) if e["event_name"].startswith("client.")]
    assert names == [("client.created", client_id), ("client.updated", client_id), ("client.deleted", client_id)]
    assert events(h, "client.updated")[0]["payload"]["changes"] == {"last_name": {"old": None, "new": "Lovelace"}}
    assert [c["kind"] for c in changes(h)] == ["created", "updated", "deleted"]
    assert [c["origin"] for c in changes(h)] == ["platform", "api", "platform"]
    with pytest.raises(ClientError, match="no client"):
        platform.update_client("P1", {"first_name": "X"}, by="SA1")


def test_a_shopper_file_naming_a_platform_client_updates_it(store_and_associate):
    h = store_and_associate
    Platform(h.engine, "acme").create_client("S1", {"first_name": "Marie", "city": "Nice"}, by="SA1")
    h.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1"))
    h.ingest("SHOPPER_V3_Acme_202401010000.csv")
    [client] = h.rows("clients")
    assert (client["city"], client["last_name"]) == ("Paris", "Curie")
    [update] = [c for c in changes(h) if c["kind"] == "updated"]
    assert update["fields"]["city"] == {"old": "Nice", "new": "Paris"} and "first_name" not in update["fields"]


def test_activity_is_recorded_with_the_associate_and_store_of_the_time(store_and_associate):
    h = store_and_associate
    h.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1"))
    h.ingest("SHOPPER_V3_Acme_202401010000.csv")
    clock = iter(datetime(2026, 11, 27, 10, 0) + timedelta(minutes=i) for i in range(100))
    platform = Platform(h.engine, "acme", clock=lambda: next(clock))
    platform.log_call("SA1", "S1", to="+33612345678")
    platform.send_message("SA1", "S1", "Bonjour", "whatsapp", media=[{"url": "https://x/y.jpg"}])
    platform.send_email("SA1", "S1", template_id="T1", template_name="New season")
    platform.write_note("SA1", "S1", "Prefers silk")
    appointment = platform.book_appointment("SA1", "S1", "Fitting", datetime(2026, 12, 1, 15), datetime(2026, 12, 1, 16))
    platform.set_reminder("SA1", "S1", "Call back", datetime(2026, 12, 2, 9))
    platform.mark_done("appointments", appointment)
    platform.create_slice("SA1", "Winter picks", ["P1", "P2"])
    platform.ideabook_action("SA1", "S1", "IB1", "item_added", "P1")
    platform.set_associate_profile("SA1", username="jlanvin", job_title="Manager", wechat_enabled=True)
    with pytest.raises(ActivityError, match="no sales associate"):
        platform.log_call("SA9", "S1")
    with pytest.raises(ActivityError, match="no client"):
        platform.log_call("SA1", "S9")
    with pytest.raises(ActivityError, match="channel"):
        platform.send_message("SA1", "S1", "x", "pigeon")
    with pytest.raises(ActivityError, match="no open appointment"):
        platform.mark_done("appointments", appointment)

    with h.engine.connect() as conn:
        records = {name: [r for _, _, r in view.rows(conn, "acme")] for name, view in VIEWS.items()}
    [call] = records["calls"]
    assert call | {"id": None} == {
        "id": None, "store_id": "ST1", "store_name": "Saint Honore", "sales_associate_id": "SA1",
        "sales_associate_name": "Jeanne Lanvin", "client_id": "S1", "client_name": "Marie Curie",
        "to": "+33612345678", "created_at": "2026-11-27T10:00:00.000Z", "updated_at": "2026-11-27T10:00:00.000Z"}
    assert records["messages"][0]["media"] == [{"url": "https://x/y.jpg"}]
    assert records["messages"][0]["channel"] == "whatsapp" and records["messages"][0]["template_id"] is None
    [done] = records["appointments"]
    assert done["is_done"] is True and done["is_done_at"] == "2026-11-27T10:06:00.000Z"
    assert done["updated_at"] == done["is_done_at"] and done["starts_at"] == "2026-12-01T15:00:00.000Z"
    assert records["slices"][0]["item_ids"] == ["P1", "P2"]
    assert records["slices"][0]["created_by_sales_associate_name"] == "Jeanne Lanvin"
    [associate] = records["sales_associates"]
    assert (associate["username"], associate["job_title"], associate["wechat_enabled"]) == ("jlanvin", "Manager", True)
    [client] = records["clients"]
    assert client["last_contacted_at"] == "2026-11-27T10:02:00.000Z"  # the email, the last contact
    assert client["communication_preferences"]["email_opt_in"] is True and client["name"] == "Marie Curie"
    assert set(client) >= {"client_id", "current_store_id", "addresses", "preferences", "consent", "updated_at"}
    # Activity is not a change of the client: no client event.
    assert not [e for e in events(h) if e["event_name"].startswith("client.")]


def test_duplicate_and_failed_files_finish_with_an_event(harness):
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1"))
    harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    harness.drop("SHOPPER_V3_Acme_202401020000.csv", SHOPPER + shopper("S1"))
    harness.ingest("SHOPPER_V3_Acme_202401020000.csv")
    harness.drop("SHOPPER_V3_Acme_202401030000.csv", "not,a,shopper,header\n1,2,3,4\n")
    harness.ingest("SHOPPER_V3_Acme_202401030000.csv")
    finished = [(e["payload"]["file_name"], e["payload"]["status"], bool(e["payload"]["error"]))
                for e in events(harness, "file_import.finished")]
    assert finished == [("SHOPPER_V3_Acme_202401010000.csv", "applied", False),
                        ("SHOPPER_V3_Acme_202401020000.csv", "duplicate", True),
                        ("SHOPPER_V3_Acme_202401030000.csv", "failed", True)]


def test_a_failed_apply_leaves_neither_change_nor_event(harness, monkeypatch):
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1"))
    import bspk_pipelines.ingest.apply as apply_step

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(apply_step, "file_finished", broken)
    with pytest.raises(RuntimeError):
        harness.ingest("SHOPPER_V3_Acme_202401010000.csv")
    assert harness.rows("clients") == [] and harness.rows("shoppers") == []
    assert harness.rows("webhook_events") == [] and harness.rows("client_changes") == []
    monkeypatch.undo()
    from bspk_pipelines.ingest.apply import apply_pending

    apply_pending(harness.engine, harness.layout, harness.brand, "shoppers")
    assert len(harness.rows("clients")) == 1 and len(events(harness, "file_import.finished")) == 1
    with harness.engine.connect() as conn:
        assert conn.execute(sa.text("select status from files")).scalar() == "applied"
