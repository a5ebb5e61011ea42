"""The webhook outbox: an event is a row written in the same transaction as the change it reports,
so a change is never committed without its event, nor an event without its change.

Delivery (`outbound.webhooks`) reads the outbox later; writers only ever insert.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from bspk_pipelines.model.entities import ENTITIES
from bspk_pipelines.warehouse.platform import webhook_events
from bspk_pipelines.warehouse.schema import files


def iso(value: Any) -> Any:
    """Timestamps as ISO 8601 UTC with milliseconds (`2024-08-07T12:29:24.099Z`), dates as ISO dates."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return value


def enqueue(conn: sa.Connection, brand: str, event_name: str, ordering_key: str, obj: dict[str, Any], at: datetime) -> str:
    """Add an event to the outbox; returns its webhook-id. Events sharing `ordering_key` are
    delivered to each endpoint in the order they were written."""
    message_id = f"msg_{uuid.uuid4().hex}"
    conn.execute(webhook_events.insert().values(
        brand=brand, message_id=message_id, event_name=event_name, ordering_key=ordering_key,
        payload=json.dumps(obj, default=iso), created_at=at, fanned_out=False,
    ))
    return message_id


def client_key(shopper_ref: str) -> str:
    return f"client:{shopper_ref}"


def file_finished(conn: sa.Connection, brand: str, source: str, name: str, entity_name: str, at: datetime) -> str:
    """`file_import.finished` for a delivery's record of one entity (a file that feeds several has
    one each) that reached applied, duplicate or failed."""
    row = conn.execute(sa.select(files).where(
        files.c.brand == brand, files.c.source == source, files.c.name == name, files.c.entity == entity_name)).mappings().one()
    entity = ENTITIES.get(entity_name)
    obj = {
        "file_name": name,
        "type": entity.file_type if entity else None,
        "source": source,
        "status": row["status"],
        "counts": {k: row[k] or 0 for k in ("rows_read", "inserted", "updated", "unchanged", "rejected", "held")},
        "error": row["error"],
        "received_at": iso(row["received_at"]),
        "finished_at": iso(at),
    }
    return enqueue(conn, brand, "file_import.finished", f"file:{source}/{name}", obj, at)
