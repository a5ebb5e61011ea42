"""Shared fixtures: a real SQLite file and a real PostgreSQL schema for every warehouse test."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.entities import ENTITIES
from bspk_pipelines.ingest.drop import classify
from bspk_pipelines.ingest.parse import FileFailure
from bspk_pipelines.ingest.months import pending, rebuild_month
from bspk_pipelines.ingest.apply import apply_pending
from bspk_pipelines.ingest.check import validate_file
from bspk_pipelines.ingest.contribute import map_file
from bspk_pipelines.ingest.land import land
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.warehouse.apply import Counts
from bspk_pipelines.warehouse.engine import engine_for

POSTGRES_URL = os.environ.get("BSPK_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


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


@pytest.fixture(autouse=True, scope="session")
def webhook_settings() -> Iterator[None]:
    """The deployment's webhook settings, as `make demo` sets them: a key that encrypts stored
    signing secrets, and receivers on 127.0.0.1 (the tests' own) allowed."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BSPK_WEBHOOK_ENCRYPTION_KEYS", Fernet.generate_key().decode())
        env.setenv("BSPK_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
        yield


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty warehouse: a SQLite file, or a schema of its own in the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
        return
    url = postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        from bspk_pipelines.warehouse.engine import engine_for as cached

        cached.cache_clear()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(warehouse_url) -> sa.Engine:
    return engine_for(warehouse_url)


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

    def ingest(self, name: str, source: str = "main") -> dict:
        """Land, validate, map and apply one dropped file; returns what the `files` table says."""
        delivery = classify(self.brand, source, name)
        land(self.engine, self.layout, self.brand, delivery)
        try:
            validate_file(self.engine, self.layout, self.brand, source, delivery.entity, name)
        except FileFailure:
            return self.file(name, source)
        map_file(self.engine, self.layout, self.brand, source, delivery.entity, name)
        if not ENTITIES[delivery.entity].month_column:
            apply_pending(self.engine, self.layout, self.brand, delivery.entity)
        self.rebuild_pending_months()
        return self.file(name, source)

    def rebuild_pending_months(self) -> dict[str, Counts]:
        """What the month runs the sensor requests would do: rebuild every pending month."""
        done = {}
        for entity in ENTITIES.values():
            if entity.month_column:
                for month, _ in pending(self.engine, self.brand.brand, entity.name):
                    done[month] = rebuild_month(self.engine, self.layout.data_dir, self.brand.brand, entity.name, month)
        return done

    def file(self, name: str, source: str = "main") -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(sa.text("select * from files where brand=:b and source=:s and name=:n"),
                               {"b": self.brand.brand, "s": source, "n": name}).mappings().first()
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


@pytest.fixture
def harness(engine, tmp_path) -> Harness:
    return Harness(Brand.model_validate(NATIVE), Layout(tmp_path / "data"), engine)


def brand_harness(config: dict, engine: sa.Engine, tmp_path: Path) -> Harness:
    return Harness(Brand.model_validate(config), Layout(tmp_path / "data"), engine)


def tick(defs, sensor: str, cursor: str | None = None, instance=None):
    """One evaluation of the named sensor of `defs`, as the daemon would run it."""
    import dagster as dg

    with dg.build_sensor_context(cursor=cursor, instance=instance, resources=defs.resources) as context:
        return defs.resolve_sensor_def(sensor)(context)


def pytest_sessionfinish(session, exitstatus):
    """In CI, a run in which no PostgreSQL test passed is a failure, whatever else passed."""
    # Dagster's SQLite event log leaves a connection in a reference cycle when store_event meets an
    # IntegrityError; collected at interpreter exit, after its database closed, it would log
    # "Cannot operate on a closed database". Collect such cycles while everything is still open.
    gc.collect()
    if not IN_CI or exitstatus != 0 or getattr(session.config, "workerinput", None) is not None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = [r.nodeid for r in (reporter.stats.get("passed", []) if reporter else [])]
    if not any("postgres" in nodeid for nodeid in passed):
        print("\nCI: no PostgreSQL test ran; PostgreSQL tests must run in CI", flush=True)
        session.exitstatus = 1
