"""Every brand's definitions (ingest and outbound) merged with the project-wide resources and executor."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
# Dagster 1.13 (pinned) resolves an asset job only against the whole location's assets in public;
# these resolve a brand's jobs among its own (see `brand_definitions`).
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.execution.build_resources import wrap_resources_for_execution

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.defs.ingest.factory import build_ingest
from bspk_pipelines.defs.ingest.sensors import build_drop_sensor
from bspk_pipelines.defs.outbound import build_outbound, build_webhook_sensor
from bspk_pipelines.defs.resources import Initialized, default_resources
from bspk_pipelines.defs.tables import warehouse_dialect

# Every run in one process, the UI's materialisations too: a run's steps follow each other (land,
# validate, map, apply) and take the brand's writer lock, so a process per step would add its
# start-up time and run nothing side by side.
EXECUTOR = dg.in_process_executor


def build_definitions(brands: list[Brand], resources: dict | None = None) -> dg.Definitions:
    """`resources` replaces the ones from the environment (tests point them at their own folders)."""
    resources = resources or default_resources()
    url = resources["warehouse"].url
    dialect = warehouse_dialect(url.get_value() if isinstance(url, dg.EnvVar) else url)
    resource_defs = wrap_resources_for_execution(resources)
    built = [brand_definitions(b, dialect, resource_defs) for b in brands]
    # One drop sensor and one webhook sensor for all the brands (see `sensors`).
    ready = Initialized(resources)
    sensors = [build_drop_sensor(brands, [j for _, jobs in built for j in jobs], ready),
               build_webhook_sensor(brands, ready)] if brands else []
    return dg.Definitions.merge(
        *[defs for defs, _ in built],
        dg.Definitions(sensors=sensors, resources=resources, executor=EXECUTOR),
    )


def brand_definitions(brand: Brand, dialect: sa.Dialect, resource_defs: dict) -> tuple[dg.Definitions, list[dg.JobDefinition]]:
    """One brand's definitions with its jobs resolved among its own assets, and the jobs the drop
    sensor requests. Dagster would resolve each job's selection against every brand's assets: a
    load that grew with the square of the brands (200 jobs at 50 brands: 6 s of a 16 s load)."""
    ingest, drop_jobs = build_ingest(brand, dialect)
    defs = dg.Definitions.merge(ingest, build_outbound(brand))
    graph = AssetGraph.from_assets([*defs.assets, *defs.asset_checks])
    jobs = {job.name: job.resolve(asset_graph=graph, default_executor_def=EXECUTOR, resource_defs=resource_defs)
            for job in defs.jobs}
    return (dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=list(jobs.values()), schedules=defs.schedules),
            [jobs[job.name] for job in drop_jobs])
