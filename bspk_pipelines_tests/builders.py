"""Plain helpers the tests share: the test PostgreSQL, the platform's files, a brand run step by
step (`Harness`), sample files, the REST API's world of two brands, and a scriptable webhook
receiver. The fixtures built on them are in conftest.py."""

from __future__ import annotations

import base64
import json
import os
import secrets as secrets_module
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bspk_pipelines.api.app import create_app
from bspk_pipelines.api.keys import create_key
from bspk_pipelines.defs import names
from bspk_pipelines.defs.ingest.sensors import load_cursor, plan_runs
from bspk_pipelines.engagement.activity import Platform
from bspk_pipelines.ingest.apply import apply_pending
from bspk_pipelines.ingest.check import validate_file
from bspk_pipelines.ingest.contribute import map_file
from bspk_pipelines.ingest.drop import classify
from bspk_pipelines.ingest.land import land
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.ingest.months import pending, rebuild_month
from bspk_pipelines.ingest.parse import FileFailure
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.entities import ENTITIES
from bspk_pipelines.outbound.events import client_key, enqueue
from bspk_pipelines.outbound.views import VIEWS
from bspk_pipelines.settings import ApiSettings
from bspk_pipelines.warehouse.apply import Counts
from bspk_pipelines.warehouse.platform import webhook_deliveries
from bspk_pipelines.warehouse.schema import FOLDED_KEYS, ExactDecimal, metadata
from bspk_pipelines.warehouse.engine import writing

# --- the test PostgreSQL -------------------------------------------------------------------------

POSTGRES_URL = os.environ.get("BSPK_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def needed(what: str) -> None:
    """Something a test needs is not here: a failure in CI (`.ci/run` installs and starts all of
    it, and CI must not skip a test), a skip on a laptop."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI (.ci/run installs it)")
    pytest.skip(f"{what} is not installed")


def postgres_or_skip() -> str:
    """The test PostgreSQL URL; a skip on a laptop without it, a failure in CI."""
    url = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg2://", 1)
    try:
        with sa.create_engine(url).connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError as e:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and is not reachable at {url}: {e}")
        pytest.skip(f"PostgreSQL not reachable at {url}")
    return url


@contextmanager
def statements_sent(engine: sa.Engine, naming: str = "") -> Iterator[list[tuple[str, object]]]:
    """The SQL statements `engine` sends inside the block, with their parameters (those whose text
    holds `naming`, if given)."""
    sent: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if naming in statement:
            sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


# --- the platform's files and a brand run step by step -------------------------------------------


def header(entity: str, *extra: str) -> str:
    """The header line of a platform-format file of `entity` (plus `extra` columns)."""
    return ",".join([c.header or c.name for c in ENTITIES[entity].columns if c.in_header] + list(extra)) + "\n"


# Header lines of the platform's files, as the tests write them.
STORE, SHOPPER, ADDRESS, PRODUCT, VARIANTS, PRICES, INVENTORY, IMAGES, SALE = (
    header(e) for e in ("stores", "shoppers", "shopper_addresses", "products", "product_variants", "product_prices",
                        "product_inventory", "product_images", "sales")
)

NATIVE = {"brand": "acme", "company_name": "Acme", "sources": {"main": {"format": "bspk", "drop": "drop/acme"}}}


@dataclass
class Harness:
    """A brand with a drop folder and a warehouse, and the four steps run as the assets run them."""

    brand: Brand
    layout: Layout
    engine: sa.Engine

    def drop(self, name: str, content: str | bytes, source: str = "main") -> Path:
        folder = self.layout.drop(self.brand, source)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def contribute(self, name: str, source: str = "main") -> tuple[str, ...]:
        """Land, validate and map one dropped file for each entity it feeds, as its run does (the
        first FileFailure raised once every entity was tried, as a run's other steps go on); returns
        those entities. Sales go on into the month store."""
        delivery = classify(self.brand, source, name)
        land(self.engine, self.layout, self.brand, delivery)
        failure = None
        for entity in delivery.entities:
            try:
                validate_file(self.engine, self.layout, self.brand, source, entity, name)
            except FileFailure as e:
                failure = failure or e
                continue
            map_file(self.engine, self.layout, self.brand, source, entity, name)
        if failure:
            raise failure
        return delivery.entities

    def ingest(self, name: str, source: str = "main") -> dict:
        """Land, validate, map and apply one dropped file; returns what the `files` table says
        (of its first entity)."""
        entities = classify(self.brand, source, name).entities
        try:
            self.contribute(name, source)
        except FileFailure:
            pass
        for entity in entities:
            if not ENTITIES[entity].month_column:
                apply_pending(self.engine, self.layout, self.brand, entity)
        self.rebuild_pending_months()
        return self.file(name, source)

    def planned(self) -> list[str]:
        """The deliveries two looks at the drop folders would request runs for, as the sensor does."""
        first = plan_runs(self.brand, self.layout, self.engine, load_cursor(None))
        return [r.partition_key for r in plan_runs(self.brand, self.layout, self.engine, first.cursor).runs if r.partition_key]

    def rebuild_pending_months(self) -> dict[str, Counts]:
        """What the month runs the sensor requests would do: rebuild every pending month."""
        done = {}
        for entity in ENTITIES.values():
            if entity.month_column:
                for month, _ in pending(self.engine, self.brand.brand, entity.name):
                    done[month] = rebuild_month(self.engine, self.layout.data_dir, self.brand.brand, entity.name, month)
        return done

    def file(self, name: str, source: str = "main", entity: str | None = None) -> dict:
        """The delivery's `files` record of `entity` (default: its first, by entity name)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.text("select * from files where brand=:b and source=:s and name=:n "
                                       "and (:e is null or entity = :e) order by entity"),
                               {"b": self.brand.brand, "s": source, "n": name, "e": entity}).mappings().first()
        return dict(row) if row else {}

    def rows(self, table: str, order_by: str = "1") -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(f"select * from {table} where brand=:b order by {order_by}"),
                                                   {"b": self.brand.brand}).mappings()]

    def rejects(self, name: str) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                'select line, "column", value, rule from rejects where brand=:b and file=:f order by line, "column"'),
                {"b": self.brand.brand, "f": name})]



def brand_harness(config: dict, engine: sa.Engine, tmp_path: Path) -> Harness:
    return Harness(Brand.model_validate(config), Layout(tmp_path / "data"), engine)


def tick(defs, sensor: str, cursor: str | None = None, instance=None):
    """One evaluation of the named sensor of `defs`, as the daemon would run it."""
    import dagster as dg

    with dg.build_sensor_context(cursor=cursor, instance=instance, resources=defs.resources) as context:
        return defs.resolve_sensor_def(sensor)(context)


def older_schema(inexact_decimals: bool = False) -> sa.MetaData:
    """The warehouse's tables as schema version 2 made them (version 1 with `inexact_decimals`,
    its decimals NUMERIC(20, 6)): product_ref and sku, lower-cased, in the primary key themselves,
    no folded copies; `files` keyed by brand, source and name, its entity null where none."""
    old = sa.MetaData()
    for table in metadata.sorted_tables:
        folded = FOLDED_KEYS.get(table.name, {})
        if table.name == "files":
            copy = sa.Table(table.name, old, *[
                sa.Column(c.name, c.type, primary_key=c.primary_key and c.name != "entity",
                          nullable=c.nullable or c.name == "entity") for c in table.columns])
            for index in table.indexes:
                sa.Index(index.name, *[copy.c[c.name] for c in index.columns])
        elif not folded:
            copy = table.to_metadata(old)
        else:
            copy = sa.Table(table.name, old, *[
                sa.Column(c.name, c.type, primary_key=c.primary_key or c.name in folded.values(), nullable=c.nullable)
                for c in table.columns if c.name not in folded])
            for index in table.indexes:
                sa.Index(index.name, *[copy.c[c.name] for c in index.columns])
        for column in copy.columns:
            if inexact_decimals and isinstance(column.type, ExactDecimal):
                column.type = sa.Numeric(20, 6, asdecimal=False)
    return old


# --- sample files --------------------------------------------------------------------------------

# Two shoppers (S2's country XX is rejected) and one product, as the Dagster tests drop them.
TWO_SHOPPERS = (
    "shopper_ref,first_name,last_name,alternate_first_name,alternate_last_name,gender,email,title,mobile_phone,"
    "other_phone,address,address_2,address_3,address_4,city,state,zip_code,country_code,preferences,"
    "preferred_contact_channel,nationality,languages,email_contact,phone_call_contact\n"
    "S1,Marie,Curie,,,F,marie@example.com,,+33612345678,,,,,,Paris,,,FR,,email,FR,fr,TRUE,FALSE\n"
    "S2,Pierre,Curie,,,M,pierre@example.com,,+33612345679,,,,,,Paris,,,XX,,,,,TRUE,FALSE\n"
)
ONE_PRODUCT = "product_ref,name,description,categories,language_code,brand,published\nP1,Jacket,,Coats,en,Acme,TRUE\n"
DROP_SENSOR = names.DROP_SENSOR

# Sales history: three shoppers, two products, and sales over several months from 2024-01.
THREE_SHOPPERS = header("shoppers") + "".join(f"S{i},F{i},L{i},,,F,,,,,,,,,,,,FR,,,,,TRUE,FALSE\n" for i in range(1, 4))
TWO_PRODUCTS = header("products") + "P1,Bag,,,en,,TRUE\nP2,Belt,,,en,,TRUE\n"
HISTORY = [  # (sale_ref, product, created_at, shopper)
    ("T1", "P1", "2024-01-05T10:00:00", "S1"), ("T2", "P2", "2024-01-20T10:00:00", "S2"),
    ("T3", "P1", "2024-02-03T10:00:00", "S1"), ("T4", "P1", "2024-03-09T10:00:00", "S3"),
    ("T5", "P2", "2024-03-30T23:59:59", "S2"), ("T6", "P1", "2024-05-01T00:00:00", "S3"),
]
HISTORY_CONFIG = {**NATIVE, "history_start": "2023-11"}


def sales_file(rows, price="10.00") -> str:
    return header("sales") + "".join(f"{s},{p},1,{price},EUR,{at},,{who},,\n" for s, p, at, who in rows)


def loaded(engine, tmp_path, name="acme", history=HISTORY):
    """A brand whose shoppers and products are applied and whose sales file is dropped, not yet ingested."""
    h = brand_harness({**HISTORY_CONFIG, "brand": name}, engine, tmp_path / name)
    h.drop("SHOPPER_V3_Acme_202401010000.csv", THREE_SHOPPERS)
    h.drop("PRODUCT_V2_Acme_202401010000.csv", TWO_PRODUCTS)
    h.ingest("SHOPPER_V3_Acme_202401010000.csv")
    h.ingest("PRODUCT_V2_Acme_202401010000.csv")
    h.drop("SALE_V2_Acme_202406010000.csv", sales_file(history))
    return h


# --- the REST API's world ------------------------------------------------------------------------

ASSOCIATE = header("sales_associates")
BASE = datetime(2025, 3, 1, 9, 0)


def shopper_row(ref: str, first: str = "Marie", email: str = "a@example.com") -> str:
    return f"{ref},{first},Curie,,,F,{email},,,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n"


def brand_config(brand: str, company: str) -> dict:
    return {"brand": brand, "company_name": company, "sources": {"main": {"format": "bspk", "drop": f"drop/{brand}"}}}


@dataclass
class World:
    """Two brands (acme, bravo) in one warehouse and data folder, each with a key, and the app."""

    engine: sa.Engine
    layout: Layout
    harness: dict[str, Harness]
    app: object
    client: TestClient
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    def auth(self, brand: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[brand]}"}

    def get(self, brand: str, path: str, **kwargs) -> httpx.Response:
        return self.client.get(path, headers={**self.auth(brand), **kwargs.pop("headers", {})}, **kwargs)

    def post(self, brand: str, path: str, **kwargs) -> httpx.Response:
        return self.client.post(path, headers={**self.auth(brand), **kwargs.pop("headers", {})}, **kwargs)

    def request(self, brand: str, method: str, path: str, **kwargs) -> httpx.Response:
        return self.client.request(method, path, headers={**self.auth(brand), **kwargs.pop("headers", {})}, **kwargs)

    def platform(self, brand: str, start: datetime = BASE) -> Platform:
        clock = iter(start + timedelta(minutes=i) for i in range(10_000))
        return Platform(self.engine, brand, clock=lambda: next(clock))


def make_world(engine: sa.Engine, tmp_path: Path, settings: ApiSettings | None = None, extra: list[Brand] = ()) -> World:
    layout = Layout(tmp_path / "data")
    harness = {b: Harness(Brand.model_validate(brand_config(b, c)), layout, engine)
               for b, c in (("acme", "Acme"), ("bravo", "Bravo"))}
    app = create_app(engine, [h.brand for h in harness.values()] + list(extra), layout.data_dir,
                     settings or ApiSettings(rate_limit=100_000))
    world = World(engine, layout, harness, app, TestClient(app, raise_server_exceptions=False))
    for brand in (*harness, *(b.brand for b in extra)):
        world.key_ids[brand], world.keys[brand] = create_key(engine, brand, f"{brand} tests")
    return world


def seed(world: World, brand: str, clients: tuple[str, ...], start: datetime = BASE,
         associates: tuple[str, str] = ("Jeanne,Lanvin", "Coco,Chanel")) -> Platform:
    """A store, two associates (SA1, SA2), the clients from a SHOPPER file, and one record of every activity."""
    h = world.harness[brand]
    company = h.brand.company_name
    for name, body in ((f"STORE_V2_{company}_202401010000.csv", STORE + "ST1,Saint Honore,,Paris,,,FR,EUR,,,,,TRUE\n"),
                       (f"SALES-ASSOCIATE_V2_{company}_202401010000.csv",
                        ASSOCIATE + f"SA1,{associates[0]},,,ST1,TRUE\nSA2,{associates[1]},,,ST1,TRUE\n"),
                       (f"SHOPPER_V3_{company}_202401010000.csv", SHOPPER + "".join(shopper_row(c) for c in clients))):
        h.drop(name, body)
        assert h.ingest(name)["status"] == "applied"
    platform = world.platform(brand, start)
    first, second = clients[0], clients[1]
    platform.log_call("SA1", first, to="+33612345678")
    platform.send_message("SA2", second, "Bonjour", "whatsapp", media=[{"url": "https://x/y.jpg"}])
    platform.send_email("SA1", first, template_id="T1", template_name="New season")
    platform.write_note("SA2", first, "Prefers silk")
    platform.book_appointment("SA1", second, "Fitting", BASE + timedelta(days=5))
    platform.set_reminder("SA2", first, "Call back", BASE + timedelta(days=6))
    platform.create_slice("SA1", "Winter picks", ["P1", "P2"])
    platform.ideabook_action("SA2", first, "IB1", "item_added", "P1")
    platform.set_associate_profile("SA1", username="jlanvin", job_title="Manager")
    return platform


def view_records(world: World, name: str, brand: str = "acme", **filters) -> list[dict]:
    with world.engine.connect() as conn:
        return json.loads(json.dumps([r for _, _, r in VIEWS[name].rows(conn, brand, **filters)]))


def url(name: str) -> str:
    return f"/api/extraction/v1/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app) -> Iterator[str]:
    """`app` on a real uvicorn server on 127.0.0.1, in a thread, until the block ends; its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- a scriptable webhook receiver ---------------------------------------------------------------


@dataclass
class Act:
    """What the receiver does with one request."""

    status: int = 200
    retry_after: str | None = None
    hang: float = 0.0  # seconds to sit on the request (after processing it) before answering


@dataclass
class Arrival:
    webhook_id: str
    event_name: str | None
    ref: str | None
    seq: int | None
    verified: bool
    status: int
    processed: bool  # the receiver acted on it (a 2xx, or a hang after processing)
    hung: bool
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server whose answers are scripted: `script` (consumed first), then `default`."""

    secrets: list[str]
    port: int = 0
    script: deque = field(default_factory=deque)
    default: Callable[[Arrival], Act] = lambda _arrival: Act()
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.handle(self, body)

        self.release.clear()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port is closed, connections are refused."""
        if self.server:
            self.release.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def verify(self, body: bytes, headers: dict[str, str], secret: str) -> bool:
        try:
            Webhook(secret).verify(body, headers)
            return True
        except WebhookVerificationError:
            return False

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = dict(handler.headers.items())
        verified = any(self.verify(body, headers, s) for s in self.secrets)
        try:
            envelope = json.loads(body)
            obj = envelope.get("object") or {}
            event_name, ref, seq = envelope.get("event_name"), obj.get("ref"), obj.get("seq")
        except ValueError:
            event_name = ref = seq = None
        probe = Arrival(headers.get("webhook-id", ""), event_name, ref, seq, verified, 0, False, False, headers, body)
        with self.lock:
            act = self.script.popleft() if self.script else self.default(probe)
            probe.status = act.status
            probe.processed = verified and (200 <= act.status < 300 or act.hang > 0)
            probe.hung = act.hang > 0
            self.arrivals.append(probe)
        if act.hang:
            self.release.wait(act.hang)
        try:
            handler.send_response(act.status)
            if act.retry_after:
                handler.send_header("Retry-After", act.retry_after)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")
        except OSError:
            pass  # the sender gave up waiting

    # What arrived, as the tests look at it.
    def processed(self) -> list[Arrival]:
        with self.lock:
            return [a for a in self.arrivals if a.processed]

    def unique(self) -> list[Arrival]:
        """Processed arrivals de-duplicated by webhook-id, first arrival kept."""
        seen, out = set(), []
        for a in self.processed():
            if a.webhook_id not in seen:
                seen.add(a.webhook_id)
                out.append(a)
        return out


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets_module.token_bytes(24)).decode()


class FakeClock:
    def __init__(self, start: datetime = datetime(2025, 3, 1, 9, 0)):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)



def new_brand(endpoints: list[dict], echo_imports: bool = False, bid: str | None = None) -> Brand:
    """A brand of its own for each test (fresh id), with these webhook endpoints."""
    bid = bid or "wh" + uuid.uuid4().hex[:10]
    return Brand.model_validate({
        "brand": bid, "company_name": "Acme", "sources": {"main": {"format": "bspk", "drop": f"drop/{bid}"}},
        "webhooks": {"endpoints": endpoints, "echo_imports": echo_imports},
    })


def emit(engine: sa.Engine, brand: Brand, ref: str, seq: int, at: datetime, name: str = "client.updated", **extra) -> str:
    with writing(engine) as conn:
        return enqueue(conn, brand.brand, name, client_key(ref), {"ref": ref, "external_id": ref, "seq": seq, **extra}, at)


def deliveries(engine: sa.Engine, brand: Brand) -> list[dict]:
    d = webhook_deliveries
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(d).where(d.c.brand == brand.brand).order_by(d.c.event_id, d.c.endpoint_id)).mappings()]
