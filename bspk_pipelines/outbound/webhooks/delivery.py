"""Sending: due deliveries claimed with a lease, POSTed from a thread pool, their outcomes
recorded (delivered, rejected, parked, retried with back-off, or dead); `deliver` runs it all."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import sqlalchemy as sa
from urllib3.exceptions import LocationValueError
from urllib3.util import Timeout

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.outbound.encryption import SecretBox
from bspk_pipelines.outbound.events import iso
from bspk_pipelines.outbound.settings import WebhookSettings
from bspk_pipelines.outbound.targets import RefusedTarget, guarded_session
from bspk_pipelines.outbound.webhooks.admin import delivery_counts_by_brand
from bspk_pipelines.outbound.webhooks.fanout import fan_out, subscribed_name, sync_endpoints
from bspk_pipelines.outbound.webhooks.signing import SecretError, endpoint_secrets, envelope, signed_headers
from bspk_pipelines.outbound.webhooks.statuses import DEAD, DEAD_LETTER_STATUSES, DELIVERED, PENDING, REJECTED, Clock
from bspk_pipelines.settings import ALLOW_NETWORKS
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.platform import webhook_deliveries, webhook_endpoints, webhook_events
from bspk_pipelines.warehouse.engine import writing

SEND_TIMEOUT = 5.0  # seconds, connect and response together
LEASE = timedelta(seconds=60)  # a claimed delivery is not due again for this long
MAX_ATTEMPTS = 20  # the first attempt and 19 retries
RETRY_WINDOW = timedelta(hours=96)
FIRST_DELAY = 10.0  # seconds before the first retry; doubles each time
MAX_DELAY = 12 * 3600.0
JITTER = 0.10
ERROR_CHARS = 500  # of a receiver's answer kept in last_error


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
    # An idle tick only reads, in a few queries whatever the number of brands: the write lock
    # (SQLite's is the whole file) is taken when there is something to write, so the sensor
    # never queues behind a long apply for nothing.
    with engine.connect() as conn:
        stale, unfanned = _stale_endpoints(conn, brands), _with_unfanned(conn, [b.brand for b in brands])
    for brand in brands:
        if brand.brand in stale:
            with writing(engine) as conn:
                report.endpoints_changed += sync_endpoints(conn, brand, clock())
        if brand.brand in unfanned:
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
        report.counts_by_brand = delivery_counts_by_brand(conn, brand_ids)
    return report


def _stale_endpoints(conn: sa.Connection, brands: list[Brand]) -> set[str]:
    """The brands whose `sync_endpoints` would change something (read only)."""
    e = webhook_endpoints
    rows: dict[str, dict] = {b.brand: {} for b in brands}
    for r in conn.execute(sa.select(e.c.brand, e.c.target_url, e.c.origin, e.c.events, e.c.is_enabled, e.c.secret_env)
                          .where(e.c.brand.in_(list(rows)))):
        rows[r.brand][r.target_url] = r
    return {b.brand for b in brands if not _config_matches(b, rows[b.brand])}


def _config_matches(brand: Brand, rows: dict) -> bool:
    for ep in brand.webhooks.endpoints:
        row = rows.pop(ep.url, None)
        if row is None or (row.origin == "config" and (json.loads(row.events), bool(row.is_enabled), row.secret_env)
                           != (ep.events, ep.enabled, ep.secret_env)):
            return False
    return not any(r.origin == "config" and r.is_enabled for r in rows.values())


def _with_unfanned(conn: sa.Connection, brand_ids: list[str]) -> set[str]:
    """The brands with events not fanned out to their endpoints yet."""
    ev = webhook_events
    return set(conn.scalars(sa.select(ev.c.brand).distinct().where(ev.c.brand.in_(brand_ids), ev.c.fanned_out == sa.false())))


def _any_due(engine: sa.Engine, brand_ids: list[str], now: datetime) -> bool:
    with engine.connect() as conn:
        return conn.execute(_due(brand_ids, now, 1)).first() is not None

