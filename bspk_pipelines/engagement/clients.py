"""Clients as the platform sees them, and every change to them.

Two writers change a client: the brand's SHOPPER files (origin `import`) and the platform itself
(origin `platform` for an associate, `api` for the Platform API). Both go through here, so each
change is recorded field by field (from what, to what, by whom, when) and, in the same
transaction, its webhook event is put in the outbox.

A change that came from the brand's own files is not sent back to the brand as an event unless
its config asks for it (`webhooks.echo_imports`): the brand already has it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bspk_pipelines.model.entities import METAFIELDS
from bspk_pipelines.outbound.events import client_key, enqueue, iso
from bspk_pipelines.outbound.views import VIEWS
from bspk_pipelines.warehouse.apply import refresh_statistics
from bspk_pipelines.warehouse.platform import CLIENT_FIELDS, client_changes, clients
from bspk_pipelines.warehouse.schema import ENTITY_TABLES, distinct, match_key


class ClientError(ValueError):
    """A platform-side change that cannot be made (unknown client, unknown field)."""


def _client(conn: sa.Connection, brand: str, shopper_ref: str) -> dict[str, Any] | None:
    """The client's row, locked until the transaction ends (on PostgreSQL; a SQLite writer holds
    the whole file): two edits of one client take turns, so each compares against the other's
    result, and their events are written in the order they commit."""
    row = conn.execute(sa.select(clients).where(clients.c.brand == brand, clients.c.shopper_ref == shopper_ref)
                       .with_for_update()).mappings().first()
    return dict(row) if row else None


def _created_events(conn: sa.Connection, brand: str, refs: list[str], at: datetime) -> None:
    """`client.created` for new clients: each as the Extraction API shows it, plus the brand's id
    as the webhook payload names it (`external_id`, and `ref` for the shopper.* names)."""
    for i in range(0, len(refs), 500):
        for _, _, record in VIEWS["clients"].rows(conn, brand, client_ids=refs[i:i + 500]):
            ref = record["client_id"]
            enqueue(conn, brand, "client.created", client_key(ref), record | {"external_id": ref, "ref": ref}, at)


def _change_record(brand: str, client: dict[str, Any], kind: str, fields: dict | None, origin: str, by: str,
                   at: datetime) -> dict[str, Any]:
    return {"brand": brand, "client_id": client["id"], "shopper_ref": client["shopper_ref"], "kind": kind,
            "fields": None if fields is None else json.dumps(fields, default=iso), "origin": origin, "changed_by": by,
            "changed_at": at}


def _record(conn: sa.Connection, brand: str, client: dict[str, Any], kind: str, fields: dict | None, origin: str, by: str, at: datetime) -> None:
    conn.execute(client_changes.insert().values(_change_record(brand, client, kind, fields, origin, by, at)))


def _changes(client: dict[str, Any], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f: {"old": client[f], "new": v} for f, v in values.items() if client[f] != v}


def _updated_event(conn: sa.Connection, brand: str, client: dict[str, Any], changes: dict, origin: str, by: str, at: datetime) -> None:
    enqueue(conn, brand, "client.updated", client_key(client["shopper_ref"]), {
        "id": client["id"], "external_id": client["shopper_ref"], "ref": client["shopper_ref"],
        "changes": changes, "origin": origin, "updated_by": by, "updated_at": at,
    }, at)


def _check_fields(values: dict[str, Any]) -> None:
    unknown = sorted(set(values) - set(CLIENT_FIELDS))
    if unknown:
        raise ClientError(f"unknown client field(s) {', '.join(unknown)}; known: {', '.join(CLIENT_FIELDS)}")


def create_client(conn: sa.Connection, brand: str, shopper_ref: str, values: dict[str, Any], origin: str, by: str,
                  at: datetime) -> dict[str, Any]:
    """A new client made on the platform side; `client.created` goes out."""
    _check_fields(values)
    if _client(conn, brand, shopper_ref):
        raise ClientError(f"client {shopper_ref!r} exists already")
    conn.execute(clients.insert().values(brand=brand, shopper_ref=shopper_ref, **values, created_at=at, updated_at=at))
    client = _client(conn, brand, shopper_ref)
    _record(conn, brand, client, "created", {f: {"old": None, "new": v} for f, v in values.items()}, origin, by, at)
    _created_events(conn, brand, [shopper_ref], at)
    return client


def update_client(conn: sa.Connection, brand: str, shopper_ref: str, values: dict[str, Any], origin: str, by: str,
                  at: datetime) -> dict[str, dict[str, Any]]:
    """Change some of a client's fields on the platform side; returns the fields that changed
    ({field: {old, new}}). Only those are written and sent in `client.updated`; nothing, if none."""
    _check_fields(values)
    client = _client(conn, brand, shopper_ref)
    if client is None or client["deleted_at"] is not None:
        raise ClientError(f"no client {shopper_ref!r}")
    changes = _changes(client, values)
    if changes:
        conn.execute(clients.update().where(clients.c.id == client["id"]).values(
            **{f: c["new"] for f, c in changes.items()}, updated_at=at))
        _record(conn, brand, client, "updated", changes, origin, by, at)
        _updated_event(conn, brand, client, changes, origin, by, at)
    return changes


def delete_client(conn: sa.Connection, brand: str, shopper_ref: str, origin: str, by: str, at: datetime) -> None:
    """Delete a client on the platform side (kept, marked deleted); `client.deleted` goes out."""
    client = _client(conn, brand, shopper_ref)
    if client is None or client["deleted_at"] is not None:
        raise ClientError(f"no client {shopper_ref!r}")
    conn.execute(clients.update().where(clients.c.id == client["id"]).values(deleted_at=at, updated_at=at))
    _record(conn, brand, client, "deleted", None, origin, by, at)
    enqueue(conn, brand, "client.deleted", client_key(shopper_ref), {
        "id": client["id"], "external_id": shopper_ref, "ref": shopper_ref, "deleted_at": at}, at)


@dataclass
class ImportSync:
    """Carries the brand's changes to shopper records over to their clients, while a SHOPPER file is
    applied: called with the staged rows before the shoppers table changes, so the shopper's old
    values are still there to compare with. Only what the brand changed in this file reaches the
    client; an attribute an associate edited and the brand did not touch stays as edited."""

    brand: str
    file: str
    echo: bool
    at: datetime

    def __call__(self, conn: sa.Connection, stage: sa.Table) -> None:
        shoppers = ENTITY_TABLES["shoppers"]
        values = [f for f in CLIENT_FIELDS if f in stage.c]
        known_shopper = sa.and_(shoppers.c.brand == self.brand, shoppers.c.shopper_ref == stage.c.shopper_ref)
        has_client = sa.exists().where(clients.c.brand == self.brand, clients.c.shopper_ref == stage.c.shopper_ref)
        self._modify(conn, stage, values, shoppers, known_shopper)
        self._create(conn, stage, values, has_client)

    def _create(self, conn: sa.Connection, stage: sa.Table, values: list[str], has_client: sa.ColumnElement[bool]) -> None:
        select = sa.select(sa.literal(self.brand), stage.c.shopper_ref, *[stage.c[f] for f in values],
                           sa.literal(self.at), sa.literal(self.at)).where(~has_client)
        created = conn.execute(sa.insert(clients).from_select(
            ["brand", "shopper_ref", *values, "created_at", "updated_at"], select)).rowcount
        if not created:
            return
        refresh_statistics(conn, clients, created)
        # The file holds the values: the change record names it rather than copying them. Each
        # staged row finds its client by the (brand, shopper_ref) index.
        just_created = stage.join(clients, sa.and_(clients.c.brand == self.brand, clients.c.shopper_ref == stage.c.shopper_ref))
        conn.execute(sa.insert(client_changes).from_select(
            ["brand", "client_id", "shopper_ref", "kind", "origin", "changed_by", "changed_at"],
            sa.select(sa.literal(self.brand), clients.c.id, clients.c.shopper_ref, sa.literal("created"),
                      sa.literal("import"), sa.literal(self.file), sa.literal(self.at))
            .select_from(just_created).where(clients.c.created_at == self.at),
        ))
        if self.echo:
            refs = conn.execute(sa.select(clients.c.shopper_ref).select_from(just_created)
                                .where(clients.c.created_at == self.at).order_by(clients.c.id)).scalars().all()
            _created_events(conn, self.brand, refs, self.at)

    def _modify(self, conn: sa.Connection, stage: sa.Table, values: list[str], shoppers: sa.Table,
                known_shopper: sa.ColumnElement[bool]) -> None:
        """Clients whose shopper record the file changes (or sends for the first time, when the
        platform created the client before the brand's file named it)."""
        differs = sa.or_(*[shoppers.c[f].is_distinct_from(stage.c[f]) for f in values])
        query = (
            sa.select(clients, shoppers.c.shopper_ref.label("_known"),
                      *[shoppers.c[f].label(f"_old_{f}") for f in values], *[stage.c[f].label(f"_new_{f}") for f in values])
            .select_from(stage.join(clients, sa.and_(clients.c.brand == self.brand, clients.c.shopper_ref == stage.c.shopper_ref))
                         .outerjoin(shoppers, known_shopper))
            .where(sa.or_(shoppers.c.shopper_ref.is_(None), differs))
            .with_for_update(of=clients)  # as `_client`: platform edits of these clients wait for this file
        )
        records, by_fields = [], {}
        for row in conn.execute(query).mappings():
            sent = {f: row[f"_new_{f}"] for f in values
                    if row["_known"] is None or row[f"_old_{f}"] != row[f"_new_{f}"]}
            client = {k: row[k] for k in clients.c.keys()}
            changes = _changes(client, sent)
            if not changes:
                continue
            records.append(_change_record(self.brand, client, "updated", changes, "import", self.file, self.at))
            if self.echo:
                _updated_event(conn, self.brand, client, changes, "import", self.file, self.at)
            by_fields.setdefault(tuple(sorted(changes)), []).append({"_id": client["id"], **{f: c["new"] for f, c in changes.items()}})
        if records:
            conn.execute(client_changes.insert(), records)
        for fields, rows in by_fields.items():
            _update_clients(conn, fields, rows, self.at)


def _update_clients(conn: sa.Connection, fields: tuple[str, ...], rows: list[dict[str, Any]], at: datetime) -> None:
    """Set `fields` of many clients (rows of `_id` and the new values) in one UPDATE ... FROM a
    temporary table, rather than one UPDATE per client."""
    changed = sa.Table("changed_clients", sa.MetaData(), sa.Column("_id", sa.BigInteger, primary_key=True),
                       *[sa.Column(f, clients.c[f].type) for f in fields], prefixes=["TEMPORARY"])
    changed.drop(conn, checkfirst=True)
    changed.create(conn)
    conn.execute(changed.insert(), rows)
    conn.execute(sa.update(clients).where(clients.c.id == changed.c._id)
                 .values({f: changed.c[f] for f in fields} | {"updated_at": at}))
    changed.drop(conn)


@dataclass
class MetafieldsTouch:
    """While a METAFIELDS file is applied: a client whose metafields the file adds or changes is
    updated then (its `updated_at`), so a consumer of the Extraction API's clients that syncs
    from its last `as_of` gets the client again, with its metafields as they now are."""

    brand: str
    at: datetime

    def __call__(self, conn: sa.Connection, stage: sa.Table) -> None:
        m = ENTITY_TABLES["metafields"]
        values = [c for c in METAFIELDS.attributes if c in stage.c]
        same = sa.exists().where(m.c.brand == self.brand, *[m.c[k] == stage.c[k] for k in match_key(METAFIELDS)],
                                 *[~distinct(m.c[v], stage.c[v]) for v in values])
        owners = sa.select(stage.c.owner_ref).where(stage.c.owner_type == "Shopper", ~same)
        conn.execute(clients.update().where(clients.c.brand == self.brand, clients.c.shopper_ref.in_(owners))
                     .values(updated_at=self.at))
