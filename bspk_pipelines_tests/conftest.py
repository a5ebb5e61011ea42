"""Shared fixtures: a real SQLite file and a real PostgreSQL schema for every warehouse test, a brand
run step by step on it, the acme brand's Dagster definitions, the API's world. Plain helpers are in builders.py."""

from __future__ import annotations

import gc
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.warehouse.engine import engine_for
from bspk_pipelines_tests.builders import IN_CI, NATIVE, Harness, World, make_world, postgres_or_skip
from bspk_pipelines_tests.servers import s3, s3_server, sftp_server  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True, scope="session")
def webhook_settings() -> Iterator[None]:
    """The deployment's webhook settings, as `make demo` sets them: a key that encrypts stored
    signing secrets, and receivers on 127.0.0.1 (the tests' own) allowed."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BSPK_WEBHOOK_ENCRYPTION_KEYS", Fernet.generate_key().decode())
        env.setenv("BSPK_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
        yield


@pytest.fixture(autouse=True)
def no_instance_left_current() -> Iterator[None]:
    """`with instance:` makes the instance's definitions-state storage current, and Dagster 1.13's
    `__exit__` disposes the instance without leaving that context: a later test's `materialize`
    in the same worker would load its definitions against a disposed instance ("Attempted to
    resolve undefined DagsterInstance weakref"). Each test starts with none current, and leaves none,
    whatever set one between tests (a teardown that ran after this one's)."""
    _no_current_instance()
    yield
    _no_current_instance()


def _no_current_instance() -> None:
    if "dagster" in sys.modules:  # the tests that need no Dagster do not load it
        from dagster._core.storage.defs_state.base import _current_storage

        _current_storage.set(None)


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

        # Its pooled connections closed now, whatever still holds the engine (a service's thread):
        # a worker's hundreds of PostgreSQL tests would otherwise exhaust the server's connections.
        cached(f"{url}?options=-csearch_path%3D{schema}").dispose()
        cached.cache_clear()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(warehouse_url) -> sa.Engine:
    return engine_for(warehouse_url)


@pytest.fixture
def harness(engine, tmp_path) -> Harness:
    return Harness(Brand.model_validate(NATIVE), Layout(tmp_path / "data"), engine)


@pytest.fixture
def defs_and_folder(tmp_path, warehouse_url):
    """The Dagster definitions of the acme brand on this warehouse, the brand, and its drop folder."""
    # Imported here: the tests that need no Dagster do not load it.
    from bspk_pipelines.defs.project import build_definitions
    from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource

    brand = Brand.model_validate(NATIVE)
    data = tmp_path / "data"
    defs = build_definitions(
        [brand], {"warehouse": WarehouseResource(url=warehouse_url), "folders": BrandFoldersResource(data_dir=str(data))}
    )
    drop = data / "drop" / "acme"
    drop.mkdir(parents=True)
    return defs, brand, drop


@pytest.fixture
def dagster_home(tmp_path, monkeypatch) -> str:
    """A temporary DAGSTER_HOME holding the project's own embedded dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(Path(__file__).parent.parent / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return str(home)


@pytest.fixture
def bare(engine, tmp_path) -> World:
    """Both brands of the API's world and their keys, no records: for the rules that need none."""
    return make_world(engine, tmp_path)


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
