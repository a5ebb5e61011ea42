"""One brand's outbound side: extracts as assets on the brand's interval, and webhook deliveries.

Webhooks go out from one sensor for every brand of the code location, every few seconds (no run
per delivery: a run each time would bury the brands' ingest runs). What the sensor does shows on
each brand's `[brand, "webhooks", "deliveries"]` asset: a materialisation when its counts change,
and its `no_dead_letters` check, which fails while events wait for `bspk webhooks replay`.
Materialising that asset delivers the brand's events that are due at once.
"""

import json

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.defs import names
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource, Initialized
from bspk_pipelines.defs.scheduling import on_sync_interval
from bspk_pipelines.outbound.extracts import outbox_folder, run_extract
from bspk_pipelines.outbound.webhooks.admin import dead_letters, delivery_counts
from bspk_pipelines.outbound.webhooks.delivery import deliver
from bspk_pipelines.outbound.webhooks.statuses import DEAD_LETTER_STATUSES

# The brand's tables an extract reads besides the platform's own (lineage in the UI).
EXTRACT_UPSTREAM = {"clients": ("shoppers", "sales_associates", "stores"), "sales_associates": ("sales_associates",)}
NO_DEAD_LETTERS = "no_dead_letters"
SENSOR_INTERVAL_SECONDS = 10
SENSOR_BUDGET_SECONDS = 40  # under Dagster's 60 s limit for one sensor evaluation


def build_extract_asset(brand: Brand, entity: str) -> dg.AssetsDefinition:
    b, fmt = brand.brand, brand.extracts.format
    deps = [names.bspk_key(b, e) for e in EXTRACT_UPSTREAM.get(entity, ()) if e in brand.entities]

    @dg.asset(
        key=names.extract_key(b, entity), deps=deps, group_name=names.group(b, names.OUTBOUND), kinds={fmt},
        tags={"brand": b, "entity": entity}, owners=brand.owners,
        description=f"{b}'s {entity} changed since the last extract, as a {fmt} file with a manifest in its outbox "
                    f"(look-back {brand.extracts.lookback}, rows seen again skipped).",
    )
    def extract(context: dg.AssetExecutionContext, warehouse: WarehouseResource, folders: BrandFoldersResource) -> dg.MaterializeResult:
        result = run_extract(warehouse.engine, brand, entity, outbox_folder(folders.layout.data_dir, brand))
        metadata = {
            "rows": dg.MetadataValue.int(result.rows),
            "seen_again": dg.MetadataValue.int(result.skipped),
            "watermark": dg.MetadataValue.text(str(result.watermark_after)),
            "previous_watermark": dg.MetadataValue.text(str(result.watermark_before)),
        }
        if result.path:
            metadata |= {
                "file": dg.MetadataValue.path(str(result.path)),
                "sha256": dg.MetadataValue.text(result.sha256),
                "updated_from": dg.MetadataValue.text(str(result.first_updated)),
                "updated_to": dg.MetadataValue.text(str(result.last_updated)),
            }
        context.log.info(f"{entity}: {result.rows} row(s)" + (f" in {result.path.name}" if result.path else ", no file"))
        return dg.MaterializeResult(metadata=metadata)

    return extract


def _dead_letter_check(conn: sa.Connection, brand: str, counts: dict[str, int]) -> tuple[bool, dict]:
    """Passed, and the metadata: how many dead letters, and the first ten."""
    dead = sum(counts[s] for s in DEAD_LETTER_STATUSES)
    sample = [f"{d.status} {d.event_name} {d.message_id} -> {d.target_url}: {d.last_error}"
              for d in dead_letters(conn, brand, limit=10)] if dead else []
    return dead == 0, {"dead_letters": dg.MetadataValue.int(dead),
                       "sample": dg.MetadataValue.md("\n".join(f"- {s}" for s in sample) or "none")}


def build_webhooks(brand: Brand) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    b = brand.brand
    key = names.webhooks_key(b)

    @dg.asset(
        key=key, group_name=names.group(b, names.OUTBOUND), kinds={"webhook"}, tags={"brand": b}, owners=brand.owners,
        description=f"{b}'s webhook deliveries. The {names.WEBHOOK_SENSOR} sensor delivers every "
                    f"{SENSOR_INTERVAL_SECONDS} s; materialising delivers what is due now and reports the counts.",
    )
    def deliveries(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        report = deliver(warehouse.engine, [brand], budget_seconds=SENSOR_BUDGET_SECONDS)
        context.log.info(report.summary())
        return dg.MaterializeResult(metadata={k: dg.MetadataValue.int(v) for k, v in report.counts_by_brand[b].items()})

    @dg.asset_check(asset=key, name=NO_DEAD_LETTERS, description="Events whose retries ran out (or a 422) wait for a replay.")
    def no_dead_letters(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.engine.connect() as conn:
            passed, metadata = _dead_letter_check(conn, b, delivery_counts(conn, b))
        return dg.AssetCheckResult(passed=passed, metadata=metadata)

    return deliveries, no_dead_letters


def build_webhook_sensor(brands: list[Brand], resources: Initialized) -> dg.SensorDefinition:
    """One sensor delivering every brand's events: its cursor holds each brand's counts, and a
    brand whose counts changed gets a materialisation of its deliveries asset and its check.
    `resources`: the location's."""

    @dg.sensor(
        name=names.WEBHOOK_SENSOR, minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Delivers the webhook events of {len(brands)} brand(s): in order per client, retried with "
                    "back-off for 96 h.",
    )
    def webhook_sensor(context: dg.SensorEvaluationContext):
        warehouse = resources["warehouse"]
        report = deliver(warehouse.engine, brands, budget_seconds=SENSOR_BUDGET_SECONDS)
        before = json.loads(context.cursor) if context.cursor else {}
        events = []
        for b, counts in report.counts_by_brand.items():
            if counts == before.get(b):
                continue
            with warehouse.engine.connect() as conn:
                passed, dead_metadata = _dead_letter_check(conn, b, counts)
            # The deliveries changed: a materialisation, so the asset reads when they last did.
            key = names.webhooks_key(b)
            events += [
                dg.AssetMaterialization(asset_key=key, metadata={k: dg.MetadataValue.int(v) for k, v in counts.items()}),
                dg.AssetCheckEvaluation(asset_key=key, check_name=NO_DEAD_LETTERS, passed=passed, metadata=dead_metadata),
            ]
        return dg.SensorResult(skip_reason=report.summary(), cursor=json.dumps(report.counts_by_brand, sort_keys=True),
                               asset_events=events)

    return webhook_sensor


def build_outbound(brand: Brand) -> dg.Definitions:
    b = brand.brand
    extracts = [build_extract_asset(brand, e) for e in brand.extracts.entities]
    deliveries, check = build_webhooks(brand)
    job = dg.define_asset_job(
        names.extract_job(b), selection=[names.extract_key(b, e) for e in brand.extracts.entities],
        tags={names.BRAND_TAG: b},
        description=f"Writes {b}'s incremental extracts of engagement data to its outbox.",
    )
    return dg.Definitions(
        assets=[*extracts, deliveries], asset_checks=[check], jobs=[job],
        schedules=on_sync_interval(brand, names.extract_schedule(b), job.name, "extracts what changed since the last run"),
    )
