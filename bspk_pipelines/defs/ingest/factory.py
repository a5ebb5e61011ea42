"""One brand's ingest: its file assets, platform tables, jobs and sync schedule (the drop sensor
watches every brand of the code location: `sensors.build_drop_sensor`)."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.defs import names
from bspk_pipelines.defs.ingest.assets import build_file_assets, build_history_table, build_platform_table, build_raw_asset
from bspk_pipelines.defs.ingest.pulls import build_pull
from bspk_pipelines.defs.scheduling import on_sync_interval
from bspk_pipelines.ingest.apply import entities_waiting
from bspk_pipelines.model.entities import ENTITIES
from bspk_pipelines.model.shopify import ShopifySource


def build_ingest(brand: Brand, dialect: sa.Dialect) -> tuple[dg.Definitions, list[dg.UnresolvedAssetJobDefinition]]:
    """The brand's definitions, and the jobs the drop sensor requests runs of. `dialect`: the
    warehouse's, which the platform tables' kinds and column types name."""
    b = brand.brand
    by_month = [e for e in brand.entities if ENTITIES[e].month_column]
    whole = [e for e in brand.entities if e not in by_month]
    tables = [build_platform_table(brand, e, dialect) for e in whole] + [build_history_table(brand, e, dialect) for e in by_month]
    table_keys = [names.bspk_key(b, e) for e in whole]
    file_assets, jobs, pulls, pull_schedules = [], [], [], []
    for source, spec in brand.sources.items():
        if isinstance(spec, ShopifySource):
            asset, job, schedules = build_pull(brand, source)
            file_assets.append(asset)
            pulls.append(job)
            pull_schedules += schedules
        fed = [e for e in brand.entities if source in brand.sources_of(e)]
        file_assets.append(build_raw_asset(brand, source))
        for entity in fed:
            file_assets += build_file_assets(brand, source, entity)
        jobs.append(dg.define_asset_job(
            names.ingest_job(b, source),
            # A run carries one partitions definition: month tables rebuild in runs of their own.
            # Each run selects the assets of the entities its delivery feeds.
            selection=[names.raw_key(b, source), *[k for e in fed for k in (names.validated_key(b, source, e),
                                                                         names.mapped_key(b, source, e))], *table_keys],
            tags={names.BRAND_TAG: b},
            description=f"Lands one delivery from {b}'s {source}, then validates, maps and applies it for each "
            "entity it feeds.",
        ))
    for entity in by_month:
        jobs.append(dg.define_asset_job(
            names.months_job(b, entity), selection=[names.bspk_key(b, entity)], tags={names.BRAND_TAG: b},
            description=f"Rebuilds months of {b}'s {entity} from everything landed for them.",
        ))
    apply = dg.define_asset_job(
        names.apply_job(b), selection=table_keys, tags={names.BRAND_TAG: b},
        description=f"Applies {b}'s pending files and releases held rows whose references have arrived.",
    )
    return dg.Definitions(
        assets=[*file_assets, *tables], jobs=[*jobs, *pulls, apply],
        schedules=[*on_sync_interval(brand, names.sync_schedule(b), apply.name, "applies what is pending and releases held rows",
                                     waiting=lambda engine: _tables_waiting(brand, engine)), *pull_schedules],
    ), jobs


def _tables_waiting(brand: Brand, engine: sa.Engine) -> list[dg.AssetKey]:
    with engine.connect() as conn:
        return [names.bspk_key(brand.brand, e) for e in entities_waiting(conn, brand)]
