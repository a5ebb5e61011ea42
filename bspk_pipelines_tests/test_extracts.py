"""Incremental extracts on SQLite and PostgreSQL: every row version exported once, late rows found
by the look-back, a crash between file and commit loses nothing."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.engagement.activity import Platform
from bspk_pipelines.outbound import extracts
from bspk_pipelines.outbound.events import iso
from bspk_pipelines.outbound.extracts import ExtractError, outbox_folder, run_extract, run_extracts
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.platform import ACTIVITY_TABLES, clients, extract_seen, extract_state
from bspk_pipelines_tests.builders import NATIVE, SHOPPER, STORE, header

ASSOCIATE = header("sales_associates")


def shopper(ref: str, first: str, email: str) -> str:
    return f"{ref},{first},Curie,,,F,{email},,,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n"


class Clock:
    """A fake UTC clock that moves 1 ms on every reading, and on demand."""

    def __init__(self, start: datetime):
        self.t = start

    def __call__(self) -> datetime:
        self.t += timedelta(milliseconds=1)
        return self.t

    def tick(self, **delta) -> None:
        self.t += timedelta(**delta)


class World:
    def __init__(self, harness, tmp_path: Path):
        self.engine = harness.engine
        self.outbox = tmp_path / "outbox"
        self.clock = Clock(now() + timedelta(seconds=1))  # after the imported rows' (real) times
        self.platform = Platform(self.engine, "acme", self.clock)

    def brand(self, fmt: str = "jsonl", lookback: str = "5m") -> Brand:
        return Brand.model_validate({**NATIVE, "extracts": {"format": fmt, "lookback": lookback}})

    def run(self, entity: str, fmt: str = "jsonl", lookback: str = "5m"):
        return run_extract(self.engine, self.brand(fmt, lookback), entity, self.outbox, self.clock)

    def table_keys(self, table: sa.Table) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            return {(str(r.id), iso(r.updated_at))
                    for r in conn.execute(sa.select(table.c.id, table.c.updated_at).where(table.c.brand == "acme"))}

    def state(self, entity: str):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(extract_state).where(
                extract_state.c.brand == "acme", extract_state.c.entity == entity)).mappings().first()

    def seen(self, entity: str) -> list[tuple[str, datetime]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(extract_seen.c.row_id, extract_seen.c.row_updated_at).where(
                extract_seen.c.brand == "acme", extract_seen.c.entity == entity))]


@pytest.fixture
def world(harness, tmp_path) -> World:
    """A brand with a store, two associates and two clients (imported from its files)."""
    harness.drop("STORE_V2_Acme_202401010000.csv", STORE + "ST1,Saint Honore,,Paris,,,FR,EUR,,,,,TRUE\n")
    harness.drop("SALES-ASSOCIATE_V2_Acme_202401010000.csv", ASSOCIATE
                 + "SA1,Ada,Lovelace,ada@example.com,,ST1,TRUE\nSA2,Alan,Turing,alan@example.com,,ST1,TRUE\n")
    harness.drop("SHOPPER_V3_Acme_202401010000.csv", SHOPPER + shopper("S1", "Marie", "marie@example.com")
                 + shopper("S2", "Irene", "irene@example.com"))
    for name in ("STORE_V2_Acme_202401010000.csv", "SALES-ASSOCIATE_V2_Acme_202401010000.csv",
                 "SHOPPER_V3_Acme_202401010000.csv"):
        assert harness.ingest(name)["status"] == "applied"
    return World(harness, tmp_path)


def records(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def key(record: dict) -> tuple[str, str]:
    return str(record["id"] if "id" in record else record["associate_id"]), record["updated_at"]


def keys(*results) -> list[tuple[str, str]]:
    """Every (id, updated_at) of the results' files, duplicates kept."""
    return [key(r) for res in results if res.path for r in records(res.path)]


def check_manifest(result) -> dict:
    manifest = json.loads(Path(f"{result.path}.manifest.json").read_text("utf-8"))
    assert manifest["file"] == result.path.name and manifest["entity"] == result.entity
    assert manifest["sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest() == result.sha256
    assert manifest["rows"] == len(records(result.path)) == result.rows
    assert manifest["watermark"] == result.watermark_after.isoformat(timespec="microseconds") + "Z"
    assert manifest["from"] <= manifest["to"] <= manifest["watermark"]
    return manifest


def no_parts(outbox: Path) -> None:
    assert not list(outbox.glob("*.part"))


def test_first_run_exports_everything_then_only_new_and_changed(world):
    calls, appointments = ACTIVITY_TABLES["calls"], ACTIVITY_TABLES["appointments"]
    p, clock = world.platform, world.clock
    p.log_call("SA1", "S1", to="+33612345678")
    p.log_call("SA2", "S2")
    appointment = p.book_appointment("SA1", "S1", "Fitting", clock.t + timedelta(days=1))
    clock.tick(seconds=10)

    first = {e: world.run(e) for e in ("calls", "appointments", "clients")}
    assert (first["calls"].rows, first["appointments"].rows, first["clients"].rows) == (2, 1, 2)
    assert all(r.watermark_before is None and r.skipped == 0 for r in first.values())
    assert first["calls"].path.name == f"CALLS_acme_{first['calls'].watermark_after:%Y%m%dT%H%M%S%f}Z.jsonl"
    for r in first.values():
        check_manifest(r)
        assert world.state(r.entity)["watermark"] == r.watermark_after
        assert world.state(r.entity)["last_file"] == r.path.name

    clock.tick(minutes=1)
    p.log_call("SA1", "S2")  # new (and S2's last contact changed)
    p.mark_done("appointments", appointment)  # changed
    p.update_client("S1", {"email": "marie.curie@example.com"}, by="SA1")  # changed
    clock.tick(seconds=10)
    second = {e: world.run(e) for e in ("calls", "appointments", "clients")}
    # Only the new and changed rows; the look-back found the first run's rows again and skipped them.
    assert (second["calls"].rows, second["appointments"].rows, second["clients"].rows) == (1, 1, 2)
    assert (second["calls"].skipped, second["appointments"].skipped, second["clients"].skipped) == (2, 0, 0)
    assert second["calls"].watermark_before == first["calls"].watermark_after
    (done,) = records(second["appointments"].path)
    assert done["is_done"] is True and done["id"] == appointment
    changed = {r["client_id"]: r for r in records(second["clients"].path)}
    assert changed["S1"]["email"] == "marie.curie@example.com"
    assert changed["S2"]["last_contacted_at"] == changed["S2"]["updated_at"]

    # The union of both runs' files is the table: every row version exactly once.
    for entity, table in (("calls", calls), ("appointments", appointments), ("clients", clients)):
        exported = keys(first[entity], second[entity])
        assert len(exported) == len(set(exported))
        current = world.table_keys(table)
        assert current <= set(exported)
        # What is not current is an older version of a row exported again since.
        assert {i for i, _ in set(exported) - current} <= {i for i, _ in current}
    assert set(keys(first["calls"], second["calls"])) == world.table_keys(calls)
    no_parts(world.outbox)


def test_late_row_inside_the_lookback_is_picked_up_once(world, harness):
    p, clock = world.platform, world.clock
    p.log_call("SA1", "S1")
    p.log_call("SA1", "S2")
    clock.tick(minutes=1)
    first = world.run("calls")
    assert first.rows == 2

    # A transaction that started 30 s before the watermark commits only now: its updated time is
    # behind the watermark, the first run could not see it.
    late = Platform(world.engine, "acme", Clock(first.watermark_after - timedelta(seconds=30)))
    late_id = late.log_call("SA2", "S1")
    clock.tick(seconds=5)
    p.log_call("SA2", "S2")  # an ordinary new row
    clock.tick(seconds=5)

    second = world.run("calls")
    assert second.rows == 2 and second.skipped == 2  # the first run's rows, seen again by the look-back
    assert second.first_updated < first.watermark_after < second.last_updated
    assert str(late_id) in {i for i, _ in keys(second)}
    exported = keys(first, second)
    assert len(exported) == len(set(exported)) == 4
    assert set(exported) == world.table_keys(ACTIVITY_TABLES["calls"])

    # Seen versions are kept only while a look-back can find them again.
    assert len(world.seen("calls")) == 4
    clock.tick(hours=1)
    third = world.run("calls")  # still looks back from the second watermark: finds the four again
    assert (third.path, third.rows, third.skipped) == (None, 0, 4)
    assert world.seen("calls") == []  # none of them is inside the next look-back
    clock.tick(seconds=10)
    fourth = world.run("calls")
    assert (fourth.path, fourth.rows, fourth.skipped) == (None, 0, 0)
    assert world.state("calls")["watermark"] == fourth.watermark_after
    assert world.state("calls")["last_file"] == second.path.name


def test_crash_between_file_and_commit_loses_nothing(world, monkeypatch):
    p, clock = world.platform, world.clock
    p.log_call("SA1", "S1")
    clock.tick(seconds=10)
    first = world.run("calls")

    clock.tick(seconds=10)
    crashed_id = p.log_call("SA1", "S2")
    clock.tick(seconds=10)
    commit = extracts._commit

    def dies(*args, **kwargs):
        raise KeyboardInterrupt("killed after the file was written")

    monkeypatch.setattr(extracts, "_commit", dies)
    with pytest.raises(KeyboardInterrupt):
        world.run("calls")
    monkeypatch.setattr(extracts, "_commit", commit)
    (crashed_file,) = [f for f in world.outbox.glob("CALLS_*.jsonl") if f != first.path]
    crashed = [key(r) for r in records(crashed_file)]
    assert [int(i) for i, _ in crashed] == [crashed_id]
    assert Path(f"{crashed_file}.manifest.json").exists()
    assert world.state("calls")["watermark"] == first.watermark_after  # the run never happened
    no_parts(world.outbox)

    clock.tick(seconds=10)
    p.log_call("SA2", "S1")
    clock.tick(seconds=10)
    after = world.run("calls")
    assert after.watermark_before == first.watermark_after
    assert after.rows == 2 and after.skipped == 1
    check_manifest(after)

    everything = keys(first, after) + crashed
    assert set(everything) == world.table_keys(ACTIVITY_TABLES["calls"])  # no gap
    duplicates = {k for k in everything if everything.count(k) > 1}
    assert duplicates == set(crashed)  # only the crashed run's rows appear twice


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_formats_manifests_and_nothing_new(world, fmt):
    p, clock = world.platform, world.clock
    p.send_message("SA1", "S1", "Hello, \"Marie\"\nnew line", "whatsapp", template_id="T1",
                   media=[{"url": "https://cdn.example.com/a.jpg"}])
    p.send_message("SA2", "S2", None, "chat")
    clock.tick(seconds=10)
    result = world.run("messages", fmt)
    assert result.path.suffix == f".{fmt}" and result.rows == 2
    manifest = check_manifest(result)
    assert (manifest["format"], manifest["rows"]) == (fmt, 2)
    rows = records(result.path)
    if fmt == "csv":
        with result.path.open(newline="", encoding="utf-8") as f:
            head = next(csv.reader(f))
        assert head[:5] == ["id", "store_id", "store_name", "sales_associate_id", "sales_associate_name"]
        assert head[-2:] == ["created_at", "updated_at"]
        assert rows[0]["body"] == 'Hello, "Marie"\nnew line'
        assert json.loads(rows[0]["media"]) == [{"url": "https://cdn.example.com/a.jpg"}]
        assert rows[1]["body"] == "" and json.loads(rows[1]["media"]) == []  # null: an empty cell
    else:
        assert rows[0]["media"] == [{"url": "https://cdn.example.com/a.jpg"}]
        assert rows[1]["body"] is None and rows[1]["template_id"] is None
    no_parts(world.outbox)

    before = sorted(world.outbox.iterdir())
    clock.tick(seconds=10)
    nothing = world.run("messages", fmt)
    assert (nothing.path, nothing.manifest, nothing.rows, nothing.sha256) == (None, None, 0, None)
    assert nothing.skipped == 2 and nothing.watermark_before == result.watermark_after
    assert sorted(world.outbox.iterdir()) == before
    assert world.state("messages")["watermark"] == nothing.watermark_after


# Section 3.5 of the reference, the fields each endpoint's example response shows.
DOCUMENTED = {
    "clients": (
        "current_sales_associate_id", "current_sales_associate_name", "current_store_id", "current_store_name",
        "client_id", "name", "first_name", "last_name", "email", "mobile_phone", "other_phone", "birthday", "gender",
        "nationality", "passport_number", "language", "title", "address", "addresses", "preferred_contact_channel",
        "communication_preferences", "preferences", "interests", "preferred_journey", "segment",
        "referred_by_client_id", "referred_at", "consent", "notify_of_new_collection", "last_contacted_at",
        "created_at", "updated_at",
    ),
    "calls": ("store_id", "store_name", "sales_associate_id", "sales_associate_name", "client_id", "client_name", "to",
              "created_at"),
    "appointments": ("store_id", "store_name", "sales_associate_id", "sales_associate_name", "client_id", "client_name",
                     "title", "body", "starts_at", "ends_at", "is_done", "is_done_at", "notes", "created_at",
                     "updated_at"),
    "messages": ("store_id", "store_name", "sales_associate_id", "sales_associate_name", "client_id", "client_name",
                 "body", "channel", "template_id", "template_name", "slice_id", "media", "created_at"),
    "emails": ("store_id", "store_name", "sales_associate_id", "sales_associate_name", "client_id", "client_name",
               "template_id", "template_name", "slice_id", "media", "created_at"),
    "notes": ("store_id", "store_name", "sales_associate_id", "sales_associate_name", "client_id", "client_name", "body",
              "media", "created_at"),
    "sales_associates": ("created_at", "updated_at", "current_store_id", "associate_id", "associate_id_2",
                         "sales_associate_name", "username", "email", "mobile_phone", "job_title", "imessage_enabled",
                         "wechat_enabled", "line_enabled", "adyen_enabled", "wechat_code"),
    "slices": ("store_id", "store_name", "created_by_sales_associate_id", "created_by_sales_associate_name", "title",
               "body", "created_at", "updated_at", "item_ids"),
}
DOCUMENTED["reminders"] = DOCUMENTED["appointments"]


def test_every_entity_exports_its_documented_fields(world, tmp_path):
    p, clock = world.platform, world.clock
    p.log_call("SA1", "S1", to="+33612345678")
    slice_id = p.create_slice("SA1", "Autumn", ["ITEM_001", "ITEM_002"], body="For Marie")
    p.send_message("SA1", "S1", "Hello", "chat", slice_id=slice_id)
    p.send_email("SA1", "S2", template_id="T1", template_name="Welcome")
    p.write_note("SA2", "S1", "Likes blue")
    p.book_appointment("SA1", "S1", "Fitting", clock.t + timedelta(days=1), clock.t + timedelta(days=1, hours=1))
    p.set_reminder("SA2", "S2", "Call back", clock.t + timedelta(days=2))
    p.set_associate_profile("SA1", username="ada", job_title="Manager", wechat_enabled=True)
    clock.tick(seconds=10)

    brand = world.brand("jsonl")
    outbox = outbox_folder(tmp_path / "data", brand)
    assert outbox == tmp_path / "data" / "acme" / "outbox"
    results = {r.entity: r for r in run_extracts(world.engine, brand, outbox, world.clock)}
    assert set(results) == set(brand.extracts.entities) == set(DOCUMENTED)
    for entity, fields in DOCUMENTED.items():
        result = results[entity]
        assert result.path.parent == outbox
        check_manifest(result)
        rows = records(result.path)
        for row in rows:
            assert set(fields) <= set(row), f"{entity} lacks {sorted(set(fields) - set(row))}"
    assert {r["client_id"] for r in records(results["clients"].path)} == {"S1", "S2"}
    (slice_row,) = records(results["slices"].path)
    assert slice_row["item_ids"] == ["ITEM_001", "ITEM_002"] and slice_row["created_by_sales_associate_id"] == "SA1"
    associates = {r["associate_id"]: r for r in records(results["sales_associates"].path)}
    assert associates["SA1"]["job_title"] == "Manager" and associates["SA1"]["wechat_enabled"] is True
    assert associates["SA2"]["sales_associate_name"] == "Alan Turing"
    (call,) = records(results["calls"].path)
    assert (call["store_id"], call["store_name"], call["client_name"], call["to"]) == (
        "ST1", "Saint Honore", "Marie Curie", "+33612345678")
    no_parts(outbox)

    # Again, nothing new anywhere (the associates' computed updated time included): no files.
    clock.tick(seconds=10)
    again = run_extracts(world.engine, brand, outbox, world.clock)
    assert [(r.entity, r.path, r.rows) for r in again if r.path or r.rows] == []


def test_a_taken_file_name_or_a_concurrent_run_fails_without_moving_the_watermark(world, monkeypatch):
    p, clock = world.platform, world.clock
    p.log_call("SA1", "S1")
    clock.tick(seconds=10)
    first = world.run("calls")
    # A second run that read the old watermark, committing after the first one: refused.
    p.log_call("SA1", "S2")
    with pytest.raises(ExtractError, match="another run"):
        extracts._commit(world.engine, "acme", "calls", None, clock(), clock(), [], None)
    with pytest.raises(ExtractError, match="another run"):
        extracts._commit(world.engine, "acme", "calls", first.watermark_after - timedelta(seconds=1), clock(),
                         clock(), [], None)
    assert world.state("calls")["watermark"] == first.watermark_after
    # A clock that did not move: the earlier file is never overwritten.
    stuck = first.watermark_after - timedelta(milliseconds=1)
    with pytest.raises(ExtractError, match="exists already"):
        run_extract(world.engine, world.brand(), "calls", world.outbox, Clock(stuck))
    assert world.state("calls")["watermark"] == first.watermark_after
    assert world.run("calls").rows == 1


def test_a_failed_write_leaves_no_part_file_and_the_watermark_as_it_was(world, monkeypatch):
    p, clock = world.platform, world.clock
    p.log_call("SA1", "S1")
    clock.tick(seconds=10)
    world.outbox.mkdir(parents=True)
    stale = world.outbox / "CALLS_acme_20240101T000000000000Z.jsonl.part"  # left by a killed run
    stale.write_text("{}\n")

    def full(self, final):
        raise OSError("No space left on device")

    monkeypatch.setattr(extracts._Writer, "publish", full)
    with pytest.raises(OSError, match="No space"):
        world.run("calls")
    assert list(world.outbox.iterdir()) == [] and world.state("calls") is None
    monkeypatch.undo()
    clock.tick(seconds=10)
    assert world.run("calls").rows == 1
    no_parts(world.outbox)
