"""The Extraction API's records: one definition per endpoint, shared by the extracts (files) and
the REST API, so both always carry the same fields.

A view is a query of the brand's rows in (updated time, id) order, plus how a row becomes the
documented JSON object: every field present (nulls included), timestamps ISO 8601 UTC.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from bspk_pipelines.model.metafields import json_value
from bspk_pipelines.outbound.events import iso
from bspk_pipelines.warehouse.platform import ACTIVITY_TABLES, associate_profiles, clients
from bspk_pipelines.warehouse.schema import ENTITY_TABLES


@dataclass(frozen=True)
class View:
    name: str
    query: Callable[[str], sa.Select]  # brand -> rows with `_id` and `_updated_at` for order and watermarks
    shape: Callable[[dict[str, Any]], dict[str, Any]]
    client_column: str | None  # the query column `client_ids` filters on (None: not accepted)
    associate_column: str | None  # the query column `sales_associate_ids` filters on
    paginated: bool = True
    # The table whose rows are the view's, one for one, in the order of its (brand, updated_at, id)
    # index: pages seek along it and `counts` keeps its rows per brand (None: neither).
    table: sa.Table | None = None

    def rows(self, conn: sa.Connection, brand: str, since=None, until=None, client_ids=None, associate_ids=None):
        """Shaped records, oldest update first; `since`/`until` bound the updated time (inclusive)."""
        q = self.filtered(brand, since, until, client_ids, associate_ids).order_by(sa.text("_updated_at"), sa.text("_id"))
        for row in conn.execute(q).mappings():
            yield row["_id"], row["_updated_at"], self.shape(dict(row))

    def filtered(self, brand: str, since=None, until=None, client_ids=None, associate_ids=None) -> sa.Select:
        q = _brand_rows(self, brand)
        out = sa.select(q)
        if since is not None:
            out = out.where(q.c._updated_at >= since)
        if until is not None:
            out = out.where(q.c._updated_at <= until)
        if client_ids is not None:
            out = out.where(q.c[self.client_column].in_(client_ids))
        if associate_ids is not None:
            out = out.where(q.c[self.associate_column].in_(associate_ids))
        return out


@functools.lru_cache(maxsize=4096)
def _brand_rows(view: View, brand: str) -> sa.Subquery:
    """The view's query for one brand, built once: building it (joins, a correlated subquery) costs
    about a millisecond, which a page's own rows do not."""
    return view.query(brand).subquery()


def _shape_times(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: iso(row[n]) for n in names}


def _json_list(text: str | None) -> list:
    return json.loads(text) if text else []


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in text.split(";") if p.strip()] if text else []


# --- clients -------------------------------------------------------------------------------

class json_objects(sa.sql.functions.GenericFunction):
    """An aggregate: the group's rows as text of a JSON array of objects, from (name, value) pairs
    given in turn (`json_objects(literal("key"), table.c.key, ...)`); NULL or `[]` when empty."""

    name = "json_objects"
    type = sa.Text()
    inherit_cache = True


@compiles(json_objects, "sqlite")
def _json_objects_sqlite(element, compiler, **kw):
    return f"json_group_array(json_object({compiler.process(element.clauses, **kw)}))"


@compiles(json_objects, "postgresql")
def _json_objects_postgresql(element, compiler, **kw):
    return f"cast(json_agg(json_build_object({compiler.process(element.clauses, **kw)})) as text)"


METAFIELD_FIELDS = ("namespace", "key", "value", "value_type", "is_list", "_updated_at")


def _metafields_of_client(c) -> sa.ScalarSelect:
    """The client's active metafields (of its SHOPPER record) as JSON text: a subquery correlated
    to each client row, found by the metafields' primary key (brand, owner type, the owner_ref's
    key copy, which a Shopper's is unfolded: shopper_refs keep their case)."""
    m = ENTITY_TABLES["metafields"].c
    pairs = [x for name in METAFIELD_FIELDS for x in (sa.cast(sa.literal(name), sa.Text), m[name])]
    return (sa.select(json_objects(*pairs))
            .where(m.brand == c.brand, m.owner_type == "Shopper", m._owner_ref_key == c.shopper_ref, m.active.is_(True))
            .scalar_subquery())


def _metafields(text: str | None) -> list[dict[str, Any]]:
    """The client's metafields as the Platform API lists them: the value as sent, `json_value`
    typed, ordered by namespace and key."""
    out = []
    for m in sorted(json.loads(text) if text else [], key=lambda m: (m["namespace"], m["key"])):
        is_list = bool(m["is_list"])
        out.append({"namespace": m["namespace"], "key": m["key"], "value": m["value"], "value_type": m["value_type"],
                    "is_list": is_list, "json_value": json_value(m["value_type"], is_list, m["value"]),
                    "updated_at": iso(datetime.fromisoformat(m["_updated_at"]))})
    return out


def _clients(brand: str) -> sa.Select:
    associates, stores = ENTITY_TABLES["sales_associates"], ENTITY_TABLES["stores"]
    c = clients.c
    return (
        sa.select(
            clients,
            c.id.label("_id"), c.updated_at.label("_updated_at"),
            (associates.c.first_name + " " + associates.c.last_name).label("_associate_name"),
            stores.c.name.label("_store_name"),
            _metafields_of_client(c).label("_metafields"),
        )
        .select_from(
            clients.outerjoin(associates, sa.and_(associates.c.brand == c.brand,
                                                  associates.c.sales_associate_ref == c.sales_associate_ref))
            .outerjoin(stores, sa.and_(stores.c.brand == c.brand, stores.c.store_ref == c.store_ref))
        )
        .where(c.brand == brand)
    )


def _client(row: dict[str, Any]) -> dict[str, Any]:
    name = " ".join(p for p in (row["first_name"], row["last_name"]) if p) or None
    opt_out = bool(row["do_not_contact"])
    return {
        "id": row["id"],
        "client_id": row["shopper_ref"],
        "current_sales_associate_id": row["sales_associate_ref"],
        "current_sales_associate_name": row["_associate_name"],
        "current_store_id": row["store_ref"],
        "current_store_name": row["_store_name"],
        "name": name,
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "email": row["email"],
        "mobile_phone": row["mobile_phone"],
        "other_phone": row["other_phone"],
        "birthday": iso(row["birthday"]),
        "gender": row["gender"],
        "nationality": row["nationality"],
        "passport_number": row["passport_number"],
        "language": row["languages"],
        "title": row["title"],
        "address": row["address"] or "",
        "addresses": [{
            "address": row["address"], "address_2": row["address_2"], "address_3": row["address_3"],
            "address_4": row["address_4"], "city": row["city"], "state": row["state"], "zip": row["zip_code"],
            "country_code": row["country_code"],
        }] if any(row[k] for k in ("address", "city", "zip_code", "country_code")) else [],
        "preferred_contact_channel": row["preferred_contact_channel"],
        "communication_preferences": {
            "chat_opt_in": bool(row["chat_contact"]), "email_opt_in": bool(row["email_contact"]),
            "phone_opt_in": bool(row["phone_call_contact"]),
            "whatsapp_opt_in": row["preferred_contact_channel"] == "whatsapp" and not opt_out,
            "wechat_opt_in": row["preferred_contact_channel"] == "wechat" and not opt_out,
            "line_opt_in": row["preferred_contact_channel"] == "line" and not opt_out,
            "opt_out": opt_out,
        },
        "preferences": _split(row["preferences"]),
        "interests": [],
        "preferred_journey": None,
        "segment": row["segment"],
        "referred_by_client_id": None,
        "referred_at": None,
        "consent": not opt_out and bool(row["email_contact"] or row["phone_call_contact"] or row["chat_contact"]),
        "notify_of_new_collection": bool(row["interested_in_new_products"]),
        "metafields": _metafields(row["_metafields"]),
        **_shape_times(row, "last_contacted_at", "created_at", "updated_at", "deleted_at"),
    }


# --- activity ------------------------------------------------------------------------------

def _activity(name: str, shape: Callable[[dict[str, Any]], dict[str, Any]], client_column: str | None = "client_id",
              paginated: bool = True) -> View:
    """The view of one kind of the associates' activity: its table's rows, one for one."""
    table = ACTIVITY_TABLES[name]

    def query(brand: str) -> sa.Select:
        return sa.select(table, table.c.id.label("_id"), table.c.updated_at.label("_updated_at")).where(table.c.brand == brand)

    return View(name, query, shape, client_column, "sales_associate_id", paginated, table)


ACTOR = ("store_id", "store_name", "sales_associate_id", "sales_associate_name")
ABOUT = (*ACTOR, "client_id", "client_name")


def _pick(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {n: row[n] for n in names}


def _call(row):
    return {"id": row["id"], **_pick(row, ABOUT), "to": row["to"], **_shape_times(row, "created_at", "updated_at")}


def _message(row):
    return {"id": row["id"], **_pick(row, ABOUT), **_pick(row, ("body", "channel", "template_id", "template_name", "slice_id")),
            "media": _json_list(row["media"]), **_shape_times(row, "created_at", "updated_at")}


def _email(row):
    return {"id": row["id"], **_pick(row, ABOUT), **_pick(row, ("template_id", "template_name", "slice_id")),
            "media": _json_list(row["media"]), **_shape_times(row, "created_at", "updated_at")}


def _note(row):
    return {"id": row["id"], **_pick(row, ABOUT), "body": row["body"], "media": _json_list(row["media"]),
            **_shape_times(row, "created_at", "updated_at")}


def _slot(row):
    return {"id": row["id"], **_pick(row, ABOUT), "title": row["title"], "body": row["body"],
            **_shape_times(row, "starts_at", "ends_at"), "is_done": bool(row["is_done"]),
            "is_done_at": iso(row["is_done_at"]), "notes": row["notes"], **_shape_times(row, "created_at", "updated_at")}


def _slice(row):
    return {"id": row["id"], "store_id": row["store_id"], "store_name": row["store_name"],
            "created_by_sales_associate_id": row["sales_associate_id"],
            "created_by_sales_associate_name": row["sales_associate_name"], "title": row["title"], "body": row["body"],
            "item_ids": _json_list(row["item_ids"]), **_shape_times(row, "created_at", "updated_at")}


def _ideabook_action(row):
    return {"id": row["id"], **_pick(row, ABOUT), **_pick(row, ("ideabook_id", "action", "item_id")),
            **_shape_times(row, "created_at", "updated_at")}


# --- associates ----------------------------------------------------------------------------

def _associates(brand: str) -> sa.Select:
    a, p = ENTITY_TABLES["sales_associates"], associate_profiles
    updated = sa.case((p.c.updated_at > a.c._updated_at, p.c.updated_at), else_=a.c._updated_at)
    return (
        sa.select(*[a.c[n] for n in a.c.keys() if not n.startswith("_")], *[p.c[n] for n in p.c.keys() if n not in ("brand", "sales_associate_ref", "created_at", "updated_at")],
                  a.c.sales_associate_ref.label("_id"), updated.label("_updated_at"),
                  sa.func.coalesce(p.c.created_at, a.c._updated_at).label("_created_at"))
        .select_from(a.outerjoin(p, sa.and_(p.c.brand == a.c.brand, p.c.sales_associate_ref == a.c.sales_associate_ref)))
        .where(a.c.brand == brand)
    )


def _associate(row):
    return {
        "associate_id": row["sales_associate_ref"], "associate_id_2": row["associate_id_2"],
        "sales_associate_name": f"{row['first_name']} {row['last_name']}", "username": row["username"],
        "email": row["email"], "mobile_phone": row["mobile_phone"], "job_title": row["job_title"],
        "current_store_id": row["store_ref"],
        **{f: bool(row[f]) for f in ("imessage_enabled", "wechat_enabled", "line_enabled", "adyen_enabled")},
        "wechat_code": row["wechat_code"], "active": bool(row["active"]),
        "created_at": iso(row["_created_at"]), "updated_at": iso(row["_updated_at"]),
    }


VIEWS: dict[str, View] = {v.name: v for v in (
    View("clients", _clients, _client, "shopper_ref", "sales_associate_ref", table=clients),
    _activity("calls", _call),
    _activity("messages", _message),
    _activity("emails", _email),
    _activity("notes", _note),
    _activity("appointments", _slot),
    _activity("reminders", _slot),
    _activity("slices", _slice, client_column=None),
    View("sales_associates", _associates, _associate, None, "sales_associate_ref"),
    _activity("ideabook_actions", _ideabook_action, paginated=False),
)}
