"""The platform's own data: clients as the platform sees them, the associates' activity, and the
outbound bookkeeping (webhook outbox and deliveries, extract watermarks).

Imported files never write here directly: a shopper applied from a file updates its client
through `engagement.clients`, which records the change like any other.

These tables have a surrogate `id` as their primary key (the platform's ids, which webhooks and
the Extraction API expose); every one still carries `brand`, and every query filters on it.
"""

from __future__ import annotations

import sqlalchemy as sa

from bspk_pipelines.model.entities import SHOPPERS
from bspk_pipelines.warehouse.schema import column_type, metadata

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only

# Client attributes: the shopper's columns, as the brand's files define them.
CLIENT_FIELDS = tuple(c.name for c in SHOPPERS.columns if c.name != "shopper_ref")

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True, comment="the platform's client id"),
    sa.Column("brand", sa.Text, nullable=False),
    sa.Column("shopper_ref", sa.Text, nullable=False, comment="the brand's id of the client"),
    *[sa.Column(name, column_type(SHOPPERS, name)) for name in CLIENT_FIELDS],
    sa.Column("last_contacted_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("deleted_at", sa.DateTime),
    sa.UniqueConstraint("brand", "shopper_ref", name="uq_clients_ref"),
    comment="clients as the platform sees them: the brand's shopper records plus the associates' edits",
)
sa.Index("ix_clients_updated", clients.c.brand, clients.c.updated_at, clients.c.id)

client_changes = sa.Table(
    "client_changes",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("brand", sa.Text, nullable=False),
    sa.Column("client_id", sa.BigInteger, nullable=False),
    sa.Column("shopper_ref", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False, comment="created, updated or deleted"),
    sa.Column("fields", sa.Text, comment='JSON {"field": {"old": ..., "new": ...}}; on creation, the new values'),
    sa.Column("origin", sa.Text, nullable=False, comment="import (the brand's files), platform (an associate) or api"),
    sa.Column("changed_by", sa.Text, nullable=False, comment="the file, the associate or the API key that made it"),
    sa.Column("changed_at", sa.DateTime, nullable=False),
    comment="every change of a client: which fields, from what, to what, by whom and when",
)
sa.Index("ix_client_changes_client", client_changes.c.brand, client_changes.c.client_id, client_changes.c.id)


def _activity(name: str, *columns: sa.Column, about_client: bool = True, comment: str) -> sa.Table:
    """An engagement table: who did it (associate and their store at the time), for which client."""
    actor = [
        sa.Column("store_id", sa.Text), sa.Column("store_name", sa.Text),
        sa.Column("sales_associate_id", sa.Text), sa.Column("sales_associate_name", sa.Text),
    ]
    client = [sa.Column("client_id", sa.Text, comment="the brand's shopper_ref"), sa.Column("client_name", sa.Text)]
    table = sa.Table(
        name,
        metadata,
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("brand", sa.Text, nullable=False),
        *actor,
        *(client if about_client else []),
        *columns,
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        comment=comment,
    )
    # Extracts and the Extraction API read by brand in (updated time, id) order.
    sa.Index(f"ix_{name}_updated", table.c.brand, table.c.updated_at, table.c.id)
    return table


def _media() -> sa.Column:
    return sa.Column("media", sa.Text, comment="JSON array of attachments")


def _schedule() -> list[sa.Column]:
    return [
        sa.Column("title", sa.Text), sa.Column("body", sa.Text),
        sa.Column("starts_at", sa.DateTime), sa.Column("ends_at", sa.DateTime),
        sa.Column("is_done", sa.Boolean, nullable=False, default=False), sa.Column("is_done_at", sa.DateTime),
        sa.Column("notes", sa.Text),
    ]


calls = _activity("calls", sa.Column("to", sa.Text, comment="the number dialled"), comment="calls to clients")
messages = _activity(
    "messages", sa.Column("body", sa.Text), sa.Column("channel", sa.Text, nullable=False),
    sa.Column("template_id", sa.Text), sa.Column("template_name", sa.Text), sa.Column("slice_id", sa.BigInteger),
    _media(), comment="messages sent to clients (chat, whatsapp, wechat, line, sms)",
)
emails = _activity(
    "emails", sa.Column("template_id", sa.Text), sa.Column("template_name", sa.Text),
    sa.Column("slice_id", sa.BigInteger), _media(), comment="emails sent to clients",
)
notes = _activity("notes", sa.Column("body", sa.Text), _media(), comment="notes about clients")
appointments = _activity("appointments", *_schedule(), comment="appointments booked with clients")
reminders = _activity("reminders", *_schedule(), comment="reminders set about clients")
slices = _activity(
    "slices", sa.Column("title", sa.Text), sa.Column("body", sa.Text),
    sa.Column("item_ids", sa.Text, comment="JSON array of product refs"),
    about_client=False, comment="slices (curated product selections) built by associates",
)
ideabook_actions = _activity(
    "ideabook_actions", sa.Column("ideabook_id", sa.Text, nullable=False), sa.Column("action", sa.Text, nullable=False),
    sa.Column("item_id", sa.Text),
    comment="idea book actions (created, item_added, item_removed, shared): the platform's fields are not published",
)
associate_profiles = sa.Table(
    "associate_profiles",
    metadata,
    sa.Column("brand", sa.Text, primary_key=True),
    sa.Column("sales_associate_ref", sa.Text, primary_key=True),
    sa.Column("username", sa.Text),
    sa.Column("associate_id_2", sa.Text),
    sa.Column("job_title", sa.Text),
    sa.Column("imessage_enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("wechat_enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("line_enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("adyen_enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("wechat_code", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    comment="the platform's side of an associate (login, features); the brand's side is sales_associates",
)

ACTIVITY_TABLES: dict[str, sa.Table] = {
    t.name: t for t in (calls, messages, emails, notes, appointments, reminders, slices, ideabook_actions)
}

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("brand", sa.Text, nullable=False),
    sa.Column("target_url", sa.Text, nullable=False),
    sa.Column("events", sa.Text, nullable=False, comment="JSON array of event names"),
    sa.Column("is_enabled", sa.Boolean, nullable=False),
    sa.Column("origin", sa.Text, nullable=False, comment="config (the brand's YAML) or api"),
    sa.Column("secret_env", sa.Text, comment="config endpoints: the environment variable holding the secret(s)"),
    sa.Column("secret", sa.Text, comment="api endpoints: the signing secret(s)"),
    sa.Column("disabled_reason", sa.Text, comment="set when the receiver answered 410 Gone; cleared by `bspk webhooks enable`"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("brand", "target_url", name="uq_webhook_endpoints_url"),
)

webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("brand", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False, unique=True, comment="webhook-id: the same on every retry"),
    sa.Column("event_name", sa.Text, nullable=False),
    sa.Column("ordering_key", sa.Text, nullable=False, comment="events with the same key go out in id order"),
    sa.Column("payload", sa.Text, nullable=False, comment="JSON `object` of the envelope"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("fanned_out", sa.Boolean, nullable=False, default=False,
              comment="deliveries created for the endpoints subscribed when it was first seen"),
    comment="the outbox: written in the same transaction as the change it reports",
)
sa.Index("ix_webhook_events_fan_out", webhook_events.c.brand, webhook_events.c.fanned_out, webhook_events.c.id)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("brand", sa.Text, nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("endpoint_id", sa.BigInteger, nullable=False),
    sa.Column("ordering_key", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False,
              comment="pending, delivered, rejected (422: not retried) or dead (retry window over)"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("first_attempt_at", sa.DateTime),
    sa.Column("last_attempt_at", sa.DateTime),
    sa.Column("next_attempt_at", sa.DateTime, nullable=False),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("finished_at", sa.DateTime),
    sa.UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries"),
)
sa.Index("ix_webhook_deliveries_due", webhook_deliveries.c.status, webhook_deliveries.c.next_attempt_at)
sa.Index("ix_webhook_deliveries_queue", webhook_deliveries.c.endpoint_id, webhook_deliveries.c.ordering_key,
         webhook_deliveries.c.event_id)

extract_state = sa.Table(
    "extract_state",
    metadata,
    sa.Column("brand", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("watermark", sa.DateTime, nullable=False, comment="rows updated up to here have been extracted"),
    sa.Column("last_file", sa.Text),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

extract_seen = sa.Table(
    "extract_seen",
    metadata,
    sa.Column("brand", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("row_id", sa.Text, primary_key=True),
    sa.Column("row_updated_at", sa.DateTime, primary_key=True),
    comment="rows extracted within the look-back window: what the next run's look-back finds again is skipped",
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("brand", sa.Text, nullable=False),
    sa.Column("key_id", sa.Text, nullable=False, unique=True, comment="the key's public part, shown by `bspk api-keys list`"),
    sa.Column("key_hash", sa.Text, nullable=False, comment="scrypt of the secret part with its parameters and salt; never the key"),
    sa.Column("name", sa.Text, nullable=False, comment="what the brand uses the key for"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime),
    comment="the REST API's bearer keys: several per brand, each scoped to its brand",
)
