"""Webhook delivery against a real HTTP receiver on 127.0.0.1.

The receiver checks every request with the `standardwebhooks` package, the reference
implementation a brand's engineers would use, and records what it verified. Time is a fake
clock, so the 96-hour retry window runs in seconds; only the 5-second timeout test waits for real.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import format_datetime

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.outbound.events import enqueue
from bspk_pipelines.outbound.settings import WebhookSettings
from bspk_pipelines.outbound.webhooks.admin import dead_letters, enable_endpoint, replay
from bspk_pipelines.outbound.webhooks.delivery import (
    LEASE,
    MAX_ATTEMPTS,
    RETRY_WINDOW,
    _claim,
    backoff,
    deliver,
    retry_after_seconds,
)
from bspk_pipelines.outbound.webhooks.fanout import fan_out, sync_endpoints
from bspk_pipelines.warehouse.platform import webhook_deliveries, webhook_endpoints
from bspk_pipelines.warehouse.engine import engine_for, writing
from bspk_pipelines_tests.builders import Act, Arrival, FakeClock, Receiver, deliveries, emit, new_brand, new_secret

# ---------------------------------------------------------------------------------------------
# A scriptable receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([new_secret()]).start()
    yield r
    r.stop()


# ---------------------------------------------------------------------------------------------
# Helpers


def brand_for(receiver: Receiver, monkeypatch, events: tuple[str, ...] = ("client.updated",), env_value: str | None = None) -> Brand:
    """A brand with one endpoint at `receiver`, its secret(s) in a fresh environment variable."""
    env = "WH_SECRET_" + uuid.uuid4().hex[:8].upper()
    monkeypatch.setenv(env, env_value or " ".join(receiver.secrets))
    return new_brand([{"url": receiver.url, "events": list(events), "secret_env": env}])


def endpoint(engine: sa.Engine, brand: Brand, url: str) -> dict:
    e = webhook_endpoints
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(e).where(e.c.brand == brand.brand, e.c.target_url == url)).mappings().one())


def next_due(engine: sa.Engine, brand: Brand) -> datetime | None:
    """When the next attempt is scheduled: the earliest time among the heads of the queues."""
    d = webhook_deliveries
    earlier = d.alias("earlier")
    head = ~sa.exists().where(earlier.c.endpoint_id == d.c.endpoint_id, earlier.c.ordering_key == d.c.ordering_key,
                              earlier.c.status == "pending", earlier.c.event_id < d.c.event_id)
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.min(d.c.next_attempt_at)).where(
            d.c.brand == brand.brand, d.c.status == "pending", head)).scalar()


def order_violations(arrivals: list[Arrival]) -> int:
    """Per client, how often an event arrived (first time) after a later one of the same client."""
    last: dict[str, int] = {}
    bad = 0
    for a in arrivals:
        if a.ref in last and a.seq < last[a.ref]:
            bad += 1
        last[a.ref] = max(a.seq, last.get(a.ref, a.seq))
    return bad


# ---------------------------------------------------------------------------------------------
# Pure parts


def test_backoff_schedule_spreads_19_retries_over_about_96_hours():
    mid = random.Random(0)
    mid.uniform = lambda a, b: 1.0  # no jitter
    delays = [backoff(n, mid).total_seconds() for n in range(1, MAX_ATTEMPTS)]
    assert delays[:3] == [10, 20, 40]
    assert max(delays) == 12 * 3600
    assert 90 * 3600 < sum(delays) < 96 * 3600
    rng = random.Random(7)
    for n in range(1, MAX_ATTEMPTS):
        base = min(10 * 2 ** (n - 1), 12 * 3600)
        assert 0.9 * base <= backoff(n, rng).total_seconds() <= 1.1 * base


def test_retry_after_in_seconds_or_as_an_http_date():
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds(None) == 0 and retry_after_seconds("soon") == 0
    in_5_min = format_datetime(datetime.now().astimezone() + timedelta(minutes=5), usegmt=False)
    assert 290 <= retry_after_seconds(in_5_min) <= 300


# ---------------------------------------------------------------------------------------------
# Endpoints and fan-out


def test_sync_endpoints_keeps_api_rows_and_disabled_reasons(warehouse_url):
    engine = engine_for(warehouse_url)
    at = datetime(2025, 1, 1)
    a, b = "https://a.example/hook", "https://b.example/hook"
    brand = new_brand([{"url": a, "events": ["client.created"], "secret_env": "A_SECRET"},
                       {"url": b, "events": ["client.updated"], "secret_env": "B_SECRET"}])
    with writing(engine) as conn:
        conn.execute(webhook_endpoints.insert().values(
            brand=brand.brand, target_url="https://api.example/hook", events='["client.deleted"]', is_enabled=True,
            origin="api", secret=new_secret(), created_at=at, updated_at=at))
        assert sync_endpoints(conn, brand, at) == 2
        assert sync_endpoints(conn, brand, at) == 0  # nothing changed: nothing written
        conn.execute(webhook_endpoints.update().where(webhook_endpoints.c.target_url == a)
                     .values(disabled_reason="410 Gone at 2025-01-01T00:00:00.000Z"))
    changed = new_brand([
        {"url": a, "events": ["client.created", "shopper.deleted"], "secret_env": "A_SECRET"},
        {"url": "https://api.example/hook", "events": ["client.created"], "secret_env": "X"},  # the API owns this URL
    ], bid=brand.brand)
    with writing(engine) as conn:
        sync_endpoints(conn, changed, at + timedelta(hours=1))
    row_a, row_b = endpoint(engine, brand, a), endpoint(engine, brand, b)
    api = endpoint(engine, brand, "https://api.example/hook")
    assert json.loads(row_a["events"]) == ["client.created", "shopper.deleted"] and row_a["is_enabled"]
    assert row_a["disabled_reason"].startswith("410 Gone")  # only `enable` clears it
    assert not row_b["is_enabled"]  # gone from the YAML
    assert api["origin"] == "api" and json.loads(api["events"]) == ["client.deleted"] and api["secret_env"] is None


def test_fan_out_by_subscription_alias(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    monkeypatch.setenv("FAN_SECRET", receiver.secrets[0])
    files_url = receiver.url.replace("/hook", "/files")
    off_url = receiver.url.replace("/hook", "/off")
    brand = new_brand([
        {"url": receiver.url, "events": ["shopper.updated"], "secret_env": "FAN_SECRET"},
        {"url": files_url, "events": ["file_import.finished"], "secret_env": "FAN_SECRET"},
        {"url": off_url, "events": ["client.updated"], "secret_env": "FAN_SECRET", "enabled": False},
    ])
    updated = emit(engine, brand, "C1", 1, clock(), origin="platform")
    with writing(engine) as conn:
        finished = enqueue(conn, brand.brand, "file_import.finished", "file:main/X.csv", {"file_name": "X.csv"}, clock())
        sync_endpoints(conn, brand, clock())
    with writing(engine) as conn:
        counts = fan_out(conn, brand)
    with writing(engine) as conn:
        assert fan_out(conn, brand).events == 0  # each event once
    assert counts == (2, 2)
    rows = deliveries(engine, brand)
    url_of = {endpoint(engine, brand, u)["id"]: u for u in (receiver.url, files_url, off_url)}
    assert Counter(url_of[r["endpoint_id"]] for r in rows) == {receiver.url: 1, files_url: 1}  # not to the one off
    report = deliver(engine, [brand], clock=clock)
    assert report.delivered == len(rows)
    got = {(a.webhook_id, a.event_name) for a in receiver.unique()}
    assert got == {(updated, "shopper.updated"), (finished, "file_import.finished")}  # named as subscribed
    assert all(a.verified for a in receiver.arrivals)


def test_one_tick_for_several_brands_syncs_fans_out_and_counts_each_its_own(warehouse_url, receiver, monkeypatch):
    """The sensor asks about every brand of its location in one query each (whose endpoints
    changed, who has events to fan out, the counts by brand): each brand still gets its own."""
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    quiet, busy, moved = (brand_for(receiver, monkeypatch) for _ in range(3))
    first = deliver(engine, [quiet, busy, moved], clock=clock)
    assert first.endpoints_changed == 3 and first.attempted == 0
    emit(engine, busy, "C1", 1, clock(), origin="platform")
    moved = moved.model_copy(update={"webhooks": moved.webhooks.model_copy(update={"endpoints": [
        moved.webhooks.endpoints[0].model_copy(update={"events": ["client.updated", "client.created"]})]})})
    report = deliver(engine, [quiet, busy, moved], clock=clock)
    assert report.endpoints_changed == 1 and endpoint(engine, moved, receiver.url)["events"] == \
        '["client.updated", "client.created"]'
    assert report.events_fanned_out == 1 and report.delivered == 1
    assert [d["brand"] for d in deliveries(engine, busy)] == [busy.brand]
    assert deliveries(engine, quiet) == [] and deliveries(engine, moved) == []
    assert report.counts_by_brand == {quiet.brand: {"pending": 0, "delivered": 0, "rejected": 0, "dead": 0},
                                      busy.brand: {"pending": 0, "delivered": 1, "rejected": 0, "dead": 0},
                                      moved.brand: {"pending": 0, "delivered": 0, "rejected": 0, "dead": 0}}


def test_an_idle_tick_takes_no_write_lock(warehouse_url, receiver, monkeypatch):
    """With nothing new, `deliver` only reads: a sensor tick never waits behind a long apply."""
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    monkeypatch.setenv("FAN_SECRET", receiver.secrets[0])
    brand = new_brand([{"url": receiver.url, "events": ["client.updated"], "secret_env": "FAN_SECRET"}])
    emit(engine, brand, "C1", 1, clock(), origin="platform")
    assert deliver(engine, [brand], clock=clock).delivered == 1
    writes = []

    def begin(conn):
        writes.append(bool(conn.get_execution_options().get("bspk_write")))

    sa.event.listen(engine, "begin", begin)
    try:
        idle = deliver(engine, [brand], clock=clock)
    finally:
        sa.event.remove(engine, "begin", begin)
    assert idle.attempted == 0 and idle.endpoints_changed == 0
    assert writes and not any(writes)  # it read, and never wrote


# ---------------------------------------------------------------------------------------------
# Signing


def test_signatures_verify_also_during_key_rotation(warehouse_url, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    new, old = new_secret(), new_secret()
    with_new, with_old = Receiver([new]).start(), Receiver([old]).start()
    try:
        env = "WH_ROTATE"
        monkeypatch.setenv(env, f"{new}  {old}")
        brand = new_brand([{"url": r.url, "events": ["client.updated"], "secret_env": env} for r in (with_new, with_old)])
        # An API endpoint signs with the secret kept (encrypted) in its row.
        api_secret = new_secret()
        api = Receiver([api_secret]).start()
        with writing(engine) as conn:
            conn.execute(webhook_endpoints.insert().values(
                brand=brand.brand, target_url=api.url, events='["client.updated"]', is_enabled=True, origin="api",
                secret=WebhookSettings.from_env().box.encrypt(api_secret), created_at=clock(), updated_at=clock()))
        message_id = emit(engine, brand, "C1", 1, clock(), origin="platform")
        report = deliver(engine, [brand], clock=clock)
        assert report.delivered == 3, report.summary()
        for r, first in ((with_new, new), (with_old, new), (api, api_secret)):
            [arrival] = r.arrivals
            assert arrival.verified, "standardwebhooks verifies with this receiver's secret"
            h = {k.lower(): v for k, v in arrival.headers.items()}
            assert h["webhook-id"] == message_id
            assert h["x-bspk-secret"] == first
            assert h["content-type"] == "application/json"
            assert abs(int(h["webhook-timestamp"]) - time.time()) < 60  # wall time, not the fake clock
            assert len(h["webhook-signature"].split(" ")) == (1 if r is api else 2)
            assert json.loads(arrival.body) == {"event_name": "client.updated", "object": {
                "ref": "C1", "external_id": "C1", "seq": 1, "origin": "platform"}}
        # A tampered body fails verification.
        arrival = with_new.arrivals[0]
        with pytest.raises(WebhookVerificationError):
            Webhook(new).verify(arrival.body.replace(b"C1", b"C2"), arrival.headers)
        api.stop()
    finally:
        with_new.stop()
        with_old.stop()


def test_a_missing_secret_is_a_retried_failure(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    env = brand.webhooks.endpoints[0].secret_env
    monkeypatch.delenv(env)
    emit(engine, brand, "C1", 1, clock())
    report = deliver(engine, [brand], clock=clock)
    assert (report.attempted, report.retried) == (1, 1)
    [row] = deliveries(engine, brand)
    assert row["status"] == "pending" and env in row["last_error"] and not receiver.arrivals
    monkeypatch.setenv(env, receiver.secrets[0])
    clock.advance(minutes=1)
    assert deliver(engine, [brand], clock=clock).delivered == 1
    assert receiver.arrivals[0].verified


# ---------------------------------------------------------------------------------------------
# Outages and answers


def test_receiver_down_then_up_delivers_everything_once_in_order(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    receiver.stop()
    sent = [emit(engine, brand, f"C{c}", seq, clock()) for seq in range(1, 4) for c in range(1, 6)]  # interleaved

    down = deliver(engine, [brand], clock=clock)
    assert (down.attempted, down.retried, down.delivered) == (5, 5, 0)  # the head of each client's queue
    assert all(r["status"] == "pending" and "connection failed" in r["last_error"]
               for r in deliveries(engine, brand) if r["attempts"])

    clock.advance(seconds=12)
    receiver.start()  # same port
    spent = deliver(engine, [brand], clock=clock, budget_seconds=0)
    assert spent.attempted == 0 and spent.budget_spent and "budget spent" in spent.summary()
    up = deliver(engine, [brand], clock=clock)
    assert up.delivered == 15 and up.pending_by_brand[brand.brand] == 0, up.summary()
    unique = receiver.unique()
    assert all(a.verified for a in receiver.arrivals)
    assert sorted(a.webhook_id for a in unique) == sorted(sent)  # the outbox's ids, kept across retries
    assert len(receiver.processed()) == len(unique) == 15
    assert order_violations(unique) == 0
    for c in range(1, 6):
        assert [a.seq for a in unique if a.ref == f"C{c}"] == [1, 2, 3]


def test_410_disables_the_endpoint_and_parks_its_deliveries(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    receiver.default = lambda _a: Act(410)
    first = emit(engine, brand, "C1", 1, clock())
    report = deliver(engine, [brand], clock=clock)
    assert report.disabled == [f"{brand.brand}: {receiver.url}"] and len(receiver.arrivals) == 1
    row = endpoint(engine, brand, receiver.url)
    assert row["is_enabled"] and row["disabled_reason"] == "410 Gone at 2025-03-01T09:00:00.000Z"

    emit(engine, brand, "C2", 1, clock())
    for _ in range(3):
        clock.advance(hours=1)
        assert deliver(engine, [brand], clock=clock).attempted == 0
    assert len(receiver.arrivals) == 1  # nothing more went out
    [parked] = deliveries(engine, brand)  # the later event was not fanned out to a disabled endpoint
    assert parked["status"] == "pending" and parked["attempts"] == 0 and parked["last_status_code"] == 410

    assert enable_endpoint(engine, brand.brand, row["id"], clock=clock)
    assert not enable_endpoint(engine, "someone_else", row["id"])
    receiver.default = lambda _a: Act(200)
    assert deliver(engine, [brand], clock=clock).delivered == 1
    assert [a.webhook_id for a in receiver.unique()] == [first]


def test_422_is_rejected_and_not_retried(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    receiver.script.extend([Act(422)])
    bad = emit(engine, brand, "C1", 1, clock())
    emit(engine, brand, "C1", 2, clock())
    report = deliver(engine, [brand], clock=clock)
    assert (report.rejected, report.delivered) == (1, 1)  # the client's next event was not held back
    clock.advance(days=5)
    assert deliver(engine, [brand], clock=clock).attempted == 0
    assert [a.seq for a in receiver.arrivals] == [1, 2]
    first, second = deliveries(engine, brand)
    assert (first["status"], first["attempts"], first["last_status_code"]) == ("rejected", 1, 422)
    assert second["status"] == "delivered"
    with engine.connect() as conn:
        [letter] = dead_letters(conn, brand.brand)
    assert (letter.message_id, letter.status, letter.event_name, letter.target_url) == (bad, "rejected", "client.updated", receiver.url)


def test_5xx_and_3xx_are_retried_with_the_same_webhook_id(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    receiver.script.extend([Act(503), Act(302), Act(500)])
    message_id = emit(engine, brand, "C1", 1, clock())
    for n in range(1, 4):
        report = deliver(engine, [brand], clock=clock)
        assert report.retried == 1 and len(receiver.arrivals) == n
        clock.advance(seconds=10 * 2 ** n)  # past the longest jittered back-off
    [row] = deliveries(engine, brand)
    assert row["attempts"] == 3 and row["last_status_code"] == 500
    assert deliver(engine, [brand], clock=clock).delivered == 1
    assert [a.status for a in receiver.arrivals] == [503, 302, 500, 200]
    assert {a.webhook_id for a in receiver.arrivals} == {message_id}
    assert all(a.verified for a in receiver.arrivals)


def test_429_retry_after_is_honoured(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    receiver.script.append(Act(429, retry_after="120"))
    emit(engine, brand, "C1", 1, clock())
    assert deliver(engine, [brand], clock=clock).retried == 1
    clock.advance(seconds=119)
    assert deliver(engine, [brand], clock=clock).attempted == 0  # the back-off alone (10 s) would have allowed it
    clock.advance(seconds=1)
    assert deliver(engine, [brand], clock=clock).delivered == 1
    assert [a.status for a in receiver.arrivals] == [429, 200]


def test_a_hanging_receiver_times_out_after_5_seconds_and_is_retried(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    receiver.script.append(Act(200, hang=10))
    emit(engine, brand, "C1", 1, clock())
    started = time.monotonic()
    report = deliver(engine, [brand], clock=clock)
    took = time.monotonic() - started
    assert report.retried == 1 and 4.5 <= took < 8, took
    [row] = deliveries(engine, brand)
    assert row["status"] == "pending" and row["last_error"].startswith("timeout") and row["last_status_code"] is None
    clock.advance(seconds=12)
    assert deliver(engine, [brand], clock=clock).delivered == 1
    assert len(receiver.processed()) == 2 and len(receiver.unique()) == 1  # the receiver de-duplicates


# ---------------------------------------------------------------------------------------------
# The retry window, dead letters, replay


def test_20_attempts_over_96_hours_then_dead_then_replayed(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    receiver.default = lambda _a: Act(500)
    message_id = emit(engine, brand, "C1", 1, clock())
    start = clock()
    rounds = 0
    while True:  # the clock jumps to each scheduled retry
        deliver(engine, [brand], clock=clock, rng=random.Random(rounds))
        rounds += 1
        if (due := next_due(engine, brand)) is None:
            break
        clock.now = max(clock.now, due)
        assert rounds < MAX_ATTEMPTS
    assert len(receiver.arrivals) == MAX_ATTEMPTS == 20
    [row] = deliveries(engine, brand)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("dead", 20, 500)
    span = row["last_attempt_at"] - start
    assert timedelta(hours=80) < span <= RETRY_WINDOW, span

    with engine.connect() as conn:
        [letter] = dead_letters(conn, brand.brand)
    assert (letter.message_id, letter.status, letter.attempts, letter.target_url) == (message_id, "dead", 20, receiver.url)
    assert letter.last_error.startswith("HTTP 500")
    report = deliver(engine, [brand], clock=clock)
    assert report.dead_letters_by_brand == {brand.brand: 1} and "dead letters" in report.summary()

    clock.advance(hours=1)
    assert replay(engine, brand.brand, message_id="msg_nope", clock=clock) == 0
    assert replay(engine, brand.brand, message_id=message_id, clock=clock) == 1
    [row] = deliveries(engine, brand)
    assert (row["status"], row["attempts"], row["first_attempt_at"], row["next_attempt_at"]) == ("pending", 0, None, clock())
    receiver.default = lambda _a: Act(200)
    assert deliver(engine, [brand], clock=clock).delivered == 1
    assert {a.webhook_id for a in receiver.arrivals} == {message_id}
    with engine.connect() as conn:
        assert dead_letters(conn, brand.brand) == []


def test_a_delivery_dies_once_96_hours_have_passed_since_its_first_attempt(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    receiver.default = lambda _a: Act(500)
    emit(engine, brand, "C1", 1, clock())
    deliver(engine, [brand], clock=clock)
    clock.advance(hours=97)  # the deliverer was down for four days
    report = deliver(engine, [brand], clock=clock)
    assert report.dead == 1
    [row] = deliveries(engine, brand)
    assert (row["status"], row["attempts"]) == ("dead", 2)


def test_later_events_of_a_client_wait_behind_a_failing_one(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    failing: set[str] = set()
    receiver.default = lambda a: Act(500) if a.webhook_id in failing else Act(200)
    a1 = emit(engine, brand, "A", 1, clock())
    emit(engine, brand, "A", 2, clock())
    emit(engine, brand, "B", 1, clock())
    d1 = emit(engine, brand, "D", 1, clock())
    emit(engine, brand, "D", 2, clock())
    failing |= {a1, d1}

    deliver(engine, [brand], clock=clock)
    assert sorted((a.ref, a.seq, a.status) for a in receiver.arrivals) == [("A", 1, 500), ("B", 1, 200), ("D", 1, 500)]
    for _ in range(3):  # A's and D's second events wait while their first keep failing
        clock.now = next_due(engine, brand)
        deliver(engine, [brand], clock=clock)
    assert {(a.ref, a.seq) for a in receiver.processed()} == {("B", 1)}

    failing.discard(a1)  # A's receiver-side problem is fixed: A1 then A2
    clock.advance(minutes=10)  # past A1's (and D1's) next retry
    deliver(engine, [brand], clock=clock)
    assert [a.seq for a in receiver.unique() if a.ref == "A"] == [1, 2]
    assert not [a for a in receiver.processed() if a.ref == "D"]

    while (due := next_due(engine, brand)) is not None:  # D1 fails until it is dead; then D2 goes
        clock.now = max(clock.now, due)
        deliver(engine, [brand], clock=clock)
    by_seq = {(r["ordering_key"], r["status"]) for r in deliveries(engine, brand)}
    assert ("client:D", "dead") in by_seq and ("client:D", "delivered") in by_seq
    assert [a.seq for a in receiver.unique() if a.ref == "D"] == [2]
    d_arrivals = [a.seq for a in receiver.arrivals if a.ref == "D"]
    assert d_arrivals == [1] * MAX_ATTEMPTS + [2]


def test_two_deliverers_at_once_never_send_a_delivery_twice(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)

    def slow(_a):
        time.sleep(0.03)
        return Act(200)

    receiver.default = slow
    sent = [emit(engine, brand, f"C{c}", seq, clock()) for seq in range(1, 6) for c in range(12)]
    reports, errors = [], []

    def run():
        try:
            reports.append(deliver(engine, [brand], clock=clock, max_workers=6))
        except Exception as e:  # noqa: BLE001 - a thread's failure is reported by the test below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    ids = [a.webhook_id for a in receiver.arrivals]
    assert len(ids) == len(set(ids)) == len(sent), Counter(ids).most_common(3)
    assert sum(r.attempted for r in reports) == len(sent) and all(r.attempted for r in reports)
    assert all(r["status"] == "delivered" and r["attempts"] == 1 for r in deliveries(engine, brand))
    assert order_violations(receiver.unique()) == 0


# ---------------------------------------------------------------------------------------------
# Fault figures


def test_fault_figures(warehouse_url, receiver, monkeypatch):
    """~200 events for 20 clients through a receiver that is down, then flaky (500, 429, hangs),
    then healthy; every event arrives once after de-duplication, in order per client."""
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    chaos = random.Random(20250301)
    start = clock()
    down = [(start, start + timedelta(minutes=5)), (start + timedelta(minutes=12), start + timedelta(minutes=15))]
    flaky_until = start + timedelta(minutes=25)

    def flaky(_a: Arrival) -> Act:
        if clock() >= flaky_until:
            return Act(200)
        roll = chaos.random()
        if roll < 0.25:
            return Act(500)
        if roll < 0.35:
            return Act(429, retry_after="30")
        if roll < 0.38:
            return Act(200, hang=1.5)  # processed, but the answer comes too late: a timeout
        if roll < 0.42:
            return Act(503)
        return Act(200)

    receiver.default = flaky
    clients = [f"C{i:02d}" for i in range(20)]
    seqs: dict[str, int] = defaultdict(int)
    produced: list[str] = []
    order = random.Random(7)
    attempted = rounds = 0
    wall = time.monotonic()
    while True:
        is_down = any(a <= clock() < b for a, b in down)
        if is_down and receiver.server:
            receiver.stop()
        elif not is_down and not receiver.server:
            receiver.start()  # on the same port
        if len(produced) < 200 and clock() < start + timedelta(minutes=20):  # 10 events a minute
            for _ in range(10):
                ref = order.choice(clients)
                seqs[ref] += 1
                produced.append(emit(engine, brand, ref, seqs[ref], clock()))
        report = deliver(engine, [brand], clock=clock, rng=random.Random(rounds), timeout=0.5)
        attempted += report.attempted
        rounds += 1
        due = next_due(engine, brand)
        if due is None and len(produced) >= 200:
            break
        step = clock() + timedelta(minutes=1)
        clock.now = step if due is None or len(produced) < 200 else max(clock() + timedelta(seconds=1), min(due, step))
        assert rounds < 500, "no progress"
    receiver.stop()

    rows = deliveries(engine, brand)
    status = Counter(r["status"] for r in rows)
    processed, unique = receiver.processed(), receiver.unique()
    events_twice = sum(n - 1 for n in Counter((a.ref, a.seq) for a in unique).values())
    figures = {
        "events produced": len(produced),
        "deliveries tried": attempted,
        "requests reaching the receiver": len(receiver.arrivals),
        "delivered": status["delivered"],
        "dead-lettered": status["dead"] + status["rejected"],
        "duplicates seen by receiver (before de-dup by webhook-id)": len(processed) - len(unique),
        "duplicates after de-dup": events_twice,
        "order violations": order_violations(unique),
        "unverified requests": sum(not a.verified for a in receiver.arrivals),
        "answers": dict(sorted(Counter(a.status for a in receiver.arrivals if not a.hung).items())),
        "timeouts (receiver hung after processing)": sum(a.hung for a in receiver.arrivals),
        "rounds": rounds,
        "fake time": str(clock() - start),
        "wall time": f"{time.monotonic() - wall:.1f} s",
    }
    print(f"\nwebhook fault figures ({engine.dialect.name}):")
    for k, v in figures.items():
        print(f"  {k}: {v}")
    assert len(produced) == 200 and len(rows) == 200
    assert status["delivered"] == 200 and status["dead"] == 0
    assert sorted(a.webhook_id for a in unique) == sorted(produced)
    assert events_twice == 0
    assert figures["order violations"] == 0
    assert figures["unverified requests"] == 0
    assert attempted > 200  # the faults did happen



def test_a_claimed_delivery_cannot_be_claimed_again_until_its_lease_ends(warehouse_url, receiver, monkeypatch):
    engine = engine_for(warehouse_url)
    clock = FakeClock()
    brand = brand_for(receiver, monkeypatch)
    emit(engine, brand, "C1", 1, clock())
    with writing(engine) as conn:
        sync_endpoints(conn, brand, clock())
    with writing(engine) as conn:
        fan_out(conn, brand)
    box = WebhookSettings.from_env().box
    [job] = _claim(engine, [brand.brand], clock(), 10, box)
    assert _claim(engine, [brand.brand], clock(), 10, box) == []  # a second deliverer finds nothing due
    assert _claim(engine, [brand.brand], clock() + LEASE - timedelta(seconds=1), 10, box) == []
    [again] = _claim(engine, [brand.brand], clock() + LEASE, 10, box)  # the first deliverer died mid-send
    assert again.id == job.id and again.message_id == job.message_id
