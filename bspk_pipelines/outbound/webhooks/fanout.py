"""Endpoints and subscriptions: the brand's config endpoints synced into `webhook_endpoints`, and
outbox events fanned out into one delivery per subscribed endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from bspk_pipelines.model.brand import EVENT_ALIASES, Brand
from bspk_pipelines.outbound.webhooks.statuses import PENDING
from bspk_pipelines.warehouse.platform import webhook_deliveries, webhook_endpoints, webhook_events


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
