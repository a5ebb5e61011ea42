"""A process killed while applying a large file leaves the tables as they were; a rerun completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from bspk_pipelines_tests.builders import NATIVE, SHOPPER, brand_harness, loaded

ROWS = 200_000
NAME = "SHOPPER_V3_Acme_202401010000.csv"

APPLY = """
import sys
from pathlib import Path
from bspk_pipelines_tests.builders import Harness, NATIVE
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.warehouse.engine import engine_for
h = Harness(Brand.model_validate(NATIVE), Layout(Path(sys.argv[2])), engine_for(sys.argv[1]))
h.ingest(sys.argv[3])
"""


def big_file() -> str:
    rows = "".join(f"S{i},First{i},Last{i},,,F,s{i}@example.com,,,,,,,,City{i % 97},,,FR,,,,,TRUE,FALSE\n" for i in range(ROWS))
    return SHOPPER + rows


def table(engine: sa.Engine, brand: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "select shopper_ref, first_name, last_name, email, city, country_code, email_contact "
            "from shoppers where brand=:b order by shopper_ref"), {"b": brand})]


def status(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.text("select status from files where brand='acme' and name=:n"), {"n": NAME}).scalar()


def inside_apply(engine: sa.Engine, url: str) -> bool:
    """The victim is writing its apply transaction: past mapping, with rows going in."""
    if status(engine) != "mapped":
        return False
    if engine.dialect.name == "sqlite":
        wal = Path(url.removeprefix("sqlite:///") + "-wal")
        return wal.exists() and wal.stat().st_size > 4 << 20  # the staged rows are being written
    with engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "select count(*) from pg_stat_activity where pid <> pg_backend_pid() and datname = current_database() "
            "and (query ilike 'COPY%stage_shoppers%' or query ilike 'INSERT INTO shoppers%' or query ilike 'UPDATE shoppers%')"
        )).scalar())


def test_sigkill_during_apply_then_rerun_matches_an_uninterrupted_run(engine, warehouse_url, tmp_path):
    content = big_file()
    victim = brand_harness(NATIVE, engine, tmp_path)
    victim.drop(NAME, content)
    proc = subprocess.Popen([sys.executable, "-c", APPLY, warehouse_url, str(victim.layout.data_dir), NAME],
                            env=os.environ | {"PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + 120
    while not inside_apply(engine, warehouse_url) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert status(engine) == "mapped", "the kill came after the apply finished: make the file larger"
    assert table(engine, "acme") == []  # nothing half-applied

    assert victim.ingest(NAME)["status"] == "applied"
    reference = brand_harness({**NATIVE, "brand": "reference"}, engine, tmp_path / "ref")
    reference.drop(NAME, content)
    assert reference.ingest(NAME)["inserted"] == ROWS
    assert table(engine, "acme") == table(engine, "reference")
    assert victim.file(NAME)["inserted"] == ROWS


def test_a_file_checked_before_an_upgrade_to_claims_is_applied_after_it(engine, tmp_path):
    """Files in progress when the code learned claims have none: their work folders, where the
    previous version left them, are found and applied (here a sales file checked, not yet mapped)."""
    from bspk_pipelines.ingest.drop import classify
    from bspk_pipelines.ingest.check import validate_file
    from bspk_pipelines.ingest.contribute import map_file
    from bspk_pipelines.ingest.land import land

    h = loaded(engine, tmp_path)
    name = "SALE_V2_Acme_202406010000.csv"
    land(h.engine, h.layout, h.brand, classify(h.brand, "main", name))
    validate_file(h.engine, h.layout, h.brand, "main", "sales", name)
    claimed = h.layout.work("acme", "main", "sales", name, h.file(name)["claim"], "validated")
    claimed.rename(h.layout.data_dir / "acme" / "work" / "main" / "sales" / f"{name}.validated")  # the old place
    with h.engine.begin() as conn:
        conn.execute(sa.text("update files set claim = null"))
    map_file(h.engine, h.layout, h.brand, "main", "sales", name)
    h.rebuild_pending_months()
    assert h.file(name)["status"] == "applied" and len(h.rows("sales")) == 6


def test_a_writer_that_lost_its_lock_changes_nothing(harness, monkeypatch):
    """Another writer moves the file on while this one applies it (its lock was lost with its
    connection): this writer's transaction is rolled back, so nothing is applied twice."""
    import pytest

    from bspk_pipelines.ingest.apply import apply_pending
    from bspk_pipelines.ingest.check import validate_file
    from bspk_pipelines.ingest.contribute import map_file
    from bspk_pipelines.ingest.drop import classify
    from bspk_pipelines.ingest.land import land
    from bspk_pipelines.ingest.ledger import ClaimLost
    from bspk_pipelines.ingest.unchanged import UnchangedRows

    name = "SHOPPER_V3_Acme_202401010000.csv"
    harness.drop(name, SHOPPER + "S1,Marie,Curie,,,F,m@example.com,,,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n")
    land(harness.engine, harness.layout, harness.brand, classify(harness.brand, "main", name))
    validate_file(harness.engine, harness.layout, harness.brand, "main", "shoppers", name)
    map_file(harness.engine, harness.layout, harness.brand, "main", "shoppers", name)
    unchanged_of = UnchangedRows.of_validated

    def meanwhile(*args, **kwargs):
        with harness.engine.begin() as conn:
            conn.execute(sa.text("update files set status = 'applied'"))
        return unchanged_of(*args, **kwargs)

    monkeypatch.setattr(UnchangedRows, "of_validated", meanwhile)
    with pytest.raises(ClaimLost, match="another writer moved the file on meanwhile"):
        apply_pending(harness.engine, harness.layout, harness.brand, "shoppers")
    assert harness.rows("shoppers") == [] and harness.rows("clients") == []
    with harness.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from webhook_events")).scalar() == 0
