"""Webhook delivery: from the outbox (`webhook_events`) to the brands' receivers, signed, in order,
retried for 96 hours, never sent twice at once.

The steps, each run by `deliver` (a sensor tick calls it):

1. `sync_endpoints`: the endpoints in the brand's YAML become rows of `webhook_endpoints`
   (origin `config`). Endpoints created through the Platform API (origin `api`) are never touched,
   and a `disabled_reason` (a 410 Gone) stays until `enable_endpoint` clears it.
2. `fan_out`: each outbox event not yet fanned out gets one `webhook_deliveries` row per endpoint
   that is enabled and subscribed to it, in one transaction; the event is then marked fanned out.
   An endpoint subscribed to a `shopper.*` name receives the `client.*` event of the same kind and
   the envelope carries the name it subscribed with (worked out when the delivery is sent, from
   the endpoint's subscriptions, as the deliveries table records no name).
3. Sending: a delivery is due when it is pending, its time has come, its endpoint is enabled, and
   it is the head of its queue: no pending delivery to the same endpoint with the same ordering
   key (one client's events) has a lower event id. So a client's events reach each receiver in the
   order they were written, and a failing event holds back the later ones of that client only,
   until it is delivered, rejected or dead. Due deliveries are claimed with a lease (their
   `next_attempt_at` moved a minute ahead by a compare-and-set update), so two deliverers running
   at once never send the same delivery; then they are POSTed from a thread pool, through a
   session that connects only to addresses the deployment's `TargetPolicy` permits (no internal
   networks unless allowed; `outbound.targets`), whichever origin the endpoint has.

Signing follows Standard Webhooks (standardwebhooks.com): `webhook-id` is the event's message id,
the same on every retry, so receivers de-duplicate on it; `webhook-timestamp` is the wall-clock
time of the send (receivers reject stale timestamps, so it is never the injected clock);
`webhook-signature` carries `v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}` for each
secret the endpoint has (two during a key rotation). `X-Bspk-Secret` carries the first secret,
as the platform's documentation describes. The body is serialised once and signed as sent.
Config endpoints' secrets come from the environment; API endpoints' are stored encrypted and
decrypted for each send (`outbound.encryption`).

Outcomes: any 2xx is delivered. 422 is rejected and not retried. 410 Gone disables the endpoint
(`disabled_reason`): its deliveries stay pending, parked, without using up their retries, until
`enable_endpoint`. Anything else (3xx, other 4xx, 5xx, a timeout after 5 s, a refused connection,
a receiver on a refused network, a missing or undecryptable secret) is retried after
`backoff(attempts)` (10 s doubling up to 12 h, ±10 % jitter; 19 retries take about 95 h) or after
the receiver's `Retry-After` if longer. After the 20th attempt, or 96 h after the first, the
delivery is dead. Dead and rejected deliveries are the dead letters:
`dead_letters` lists them, `replay` sends them again with the same webhook-id.

Ordering relies on the outbox writers: events of one key are written by transactions that lock
the same client row, so their ids follow their commit order. A replayed dead letter goes out after
the later events of its client that were already delivered; receivers should compare the
object's `updated_at` when that matters.

Time comes from `clock` (naive UTC), injectable so tests run the 96-hour window in seconds;
`deliver` never sleeps, it returns when nothing is due or its time budget is spent. Its
settings are the deployment's (`outbound.settings`, from `bspk_pipelines.settings`) unless given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

import requests
import sqlalchemy as sa
from urllib3.exceptions import LocationValueError
from urllib3.util import Timeout

from bspk_pipelines.model.brand import EVENT_ALIASES, Brand
from bspk_pipelines.outbound.encryption import SecretBox, UnreadableSecret
from bspk_pipelines.outbound.events import iso
from bspk_pipelines.outbound.settings import WebhookSettings
from bspk_pipelines.outbound.targets import RefusedTarget, guarded_session
from bspk_pipelines.settings import ALLOW_NETWORKS, ENCRYPTION_KEYS, signing_secret
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.platform import webhook_deliveries, webhook_endpoints, webhook_events
from bspk_pipelines.warehouse.engine import writing

PENDING, DELIVERED, REJECTED, DEAD = "pending", "delivered", "rejected", "dead"
DEAD_LETTER_STATUSES = (DEAD, REJECTED)

SEND_TIMEOUT = 5.0  # seconds, connect and response together
LEASE = timedelta(seconds=60)  # a claimed delivery is not due again for this long
MAX_ATTEMPTS = 20  # the first attempt and 19 retries
RETRY_WINDOW = timedelta(hours=96)
FIRST_DELAY = 10.0  # seconds before the first retry; doubles each time
MAX_DELAY = 12 * 3600.0
JITTER = 0.10
ERROR_CHARS = 500  # of a receiver's answer kept in last_error

Clock = Callable[[], datetime]


# ---------------------------------------------------------------------------------------------
# Endpoints and subscriptions


def _insert_ignoring_conflicts(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, so two deliverers running at once cannot collide."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    conn.execute(insert(table).on_conflict_do_nothing(index_elements=keys), rows)


def sync_endpoints(conn: sa.Connection, brand: Brand, at: datetime) -> int:
    """Make the brand's config endpoints rows of `webhook_endpoints` (keyed by brand and URL);
    config endpoints gone from the YAML are disabled. Rows created through the API are left alone,
    and so is `disabled_reason`. Returns how many rows were added or changed."""
    e = webhook_endpoints
    existing = {r["target_url"]: r for r in conn.execute(sa.select(e).where(e.c.brand == brand.brand)).mappings()}
    wanted = {ep.url: ep for ep in brand.webhooks.endpoints}
    changed = 0
    for url, ep in wanted.items():
        values = {"events": json.dumps(ep.events), "is_enabled": ep.enabled, "secret_env": ep.secret_env}
        row = existing.get(url)
        if row is None:
            _insert_ignoring_conflicts(conn, e, [{
                "brand": brand.brand, "target_url": url, "origin": "config", **values, "created_at": at, "updated_at": at,
            }], ["brand", "target_url"])
            changed += 1
        elif row["origin"] == "config" and any(row[k] != v for k, v in values.items()):
            conn.execute(e.update().where(e.c.id == row["id"]).values(**values, updated_at=at))
            changed += 1
    for url, row in existing.items():
        if row["origin"] == "config" and url not in wanted and row["is_enabled"]:
            conn.execute(e.update().where(e.c.id == row["id"]).values(is_enabled=False, updated_at=at))
            changed += 1
    return changed


def _canonical(event_name: str) -> str:
    return EVENT_ALIASES.get(event_name, event_name)


def subscribed_name(event_name: str, subscriptions: Iterable[str]) -> str | None:
    """The name under which an endpoint subscribed to `subscriptions` receives `event_name`: the
    name itself, or its alias (`shopper.updated` for `client.updated`); None if not subscribed."""
    subscriptions = list(subscriptions)
    if event_name in subscriptions:
        return event_name
    canonical = _canonical(event_name)
    return next((s for s in subscriptions if _canonical(s) == canonical), None)


class FanOut(NamedTuple):
    events: int  # events marked fanned out
    deliveries: int  # delivery rows created


def fan_out(conn: sa.Connection, brand: Brand) -> FanOut:
    """One pending delivery per (event not yet fanned out, enabled endpoint subscribed to it),
    then the events are marked fanned out; run it inside one write transaction (`writing`).
    A delivery is due from its event's creation, whatever the time of the fan-out. (Whether an
    import's client change is an event at all was decided when it was written: `echo_imports`.)"""
    ev, e, d = webhook_events, webhook_endpoints, webhook_deliveries
    endpoints = [
        (r["id"], json.loads(r["events"]))
        for r in conn.execute(sa.select(e.c.id, e.c.events).where(
            e.c.brand == brand.brand, e.c.is_enabled == sa.true(), e.c.disabled_reason.is_(None)).order_by(e.c.id)).mappings()
    ]
    # FOR UPDATE: a second deliverer fanning out at once waits, then finds these rows done.
    events = conn.execute(
        sa.select(ev.c.id, ev.c.event_name, ev.c.ordering_key, ev.c.created_at)
        .where(ev.c.brand == brand.brand, ev.c.fanned_out == sa.false())
        .order_by(ev.c.id).with_for_update()
    ).mappings().all()
    rows = []
    for event in events:
        for endpoint_id, subscriptions in endpoints:
            if subscribed_name(event["event_name"], subscriptions):
                rows.append({
                    "brand": brand.brand, "event_id": event["id"], "endpoint_id": endpoint_id,
                    "ordering_key": event["ordering_key"], "status": PENDING, "attempts": 0,
                    "next_attempt_at": event["created_at"],
                })
    _insert_ignoring_conflicts(conn, d, rows, ["event_id", "endpoint_id"])
    ids = [event["id"] for event in events]
    for i in range(0, len(ids), 500):
        conn.execute(ev.update().where(ev.c.id.in_(ids[i:i + 500])).values(fanned_out=True))
    return FanOut(len(events), len(rows))


# ---------------------------------------------------------------------------------------------
# Signing


class SecretError(ValueError):
    """An endpoint's secret is missing or not a `whsec_` secret."""


def parse_secrets(text: str | None, where: str) -> list[tuple[str, bytes]]:
    """`whsec_...` secrets separated by whitespace, as (secret, HMAC key) pairs."""
    secrets = (text or "").split()
    if not secrets:
        raise SecretError(f"no signing secret: {where} is empty or not set")
    keys = []
    for secret in secrets:
        try:
            key = base64.b64decode(secret.removeprefix("whsec_") + "==", validate=False)
        except (binascii.Error, ValueError) as e:
            raise SecretError(f"{where}: a secret is not base64 after whsec_ ({e})") from None
        if not secret.startswith("whsec_") or not key:
            raise SecretError(f"{where}: secrets are whsec_ followed by base64 bytes")
        keys.append((secret, key))
    return keys


def endpoint_secrets(origin: str, secret_env: str | None, stored: str | None, box: SecretBox) -> list[tuple[str, bytes]]:
    """Config endpoints read their secret(s) from the environment, API endpoints from their row
    (`stored`, encrypted)."""
    if origin == "config":
        if not secret_env:
            raise SecretError("config endpoint without secret_env")
        return parse_secrets(signing_secret(secret_env), f"environment variable {secret_env}")
    try:
        secret = box.decrypt(stored) if stored else None
    except UnreadableSecret:
        raise SecretError(f"the endpoint's secret cannot be decrypted with the keys in {ENCRYPTION_KEYS}: "
                          "give the key it was encrypted under too") from None
    return parse_secrets(secret, "the endpoint's secret")


def envelope(event_name: str, payload: str) -> bytes:
    """The request body: `{"event_name": ..., "object": ...}`, serialised once."""
    return json.dumps({"event_name": event_name, "object": json.loads(payload)},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(message_id: str, timestamp: int, body: bytes, keys: Sequence[bytes]) -> str:
    """The `webhook-signature` header: one `v1,<signature>` per key, space-separated."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys
    )


def signed_headers(message_id: str, body: bytes, secrets: Sequence[tuple[str, bytes]], timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(message_id, timestamp, body, [k for _, k in secrets]),
        "X-Bspk-Secret": secrets[0][0],
    }


# ---------------------------------------------------------------------------------------------
# Retry schedule


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 10 s doubling, at most 12 h, ±10 %."""
    base = min(FIRST_DELAY * 2 ** (attempts - 1), MAX_DELAY)
    return timedelta(seconds=base * rng.uniform(1 - JITTER, 1 + JITTER))


def retry_after_seconds(value: str | None) -> float:
    """A `Retry-After` header (seconds or an HTTP date) as seconds from now; 0 if absent or bad."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return 0.0
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()  # the receiver's date is wall time
    return min(max(seconds, 0.0), RETRY_WINDOW.total_seconds())


# ---------------------------------------------------------------------------------------------
# Sending


@dataclass
class _Job:
    """A claimed delivery and what sending it needs."""

    id: int
    brand: str
    endpoint_id: int
    target_url: str
    message_id: str
    event_name: str  # as the endpoint subscribed
    body: bytes | None
    secrets: list[tuple[str, bytes]] | None
    error: str | None  # why it cannot be sent (no secret): a failed attempt without a request
    attempts: int
    first_attempt_at: datetime | None


@dataclass
class _Outcome:
    status_code: int | None = None
    error: str | None = None
    retry_after: float = 0.0


def _post(session: requests.Session, job: _Job, timeout: float) -> _Outcome:
    headers = signed_headers(job.message_id, job.body, job.secrets)
    try:
        with session.post(job.target_url, data=job.body, headers=headers, timeout=Timeout(total=timeout),
                          allow_redirects=False, stream=True) as response:
            code = response.status_code
            if 200 <= code < 300:
                return _Outcome(code)
            try:
                text = next(response.iter_content(ERROR_CHARS), b"").decode("utf-8", "replace").strip()
            except requests.RequestException:
                text = ""
            if 300 <= code < 400:
                error = f"HTTP {code}: redirect to {response.headers.get('Location')!r} not followed"
            else:
                error = f"HTTP {code}" + (f": {text}" if text else "")
            return _Outcome(code, error[:ERROR_CHARS], retry_after_seconds(response.headers.get("Retry-After")))
    except RefusedTarget as e:
        return _Outcome(error=f"refused: {e}, not a network webhooks go to unless {ALLOW_NETWORKS} allows it"[:ERROR_CHARS])
    except requests.Timeout:
        return _Outcome(error=f"timeout: no response within {timeout:g} s")
    except requests.ConnectionError as e:
        return _Outcome(error=f"connection failed: {e}"[:ERROR_CHARS])
    except (requests.RequestException, LocationValueError) as e:  # urllib3's own, for a host it cannot parse
        return _Outcome(error=f"request failed: {e}"[:ERROR_CHARS])


# ---------------------------------------------------------------------------------------------
# Delivering


@dataclass
class DeliveryReport:
    """What one `deliver` run did, and what is left, for a sensor's tick log."""

    endpoints_changed: int = 0
    events_fanned_out: int = 0
    deliveries_created: int = 0
    attempted: int = 0
    delivered: int = 0
    retried: int = 0
    rejected: int = 0
    dead: int = 0
    disabled: list[str] = field(default_factory=list)  # "brand: url" of endpoints disabled by a 410
    counts_by_brand: dict[str, dict[str, int]] = field(default_factory=dict)  # after the run, by status
    budget_spent: bool = False

    @property
    def pending_by_brand(self) -> dict[str, int]:
        return {b: c[PENDING] for b, c in self.counts_by_brand.items()}

    @property
    def dead_letters_by_brand(self) -> dict[str, int]:
        """Dead and rejected deliveries per brand."""
        return {b: sum(c[s] for s in DEAD_LETTER_STATUSES) for b, c in self.counts_by_brand.items()}

    def summary(self) -> str:
        parts = [(
            f"{self.attempted} attempted: {self.delivered} delivered, {self.retried} to retry, "
            f"{self.rejected} rejected (422), {self.dead} dead"
        )]
        if self.endpoints_changed:
            parts.append(f"{self.endpoints_changed} endpoint(s) updated from the brands' config")
        if self.deliveries_created:
            parts.append(f"{self.deliveries_created} new deliveries from {self.events_fanned_out} events")
        if self.disabled:
            parts.append("disabled by 410 Gone: " + ", ".join(self.disabled))
        if self.budget_spent:
            parts.append("time budget spent, more is due")
        pending = {b: n for b, n in self.pending_by_brand.items() if n}
        dead = {b: n for b, n in self.dead_letters_by_brand.items() if n}
        if pending:
            parts.append("pending " + ", ".join(f"{b}={n}" for b, n in sorted(pending.items())))
        if dead:
            parts.append("dead letters " + ", ".join(f"{b}={n}" for b, n in sorted(dead.items())))
        return "webhooks: " + "; ".join(parts)


def _due(brand_ids: list[str], now: datetime, limit: int) -> sa.Select:
    """Pending deliveries whose time has come, to enabled endpoints, each the head of its queue."""
    d, e, ev = webhook_deliveries, webhook_endpoints, webhook_events
    earlier = d.alias("earlier")
    head = ~sa.exists().where(
        earlier.c.endpoint_id == d.c.endpoint_id, earlier.c.ordering_key == d.c.ordering_key,
        earlier.c.status == PENDING, earlier.c.event_id < d.c.event_id,
    )
    return (
        sa.select(d.c.id, d.c.brand, d.c.endpoint_id, d.c.next_attempt_at, d.c.attempts, d.c.first_attempt_at,
                  ev.c.message_id, ev.c.event_name, ev.c.payload,
                  e.c.target_url, e.c.events, e.c.origin, e.c.secret_env, e.c.secret)
        .select_from(d.join(ev, ev.c.id == d.c.event_id).join(e, e.c.id == d.c.endpoint_id))
        .where(d.c.brand.in_(brand_ids), d.c.status == PENDING, d.c.next_attempt_at <= now,
               e.c.is_enabled == sa.true(), e.c.disabled_reason.is_(None), head)
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(limit)
    )


def _job(row: dict[str, Any], box: SecretBox) -> _Job:
    name = subscribed_name(row["event_name"], json.loads(row["events"])) or row["event_name"]
    body = secrets = error = None
    try:
        secrets = endpoint_secrets(row["origin"], row["secret_env"], row["secret"], box)
        body = envelope(name, row["payload"])
    except (SecretError, ValueError) as e:
        error = str(e)
    return _Job(row["id"], row["brand"], row["endpoint_id"], row["target_url"], row["message_id"], name, body,
                secrets, error, row["attempts"], row["first_attempt_at"])


def _claim(engine: sa.Engine, brand_ids: list[str], now: datetime, limit: int, box: SecretBox) -> list[_Job]:
    """Take up to `limit` due deliveries: each is ours if we moved its next_attempt_at first.

    On PostgreSQL the candidates are read `FOR UPDATE SKIP LOCKED`, so a second deliverer takes
    the next ones instead of queueing behind the first; the compare-and-set decides either way.
    A delivery lost to another deliverer is left out and the next due one is looked for."""
    d = webhook_deliveries
    jobs: list[_Job] = []
    lost: list[int] = []
    with writing(engine) as conn:
        while len(jobs) < limit:
            query = _due(brand_ids, now, limit - len(jobs)).with_for_update(skip_locked=True, of=d)
            if lost:
                query = query.where(d.c.id.not_in(lost))
            lost_before = len(lost)
            for row in conn.execute(query).mappings().all():
                taken = conn.execute(d.update().where(
                    d.c.id == row["id"], d.c.status == PENDING, d.c.next_attempt_at == row["next_attempt_at"],
                ).values(next_attempt_at=now + LEASE))
                if taken.rowcount == 1:
                    jobs.append(_job(dict(row), box))
                else:
                    lost.append(row["id"])
            if len(lost) == lost_before:  # nothing lost: every due delivery there was is ours
                break
    return jobs


def _record(engine: sa.Engine, results: list[tuple[_Job, _Outcome]], now: datetime, rng: random.Random,
            report: DeliveryReport) -> None:
    """Write each attempt's outcome: delivered, rejected, parked (410), retried later or dead."""
    d, e = webhook_deliveries, webhook_endpoints
    with writing(engine) as conn:
        for job, out in results:
            mine = d.update().where(d.c.id == job.id, d.c.status == PENDING)
            first = job.first_attempt_at or now
            tried = {"attempts": job.attempts + 1, "first_attempt_at": first, "last_attempt_at": now,
                     "last_status_code": out.status_code, "last_error": out.error}
            report.attempted += 1
            code = out.status_code
            if code is not None and 200 <= code < 300:
                conn.execute(mine.values(**tried, status=DELIVERED, finished_at=now))
                report.delivered += 1
            elif code == 422:
                conn.execute(mine.values(**tried, status=REJECTED, finished_at=now))
                report.rejected += 1
            elif code == 410:
                # Parked, not failed: its retries are kept for when the endpoint is enabled again.
                disabled = conn.execute(e.update().where(e.c.id == job.endpoint_id, e.c.disabled_reason.is_(None))
                                        .values(disabled_reason=f"410 Gone at {iso(now)}", updated_at=now))
                if disabled.rowcount:
                    report.disabled.append(f"{job.brand}: {job.target_url}")
                conn.execute(mine.values(last_attempt_at=now, last_status_code=410, last_error=out.error,
                                         next_attempt_at=now))
            elif tried["attempts"] >= MAX_ATTEMPTS or now - first >= RETRY_WINDOW:
                conn.execute(mine.values(**tried, status=DEAD, finished_at=now))
                report.dead += 1
            else:
                # Back off, but never past the window's end (the last retry falls inside the 96 h);
                # a receiver's Retry-After is honoured even beyond it.
                wait_until = min(now + backoff(tried["attempts"], rng), first + RETRY_WINDOW)
                wait_until = max(wait_until, now + timedelta(seconds=out.retry_after))
                conn.execute(mine.values(**tried, next_attempt_at=wait_until))
                report.retried += 1


def deliver(engine: sa.Engine, brands: list[Brand], clock: Clock = now, budget_seconds: float = 40,
            max_workers: int = 8, rng: random.Random | None = None, timeout: float = SEND_TIMEOUT,
            settings: WebhookSettings | None = None) -> DeliveryReport:
    """Sync endpoints, fan out new events, then send what is due until nothing is due or
    `budget_seconds` (wall time) are spent; sends already started finish (within `timeout`).
    `clock` says what is due; `rng` jitters the back-off. Without `settings`, they are read
    from the environment first: a missing key is a SettingError before anything is done."""
    settings = settings or WebhookSettings.from_env()
    rng = rng or random.Random()
    report = DeliveryReport()
    for brand in brands:
        # An idle tick only reads: the write lock (SQLite's is the whole file) is taken when
        # there is something to write, so the sensor never queues behind a long apply for nothing.
        with engine.connect() as conn:
            stale, unfanned = not _config_matches(conn, brand), _has_unfanned(conn, brand.brand)
        if stale:
            with writing(engine) as conn:
                report.endpoints_changed += sync_endpoints(conn, brand, clock())
        if unfanned:
            with writing(engine) as conn:
                counts = fan_out(conn, brand)
            report.events_fanned_out += counts.events
            report.deliveries_created += counts.deliveries

    brand_ids = [b.brand for b in brands]
    session = guarded_session(settings.targets, max_workers)
    started = time.monotonic()
    inflight: dict[Future, _Job] = {}
    try:
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="webhook") as pool:
            while True:
                in_budget = time.monotonic() - started < budget_seconds
                claimed: list[_Job] = []
                if in_budget and len(inflight) < max_workers and brand_ids and _any_due(engine, brand_ids, clock()):
                    claimed = _claim(engine, brand_ids, clock(), max_workers - len(inflight), settings.box)
                    unsendable = [(job, _Outcome(error=job.error)) for job in claimed if job.error]
                    if unsendable:
                        _record(engine, unsendable, clock(), rng, report)
                    for job in claimed:
                        if not job.error:
                            inflight[pool.submit(_post, session, job, timeout)] = job
                if not inflight:
                    if claimed and in_budget:
                        continue  # only unsendable ones: look again
                    report.budget_spent = not in_budget
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                _record(engine, [(inflight.pop(f), f.result()) for f in done], clock(), rng, report)
    finally:
        session.close()

    with engine.connect() as conn:
        report.counts_by_brand = {b: delivery_counts(conn, b) for b in brand_ids}
    return report


def _config_matches(conn: sa.Connection, brand: Brand) -> bool:
    """Whether `sync_endpoints` would change nothing (read only)."""
    e = webhook_endpoints
    rows = {r.target_url: r for r in conn.execute(
        sa.select(e.c.target_url, e.c.origin, e.c.events, e.c.is_enabled, e.c.secret_env).where(e.c.brand == brand.brand))}
    for ep in brand.webhooks.endpoints:
        row = rows.pop(ep.url, None)
        if row is None or (row.origin == "config" and (json.loads(row.events), bool(row.is_enabled), row.secret_env)
                           != (ep.events, ep.enabled, ep.secret_env)):
            return False
    return not any(r.origin == "config" and r.is_enabled for r in rows.values())


def _has_unfanned(conn: sa.Connection, brand_id: str) -> bool:
    ev = webhook_events
    return conn.execute(sa.select(ev.c.id).where(ev.c.brand == brand_id, ev.c.fanned_out == sa.false()).limit(1)).first() is not None


def _any_due(engine: sa.Engine, brand_ids: list[str], now: datetime) -> bool:
    with engine.connect() as conn:
        return conn.execute(_due(brand_ids, now, 1)).first() is not None


def delivery_counts(conn: sa.Connection, brand_id: str) -> dict[str, int]:
    """The brand's deliveries by status (pending, delivered, rejected, dead), zeros included."""
    d = webhook_deliveries
    counts = dict.fromkeys((PENDING, DELIVERED, REJECTED, DEAD), 0)
    rows = conn.execute(sa.select(d.c.status, sa.func.count()).where(d.c.brand == brand_id).group_by(d.c.status))
    counts.update(dict(rows.all()))
    return counts


@dataclass(frozen=True)
class Endpoint:
    id: int
    target_url: str
    events: list[str]
    is_enabled: bool
    origin: str
    disabled_reason: str | None


def endpoints(conn: sa.Connection, brand_id: str) -> list[Endpoint]:
    e = webhook_endpoints
    rows = conn.execute(sa.select(e.c.id, e.c.target_url, e.c.events, e.c.is_enabled, e.c.origin, e.c.disabled_reason)
                        .where(e.c.brand == brand_id).order_by(e.c.id))
    return [Endpoint(r.id, r.target_url, json.loads(r.events), bool(r.is_enabled), r.origin, r.disabled_reason) for r in rows]


# ---------------------------------------------------------------------------------------------
# Dead letters and endpoint repair (the UI and the CLI)


@dataclass(frozen=True)
class DeadLetter:
    delivery_id: int
    status: str  # dead or rejected
    event_name: str
    message_id: str
    ordering_key: str
    endpoint_id: int
    target_url: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    first_attempt_at: datetime | None
    finished_at: datetime | None


def dead_letters(conn: sa.Connection, brand_id: str, endpoint_id: int | None = None, limit: int | None = None) -> list[DeadLetter]:
    """The brand's dead and rejected deliveries, oldest event first (the first `limit` of them)."""
    d, e, ev = webhook_deliveries, webhook_endpoints, webhook_events
    query = (
        sa.select(d.c.id, d.c.status, ev.c.event_name, ev.c.message_id, d.c.ordering_key, d.c.endpoint_id,
                  e.c.target_url, d.c.attempts, d.c.last_status_code, d.c.last_error, d.c.first_attempt_at,
                  d.c.finished_at)
        .select_from(d.join(ev, ev.c.id == d.c.event_id).join(e, e.c.id == d.c.endpoint_id))
        .where(d.c.brand == brand_id, d.c.status.in_(DEAD_LETTER_STATUSES))
        .order_by(d.c.event_id, d.c.endpoint_id)
    )
    if endpoint_id is not None:
        query = query.where(d.c.endpoint_id == endpoint_id)
    return [DeadLetter(*row) for row in conn.execute(query.limit(limit))]


def replay(engine: sa.Engine, brand_id: str, endpoint_id: int | None = None, message_id: str | None = None,
           clock: Clock = now) -> int:
    """Dead and rejected deliveries (of one endpoint, of one event, or all the brand's) become
    pending again with a fresh retry budget and the same webhook-id; returns how many."""
    d, ev = webhook_deliveries, webhook_events
    conditions = [d.c.brand == brand_id, d.c.status.in_(DEAD_LETTER_STATUSES)]
    if endpoint_id is not None:
        conditions.append(d.c.endpoint_id == endpoint_id)
    if message_id is not None:
        conditions.append(d.c.event_id.in_(
            sa.select(ev.c.id).where(ev.c.brand == brand_id, ev.c.message_id == message_id)))
    with writing(engine) as conn:
        return conn.execute(d.update().where(*conditions).values(
            status=PENDING, attempts=0, first_attempt_at=None, next_attempt_at=clock(), finished_at=None,
        )).rowcount


def enable_endpoint(engine: sa.Engine, brand_id: str, endpoint_id: int, clock: Clock = now) -> bool:
    """Clear an endpoint's `disabled_reason` (a 410 Gone): its parked deliveries go out again.
    Returns False if the brand has no such endpoint."""
    e = webhook_endpoints
    with writing(engine) as conn:
        return conn.execute(e.update().where(e.c.brand == brand_id, e.c.id == endpoint_id)
                            .values(disabled_reason=None, updated_at=clock())).rowcount == 1
