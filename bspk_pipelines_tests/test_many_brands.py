"""Many brands on one deployment: one drop sensor and one webhook sensor watch them all, an idle
tick costs the database next to nothing whatever the number of brands, two brands sending the
same file each get their run, one brand's failing look stops nobody else's, and brands split
across code locations load only their own definitions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
# What a code server does at a sensor's tick, and what it gets from the daemon (no public names).
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.instance.ref import InstanceRef
from dagster._grpc.impl import get_external_sensor_execution
import pytest

from bspk_pipelines.defs import names
from bspk_pipelines.defs.ingest.sensors import load_cursors, look_at_brands
from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.ingest.ledger import recorded
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.brand_file import ConfigError, load_brands
from bspk_pipelines.warehouse.engine import engine_for
from bspk_pipelines_tests.builders import NATIVE, TWO_SHOPPERS, statements_sent, tick

SHOPPERS = "SHOPPER_V3_Acme_202401010000.csv"
REPO = Path(__file__).resolve().parent.parent


def brands_sharing_a_company(n: int) -> list[Brand]:
    """`n` brands with the sample's config (the same company name, so the same file names)."""
    return [Brand.model_validate({**NATIVE, "brand": f"b{i:03d}", "sources": {"main": {"format": "bspk", "drop": f"drop/b{i:03d}"}}})
            for i in range(n)]


def deployment(tmp_path: Path, warehouse_url: str, brands: list[Brand]) -> tuple[dg.Definitions, Path]:
    data = tmp_path / "data"
    for b in brands:
        (data / "drop" / b.brand).mkdir(parents=True)
    defs = build_definitions(brands, {"warehouse": WarehouseResource(url=warehouse_url),
                                      "folders": BrandFoldersResource(data_dir=str(data))})
    return defs, data


def settled(defs: dg.Definitions, cursor: str | None = None):
    """Two looks: the first records sizes, the second finds the files settled."""
    return tick(defs, names.DROP_SENSOR, tick(defs, names.DROP_SENSOR, cursor).cursor)


def test_one_drop_sensor_and_one_webhook_sensor_serve_every_brand(tmp_path, warehouse_url):
    brands = brands_sharing_a_company(3)
    defs, data = deployment(tmp_path, warehouse_url, brands)
    repo = defs.get_repository_def()
    assert sorted(s.name for s in repo.sensor_defs) == [names.DROP_SENSOR, names.WEBHOOK_SENSOR]
    (data / "drop" / "b001" / SHOPPERS).write_text(TWO_SHOPPERS)
    (data / "drop" / "b002" / SHOPPERS).write_text(TWO_SHOPPERS)
    result = settled(defs)
    runs = {r.tags[names.BRAND_TAG]: r for r in result.run_requests}
    assert runs.keys() == {"b001", "b002"}
    for brand, run in runs.items():
        assert run.job_name == names.ingest_job(brand, "main") and run.partition_key == SHOPPERS
        assert all(key.path[0] == brand for key in run.asset_selection)
    # The same name and bytes in two brands: two runs, which the daemon tells apart by run key.
    assert runs["b001"].run_key != runs["b002"].run_key
    assert {p.partitions_def_name for p in result.dynamic_partitions_requests} == {
        names.file_partitions("b001", "main"), names.file_partitions("b002", "main")}
    # Each brand's files are its own in the cursor: b000 has nothing on its way in.
    assert load_cursors(result.cursor).keys() == {"b001", "b002"}


def test_an_idle_tick_reads_the_database_once_whatever_the_number_of_brands(tmp_path, warehouse_url):
    defs, _ = deployment(tmp_path, warehouse_url, brands_sharing_a_company(30))
    first = tick(defs, names.DROP_SENSOR)
    with statements_sent(engine_for(warehouse_url)) as statements:
        idle = tick(defs, names.DROP_SENSOR, first.cursor)
    assert idle.run_requests == [] and "30 brand(s)" in idle.skip_reason.skip_message
    # The months waiting for every brand in one query; empty drop folders ask the ledger nothing.
    assert len([s for s, _ in statements if "pending_months" in s]) == 1, statements
    assert not [s for s, _ in statements if "files" in s], statements
    assert idle.cursor == "{}"  # thirty idle brands leave no trace in the cursor


@pytest.mark.parametrize("sensor", [names.DROP_SENSOR, names.WEBHOOK_SENSOR])
def test_an_idle_tick_makes_no_dagster_instance(tmp_path, warehouse_url, sensor, monkeypatch):
    """A code server evaluates a tick with the daemon's instance by reference: a sensor that took
    Dagster's resources opened it at every tick (its storage, its migrations read), and one that
    initialised them made an ephemeral one; so did looking at the tick's log. That was most of a
    tick's time in the code server. (A tick that requests runs opens it: Dagster checks their partitions
    there.) Opening the instance of an empty DAGSTER_HOME creates its storage there."""
    defs, data = deployment(tmp_path, warehouse_url, brands_sharing_a_company(2))
    (data / "drop" / "b001" / SHOPPERS).write_text(TWO_SHOPPERS)
    home = tmp_path / "dagster_home"
    home.mkdir()
    made = []
    make = dg.DagsterInstance.__init__
    monkeypatch.setattr(dg.DagsterInstance, "__init__", lambda self, *a, **k: made.append(self) or make(self, *a, **k))
    repo = defs.get_repository_def()
    by_tick = []
    for _ in range(3):
        result = get_external_sensor_execution(repo, None, InstanceRef.from_dir(str(home)), sensor, None, None, None, None, None)
        assert isinstance(result, SensorExecutionData), result
        assert result.run_requests == []  # the file has not settled yet
        by_tick.append(len(made))
        made.clear()
    assert list(home.iterdir()) == []
    # The first tick of a code server initialises the resources, once; the next ones make none.
    assert by_tick[0] <= len(defs.resources) and by_tick[1:] == [0, 0], by_tick


def test_an_idle_webhook_tick_reads_the_database_a_few_times_whatever_the_number_of_brands(tmp_path, warehouse_url):
    """The webhook sensor's idle tick asked, for each brand, whether its endpoints had changed,
    whether it had events to fan out and how many deliveries it had: three queries a brand."""
    defs, _ = deployment(tmp_path, warehouse_url, brands_sharing_a_company(30))
    first = tick(defs, names.WEBHOOK_SENSOR)
    with statements_sent(engine_for(warehouse_url)) as statements:
        idle = tick(defs, names.WEBHOOK_SENSOR, first.cursor)
    assert idle.run_requests == [] and idle.asset_events == []
    # Endpoints, events to fan out, deliveries due, deliveries by status (SQLite adds its BEGINs).
    assert len([s for s, _ in statements if s != "BEGIN"]) == 4, statements


class Log:
    """What a sensor's tick logs, kept."""

    def __init__(self):
        self.errors, self.warnings = [], []

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def test_a_brand_whose_look_fails_stops_no_other_brand(tmp_path, warehouse_url, monkeypatch):
    brands = brands_sharing_a_company(3)
    defs, data = deployment(tmp_path, warehouse_url, brands)
    for b in brands:
        (data / "drop" / b.brand / SHOPPERS).write_text(TWO_SHOPPERS)
    looked = settled(defs)  # b001 has a file requested: its cursor holds it
    assert {r.tags[names.BRAND_TAG] for r in looked.run_requests} == {"b000", "b001", "b002"}
    store = Layout.drop_store

    def broken(layout, brand, source):
        if brand.brand == "b001":
            raise OSError("the mount went away")
        return store(layout, brand, source)

    monkeypatch.setattr(Layout, "drop_store", broken)
    for b in ("b000", "b002"):
        (data / "drop" / b / "SHOPPER_V3_Acme_202401020000.csv").write_text(TWO_SHOPPERS.replace("S1", "S7"))
    log = Log()
    first = look_at_brands(brands, Layout(data.resolve()), engine_for(warehouse_url), looked.cursor, log)
    again = tick(defs, names.DROP_SENSOR, first.cursor)
    assert {(r.tags[names.BRAND_TAG], r.partition_key) for r in again.run_requests} == {
        ("b000", "SHOPPER_V3_Acme_202401020000.csv"), ("b002", "SHOPPER_V3_Acme_202401020000.csv")}
    assert log.errors == ["b001: its drop stores were not looked at: OSError: the mount went away"]
    # The failing brand keeps what it had on its way in, for the look that works again.
    assert load_cursors(first.cursor)["b001"] == load_cursors(looked.cursor)["b001"]


def test_the_ledger_is_read_for_the_files_a_look_found(tmp_path, warehouse_url):
    """A look asks the ledger about the names in the folder only, later deliveries under a name
    (`name@2`) included, and finds what a read of the whole ledger would."""
    brand = brands_sharing_a_company(1)[0]
    defs, data = deployment(tmp_path, warehouse_url, [brand])
    drop = data / "drop" / brand.brand
    with dg.DagsterInstance.ephemeral() as instance:
        from bspk_pipelines.cli.sync import sync_brand

        for n, name in enumerate(["SHOPPER_V3_Acme_202401010000.csv", "SHOPPER_V3_Acme_202401010100.csv",
                                  "SHOPPER_V3_Acme_202401010000.csv"]):
            (drop / name).write_text(TWO_SHOPPERS.replace("S1", f"S1{n}"))  # the first name again, other bytes
            sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda _: None)
    with engine_for(warehouse_url).connect() as conn:
        whole = recorded(conn, brand.brand, "main")
        found = recorded(conn, brand.brand, "main", only={"SHOPPER_V3_Acme_202401010000.csv", "NEW.csv"})
    assert whole.keys() == {"SHOPPER_V3_Acme_202401010000.csv", "SHOPPER_V3_Acme_202401010100.csv"}
    assert found == {"SHOPPER_V3_Acme_202401010000.csv": whole["SHOPPER_V3_Acme_202401010000.csv"]}
    assert found["SHOPPER_V3_Acme_202401010000.csv"].deliveries == 2


def brand_file(mappings: Path, brand: str, location: str | None) -> None:
    company = brand.capitalize()
    (mappings / f"{brand}.yaml").write_text(
        f"brand: {brand}\ncompany_name: {company}\nsources:\n  main:\n    format: bspk\n    drop: drop/{brand}\n"
        + (f"location: {location}\n" if location else ""))


def test_a_location_name_is_checked_like_a_brand_id(tmp_path):
    brand_file(tmp_path, "acme", "Europe-West")
    with pytest.raises(ConfigError) as e:
        load_brands(tmp_path)
    assert "location" in str(e.value) and "lower-case letters, digits and _" in str(e.value)


def test_each_code_location_of_the_written_workspace_loads_only_its_brands(tmp_path):
    """`bspk workspace` writes a location per `location:` of the brand files; Dagster loads that
    workspace, and each location holds its own brands' assets and one drop sensor for them."""
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    for brand, location in [("alpha", "europe"), ("beta", "europe"), ("gamma", "asia"), ("delta", None)]:
        brand_file(mappings, brand, location)
    env = os.environ | {"BSPK_MAPPINGS_DIR": str(mappings), "BSPK_DATA_DIR": str(tmp_path / "data"),
                        "DAGSTER_HOME": str(tmp_path)}
    workspace = tmp_path / "workspace.yaml"
    bspk = [sys.executable, "-m", "bspk_pipelines.cli"]
    wrote = subprocess.run([*bspk, "workspace", "--write", str(workspace), "--working-directory", str(REPO)],
                           env=env, capture_output=True, text=True)
    assert wrote.returncode == 0, wrote.stderr
    assert "3 code location(s)" in wrote.stdout
    text = workspace.read_text()
    assert [line.split(": ")[1] for line in text.splitlines() if "location_name" in line] == ["asia", "bspk_pipelines", "europe"]
    check = subprocess.run([sys.executable, "-c", """
import bspk_pipelines.locations as locations
for name in ("europe", "asia", "bspk_pipelines"):
    repo = getattr(locations, name)
    print(name, sorted({k.path[0] for k in repo.asset_graph.get_all_asset_keys()}), sorted(s.name for s in repo.sensor_defs))
from bspk_pipelines.model.brand_file import ConfigError
try:
    locations.antarctica.get_all_jobs()
except ConfigError as e:
    print("missing:", e)
"""], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == [
        "europe ['alpha', 'beta'] ['drop_sensor', 'webhook_sensor']",
        "asia ['gamma'] ['drop_sensor', 'webhook_sensor']",
        "bspk_pipelines ['delta'] ['drop_sensor', 'webhook_sensor']",
        "missing: no brand file says `location: antarctica`: `bspk workspace` lists the locations",
    ]
    validate = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(workspace)],
                              env=env, capture_output=True, text=True, cwd=tmp_path)
    assert validate.returncode == 0, validate.stdout + validate.stderr


def test_a_run_of_a_brand_job_reads_only_its_brand_file_and_builds_the_same_job(tmp_path, monkeypatch):
    """A run's process asks the repository for its job: it reads that brand's file alone (another
    brand's broken file does not stop it) and builds the job the code server showed."""
    from bspk_pipelines.defs.repository import brands_repository
    from bspk_pipelines.model.brand_file import brand_file_of

    mappings = tmp_path / "mappings"
    mappings.mkdir()
    for brand in ("alpha", "beta"):
        brand_file(mappings, brand, None)
    monkeypatch.setenv("BSPK_MAPPINGS_DIR", str(mappings))
    monkeypatch.setenv("BSPK_DATA_DIR", str(tmp_path / "data"))
    whole = brands_repository(load_brands, brand_file_of)
    shown = {name: whole.get_job(name).get_job_snapshot_id() for name in whole.job_names}
    (mappings / "beta.yaml").write_text("brand: beta\nsources: [")  # broken after the code server loaded
    run_process = brands_repository(load_brands, brand_file_of)
    for name in (names.ingest_job("alpha", "main"), names.apply_job("alpha"), names.extract_job("alpha")):
        assert run_process.get_job(name).get_job_snapshot_id() == shown[name]
    with pytest.raises(ConfigError):
        run_process.get_all_jobs()  # what needs every brand reads every file
    assert brand_file_of("gamma") is None and brand_file_of("../alpha") is None


def test_the_daemon_gets_the_same_settings_from_bspk_dev_and_the_helm_values():
    """The freshness daemon's interval (every asset's state read per look) is the same where the
    daemon runs under `bspk dev` and on Kubernetes."""
    import yaml

    from bspk_pipelines.settings import DAEMON_ENVIRONMENT

    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    assert values["dagsterDaemon"]["env"] == DAEMON_ENVIRONMENT
    assert int(DAEMON_ENVIRONMENT["FRESHNESS_DAEMON_INTERVAL_SECONDS"]) >= 60
