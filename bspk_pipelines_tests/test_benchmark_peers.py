"""benchmarks/peers.py on tiny files: each installed peer merges initial, redelivery and delta into
a throwaway PostgreSQL database as the ingest benchmark will ask it to, and a peer that is not
installed is reported missing (so the benchmark skips it rather than printing a figure)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa

from bspk_pipelines_tests.builders import needed, postgres_or_skip

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "peers.py"
_spec = importlib.util.spec_from_file_location("benchmark_peers", SCRIPT)
peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers)

PRODUCTS = "product_ref,name,published\nP1,Jacket,TRUE\nP2,Shirt,TRUE\n"
SHOPPERS = ("shopper_ref,first_name,email,city\n"
            "S1,Emma,emma@mail.example,Paris\nS2,Louis,louis@mail.example,Lyon\nS3,Rose,rose@mail.example,Nice\n")
SALES = ("sale_ref,product_ref,quantity,price,created_at,sku\n"
         "T1,P1,1,20.00,2026-10-01T10:00:00,\nT1,P2,2,57.13,2026-10-01T10:00:00,\n"
         "T2,P1,1,20.00,2026-10-02T11:00:00,\nT3,P2,3,99.50,2026-10-03T12:00:00,\n")
SHOPPERS_DELTA = SHOPPERS.replace("louis@mail.example", "louis@new.example")
SALES_DELTA = "sale_ref,product_ref,quantity,price,created_at,sku\nT4,P1,1,20.00,2026-11-01T09:00:00,\n"


@pytest.fixture
def dsn():
    """A libpq URL of a database made for the test and dropped after it."""
    url = sa.make_url(postgres_or_skip())
    name = f"bspk_peers_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def write(folder: Path, **files: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for table, text in files.items():
        paths[table] = folder / f"{table}.csv"
        paths[table].write_text(text)
    return paths


def load(peer: str, dsn: str, files: dict[str, Path], work: Path) -> None:
    proc = subprocess.run(peers.command(peer, dsn, files, work), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{peer} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def installed_or_skip(peer: str) -> None:
    """A skip on a laptop without the `bench` extra; a failure in CI, which installs it (these
    tests run on the real PostgreSQL, and CI must not skip one)."""
    if reason := peers.missing(peer):
        needed(f"{peer} (the bench extra: {reason})")


def email(peer: str, dsn: str, shopper: str) -> str:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT email FROM {peers.qualified(peer, 'shoppers')} WHERE shopper_ref = %s", (shopper,))
        (value,) = cur.fetchone()
    conn.close()
    return value


@pytest.mark.parametrize("peer", peers.PEERS)
def test_peer_merges_initial_redelivery_and_delta(peer, dsn, tmp_path):
    installed_or_skip(peer)
    initial = write(tmp_path / "initial", products=PRODUCTS, shoppers=SHOPPERS, sales=SALES)
    delta = write(tmp_path / "delta", shoppers=SHOPPERS_DELTA, sales=SALES_DELTA)
    work = tmp_path / "work"
    loaded = {"products": 2, "shoppers": 3, "sales": 4}

    load(peer, dsn, initial, work)
    assert peers.counts(peer, dsn) == loaded
    load(peer, dsn, initial, work)  # the same bytes again: nothing new
    assert peers.counts(peer, dsn) == loaded
    load(peer, dsn, delta, work)
    assert peers.counts(peer, dsn) == loaded | {"sales": 5}
    assert email(peer, dsn, "S2") == "louis@new.example"
    assert email(peer, dsn, "S1") == "emma@mail.example"


@pytest.mark.parametrize("peer", peers.PEERS)
def test_peer_exits_non_zero_when_the_load_fails(peer, dsn, tmp_path):
    installed_or_skip(peer)
    files = write(tmp_path / "files", products=PRODUCTS)
    absent = dsn.rsplit("/", 1)[0] + "/bspk_peers_absent"
    proc = subprocess.run(peers.command(peer, absent, files, tmp_path / "work"), capture_output=True, timeout=120)
    assert proc.returncode != 0


@pytest.mark.parametrize("peer", peers.PEERS)
def test_a_peer_that_cannot_be_imported_is_missing_with_a_reason(peer, monkeypatch):
    for module in peers.MODULES[peer]:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    reason = peers.missing(peer)
    assert isinstance(reason, str) and "not installed" in reason


def test_an_unknown_peer_is_missing_and_has_no_command(tmp_path):
    assert peers.missing("airbyte")
    with pytest.raises(ValueError):
        peers.command("airbyte", "postgresql://postgres@127.0.0.1/x", {}, tmp_path)
    with pytest.raises(ValueError, match="orders"):
        peers.command("dlt", "postgresql://postgres@127.0.0.1/x", {"orders": tmp_path / "o.csv"}, tmp_path)
