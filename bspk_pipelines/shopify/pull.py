"""Pulling a shop's objects into deliveries: what changed since the last pull, or everything
through a bulk operation for the first load and backfills.

Each pull of an object writes one JSONL file into the source's drop folder (`Layout.drop`), and
from there it takes the path of any file: the drop sensor (or `bspk sync`) lands it, checks it
against the built-in mapping (`model.shopify`), merges it by precedence and applies it. A file
holds the shop's node on its first line (its currency), then one node per line as Shopify's bulk
operations write them: nested connections' nodes on lines of their own with `__parentId`. A
paginated pull writes the same lines, so the check reads both alike.

Where each object stands is the `pulls` table. An incremental pull asks for the nodes updated in
[watermark, until), `until` being the shop's own clock (its Date header) less `SETTLE`, so
successive windows tile time: a node updated at a page boundary or in the same second as another
is in exactly one window, and the pagination within a window is Shopify's cursor over
(updatedAt, id). A bulk load takes everything, then the windows go on from its start. Nodes
updated while a bulk runs are in both, which applies as unchanged. Locations have no confirmed
`updated_at` filter: they are read whole, and delivered when the snapshot differs from the last.

The watermark moves only once the file is in the drop folder: a pull that fails midway writes
nothing and the next starts from the same place. A failed or expired bulk operation is reported
and its partial data never delivered.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import requests
import sqlalchemy as sa

from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.shopify import STAMP, ShopifySource, delivery_name
from bspk_pipelines.shopify import queries
from bspk_pipelines.shopify.client import TIMEOUT_SECONDS, Client, ShopifyError
from bspk_pipelines.shopify.records import updated_since
from bspk_pipelines.warehouse.engine import writing
from bspk_pipelines.warehouse.locks import brand_lock
from bspk_pipelines.warehouse.schema import pulls

# How far behind the shop's clock a window ends: a node updated this recently may not be found by
# search yet, and is left to the next window.
SETTLE = timedelta(seconds=2)
# How far before its watermark each window looks again: a change Shopify's search found late
# (after the window that should have held it) is still found. Nodes already delivered as they
# are (same id, same updatedAt) are not delivered again (`pulls.recent`).
OVERLAP = timedelta(minutes=1)
POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 0.2, 5.0
# A bulk operation may run for days on a large shop (Shopify allows 10); a pull waits this long.
BULK_WAIT = timedelta(hours=24)
DONE, FAILED = "COMPLETED", ("FAILED", "CANCELED", "CANCELING", "EXPIRED")


@dataclass
class Pulled:
    """What one object's pull did."""

    obj: str
    how: str  # pull, bulk, snapshot
    nodes: int = 0  # root nodes (customers, products, orders, locations)
    lines: int = 0  # every line of the delivery but the shop's: the roots and their children
    delivery: str | None = None  # the file written into the drop folder; None when nothing changed
    since: str | None = None
    until: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    digest: str | None = None  # of a snapshot's lines
    # Of an incremental pull: the nodes delivered within OVERLAP of its window's end, {id: updatedAt}.
    recent: dict[str, str] | None = None

    def __str__(self) -> str:
        window = f"since {self.since}" if self.since else "everything"
        got = f"{self.nodes} {self.obj} ({self.lines} lines) -> {self.delivery}" if self.delivery else f"no {self.obj} changed"
        return f"{self.obj}: {self.how} of {window}: {got} in {self.seconds:.1f} s"


def pull_source(engine: sa.Engine, layout: Layout, brand: Brand, source_id: str, *, full: bool = False,
                objects: list[str] | None = None, client: Client | None = None,
                sleep: Callable[[float], None] = time.sleep) -> tuple[list[Pulled], Client]:
    """Pull each object of the source (or those given): incrementally, or through a bulk operation
    where the object was never pulled or `full` asks (a backfill). One pull of a source at a time."""
    source = brand.sources[source_id]
    if not isinstance(source, ShopifySource):
        raise ShopifyError(f"{source_id}: a {source.format} source is not pulled: its files arrive in its drop folder")
    client = client or Client.of(source_id, source)
    client.sleep = sleep
    drop = layout.drop(brand, source_id)
    drop.mkdir(parents=True, exist_ok=True)
    done = []
    with brand_lock(engine, f"{brand.brand}.{source_id}.pull"):
        for stale in drop.glob("*.jsonl.part"):  # a pull killed while writing: under the lock, no pull writes it
            stale.unlink(missing_ok=True)
        shop = client.query(queries.SHOP, cost=1)["shop"]
        for obj in objects or source.objects:
            started = time.monotonic()
            with engine.connect() as conn:
                state = conn.execute(sa.select(pulls).where(pulls.c.brand == brand.brand, pulls.c.source == source_id,
                                                            pulls.c.object == obj)).mappings().first()
            until = _window_end(client)
            if obj not in queries.INCREMENTAL:
                result = _snapshot(client, drop, shop, obj, state)
            elif full or state is None or state["watermark"] is None:
                result = _bulk(client, drop, shop, obj, until, sleep)
            else:
                result = _window(client, drop, shop, obj, state["watermark"], until, json.loads(state["recent"] or "{}"))
            # A shop's clock that went back (or a window not yet begun) never moves the watermark back.
            result.until = max(until, result.since or until) if obj in queries.INCREMENTAL else None
            if obj == "orders":
                result.notes += _order_window(client)
            result.seconds = time.monotonic() - started
            _advance(engine, brand.brand, source_id, result, state)
            done.append(result)
    return done, client


def _window_end(client: Client) -> str:
    now = client.server_time or datetime.now(timezone.utc)
    return _iso((now - SETTLE).replace(microsecond=0))


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _advance(engine: sa.Engine, brand: str, source_id: str, result: Pulled, state) -> None:
    values = {"pulled_at": datetime.now(timezone.utc).replace(tzinfo=None)}
    if result.until:
        values["watermark"] = result.until
    if result.delivery:
        values["delivery"] = result.delivery
    if result.digest:
        values["digest"] = result.digest
    if result.recent is not None or result.how == "bulk":
        values["recent"] = json.dumps(result.recent or {}, sort_keys=True)
    with writing(engine) as conn:
        key = (pulls.c.brand == brand, pulls.c.source == source_id, pulls.c.object == result.obj)
        if state is None:
            conn.execute(pulls.insert().values(brand=brand, source=source_id, object=result.obj, **values))
        else:
            conn.execute(pulls.update().where(*key).values(**values))


@dataclass
class _Writing:
    out: IO[bytes]
    name: str
    keep: bool = False  # set when the delivery holds what should be delivered


@contextmanager
def _delivery(drop: Path, shop: dict[str, Any], result: Pulled, digest=None) -> Iterator[_Writing]:
    """A delivery being written, the shop's node on its first line: under a `.part` name the
    drop folder ignores, renamed into place (`result.delivery`) with its `.done` marker when the
    block ends with `keep` set, removed otherwise. With `digest`, what is written after the shop's line feeds it."""
    name = delivery_name(result.obj, "bulk" if result.how == "bulk" else "pull",
                         datetime.now(timezone.utc).strftime(STAMP))
    part = drop / f"{name}.part"
    try:
        with part.open("wb") as f:
            f.write(_line(shop))
            writing = _Writing(_Digesting(f, digest) if digest else f, name)
            yield writing
            f.flush()
            os.fsync(f.fileno())
        if writing.keep:
            os.replace(part, drop / name)
            # Whole from the start: its `.done` marker lets the drop sensor take it at its first look.
            (drop / f"{name}.done").touch()
            result.delivery = name
    finally:
        part.unlink(missing_ok=True)


def _line(node: dict[str, Any]) -> bytes:
    return json.dumps(node, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _nodes(client: Client, obj: str, search: str | None) -> Iterator[dict[str, Any]]:
    """The object's nodes, page by page, each with its nested connections read to the end."""
    root, _, children = queries.OBJECTS[obj]
    cursor = None
    while True:
        variables = {"cursor": cursor, **({"q": search} if obj in queries.INCREMENTAL else {})}
        page = client.query(queries.page_query(obj), variables, cost=queries.requested_cost(obj))[root]
        for node in page["nodes"]:
            for name, _, _ in children:
                connection = node[name]
                while connection["pageInfo"]["hasNextPage"]:
                    more = client.query(queries.child_page_query(obj, name),
                                        {"id": node["id"], "cursor": connection["pageInfo"]["endCursor"]})["node"][name]
                    connection = {"nodes": connection["nodes"] + more["nodes"], "pageInfo": more["pageInfo"]}
                node[name] = connection
            yield node
        if not page["pageInfo"]["hasNextPage"]:
            return
        cursor = page["pageInfo"]["endCursor"]


def _write_nodes(out: IO[bytes], obj: str, nodes: Iterator[dict[str, Any]], result: Pulled) -> None:
    """Each node on a line, then its nested connections' nodes on lines of their own, as a bulk
    operation writes them."""
    _, _, children = queries.OBJECTS[obj]
    names = [name for name, _, _ in children]
    for node in nodes:
        out.write(_line({k: v for k, v in node.items() if k not in names}))
        result.nodes += 1
        result.lines += 1
        for name in names:
            for child in node[name]["nodes"]:
                out.write(_line({**child, "__parentId": node["id"]}))
                result.lines += 1


def _window(client: Client, drop: Path, shop: dict[str, Any], obj: str, since: str, until: str,
            recent: dict[str, str]) -> Pulled:
    """The nodes updated in [since, until), and those before `since` within OVERLAP that were
    not delivered as they are now."""
    result = Pulled(obj, "pull", since=since, recent=recent)
    if until <= since:
        return result
    search = f"{queries.since(_iso(_parsed(since) - OVERLAP))} AND updated_at:<'{until}'"
    delivered: dict[str, str] = {}

    def new(nodes: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for node in nodes:
            if recent.get(node["id"]) != node["updatedAt"]:
                delivered[node["id"]] = node["updatedAt"]
                yield node

    with _delivery(drop, shop, result) as writing:
        _write_nodes(writing.out, obj, new(_nodes(client, obj, search)), result)
        writing.keep = result.nodes > 0
    horizon = _iso(_parsed(until) - OVERLAP)
    result.recent = {i: t for i, t in {**recent, **delivered}.items() if t >= horizon}
    return result


def _parsed(iso: str) -> datetime:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _snapshot(client: Client, drop: Path, shop: dict[str, Any], obj: str, state) -> Pulled:
    """The object read whole; delivered only when it differs from the last snapshot."""
    result = Pulled(obj, "snapshot")
    digest = hashlib.sha256()
    with _delivery(drop, shop, result, digest) as writing:
        _write_nodes(writing.out, obj, _nodes(client, obj, None), result)
        result.digest = digest.hexdigest()
        writing.keep = result.nodes > 0 and (state is None or state["digest"] != result.digest)
    return result


class _Digesting:
    """A file that also feeds what it is given to a digest."""

    def __init__(self, out: IO[bytes], digest):
        self.out, self.digest = out, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.out.write(data)


def _bulk(client: Client, drop: Path, shop: dict[str, Any], obj: str, until: str,
          sleep: Callable[[float], None]) -> Pulled:
    """Every node of the object through a bulk operation: run, polled until it ends, its JSONL
    streamed to the delivery as it downloads (memory stays flat whatever the shop's size)."""
    result = Pulled(obj, "bulk")
    started = client.query(queries.BULK_RUN, {"query": queries.bulk_query(obj, None)})["bulkOperationRunQuery"]
    if started.get("userErrors"):
        raise ShopifyError(f"{client.source_id}: {client.source.shop} would not start a bulk operation of {obj}: "
                           + "; ".join(e.get("message", "") for e in started["userErrors"]))
    op_id = started["bulkOperation"]["id"]
    op = _finished(client, op_id, obj, sleep)
    with _delivery(drop, shop, result) as writing:
        if op.get("url"):
            result.lines = _download(client, op["url"], writing.out)
        expected = int(op.get("objectCount") or 0)
        if result.lines != expected:
            raise ShopifyError(f"{client.source_id}: the bulk operation {op_id} of {obj} counted {expected} objects "
                               f"but its file held {result.lines} lines; nothing was applied: run the backfill again")
        result.nodes = int(op.get("rootObjectCount") or 0)
        writing.keep = result.lines > 0
    if result.delivery:  # what the next window, looking back over OVERLAP, need not deliver again
        result.recent = updated_since(drop / result.delivery, _iso(_parsed(until) - OVERLAP))
    return result


def _finished(client: Client, op_id: str, obj: str, sleep: Callable[[float], None]) -> dict[str, Any]:
    """The bulk operation once it has ended well; ShopifyError naming how it ended otherwise."""
    wait, deadline = POLL_FIRST_SECONDS, time.monotonic() + BULK_WAIT.total_seconds()
    while True:
        op = client.query(queries.BULK_STATUS, {"id": op_id}, cost=1)["node"]
        if op["status"] == DONE:
            return op
        if op["status"] in FAILED:
            code = f" ({op['errorCode']})" if op.get("errorCode") else ""
            raise ShopifyError(f"{client.source_id}: the bulk operation {op_id} of {obj} ended {op['status']}{code}; "
                               "nothing was applied, partial results are not used: run the pull or backfill again")
        if time.monotonic() > deadline:
            raise ShopifyError(f"{client.source_id}: the bulk operation {op_id} of {obj} is still {op['status']} after "
                               f"{BULK_WAIT}; nothing was applied: see it in the shop's admin, then run again")
        sleep(wait)
        wait = min(wait * 1.5, POLL_MAX_SECONDS)


def _download(client: Client, url: str, out: IO[bytes]) -> int:
    """The bulk operation's JSONL appended to `out` as it arrives; its number of lines. The URL
    is signed: no token goes with it."""
    lines, last = 0, b"\n"
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT_SECONDS) as r:
            r.raise_for_status()
            for chunk in r.iter_content(1 << 20):
                out.write(chunk)
                lines += chunk.count(b"\n")
                last = chunk[-1:] or last
    except requests.RequestException as e:
        status = f"HTTP {e.response.status_code}" if e.response is not None else type(e).__name__
        raise ShopifyError(f"{client.source_id}: the bulk operation's file could not be downloaded ({status}; its URL "
                           "lasts 7 days); nothing was applied: run again") from None
    if last != b"\n":
        out.write(b"\n")
        lines += 1
    return lines


def _order_window(client: Client) -> list[str]:
    """Shopify shows an app the last 60 days of orders unless it holds `read_all_orders`."""
    scopes = client.query(queries.SCOPES, cost=2)["currentAppInstallation"]["accessScopes"]
    if any(s["handle"] == "read_all_orders" for s in scopes):
        return []
    return [f"the token lacks the read_all_orders scope, so {client.source.shop} shows only the last 60 days of orders: "
            "older orders are not pulled; grant read_all_orders to the app and run "
            f"`bspk backfill --source {client.source_id}` to load the whole history"]
