"""The outbound side in Dagster: extract assets on the brand's schedule, the webhook sensor
delivering to a real receiver on 127.0.0.1, and dead letters failing a check in the UI."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from bspk_pipelines.cli.sync import sync_brand
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.defs import names
from bspk_pipelines.defs.outbound import NO_DEAD_LETTERS
from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
from bspk_pipelines.engagement.activity import Platform
from bspk_pipelines.demo.receiver import Answer, Receiver
from bspk_pipelines.outbound.webhooks.admin import replay
from bspk_pipelines_tests.builders import NATIVE, SHOPPER, STORE, header, tick

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


@pytest.fixture
def receiver():
    status = {"code": 204}
    r = Receiver(SECRET, answer=lambda _: Answer(status["code"]))
    r.status = status
    yield r
    r.stop()


@pytest.fixture
def setup(tmp_path, warehouse_url, receiver, monkeypatch):
    monkeypatch.setenv("ACME_TEST_SECRET", SECRET)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(Path(__file__).parent.parent / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    brand = Brand.model_validate(NATIVE | {
        "sync": {"interval": "15m"},
        "webhooks": {"endpoints": [{"url": receiver.url, "events": ["client.updated", "file_import.finished"],
                                    "secret_env": "ACME_TEST_SECRET"}]},
        "extracts": {"format": "jsonl", "entities": ["clients", "calls"]},
    })
    data = tmp_path / "data"
    defs = build_definitions([brand], {"warehouse": WarehouseResource(url=warehouse_url),
                                       "folders": BrandFoldersResource(data_dir=str(data))})
    drop = data / "drop" / "acme"
    drop.mkdir(parents=True)
    drop.joinpath("STORE_V2_Acme_202401010000.csv").write_text(STORE + "ST1,Saint Honore,,Paris,,,FR,EUR,,,,,TRUE\n")
    drop.joinpath("SALES-ASSOCIATE_V2_Acme_202401010001.csv").write_text(
        header("sales_associates") + "SA1,Jeanne,Lanvin,,,ST1,TRUE\n")
    drop.joinpath("SHOPPER_V3_Acme_202401010002.csv").write_text(
        SHOPPER + "S1,Marie,Curie,,,F,a@example.com,,,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n")
    return defs, brand, data


WEBHOOK_SENSOR = names.WEBHOOK_SENSOR


def test_outbound_definitions(setup):
    defs, _, _ = setup
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"acme/extract/clients", "acme/extract/calls", "acme/webhooks/deliveries"} <= keys
    assert dg.AssetKey(["acme", "bspk", "shoppers"]) in repo.asset_graph.get(names.extract_key("acme", "clients")).parent_keys
    assert repo.has_sensor_def(names.WEBHOOK_SENSOR)
    schedule = repo.get_schedule_def(names.extract_schedule("acme"))
    assert schedule.cron_schedule == "*/15 * * * *" and schedule.job_name == names.extract_job("acme")


def test_sensor_delivers_and_extracts_land_in_the_outbox(setup, receiver):
    defs, brand, data = setup
    with dg.DagsterInstance.get() as instance:
        assert all(r.success for r in sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None))
        engine = defs.resources["warehouse"].engine
        platform = Platform(engine, "acme")
        platform.update_client("S1", {"email": "new@example.com"}, by="SA1")
        platform.log_call("SA1", "S1")

        result = tick(defs, WEBHOOK_SENSOR, instance=instance)
        received = sorted(r.event_name for r in receiver.unique.values())
        assert received == ["client.updated"] + ["file_import.finished"] * 3
        [update] = [r.obj for r in receiver.unique.values() if r.event_name == "client.updated"]
        assert update["changes"] == {"email": {"old": "a@example.com", "new": "new@example.com"}}
        # Deliveries that happened materialise the deliveries asset (it never reads "never materialized").
        delivered, check = result.asset_events
        assert isinstance(delivered, dg.AssetMaterialization) and delivered.metadata["delivered"].value == 4
        assert check.passed
        assert "4 delivered" in result.skip_reason.skip_message
        # Nothing changed since: no new events for the UI.
        assert tick(defs, WEBHOOK_SENSOR, result.cursor, instance).asset_events == []

        run = defs.resolve_job_def(names.extract_job("acme")).execute_in_process(instance=instance)
        assert run.success
        materialized = {e.asset_key.path[-1]: e.materialization.metadata for e in run.get_asset_materialization_events()}
        assert materialized["clients"]["rows"].value == 1 and materialized["calls"]["rows"].value == 1
        outbox = data / "acme" / "outbox"
        clients_file = Path(materialized["clients"]["file"].value)
        assert clients_file.parent == outbox and clients_file.suffix == ".jsonl"
        [client] = [json.loads(line) for line in clients_file.read_text().splitlines()]
        assert client["client_id"] == "S1" and client["email"] == "new@example.com"
        manifest = json.loads(clients_file.with_name(clients_file.name + ".manifest.json").read_text())
        assert manifest["rows"] == 1 and manifest["sha256"] == materialized["clients"]["sha256"].value
        again = defs.resolve_job_def(names.extract_job("acme")).execute_in_process(instance=instance)
        assert {e.materialization.metadata["rows"].value for e in again.get_asset_materialization_events()} == {0}


def test_dead_letters_fail_the_check_until_replayed(setup, receiver):
    defs, brand, _ = setup
    receiver.status["code"] = 422
    with dg.DagsterInstance.get() as instance:
        sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None)
        result = tick(defs, WEBHOOK_SENSOR, instance=instance)
        _, check = result.asset_events
        assert check.check_name == NO_DEAD_LETTERS and not check.passed
        assert check.metadata["dead_letters"].value == 3 and "file_import.finished" in check.metadata["sample"].value
        receiver.status["code"] = 204
        assert replay(defs.resources["warehouse"].engine, "acme") == 3
        healed = tick(defs, WEBHOOK_SENSOR, result.cursor, instance)
        assert healed.asset_events[1].passed and len(receiver.unique) == 3
        # Materialising the deliveries asset (the UI's "deliver now") runs its check too.
        run = dg.materialize([defs.get_assets_def(names.webhooks_key("acme")), *defs.asset_checks],
                             instance=instance, resources=defs.resources)
        assert run.success
        [evaluation] = run.get_asset_check_evaluations()
        assert evaluation.passed and evaluation.check_name == NO_DEAD_LETTERS
        [materialization] = run.get_asset_materialization_events()
        assert materialization.materialization.metadata["delivered"].value == 3
