"""One brand end to end on the production-shaped deployment, as far as one machine goes: the
Dagster instance of deploy/dagster-postgres.yaml (runs, events and schedules in PostgreSQL, the
queued run coordinator with its per-brand limits) under `dagster dev`, its daemon's sensor taking
the files the brand puts on a real SFTP server and into a bucket, the originals kept in another
bucket (buckets of moto's server, standing in for S3) and the rows applied to a PostgreSQL
warehouse."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import paramiko
import sqlalchemy as sa
from cryptography.fernet import Fernet

from benchmarks.daemon import sensor_running
from benchmarks.latency import free_port, stop, wait_until_ready
from bspk_pipelines.defs import names
from bspk_pipelines.warehouse.engine import engine_for
from bspk_pipelines_tests.builders import ONE_PRODUCT, SHOPPER

REPO = Path(__file__).resolve().parent.parent
SHOPPER_FILE = "SHOPPER_V3_Maison_202601010900.csv"
PRODUCT_FILE = "PRODUCT_V2_Maison_202601010905.csv"
ROWS = (SHOPPER + "".join(f"S{i},Ann{i},Lee{i},,,F,ann{i}@example.com,,,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n"
                          for i in range(25))).encode()


def _database(admin: sa.Engine, purpose: str) -> str:
    name = f"bspk_{purpose}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return admin.url.set(database=name).render_as_string(hide_password=False)


def _drop_databases(admin: sa.Engine, urls: list[str]) -> None:
    with admin.connect() as conn:
        for url in urls:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')


def _put_over_sftp(server, folder: Path, name: str, data: bytes) -> None:
    """As a brand's export job uploads: a `.part` name, renamed when complete, then a `.done` marker."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts))
    client.connect(server.host, server.port, server.user, key_filename=str(server.key_file),
                   allow_agent=False, look_for_keys=False)
    with client, client.open_sftp() as sftp:
        with sftp.open(str(folder / f"{name}.part"), "wb") as f:
            f.write(data)
        sftp.posix_rename(str(folder / f"{name}.part"), str(folder / name))
        with sftp.open(str(folder / f"{name}.done"), "wb"):
            pass


def test_files_go_from_sftp_and_s3_drops_through_s3_landing_into_postgresql(sftp_server, s3, tmp_path):
    from bspk_pipelines_tests.builders import postgres_or_skip

    admin = sa.create_engine(postgres_or_skip(), isolation_level="AUTOCOMMIT")
    databases: list[str] = []
    outbox = sftp_server.home / f"outbox-{uuid.uuid4().hex[:8]}"
    outbox.mkdir()
    bucket, exports = f"landing-{uuid.uuid4().hex[:12]}", f"exports-{uuid.uuid4().hex[:12]}"
    for name in (bucket, exports):
        boto3.client("s3").create_bucket(Bucket=name)
    mappings, home = tmp_path / "mappings", tmp_path / "dagster_home"
    mappings.mkdir()
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
    (mappings / "maison.yaml").write_text(
        "brand: maison\ncompany_name: Maison\n"
        f"sources:\n  pos:\n    format: bspk\n    drop: {sftp_server.url(outbox)}\n"
        f"  erp:\n    format: bspk\n    drop: s3://{exports}/outbox/erp\n")
    proc = None
    try:
        databases += [_database(admin, "dagster"), _database(admin, "warehouse")]
        instance_url, warehouse_url = databases
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BSPK_", "DAGSTER_"))} | s3.environ() | {
            "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": instance_url,
            "BSPK_WAREHOUSE_URL": warehouse_url, "BSPK_MAPPINGS_DIR": str(mappings),
            "BSPK_DATA_DIR": str(tmp_path / "data"), "BSPK_LANDING_URL": f"s3://{bucket}/landing",
            "BSPK_SFTP_KNOWN_HOSTS": str(sftp_server.known_hosts), "BSPK_SFTP_KEY_FILE": str(sftp_server.key_file),
            "BSPK_WEBHOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        }
        port = free_port()
        with (tmp_path / "dagster-dev.log").open("wb") as log:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"),
                 "--port", str(port)], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        sensor = names.DROP_SENSOR
        sensor_running(proc, port, sensor, time.time() + 240)
        wait_until_ready(proc, port, sensor, time.time() + 240)
        _put_over_sftp(sftp_server, outbox, SHOPPER_FILE, ROWS)
        boto3.client("s3").put_object(Bucket=exports, Key=f"outbox/erp/{PRODUCT_FILE}", Body=ONE_PRODUCT.encode())
        # The warehouse's tables as the first run makes them, made here too: under load the poll
        # below can come before any run or sensor tick has opened the warehouse.
        warehouse = engine_for(warehouse_url)
        deadline, statuses = time.time() + 180, {}
        while time.time() < deadline and (len(statuses) < 2 or set(statuses.values()) != {"applied"}):
            with warehouse.connect() as conn:
                statuses = dict(conn.execute(sa.text("select name, status from files")).all())
            time.sleep(0.5)
        assert statuses == {SHOPPER_FILE: "applied", PRODUCT_FILE: "applied"}, \
            (tmp_path / "dagster-dev.log").read_text()[-3000:]
        with warehouse.connect() as conn:
            assert conn.execute(sa.text("select count(*) from shoppers where brand = 'maison'")).scalar() == 25
            assert conn.execute(sa.text("select name from products where brand = 'maison'")).scalar() == "Jacket"
        warehouse.dispose()
        kept = boto3.client("s3").get_object(Bucket=bucket, Key=f"landing/maison/landing/pos/{SHOPPER_FILE}")
        assert kept["Body"].read() == ROWS and kept["Metadata"]["sha256"] == hashlib.sha256(ROWS).hexdigest()
        # The run is the instance's, in its PostgreSQL storage, tagged for the per-brand run limit.
        instance = sa.create_engine(instance_url)
        with instance.connect() as conn:
            runs = conn.execute(sa.text("select pipeline_name, status from runs")).all()
            tags = dict(conn.execute(sa.text("select key, value from run_tags where key = :k"), {"k": names.BRAND_TAG}).all())
        instance.dispose()
        assert {("maison__pos__ingest", "SUCCESS"), ("maison__erp__ingest", "SUCCESS")} <= set(runs)
        assert tags == {names.BRAND_TAG: "maison"}
        assert (outbox / SHOPPER_FILE).read_bytes() == ROWS  # the brand's file is left where it was put
    finally:
        if proc is not None:
            assert stop(proc), "dagster dev's process group outlived SIGKILL"
        _drop_databases(admin, databases)
        admin.dispose()
