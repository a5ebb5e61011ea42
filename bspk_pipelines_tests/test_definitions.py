"""The definitions of the two sample brands (`mappings/acme.yaml`, `mappings/maison.yaml`) as a
reviewed snapshot, and the Dagster idioms they follow (groups, kinds, column schemas, executor).

The snapshot, `snapshots/definitions.json`, lists every asset key with its group, kinds and
columns, the asset checks, jobs, sensors and schedules: any change to the graph shows in review
as a diff of that file. After a change you mean, rewrite it and commit it with the change:

    BSPK_UPDATE_SNAPSHOTS=1 .venv/bin/pytest bspk_pipelines_tests/test_definitions.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from bspk_pipelines.defs import names
from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
from bspk_pipelines.model.brand_file import load_brands

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
MAPPINGS = Path(__file__).parent.parent / "mappings"


def sample_definitions(tmp_path: Path, url: str | None = None) -> dg.Definitions:
    return build_definitions(load_brands(MAPPINGS), {
        "warehouse": WarehouseResource(url=url or f"sqlite:///{tmp_path / 'warehouse.sqlite'}"),
        "folders": BrandFoldersResource(data_dir=str(tmp_path / "data")),
    })


def repository(defs: dg.Definitions) -> dg.RepositoryDefinition:
    # With an instance of its own, as a code server loads it (the load reads the instance's state).
    with dg.DagsterInstance.ephemeral():
        return defs.get_repository_def()


def _windows(policy) -> str:
    return f"warn after {policy.warn_window.to_timedelta()}, fail after {policy.fail_window.to_timedelta()}"


def describe(repo: dg.RepositoryDefinition) -> dict:
    """What the snapshot records of the definitions, in a stable order."""
    graph = repo.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        schema = node.metadata.get("dagster/column_schema")
        # One line each: a change to an asset reads as one changed line.
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": ", ".join(sorted(node.kinds)),
            "checks": ", ".join(sorted(c.name for c in node.check_keys)),
            **({"columns": ", ".join(c.name for c in schema.columns)} if schema else {}),
            **({"freshness": _windows(node.freshness_policy)} if node.freshness_policy else {}),
            **({"owners": ", ".join(node.owners)} if node.owners else {}),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "sensors": {s.name: {"jobs": sorted(j.name for j in s.jobs) if s.has_jobs else [],
                             "default_status": s.default_status.value} for s in sorted(repo.sensor_defs, key=lambda s: s.name)},
        "schedules": {s.name: {"cron": s.cron_schedule, "job": s.job_name, "default_status": s.default_status.value}
                      for s in sorted(repo.schedule_defs, key=lambda s: s.name)},
    }


def test_sample_brands_definitions_match_the_snapshot(tmp_path):
    found = json.dumps(describe(repository(sample_definitions(tmp_path))), indent=1) + "\n"
    if os.environ.get("BSPK_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(found)
    assert found == SNAPSHOT.read_text(), (
        "the definitions changed: if you meant it, BSPK_UPDATE_SNAPSHOTS=1 rewrites the snapshot; commit the diff")


def test_every_job_and_the_ui_materialisations_run_in_process(tmp_path):
    defs = sample_definitions(tmp_path)
    repo = repository(defs)
    jobs = [*repo.get_all_jobs(), defs.resolve_implicit_global_asset_job_def()]
    assert len(jobs) > 10 and {j.executor_def for j in jobs} == {dg.in_process_executor}


def test_layers_are_groups_and_keys_keep_their_layer(tmp_path):
    graph = repository(sample_definitions(tmp_path)).asset_graph
    for key in graph.get_all_asset_keys():
        brand, layer = key.path[0], key.path[1]
        # A shop is where its raw deliveries come from: shown beside them.
        expected = names.OUTBOUND if layer in ("extract", "webhooks") else names.RAW if layer == names.SHOPIFY else layer
        assert graph.get(key).group_name == names.group(brand, expected)


@pytest.mark.parametrize(("url", "kinds", "timestamp"), [
    ("sqlite:///warehouse.sqlite", {"sqlite"}, "DATETIME"),
    ("postgresql+psycopg2://postgres@127.0.0.1:5432/test", {"postgres"}, "TIMESTAMP WITHOUT TIME ZONE"),
    ("mysql+pymysql://user@host/db", {"sql", "mysql"}, "DATETIME(6)"),
])
def test_platform_tables_are_of_the_warehouse_kind_with_its_column_types(tmp_path, url, kinds, timestamp):
    """Known from the URL at load, without connecting (nor a driver for MySQL)."""
    node = repository(sample_definitions(tmp_path, url)).asset_graph.get(names.bspk_key("acme", "sales"))
    assert node.kinds == kinds
    columns = {c.name: c for c in node.metadata["dagster/column_schema"].columns}
    assert columns["created_at"].type == timestamp


def test_column_schemas_say_keys_required_and_rules(tmp_path):
    graph = repository(sample_definitions(tmp_path)).asset_graph

    def columns(key: dg.AssetKey) -> dict[str, dg.TableColumn]:
        return {c.name: c for c in graph.get(key).metadata["dagster/column_schema"].columns}

    table = columns(names.bspk_key("acme", "shoppers"))
    assert list(table)[:2] == ["brand", "shopper_ref"] and list(table)[-2:] == ["_file", "_updated_at"]
    ref, phone = table["shopper_ref"], table["mobile_phone"]
    assert "key" in ref.constraints.other and not ref.constraints.nullable and ref.constraints.unique
    assert phone.description == "a phone number in E.164 form" and phone.constraints.unique and phone.constraints.nullable
    assert table["gender"].description == "one of M, F, NB"
    prices = columns(names.bspk_key("acme", "product_prices"))
    assert "required" in prices["price"].constraints.other and "at least 0" in prices["price"].constraints.other
    assert "blank when unknown, never null" in prices["starting_on"].constraints.other
    # A file's columns are those its source sends; a mapped file's, what precedence lets it set and
    # the whole key (Maison's POS sends no language_code: its products are the default language).
    validated = columns(names.validated_key("maison", "pos", "products"))
    mapped = columns(names.mapped_key("maison", "pos", "products"))
    assert "brand" not in validated and "language_code" not in validated and "description" not in validated
    assert set(mapped) == set(validated) | {"language_code"}
    assert "description" in columns(names.mapped_key("maison", "erp", "products"))
