"""The Dagster instance configs: the embedded SQLite default and the PostgreSQL one, on real storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.instance.config import dagster_instance_config

from bspk_pipelines.cli.sync import sync_brand
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
from bspk_pipelines_tests.builders import NATIVE, ONE_PRODUCT, postgres_or_skip

ROOT = Path(__file__).parent.parent


def _limits(config: dict) -> list[dict]:
    return config["concurrency"]["runs"]["tag_concurrency_limits"]


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/dagster-postgres.yaml"])
def test_instance_configs_pass_dagsters_schema_with_one_run_per_brand(path, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(ROOT / path, home / "dagster.yaml")
    config, _ = dagster_instance_config(str(home))  # raises on schema errors and conflicting limits
    assert {"key": "brand", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in _limits(config)
    assert "tag_concurrency_limits" not in config["run_coordinator"]["config"]


@pytest.fixture
def postgres_database():
    url = postgres_or_skip()
    name = f"bspk_dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = :n and pid <> pg_backend_pid()"), {"n": name})
            conn.execute(sa.text(f'DROP DATABASE "{name}"'))
        admin.dispose()


def test_postgres_instance_records_a_brand_run(postgres_database, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy/dagster-postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_database)
    data = tmp_path / "data"
    (data / "drop" / "acme").mkdir(parents=True)
    (data / "drop" / "acme" / "PRODUCT_V2_Acme_202401010000.csv").write_text(ONE_PRODUCT)
    brand = Brand.model_validate(NATIVE)
    defs = build_definitions([brand], {
        "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path / 'warehouse.sqlite'}"),
        "folders": BrandFoldersResource(data_dir=str(data)),
    })
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        results = sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None)
        assert [r.success for r in results] == [True]
    with sa.create_engine(postgres_database).connect() as conn:
        jobs = conn.execute(sa.text("select pipeline_name, status from runs")).all()
    assert jobs == [("acme__main__ingest", "SUCCESS")]


ADDER = """
import sys, time
from bspk_pipelines.cli.instance import add_partitions, open_instance
start = float(sys.argv[1])
with open_instance() as instance:
    for round in range(20):
        while time.time() < start + round * 0.3:
            time.sleep(0.001)
        add_partitions(instance, f"files_{round}", [f"FILE_{i}.csv" for i in range(50)])
"""


def test_processes_adding_the_same_partitions_at_once_all_succeed(dagster_home):
    """`bspk sync`, the sensor's runs and the daemon add a file's partition each: Dagster looks,
    then inserts, so two adders at once meet each other's insert (an IntegrityError each time
    with four processes over twenty rounds, before `add_partitions`)."""
    with dg.DagsterInstance.get():
        pass  # the storage exists before the adders start
    start = time.time() + 5
    adders = [subprocess.Popen([sys.executable, "-c", ADDER, str(start)], cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [a.communicate(timeout=120)[0] for a in adders]
    assert [a.returncode for a in adders] == [0] * 4, outputs
    with dg.DagsterInstance.get() as instance:
        assert all(len(instance.get_dynamic_partitions(f"files_{r}")) == 50 for r in range(20))


def test_the_pool_traceback_for_a_closed_dagster_sqlite_connection_is_not_printed(caplog):
    """dagster-io/dagster#21586: harmless, but a command must not print a stack trace for it."""
    import logging
    import sqlite3

    from bspk_pipelines.cli.instance import quiet_closed_sqlite_resets

    quiet_closed_sqlite_resets()  # as every command that opens the instance does
    pool = logging.getLogger("sqlalchemy.pool.impl.NullPool")
    for error in (sqlite3.ProgrammingError("Cannot operate on a closed database."), sqlite3.OperationalError("disk I/O error")):
        try:
            raise error
        except sqlite3.Error:
            pool.error("Exception during reset or similar", exc_info=True)
    logged = [str(r.exc_info[1]) for r in caplog.records]
    assert logged == ["disk I/O error"]
