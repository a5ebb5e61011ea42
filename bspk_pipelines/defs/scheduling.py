"""A brand's jobs on its sync interval (`sync.interval` in its YAML)."""

from __future__ import annotations

import dagster as dg

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.defs import names


def on_sync_interval(brand: Brand, name: str, job: dg.UnresolvedAssetJobDefinition, does: str) -> list[dg.ScheduleDefinition]:
    """A running schedule of `job` on the brand's interval; none if the brand has no interval."""
    if not brand.schedule_cron:
        return []
    return [dg.ScheduleDefinition(
        name=name, cron_schedule=brand.schedule_cron, job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING, tags={names.BRAND_TAG: brand.brand},
        description=f"{brand.brand}'s sync interval ({brand.sync.interval}): {does}.",
    )]
