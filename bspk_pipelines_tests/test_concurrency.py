"""Several writers on one brand at once end exactly where one writer alone ends.

Four `bspk sync` processes and a drop-sensor tick whose runs execute in a fifth process start
together on the same brand, the same drop folder, the same Dagster instance and the same
warehouse (a SQLite file, or a PostgreSQL schema), as a tester would start them. Afterwards every
table holds what one serial `bspk sync` leaves (row counts and a checksum of the content), each
file was applied exactly once, and each file sent exactly one `file_import.finished`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from bspk_pipelines.demo.samples import generate_samples
from bspk_pipelines.warehouse.schema import ENTITY_TABLES
from bspk_pipelines_tests.builders import postgres_or_skip

PROJECT = Path(__file__).resolve().parent.parent
WRITERS = 4
SYNC = ["-m", "bspk_pipelines.cli", "sync", "--brand", "acme", "--settle", "0.2", "--allow-failed"]
# The daemon's part: one sensor tick, its runs executed as the run launcher would start them. (Dagster's
# daemon adds a tick's partitions itself, and a tick that meets a concurrent add fails and is tried
# again at the next one; here they are added as `bspk sync` adds them.)
SENSOR_TICK = """
import dagster as dg
from bspk_pipelines.cli.instance import QUIET, add_partitions, open_instance
from bspk_pipelines.model.brand_file import load_brands
from bspk_pipelines.defs import names
from bspk_pipelines.defs.project import build_definitions

defs = build_definitions(load_brands())
with open_instance() as instance:
    cursor = None
    for _ in range(2):  # the first look only records sizes: the second finds the files settled
        with dg.build_sensor_context(cursor=cursor, instance=instance, resources=defs.resources) as context:
            result = defs.resolve_sensor_def(names.DROP_SENSOR)(context)
        cursor = result.cursor
        for request in result.dynamic_partitions_requests:
            add_partitions(instance, request.partitions_def_name, list(request.partition_keys))
    for request in result.run_requests:
        defs.resolve_job_def(request.job_name).execute_in_process(
            instance=instance, partition_key=request.partition_key, asset_selection=request.asset_selection,
            tags=request.tags, raise_on_error=False, run_config=QUIET)
"""
# The tables a writer changes, and the columns that differ between two equal loads: when, ids,
# and how often a month was rebuilt (each writer's month run rebuilds the months pending when it
# looked; a rebuild of a month already rebuilt writes nothing).
COMPARED = [*ENTITY_TABLES, "held", "months", "pending_months", "rejects", "clients", "client_changes"]
VOLATILE = {"_updated_at", "received_at", "applied_at", "held_at", "rebuilt_at", "since", "id", "client_id",
            "created_at", "updated_at", "changed_at", "claim", "run_id", "at", "rebuilds"}


def _brand_folder(root: Path) -> dict[str, str]:
    """The sample brand acme's drop files and brand file under `root`; the environment of its processes."""
    generate_samples(root / "data")
    shutil.rmtree(root / "data" / "drop" / "maison")
    (root / "mappings").mkdir()
    shutil.copy(PROJECT / "mappings" / "acme.yaml", root / "mappings")
    return {"DAGSTER_HOME": str(root / "home"), "BSPK_DATA_DIR": str(root / "data"),
            "BSPK_MAPPINGS_DIR": str(root / "mappings"), "PYTHONPATH": str(PROJECT)}


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env=os.environ | env, cwd=PROJECT,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Per table: rows and a checksum of their content, volatile columns left out."""
    engine = sa.create_engine(url)
    out = {}
    try:
        with engine.connect() as conn:
            for name in COMPARED:
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                columns = [c for c in table.c if c.name not in VOLATILE]
                rows = sorted(repr(tuple(r)) for r in conn.execute(sa.select(*columns)))
                out[name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16])
            out["files"] = sorted(tuple(r) for r in conn.execute(sa.text(
                "select name, status, rows_read, inserted, updated, unchanged, rejected, held from files")))
            out["file_import.finished"] = sorted(tuple(r) for r in conn.execute(sa.text(
                "select ordering_key, count(*) from webhook_events where event_name = 'file_import.finished' "
                "group by ordering_key")))
    finally:
        engine.dispose()
    return out


@pytest.fixture(params=["sqlite", "postgres"])
def two_warehouses(request, tmp_path):
    """Two empty warehouses of one kind: one for the writers at once, one for the serial run."""
    if request.param == "sqlite":
        yield [f"sqlite:///{tmp_path / f'{n}.sqlite'}" for n in ("together", "alone")]
        return
    url = postgres_or_skip()
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        for schema in schemas:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield [f"{url}?options=-csearch_path%3D{schema}" for schema in schemas]
    finally:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_four_syncs_and_a_sensor_at_once_end_as_one_serial_sync(two_warehouses, tmp_path):
    together_url, alone_url = two_warehouses
    env = _brand_folder(tmp_path / "together") | {"BSPK_WAREHOUSE_URL": together_url}
    logs = tmp_path / "logs"
    logs.mkdir()
    commands = {f"sync-{i}.log": SYNC for i in range(WRITERS)} | {"sensor.log": ["-c", SENSOR_TICK]}
    writers = {name: _start(args, env, logs / name) for name, args in commands.items()}
    for proc in writers.values():
        proc.wait(timeout=600)
    outputs = {p.name: p.read_text() for p in logs.iterdir()}
    failed = [name for name, proc in writers.items() if proc.returncode]
    assert not failed, "\n".join(f"--- {name} exited {writers[name].returncode}:\n{outputs[name]}" for name in failed)
    traced = [name for name, text in outputs.items() if "Traceback" in text]
    assert not traced, "\n".join(f"--- {name}:\n{outputs[name]}" for name in traced)

    alone = _brand_folder(tmp_path / "alone") | {"BSPK_WAREHOUSE_URL": alone_url}
    serial = subprocess.run([sys.executable, *SYNC], env=os.environ | alone, cwd=PROJECT, capture_output=True,
                            text=True, timeout=600)
    assert serial.returncode == 0, serial.stdout + serial.stderr

    expected, found = _snapshot(alone_url), _snapshot(together_url)
    assert expected["sales"][0] == 554 and len(expected["files"]) == 20  # the serial run loaded the samples
    assert all(status == "applied" for _, status, *_ in found["files"])
    assert found == expected
    assert {n for _, n in found["file_import.finished"]} == {1}
