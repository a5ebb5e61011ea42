"""A Shopify source in Dagster: an asset whose materialisation pulls what changed in the shop and
writes it as deliveries into the source's drop folder, a job and a schedule on the brand's
interval. The drop sensor then lands each delivery as it does any file, so lineage reads
shop -> raw deliveries -> validated -> mapped -> platform tables."""

import dagster as dg

from bspk_pipelines.defs import names
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.shopify.client import ShopifyError
from bspk_pipelines.shopify.pull import pull_source


class PullConfig(dg.Config):
    """`full`: every object through a bulk operation, as on the first pull (a backfill)."""

    full: bool = False


def build_pull(brand: Brand, source: str) -> tuple[dg.AssetsDefinition, object, list[dg.ScheduleDefinition]]:
    b = brand.brand
    shop = brand.sources[source]

    @dg.asset(
        key=names.shopify_key(b, source), group_name=names.group(b, names.RAW), kinds={"shopify"}, owners=brand.owners,
        tags={"brand": b, "source": source},
        description=f"{shop.shop}'s {', '.join(shop.objects)} through the GraphQL Admin API {shop.api_version}. "
        "Materialising pulls what changed since the last pull (a bulk operation the first time, or with "
        "`full: true` in the run's config) and writes it as JSONL deliveries into the source's drop folder, "
        "which the drop sensor lands as the source's raw deliveries.",
    )
    def shopify_objects(context: dg.AssetExecutionContext, config: PullConfig, warehouse: WarehouseResource,
                        folders: BrandFoldersResource) -> dg.MaterializeResult:
        try:
            done, client = pull_source(warehouse.engine, folders.layout, brand, source, full=config.full)
        except ShopifyError as e:
            raise dg.Failure(description=str(e)) from None
        for pulled in done:
            context.log.info(str(pulled))
            for note in pulled.notes:
                context.log.warning(f"{pulled.obj}: {note}")
        if client.throttle.waits:
            context.log.info(f"waited {client.throttle.waited_seconds:.1f} s in {client.throttle.waits} waits for "
                             f"{shop.shop}'s query cost bucket")
        return dg.MaterializeResult(metadata={
            **{f"{p.obj}_nodes": p.nodes for p in done},
            **{f"{p.obj}_lines": p.lines for p in done},
            "deliveries": ", ".join(p.delivery for p in done if p.delivery) or "none: nothing changed",
            "how": ", ".join(f"{p.obj}: {p.how}" for p in done),
            "throttle_waits": client.throttle.waits,
            "throttle_seconds": round(client.throttle.waited_seconds, 2),
        })

    tags = {names.PULL_TAG: f"{b}.{source}"}
    job = dg.define_asset_job(names.pull_job(b, source), selection=[names.shopify_key(b, source)], tags=tags,
                              description=f"Pulls what changed in {shop.shop} into {b}'s {source} deliveries.")
    schedules = [_pull_schedule(brand, source, job, tags)] if brand.schedule_cron else []
    return shopify_objects, job, schedules


UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]


def _pull_schedule(brand: Brand, source: str, job, tags: dict[str, str]) -> dg.ScheduleDefinition:
    """The pull on the brand's interval; a tick while a pull of the source is queued or running
    (a bulk load takes a while) starts none, so ticks never pile up behind it."""
    shop = brand.sources[source].shop

    @dg.schedule(name=names.pull_schedule(brand.brand, source), cron_schedule=brand.schedule_cron, job_name=job.name,
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"{brand.brand}'s sync interval ({brand.sync.interval}): pulls what changed in {shop}.")
    def pull_schedule(context: dg.ScheduleEvaluationContext):
        running = context.instance.get_runs(dg.RunsFilter(tags=tags, statuses=UNFINISHED), limit=1)
        if running:
            return dg.SkipReason(f"run {running[0].run_id[:8]} still pulls {shop}")
        return dg.RunRequest(tags=tags)

    return pull_schedule
