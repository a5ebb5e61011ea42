"""The Dagster layer: definitions, the drop sensor, and a brand run end to end on a real instance."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.cli.sync import sync_brand
from bspk_pipelines.defs import names
from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
from bspk_pipelines.defs.ingest.sensors import load_cursors
from bspk_pipelines.ingest.apply import apply_pending
from bspk_pipelines.ingest.check import validate_file
from bspk_pipelines.ingest.contribute import map_file
from bspk_pipelines.ingest.drop import classify
from bspk_pipelines.ingest.land import land
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.model.brand import Brand
from bspk_pipelines_tests.builders import DROP_SENSOR, NATIVE, ONE_PRODUCT, TWO_SHOPPERS, VARIANTS, Harness, tick

SALES = (
    "sale_ref,product_ref,quantity,price,currency_code,created_at,sku,shopper_ref,store_ref,sales_associate_ref\n"
    "T1,P1,1,120.00,EUR,2024-03-01T10:00:00,,S1,,\n"
)


def test_definitions_load_with_names_from_one_helper(defs_and_folder):
    defs, brand, _ = defs_and_folder
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert "acme/raw/main" in keys and "acme/bspk/sales" in keys
    assert repo.has_sensor_def(names.DROP_SENSOR)
    assert repo.has_job(names.ingest_job("acme", "main")) and repo.has_job(names.apply_job("acme"))
    sales_deps = repo.asset_graph.get(dg.AssetKey(["acme", "bspk", "sales"])).parent_keys
    assert dg.AssetKey(["acme", "bspk", "shoppers"]) in sales_deps


def test_sensor_waits_for_a_file_to_stop_growing(defs_and_folder):
    defs, _, drop = defs_and_folder
    path = drop / "SHOPPER_V3_Acme_202401010000.csv"
    path.write_text(TWO_SHOPPERS[:80])
    first = tick(defs, DROP_SENSOR, None)
    assert first.run_requests == []  # seen once: it may still be growing
    with path.open("a") as f:
        f.write(TWO_SHOPPERS[80:])
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    second = tick(defs, DROP_SENSOR, first.cursor)
    assert second.run_requests == []  # it grew since the last look
    third = tick(defs, DROP_SENSOR, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["SHOPPER_V3_Acme_202401010000.csv"]
    request = third.run_requests[0]
    assert request.job_name == names.ingest_job("acme", "main")
    assert request.tags[names.BRAND_TAG] == "acme"
    assert request.run_key.startswith("acme/main/SHOPPER_V3_Acme_202401010000.csv/")
    # A restart resumes from the stored cursor: the file is not requested twice.
    assert tick(defs, DROP_SENSOR, third.cursor).run_requests == []


def test_the_sensor_cursor_holds_only_files_on_their_way_in(defs_and_folder, dagster_home):
    """Files the ledger holds leave the cursor: after a dozen imports it names none of them, and a
    sensor restarted without a cursor requests none again."""
    defs, brand, drop = defs_and_folder
    for minute in range(12):
        (drop / f"SHOPPER_V3_Acme_2024010100{minute:02d}.csv").write_text(TWO_SHOPPERS)
    with dg.DagsterInstance.get() as instance:
        sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda _: None)
    idle = tick(defs, DROP_SENSOR, tick(defs, DROP_SENSOR, None).cursor)
    assert idle.run_requests == [] and "SHOPPER" not in idle.cursor and len(idle.cursor) < 100
    (drop / "SHOPPER_V3_Acme_202401020000.csv").write_text(TWO_SHOPPERS.replace("S1", "S9"))
    taken = tick(defs, DROP_SENSOR, tick(defs, DROP_SENSOR, idle.cursor).cursor)
    assert [r.partition_key for r in taken.run_requests] == ["SHOPPER_V3_Acme_202401020000.csv"]
    assert load_cursors(taken.cursor)["acme"]["requested"]["main"].keys() == {"SHOPPER_V3_Acme_202401020000.csv"}
    assert tick(defs, DROP_SENSOR, taken.cursor).run_requests == []  # queued, not requested twice


def test_sensor_takes_done_markers_orders_fifo_and_ignores_partials(defs_and_folder):
    defs, _, drop = defs_and_folder
    (drop / "SALE_V2_Acme_202401010900.csv").write_text(SALES)
    (drop / "SHOPPER_V3_Acme_202401010900.csv").write_text(TWO_SHOPPERS)
    (drop / "PRODUCT_V2_Acme_202401010800.csv").write_text(ONE_PRODUCT)
    for name in ("SALE_V2_Acme_202401010900.csv", "SHOPPER_V3_Acme_202401010900.csv", "PRODUCT_V2_Acme_202401010800.csv"):
        (drop / f"{name}.done").touch()
    (drop / "SHOPPER_V3_Acme_202401011000.csv.part").write_text(TWO_SHOPPERS)
    (drop / "SHOPPER_V3_Acme_202401011000.tmp").write_text(TWO_SHOPPERS)
    (drop / ".hidden.csv").write_text(TWO_SHOPPERS)
    result = tick(defs, DROP_SENSOR, None)
    assert [r.partition_key for r in result.run_requests] == [
        "PRODUCT_V2_Acme_202401010800.csv",  # earliest timestamp first
        "SHOPPER_V3_Acme_202401010900.csv",  # same timestamp: platform dependency order
        "SALE_V2_Acme_202401010900.csv",
    ]
    # Sales rebuild by month in runs of their own, once the sales file has landed its months.
    sales_run = result.run_requests[2]
    assert dg.AssetKey(["acme", "bspk", "sales"]) not in sales_run.asset_selection
    assert dg.AssetKey(["acme", "mapped", "main", "sales"]) in sales_run.asset_selection
    adds = {r.partitions_def_name: list(r.partition_keys) for r in result.dynamic_partitions_requests}
    # One partition per delivery, shared by the source's raw, validated and mapped assets.
    assert adds[names.file_partitions("acme", "main")] == [r.partition_key for r in result.run_requests]


def test_sensor_records_a_file_whose_name_says_nothing(defs_and_folder):
    defs, _, drop = defs_and_folder
    (drop / "clients export.csv").write_text(TWO_SHOPPERS)
    (drop / "clients export.csv.done").touch()
    result = tick(defs, DROP_SENSOR, None)
    assert result.run_requests == []
    engine = defs.resources["warehouse"].engine
    with engine.connect() as conn:
        row = conn.execute(sa.text("select status, error from files where name='clients export.csv'")).one()
    assert row.status == "failed" and "expected <TYPE>_<VERSION>_Acme_<YYYYMMDDHHMM>.csv" in row.error
    again = tick(defs, DROP_SENSOR, result.cursor)
    assert again.run_requests == []
    # The ledger remembers the failed file: the cursor no longer names it.
    assert "clients export.csv" not in again.cursor


def test_brand_end_to_end_through_dagster(defs_and_folder, dagster_home):
    """Runs recorded in a temporary DAGSTER_HOME; a held sale is applied when its product arrives."""
    defs, brand, drop = defs_and_folder
    (drop / "SHOPPER_V3_Acme_202401010900.csv").write_text(TWO_SHOPPERS)
    (drop / "SALE_V2_Acme_202401010901.csv").write_text(SALES)
    with dg.DagsterInstance.get() as instance:
        lines = []
        results = sync_brand(defs, brand, instance, settle_seconds=0.05, out=lines.append)
        assert [r.success for r in results] == [True, True, True]
        assert lines[-1].startswith("  sales months 2024-03: run ")
        sales = instance.get_latest_materialization_event(dg.AssetKey(["acme", "bspk", "sales"]))
        assert sales.asset_materialization.partition == "2024-03"
        meta = sales.asset_materialization.metadata
        assert meta["held"].value == 1 and meta["inserted"].value == 0
        validated = instance.get_latest_materialization_event(dg.AssetKey(["acme", "validated", "main", "shoppers"]))
        assert validated.asset_materialization.metadata["rejected"].value == 1  # country XX
        (drop / "PRODUCT_V2_Acme_202401011000.csv").write_text(ONE_PRODUCT)
        results = sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None)
        assert [r.success for r in results] == [True, True]  # the product file, then the month it released
        sales = instance.get_latest_materialization_event(dg.AssetKey(["acme", "bspk", "sales"]))
        meta = sales.asset_materialization.metadata
        assert meta["inserted"].value == 1 and meta["held"].value == 0
        runs = instance.get_runs()
        assert len(runs) == 5 and all(r.tags[names.BRAND_TAG] == "acme" for r in runs)
        checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["acme", "bspk", "sales"]), "references")]
        )
        assert checks
        # Applying with nothing pending writes no materialisation: a table's history is its writes.
        shoppers = dg.AssetKey(["acme", "bspk", "shoppers"])
        before = instance.fetch_materializations(shoppers, limit=100).records
        assert defs.resolve_job_def(names.apply_job("acme")).execute_in_process(instance=instance).success
        assert instance.fetch_materializations(shoppers, limit=100).records == before
    with defs.resources["warehouse"].engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from sales")).scalar() == 1


def test_unique_check_fails_when_two_files_give_two_shoppers_one_mobile_phone(defs_and_folder, dagster_home):
    """A file is checked for shared unique values within itself; across files the table's check says it."""
    defs, brand, drop = defs_and_folder
    (drop / "SHOPPER_V3_Acme_202401010900.csv").write_text(TWO_SHOPPERS)
    # S3 takes S1's mobile phone in a later file: each file is clean on its own.
    (drop / "SHOPPER_V3_Acme_202401011000.csv").write_text(
        TWO_SHOPPERS.splitlines(keepends=True)[0] + "S3,Irene,Curie,,,F,,,+33612345678,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n")
    with dg.DagsterInstance.get() as instance:
        results = sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None)
        assert [r.success for r in results] == [True, True]
        check = dg.AssetCheckKey(dg.AssetKey(["acme", "bspk", "shoppers"]), "unique")
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
        evaluation = record.event.dagster_event.event_specific_data
        assert not evaluation.passed and evaluation.metadata["violations"].value == {"mobile_phone": 1}


def test_a_redelivery_is_recorded_without_a_run(defs_and_folder, dagster_home):
    """The same bytes under a new name: the sensor records the duplicate and reports the raw
    partition's materialisation itself; no run starts, nothing is landed twice."""
    defs, brand, drop = defs_and_folder
    (drop / "SHOPPER_V3_Acme_202401010900.csv").write_text(TWO_SHOPPERS)
    with dg.DagsterInstance.get() as instance:
        assert [r.success for r in sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None)] == [True]
        (drop / "SHOPPER_V3_Acme_202401020900.csv").write_text(TWO_SHOPPERS)
        (drop / "SHOPPER_V3_Acme_202401020900.csv.done").write_text("")
        result = tick(defs, DROP_SENSOR, None, instance)
        assert not result.run_requests
        [event] = result.asset_events
        assert event.asset_key == names.raw_key("acme", "main") and event.partition == "SHOPPER_V3_Acme_202401020900.csv"
        assert event.metadata["duplicate_of"].value == "SHOPPER_V3_Acme_202401010900.csv"
        lines = []
        assert sync_brand(defs, brand, instance, settle_seconds=0.05, out=lines.append) == []  # recorded already
        (drop / "SHOPPER_V3_Acme_202401030900.csv").write_text(TWO_SHOPPERS)
        assert sync_brand(defs, brand, instance, settle_seconds=0.05, out=lines.append) == []
        assert lines == ["  SHOPPER_V3_Acme_202401030900.csv: same bytes as SHOPPER_V3_Acme_202401010900.csv: "
                         "recorded as a duplicate, not applied (no run needed)"]
        reported = instance.get_latest_materialization_event(names.raw_key("acme", "main"))
        assert reported.asset_materialization.partition == "SHOPPER_V3_Acme_202401030900.csv"
        assert len(instance.get_runs()) == 1
    with defs.resources["warehouse"].engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("select name, status from files")).all())
        events = conn.execute(sa.text("select count(*) from webhook_events where event_name = 'file_import.finished'")).scalar()
    assert sorted(statuses.values()) == ["applied", "duplicate", "duplicate"] and events == 3
    landed = drop.parent.parent / "acme" / "landing" / "main"
    assert [p.name for p in landed.iterdir()] == ["SHOPPER_V3_Acme_202401010900.csv"]


def test_failed_file_fails_its_run_and_others_go_on(defs_and_folder, dagster_home):
    defs, brand, drop = defs_and_folder
    (drop / "SHOPPER_V3_Acme_202401010900.csv").write_text("shopper_ref;first_name\nS1;Marie\n")
    (drop / "PRODUCT_V2_Acme_202401010901.csv").write_text(ONE_PRODUCT)
    with dg.DagsterInstance.get() as instance:
        results = sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None)
        assert [r.success for r in results] == [False, True]
    with defs.resources["warehouse"].engine.connect() as conn:
        status, error = conn.execute(sa.text("select status, error from files where name like 'SHOPPER%'")).one()
        assert status == "failed"
        assert error.startswith("SHOPPER_V3_Acme_202401010900.csv: line 1: expected a header naming the columns")
        assert "is the file delimited by ';' instead of ','?" in error
        assert conn.execute(sa.text("select count(*) from products")).scalar() == 1
    landed = Path(defs.resources["folders"].data_dir) / "acme" / "landing" / "main" / "SHOPPER_V3_Acme_202401010900.csv"
    assert landed.read_text() == "shopper_ref;first_name\nS1;Marie\n"


def test_bundled_sample_brands_load_through_the_entry_point(monkeypatch, tmp_path):
    """`bspk_pipelines.definitions` as `dagster dev` loads it, from the repository's mappings/."""
    import importlib

    monkeypatch.setenv("BSPK_MAPPINGS_DIR", str(Path(__file__).parent.parent / "mappings"))
    monkeypatch.setenv("BSPK_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("BSPK_WAREHOUSE_URL", raising=False)
    import bspk_pipelines.definitions as entry

    defs = importlib.reload(entry).defs
    # As a code server does, with an instance of its own: the definitions' load reads the instance's
    # state storage, and without one it may find an earlier test's, whose instance is gone.
    with dg.DagsterInstance.ephemeral():
        repo = defs
        repo.load_all_definitions()
    for brand, cron in (("acme", "*/15 * * * *"), ("maison", "0 * * * *")):
        assert repo.has_sensor_def(names.DROP_SENSOR)
        assert repo.get_schedule_def(names.sync_schedule(brand)).cron_schedule == cron
    keys = repo.asset_graph.get_all_asset_keys()
    assert dg.AssetKey(["maison", "mapped", "erp", "product_prices"]) in keys
    products = repo.asset_graph.get(dg.AssetKey(["maison", "bspk", "products"])).parent_keys
    assert {dg.AssetKey(["maison", "mapped", "pos", "products"]), dg.AssetKey(["maison", "mapped", "erp", "products"])} <= products


def test_sample_brand_synced_by_the_cli_into_a_temporary_dagster_home(monkeypatch, tmp_path, capsys):
    """`bspk sync --brand acme` on the bundled sample: every file through Dagster, runs recorded."""
    from bspk_pipelines.cli import main
    from bspk_pipelines.demo.samples import generate_samples

    home, data = tmp_path / "home", tmp_path / "data"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("BSPK_DATA_DIR", str(data))
    monkeypatch.setenv("BSPK_MAPPINGS_DIR", str(Path(__file__).parent.parent / "mappings"))
    monkeypatch.delenv("BSPK_WAREHOUSE_URL", raising=False)
    written = generate_samples(data)["acme"]
    assert main(["sync", "--brand", "acme", "--settle", "0.05"]) == 0
    out = capsys.readouterr().out
    file_runs = [line for line in out.splitlines() if ".csv: run " in line]
    month_runs = [line for line in out.splitlines() if line.startswith("  sales months ")]
    assert len(file_runs) == len(written) and month_runs
    assert all(line.endswith(" ok") for line in file_runs + month_runs)
    table = {line.split()[1]: line.split()[2:] for line in out.splitlines() if line.startswith("acme ")}
    files, rows_read, inserted, updated, unchanged, rejected, skipped, held, failed, duplicate, refused = (
        int(v.replace(",", "")) for v in table["sales"])
    assert (files, rejected, skipped, held, failed, refused) == (2, 1, 0, 0, 0, 0)
    assert rows_read == inserted + updated + unchanged + rejected
    assert inserted == 554  # every sale line once, the held ones included once their shopper arrived
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == len(file_runs) + len(month_runs)
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        assert instance.get_latest_materialization_event(dg.AssetKey(["acme", "bspk", "sales"])) is not None
    # A second sync finds nothing new: every file was imported once.
    assert main(["sync", "--brand", "acme", "--settle", "0.05"]) == 0
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == len(file_runs) + len(month_runs)


def test_a_sync_tick_runs_only_the_tables_with_work_and_none_when_nothing_is_pending(engine, warehouse_url, tmp_path):
    """The sync schedule applies files whose run stopped short and releases held rows whose
    reference arrived since; a tick with nothing of the kind starts no run."""
    brand = Brand.model_validate(NATIVE | {"sync": {"interval": "15m"}})
    h = Harness(brand, Layout(tmp_path / "data"), engine)
    defs = build_definitions([brand], {"warehouse": WarehouseResource(url=warehouse_url),
                                       "folders": BrandFoldersResource(data_dir=str(tmp_path / "data"))})
    schedule = defs.resolve_schedule_def(names.sync_schedule("acme"))

    def tables_run() -> list[str] | None:
        # With an instance of its own: one left current by an earlier test of the worker may be disposed.
        with dg.instance_for_test() as instance, dg.build_schedule_context(resources=defs.resources,
                                                                           instance=instance) as context:
            data = schedule.evaluate_tick(context)
        if not data.run_requests:
            assert "nothing pending" in data.skip_message
            return None
        [request] = data.run_requests
        return sorted(k.path[-1] for k in request.asset_selection)

    assert tables_run() is None
    # A variant waits for its product; the product's file is mapped, but its run stopped before the apply.
    h.drop("PRODUCT-VARIANTS_V2_Acme_202401010000.csv", VARIANTS + "P1,SKU-1,,,,,,,,en,,TRUE\n")
    assert h.ingest("PRODUCT-VARIANTS_V2_Acme_202401010000.csv")["held"] == 1
    assert tables_run() is None  # held, but nothing it waits for has arrived
    h.drop("PRODUCT_V2_Acme_202401010100.csv", ONE_PRODUCT)
    delivery = classify(brand, "main", "PRODUCT_V2_Acme_202401010100.csv")
    land(engine, h.layout, brand, delivery)
    validate_file(engine, h.layout, brand, "main", "products", delivery.name)
    map_file(engine, h.layout, brand, "main", "products", delivery.name)
    assert tables_run() == ["products"]
    apply_pending(engine, h.layout, brand, "products")  # applied, as a run of the products table alone would
    assert tables_run() == ["product_variants"]  # its held variant can be released now
    apply_pending(engine, h.layout, brand, "product_variants")
    assert tables_run() is None and len(h.rows("product_variants")) == 1
