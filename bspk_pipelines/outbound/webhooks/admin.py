"""Inspection and repair, for the UI and the CLI: delivery counts, endpoints, dead letters,
their replay, and re-enabling an endpoint after a 410."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from bspk_pipelines.outbound.webhooks.statuses import DEAD, DEAD_LETTER_STATUSES, DELIVERED, PENDING, REJECTED, Clock
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.platform import webhook_deliveries, webhook_endpoints, webhook_events
from bspk_pipelines.warehouse.engine import writing


def delivery_counts(conn: sa.Connection, brand_id: str) -> dict[str, int]:
    """The brand's deliveries by status (pending, delivered, rejected, dead), zeros included."""
    return delivery_counts_by_brand(conn, [brand_id])[brand_id]


def delivery_counts_by_brand(conn: sa.Connection, brand_ids: list[str]) -> dict[str, dict[str, int]]:
    """`delivery_counts` of each brand, in one query."""
    d = webhook_deliveries
    counts = {b: dict.fromkeys((PENDING, DELIVERED, REJECTED, DEAD), 0) for b in brand_ids}
    if brand_ids:
        rows = conn.execute(sa.select(d.c.brand, d.c.status, sa.func.count())
                            .where(d.c.brand.in_(brand_ids)).group_by(d.c.brand, d.c.status))
        for brand, status, n in rows:
            counts[brand][status] = n
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
