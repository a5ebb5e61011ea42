"""A brand's jobs on its sync interval (`sync.interval` in its YAML)."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.defs import names
from bspk_pipelines.defs.resources import WarehouseResource


def on_sync_interval(brand: Brand, name: str, job: str, does: str,
                     waiting: Callable[[sa.Engine], list[dg.AssetKey]] | None = None) -> list[dg.ScheduleDefinition]:
    """A running schedule of the job named `job` on the brand's interval; none if the brand has no
    interval. (By name: the brand's jobs are resolved on their own, see `project`.)

    With `waiting`, a tick asks it which of the job's assets have work and runs only those: a tick
    with nothing pending starts no run (and writes no empty materialisation)."""
    if not brand.schedule_cron:
        return []
    tags = {names.BRAND_TAG: brand.brand}

    @dg.schedule(
        name=name, cron_schedule=brand.schedule_cron, job_name=job, default_status=dg.DefaultScheduleStatus.RUNNING,
        tags=tags, description=f"{brand.brand}'s sync interval ({brand.sync.interval}): {does}.",
    )
    def sync_schedule(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
        if waiting is None:
            return dg.RunRequest(tags=tags)
        keys = waiting(warehouse.engine)
        if not keys:
            return dg.SkipReason("nothing pending: every file is applied and no held row can be released yet")
        return dg.RunRequest(asset_selection=keys, tags=tags)

    return [sync_schedule]
