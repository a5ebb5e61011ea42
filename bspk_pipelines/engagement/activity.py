"""The platform's write API: what associates do with their clients.

Every method is one transaction. The acting associate's name and store are looked up from the
brand's own records (SALES-ASSOCIATE, STORE files) and stored with the action, as the Extraction
API reports the store "at the time of the action". A client change is recorded field by field
and its webhook event is written to the outbox in the same transaction (`engagement.clients`).

    platform = Platform(engine, "acme")
    platform.update_client("S1", {"email": "new@example.com"}, by="SA1")
    platform.log_call("SA1", "S1", to="+33612345678")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bspk_pipelines.engagement import clients as client_store
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.platform import ACTIVITY_TABLES, associate_profiles, clients
from bspk_pipelines.warehouse.schema import ENTITY_TABLES
from bspk_pipelines.warehouse.engine import writing

CHANNELS = ("chat", "whatsapp", "wechat", "line", "sms", "imessage")
IDEABOOK_ACTIONS = ("created", "item_added", "item_removed", "shared")
PROFILE_FIELDS = ("username", "associate_id_2", "job_title", "imessage_enabled", "wechat_enabled", "line_enabled",
                  "adyen_enabled", "wechat_code")


class ActivityError(ValueError):
    """An action that cannot be recorded: an unknown associate or client, a bad value."""


class Platform:
    """Records one brand's platform-side activity in the warehouse. `clock` returns naive UTC."""

    def __init__(self, engine: sa.Engine, brand: str, clock: Callable[[], datetime] = now):
        self.engine, self.brand, self.clock = engine, brand, clock

    # --- clients ---------------------------------------------------------------------------

    def create_client(self, shopper_ref: str, values: dict[str, Any], by: str, origin: str = "platform") -> int:
        with writing(self.engine) as conn:
            return client_store.create_client(conn, self.brand, shopper_ref, values, origin, by, self.clock())["id"]

    def update_client(self, shopper_ref: str, values: dict[str, Any], by: str, origin: str = "platform") -> dict[str, dict]:
        """Returns the fields that changed, {field: {old, new}}; only those go out in `client.updated`."""
        with writing(self.engine) as conn:
            return client_store.update_client(conn, self.brand, shopper_ref, values, origin, by, self.clock())

    def upsert_client(self, shopper_ref: str, values: dict[str, Any], by: str, ignore: Sequence[str] = (),
                      origin: str = "api") -> bool:
        """Create the client, or update it, leaving the attributes in `ignore` as they are.
        Returns whether it was created."""
        ignored = set(ignore)
        values = {k: v for k, v in values.items() if k not in ignored}
        with writing(self.engine) as conn:
            at = self.clock()
            exists = conn.execute(sa.select(clients.c.id).where(
                clients.c.brand == self.brand, clients.c.shopper_ref == shopper_ref)).first() is not None
            if exists:
                client_store.update_client(conn, self.brand, shopper_ref, values, origin, by, at)
            else:
                client_store.create_client(conn, self.brand, shopper_ref, values, origin, by, at)
            return not exists

    def delete_client(self, shopper_ref: str, by: str, origin: str = "platform") -> None:
        with writing(self.engine) as conn:
            client_store.delete_client(conn, self.brand, shopper_ref, origin, by, self.clock())

    # --- engagement ------------------------------------------------------------------------

    def log_call(self, associate: str, client: str, to: str | None = None) -> int:
        return self._record("calls", associate, client, {"to": to}, contact=True)

    def send_message(self, associate: str, client: str, body: str | None, channel: str, template_id: str | None = None,
                     template_name: str | None = None, slice_id: int | None = None, media: list[dict] | None = None) -> int:
        if channel not in CHANNELS:
            raise ActivityError(f"channel must be one of {', '.join(CHANNELS)}; found {channel!r}")
        return self._record("messages", associate, client, {
            "body": body, "channel": channel, "template_id": template_id, "template_name": template_name,
            "slice_id": slice_id, "media": json.dumps(media or []),
        }, contact=True)

    def send_email(self, associate: str, client: str, template_id: str | None = None, template_name: str | None = None,
                   slice_id: int | None = None, media: list[dict] | None = None) -> int:
        return self._record("emails", associate, client, {
            "template_id": template_id, "template_name": template_name, "slice_id": slice_id,
            "media": json.dumps(media or []),
        }, contact=True)

    def write_note(self, associate: str, client: str, body: str, media: list[dict] | None = None) -> int:
        return self._record("notes", associate, client, {"body": body, "media": json.dumps(media or [])})

    def book_appointment(self, associate: str, client: str, title: str, starts_at: datetime, ends_at: datetime | None = None,
                         body: str | None = None, notes: str | None = None) -> int:
        return self._record("appointments", associate, client, _slot(title, starts_at, ends_at, body, notes))

    def set_reminder(self, associate: str, client: str, title: str, starts_at: datetime, ends_at: datetime | None = None,
                     body: str | None = None, notes: str | None = None) -> int:
        return self._record("reminders", associate, client, _slot(title, starts_at, ends_at, body, notes))

    def mark_done(self, kind: str, row_id: int) -> None:
        """Complete an appointment or a reminder."""
        if kind not in ("appointments", "reminders"):
            raise ActivityError(f"appointments or reminders can be done; found {kind!r}")
        table = ACTIVITY_TABLES[kind]
        with writing(self.engine) as conn:
            at = self.clock()
            done = conn.execute(table.update().where(table.c.brand == self.brand, table.c.id == row_id, ~table.c.is_done)
                                .values(is_done=True, is_done_at=at, updated_at=at)).rowcount
        if not done:
            raise ActivityError(f"no open {kind[:-1]} {row_id}")

    def create_slice(self, associate: str, title: str, item_ids: Sequence[str], body: str | None = None) -> int:
        return self._record("slices", associate, None, {"title": title, "body": body, "item_ids": json.dumps(list(item_ids))})

    def ideabook_action(self, associate: str, client: str, ideabook_id: str, action: str, item_id: str | None = None) -> int:
        if action not in IDEABOOK_ACTIONS:
            raise ActivityError(f"action must be one of {', '.join(IDEABOOK_ACTIONS)}; found {action!r}")
        return self._record("ideabook_actions", associate, client,
                            {"ideabook_id": ideabook_id, "action": action, "item_id": item_id})

    def set_associate_profile(self, associate: str, **values: Any) -> None:
        """The platform's side of an associate: login, job title, channel features."""
        unknown = sorted(set(values) - set(PROFILE_FIELDS))
        if unknown:
            raise ActivityError(f"unknown profile field(s) {', '.join(unknown)}; known: {', '.join(PROFILE_FIELDS)}")
        p = associate_profiles.c
        with writing(self.engine) as conn:
            at = self.clock()
            self._associate(conn, associate)
            key = sa.and_(p.brand == self.brand, p.sales_associate_ref == associate)
            if conn.execute(sa.select(p.brand).where(key)).first():
                conn.execute(associate_profiles.update().where(key).values(**values, updated_at=at))
            else:
                conn.execute(associate_profiles.insert().values(
                    brand=self.brand, sales_associate_ref=associate, **values, created_at=at, updated_at=at))

    # --- lookups ---------------------------------------------------------------------------

    def _record(self, kind: str, associate: str, client: str | None, values: dict[str, Any], contact: bool = False) -> int:
        table = ACTIVITY_TABLES[kind]
        with writing(self.engine) as conn:
            at = self.clock()
            actor = self._associate(conn, associate)
            who = {} if client is None else {"client_id": client, "client_name": self._client_name(conn, client)}
            row_id = conn.execute(table.insert().values(
                brand=self.brand, **actor, **who, **values, created_at=at, updated_at=at)).inserted_primary_key[0]
            if contact:
                # Not a change of the client's attributes (no event), but of its record: extracts
                # and the Extraction API, which follow the updated time, carry the new contact time.
                conn.execute(clients.update().where(clients.c.brand == self.brand, clients.c.shopper_ref == client)
                             .values(last_contacted_at=at, updated_at=at))
            return row_id

    def _associate(self, conn: sa.Connection, ref: str) -> dict[str, Any]:
        associates, stores = ENTITY_TABLES["sales_associates"], ENTITY_TABLES["stores"]
        row = conn.execute(
            sa.select(associates.c.first_name, associates.c.last_name, associates.c.store_ref, stores.c.name)
            .select_from(associates.outerjoin(stores, sa.and_(stores.c.brand == associates.c.brand,
                                                              stores.c.store_ref == associates.c.store_ref)))
            .where(associates.c.brand == self.brand, associates.c.sales_associate_ref == ref)
        ).first()
        if row is None:
            raise ActivityError(f"no sales associate {ref!r} in {self.brand}'s SALES-ASSOCIATE records")
        return {"store_id": row.store_ref, "store_name": row.name, "sales_associate_id": ref,
                "sales_associate_name": f"{row.first_name} {row.last_name}"}

    def _client_name(self, conn: sa.Connection, ref: str) -> str:
        row = conn.execute(sa.select(clients.c.first_name, clients.c.last_name).where(
            clients.c.brand == self.brand, clients.c.shopper_ref == ref, clients.c.deleted_at.is_(None))).first()
        if row is None:
            raise ActivityError(f"no client {ref!r} in {self.brand}")
        return " ".join(p for p in (row.first_name, row.last_name) if p)


def _slot(title: str, starts_at: datetime, ends_at: datetime | None, body: str | None, notes: str | None) -> dict[str, Any]:
    if ends_at is not None and ends_at < starts_at:
        raise ActivityError(f"ends_at {ends_at} is before starts_at {starts_at}")
    return {"title": title, "body": body, "starts_at": starts_at, "ends_at": ends_at, "is_done": False, "notes": notes}
