"""A brand's file assets (raw per source; validated and mapped per entity it feeds: one partition per
delivery) and its platform tables."""

import warnings
from collections.abc import Callable

import dagster as dg
import polars as pl
import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand, duration
from bspk_pipelines.defs import names
from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource
from bspk_pipelines.defs.tables import file_schema, table_kinds, table_schema
from bspk_pipelines.model.entities import CELL, ENTITIES, referenced
from bspk_pipelines.model.shopify import ShopifySource
from bspk_pipelines.ingest.drop import FileNameError, classify, delivery_number, dropped_name
from bspk_pipelines.ingest.stores import Changed, Refused
from bspk_pipelines.ingest.parse import LINE, FileFailure
from bspk_pipelines.ingest.months import MONTH, rebuild_months, rows_at_rebuild
from bspk_pipelines.ingest.apply import apply_pending
from bspk_pipelines.ingest.check import validate_file
from bspk_pipelines.ingest.contribute import map_file
from bspk_pipelines.ingest.precedence import owned_columns, provided_columns
from bspk_pipelines.ingest.land import NotRetried, land
from bspk_pipelines.ingest.ledger import rejected_rows
from bspk_pipelines.warehouse.apply import Counts, held_count
from bspk_pipelines.warehouse.schema import ENTITY_TABLES
from bspk_pipelines.warehouse.special_orders import needing_action

PREVIEW_ROWS = 5


def _md(frame: pl.DataFrame | None) -> dg.MetadataValue:
    if frame is None or frame.is_empty():
        return dg.MetadataValue.md("_no rows_")
    frame = frame.drop(LINE, CELL, strict=False).head(PREVIEW_ROWS)
    cols = frame.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v).replace("|", "\\|")[:60] for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def file_partitions(brand: Brand, source: str) -> dg.DynamicPartitionsDefinition:
    """One partition per delivery of the source, shared by its raw, validated and mapped assets."""
    return dg.DynamicPartitionsDefinition(name=names.file_partitions(brand.brand, source))


def _delivery(brand: Brand, layout, source: str, key: str):
    """The delivery a partition key stands for, classified by its drop folder name (a landed one
    retried needs no drop file: its place in the queue is recorded)."""
    dropped = dropped_name(key)
    store = layout.drop_store(brand, source)
    try:
        seen = store.stat(dropped)
    finally:
        store.close()
    delivery = classify(brand, source, dropped, seen.mtime_ns / 1e9 if seen else 0.0)
    return delivery if key == dropped else delivery.again(delivery_number(key))


def build_raw_asset(brand: Brand, source: str) -> dg.AssetsDefinition:
    """A source's delivered files, copied unchanged into the landing zone: one partition per delivery."""
    b = brand.brand
    fed = [e for e in brand.entities if source in brand.sources_of(e)]

    shopify = isinstance(brand.sources[source], ShopifySource)

    @dg.asset(
        key=names.raw_key(b, source), partitions_def=file_partitions(brand, source), group_name=names.group(b, names.RAW),
        deps=[names.shopify_key(b, source)] if shopify else [], kinds={"jsonl" if shopify else "csv"}, tags={"brand": b, "source": source}, owners=brand.owners,
        description=f"Files from {b}'s {source} ({', '.join(fed)}), copied unchanged into the landing zone with "
        "their size and sha256, one partition per delivery. A name that comes again with other bytes is a new "
        "delivery (`name@2`); the same bytes again are recorded as a duplicate and not applied. "
        "Materialising a failed delivery retries it with the brand's current config.",
    )
    def raw_file(context: dg.AssetExecutionContext, warehouse: WarehouseResource, folders: BrandFoldersResource) -> dg.MaterializeResult:
        key = context.partition_key
        layout = folders.layout
        try:
            delivery = _delivery(brand, layout, source, key)
            result = land(warehouse.engine, layout, brand, delivery, context.run.tags.get(names.SHA_TAG), context.run_id)
        except FileNotFoundError:
            raise dg.Failure(description=f"{dropped_name(key)} is not in {b}'s {source} drop store", metadata={"file": key}) from None
        except FileNameError as e:
            raise dg.Failure(description=str(e), metadata={"file": key, "status": "failed"}) from None
        except NotRetried as e:
            raise dg.Failure(description=f"{key}: not retried: {e}", metadata={"file": key, "status": "failed"}) from None
        except (Changed, Refused) as e:
            raise dg.Failure(description=f"{key}: {e}" if isinstance(e, Refused) else str(e),
                             metadata={"file": key, "status": "refused" if isinstance(e, Refused) else "not ready"}) from None
        return dg.MaterializeResult(metadata={
            "file": key, "entities": ", ".join(delivery.entities), "status": result.status, "message": result.message,
            "sha256": result.sha256, "size_bytes": result.size,
            "landed_path": dg.MetadataValue.path(layout.landed_at(b, source, key)),
        })

    return raw_file


def build_file_assets(brand: Brand, source: str, entity: str) -> list[dg.AssetsDefinition]:
    """validated -> mapped for one entity a source's files feed, partitioned by delivery."""
    b = brand.brand
    partitions = file_partitions(brand, source)
    tags = {"brand": b, "source": source, "entity": entity}
    raw, validated, mapped = (
        names.raw_key(b, source), names.validated_key(b, source, entity), names.mapped_key(b, source, entity)
    )
    provided = provided_columns(brand, entity)[source]
    # Every key column is kept: one the source does not send takes its blank or default value.
    contributed = [c for c in owned_columns(brand, source, entity) if c in provided or c in ENTITIES[entity].key]

    @dg.asset(
        key=validated, deps=[raw], partitions_def=partitions, group_name=names.group(b, names.VALIDATED), kinds={"parquet"},
        tags=tags, owners=brand.owners, metadata={"dagster/column_schema": file_schema(entity, provided)},
        check_specs=[dg.AssetCheckSpec("reject_rate", asset=validated,
                                       description=f"share of rows rejected stays at or below {brand.reject_rate_threshold:.0%}")],
        description=f"{b}'s {source} {entity} rows parsed with the source's CSV dialect, mapped to the "
        "platform's columns and checked against the platform's rules. Each bad row is kept in "
        "`rejects` with its line, column, value as sent and rule; rows the mapping's skip rules leave out "
        "are counted as skipped, with their rule; a file that cannot be read fails whole.",
    )
    def validated_rows(context: dg.AssetExecutionContext, warehouse: WarehouseResource, folders: BrandFoldersResource):
        name = context.partition_key
        try:
            result = validate_file(warehouse.engine, folders.layout, brand, source, entity, name)
        except FileFailure as e:
            raise dg.Failure(description=str(e), metadata={"file": name, "status": "failed"}) from None
        if result.status == "missing":
            raise dg.Failure(description=f"{name}: {result.message} for {entity} (does the file feed {entity}?)",
                             metadata={"file": name})
        checked = result.rows + result.rejected
        # Of the rows checked: a row the mapping skips is neither applied nor rejected.
        rate = result.rejected / checked if checked else 0.0
        # Shares are shown as percentages, as a data engineer reads them (4.2, not 0.042).
        percent = round(100 * rate, 2)
        rejects = pl.DataFrame([r.__dict__ for r in result.rejects[:PREVIEW_ROWS]]) if result.rejects else None
        skips = pl.DataFrame(result.skips[:PREVIEW_ROWS]) if result.skips else None
        passed_over = pl.DataFrame([p.__dict__ for p in result.passed_over[:PREVIEW_ROWS]]) if result.passed_over else None
        yield dg.MaterializeResult(
            metadata={
                "file": name, "status": result.status, "message": result.message,
                "rows_read": checked + result.skipped, "dagster/partition_row_count": result.rows,
                "rows_unchanged": result.unchanged, "rows_skipped": result.skipped, "rejected": result.rejected,
                "rejected_percent": percent, "preview": _md(result.preview), "rejects_preview": _md(rejects),
                "skipped_preview": _md(skips),
                # Lines the dialect says are no rows (before the header, a trailer): counted, shown.
                "lines_passed_over": len(result.passed_over), "passed_over_preview": _md(passed_over),
            },
            check_results=[dg.AssetCheckResult(
                check_name="reject_rate", passed=rate <= brand.reject_rate_threshold,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"rejected_percent": percent, "threshold_percent": round(100 * brand.reject_rate_threshold, 2),
                          "rejected": result.rejected},
            )],
        )

    @dg.asset(
        key=mapped, deps=[validated], partitions_def=partitions, group_name=names.group(b, names.MAPPED), kinds={"parquet"},
        tags=tags, owners=brand.owners, metadata={"dagster/column_schema": file_schema(entity, contributed)},
        description=f"{source}'s contribution to {b}'s {entity}: its valid rows limited to the attributes "
        "the brand's precedence lets it set, ready to merge.",
    )
    def mapped_rows(context: dg.AssetExecutionContext, warehouse: WarehouseResource, folders: BrandFoldersResource) -> dg.MaterializeResult:
        name = context.partition_key
        result = map_file(warehouse.engine, folders.layout, brand, source, entity, name)
        if result.status == "missing":
            raise dg.Failure(description=f"{name}: {result.message} for {entity} (does the file feed {entity}?)",
                             metadata={"file": name})
        return dg.MaterializeResult(metadata={
            "file": name, "status": result.status, "message": result.message,
            "dagster/partition_row_count": result.rows, "preview": _md(result.preview),
        })

    return [validated_rows, mapped_rows]


def _checks(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("unique", asset=key, description="no two records share a value that must be unique (keys: the primary key)"),
        dg.AssetCheckSpec("references", asset=key, description="rows held because their shopper or product is not known yet"),
    ]


def _check_results(conn: sa.Connection, entity_name: str, scope: sa.ColumnElement[bool], held_now: int) -> list[dg.AssetCheckResult]:
    """The table's checks over the rows `scope` selects (a run's months, or the brand's table),
    with the brand's rows of the entity held now."""
    duplicates = _uniqueness_violations(conn, entity_name, scope)
    return [
        dg.AssetCheckResult(check_name="unique", passed=not duplicates, metadata={"violations": dg.MetadataValue.json(duplicates)}),
        dg.AssetCheckResult(check_name="references", passed=held_now == 0, severity=dg.AssetCheckSeverity.WARN,
                            metadata={"held": held_now}),
    ]


def _counts(counts: Counts) -> dict[str, int]:
    return {k: counts.as_dict()[k] for k in ("inserted", "updated", "unchanged", "deleted", "released")}


def _upstream(brand: Brand, entity_name: str) -> list[dg.AssetDep]:
    b = brand.brand
    deps = [dg.AssetDep(names.mapped_key(b, s, entity_name), partition_mapping=dg.AllPartitionMapping())
            for s in brand.sources_of(entity_name)]
    return deps + [dg.AssetDep(names.bspk_key(b, e)) for e in referenced(entity_name) if e in brand.entities]


def _table_spec(brand: Brand, entity_name: str, dialect: sa.Dialect) -> dict:
    """What a platform table's asset says of itself: group, storage kind, tags, owners, columns,
    and how fresh it should be."""
    return {"group_name": names.group(brand.brand, names.BSPK), "kinds": table_kinds(dialect),
            "tags": {"brand": brand.brand, "entity": entity_name}, "owners": brand.owners,
            "metadata": {"dagster/column_schema": table_schema(entity_name, dialect)},
            "freshness_policy": freshness(brand)}


def freshness(brand: Brand) -> dg.FreshnessPolicy | None:
    """A table no delivery reached for the brand's `sync.expect_every` warns, for twice that
    fails (none if the brand expects nothing). A table is materialised only when a file is applied
    to it or held rows are released, so that state says the brand's exports stopped arriving.
    The sync interval would not do: it says how often the pipeline looks, and a quiet brand's
    tables would all read failed within three of its ticks."""
    if brand.sync.expect_every is None:
        return None
    window = duration(brand.sync.expect_every)
    return dg.FreshnessPolicy.time_window(warn_window=window, fail_window=2 * window)


# What a table's materialisation says beyond its counts, for the entities whose rows mean more.
TABLE_FACTS: dict[str, Callable[[sa.Connection, str], dict]] = {
    "special_order_events": lambda conn, brand: {"orders_needing_action": len(needing_action(conn, brand))},
}


def build_platform_table(brand: Brand, entity_name: str, dialect: sa.Dialect) -> dg.AssetsDefinition:
    """The platform table of one entity: every source's mapped files merged and applied in order."""
    b = brand.brand
    key = names.bspk_key(b, entity_name)
    entity = ENTITIES[entity_name]

    @dg.asset(
        key=key, deps=_upstream(brand, entity_name), **_table_spec(brand, entity_name, dialect),
        check_specs=_checks(key), output_required=False,
        description=f"{b}'s {entity_name} table in the warehouse ({entity.file_type} records). Applies every "
        "mapped file first in, first out, writing only rows whose content changed, one transaction per file; "
        "rows whose shopper or product is unknown are held and applied when it arrives.",
    )
    def platform_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource, folders: BrandFoldersResource):
        engine = warehouse.engine
        applied, released = apply_pending(engine, folders.layout, brand, entity_name)
        table = ENTITY_TABLES[entity_name]
        whole = table.c.brand == b
        with engine.connect() as conn:
            held_now = held_count(conn, b, entity_name)
            checks = _check_results(conn, entity_name, whole, held_now)
            if not applied and not released.released:
                # Nothing changed: the checks, but no materialisation, so the table's history
                # (and its plots) show only real writes.
                context.log.info(f"{b}'s {entity_name}: no file pending and no held row released")
                yield from checks
                return
            rejected = sum(rejected_rows(conn, b, entity_name, [(a.source, a.file) for a in applied]).values())
            rows = conn.execute(sa.select(sa.func.count()).select_from(table).where(whole)).scalar_one()
            preview = conn.execute(sa.select(table).where(whole).limit(PREVIEW_ROWS)).mappings().all()
            facts = TABLE_FACTS[entity_name](conn, b) if entity_name in TABLE_FACTS else {}
        total = Counts()
        for a in applied:
            total += a.counts
            context.log.info(f"{a.file}: {a.counts.as_dict()}")
        total += released
        yield dg.MaterializeResult(
            metadata={
                "files_applied": len(applied), "rejected": rejected, **_counts(total), "held": held_now, **facts,
                "dagster/row_count": rows, "preview": _md(pl.DataFrame([dict(r) for r in preview]) if preview else None),
                "files": dg.MetadataValue.md("\n".join(f"- `{a.file}` ({a.source}): {a.counts.as_dict()}" for a in applied)
                                             or "_held rows released_"),
            },
            check_results=checks,
        )

    return platform_table


def month_partitions(brand: Brand) -> dg.MonthlyPartitionsDefinition:
    """Months from the brand's history_start to the current month, keyed YYYY-MM as the CLI spells them."""
    return dg.MonthlyPartitionsDefinition(start_date=brand.history_start, fmt=MONTH, end_offset=1)


def build_history_table(brand: Brand, entity_name: str, dialect: sa.Dialect) -> dg.AssetsDefinition:
    """A month-partitioned platform table (sales): each month rebuilt from everything landed for it."""
    # backfill_policy is marked beta in Dagster 1.13; its warning would print on every load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _history_asset(brand, entity_name, dialect)


def _history_asset(brand: Brand, entity_name: str, dialect: sa.Dialect) -> dg.AssetsDefinition:
    b = brand.brand
    key = names.bspk_key(b, entity_name)

    @dg.asset(
        key=key, deps=_upstream(brand, entity_name), **_table_spec(brand, entity_name, dialect),
        partitions_def=month_partitions(brand), backfill_policy=dg.BackfillPolicy.multi_run(brand.months_per_run),
        check_specs=_checks(key), output_required=False,
        description=f"{b}'s {entity_name} in the warehouse, by month from {brand.history_start}. Materialising a "
        "month rebuilds it from every file landed for it (the latest version of each line wins), writing only "
        "the difference, in one transaction; a backfill over every month equals one big load. Lines whose "
        "shopper or product is unknown are held and the month rebuilds when it arrives.",
    )
    def history_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource, folders: BrandFoldersResource):
        engine = warehouse.engine
        rebuilt = rebuild_months(engine, folders.layout.data_dir, b, entity_name, context.partition_keys)
        changed = {m: c.as_dict() for m, c in rebuilt.items() if c.inserted or c.updated or c.deleted or c.held}
        context.log.info(f"rebuilt {len(rebuilt)} month(s); changed: {changed or 'none'}")
        entity, table = ENTITIES[entity_name], ENTITY_TABLES[entity_name]
        with engine.connect() as conn:
            # Each month reports its own counts, however many months the run rebuilt.
            rows = rows_at_rebuild(conn, b, entity_name, list(rebuilt))
            for month, counts in rebuilt.items():
                yield dg.AssetMaterialization(asset_key=key, partition=month, metadata={
                    **_counts(counts), "held": counts.held, "dagster/partition_row_count": rows[month]})
            # Checks cover the run's months: the whole history is not re-read per run.
            window = context.partition_time_window
            column = table.c[entity.month_column]
            scope = sa.and_(table.c.brand == b, column >= window.start.replace(tzinfo=None),
                            column < window.end.replace(tzinfo=None))
            yield from _check_results(conn, entity_name, scope, held_count(conn, b, entity_name))

    return history_table


def _uniqueness_violations(conn: sa.Connection, entity_name: str, scope: sa.ColumnElement[bool]) -> dict[str, int]:
    """Values that must be unique per record, shared. Keys need no look: the table's primary key
    keeps equal keys apart, and holds each ref that ignores case by its folded copy
    (`schema.match_key`), so keys that differ only in case are equal keys."""
    entity = ENTITIES[entity_name]
    table = ENTITY_TABLES[entity_name]
    found = {}
    groups = {c.name: [table.c[c.name]] for c in entity.columns if c.unique}
    for label, cols in groups.items():
        dup = sa.select(*cols).where(scope, *[c.is_not(None) for c in cols]).group_by(*cols).having(sa.func.count() > 1)
        n = conn.execute(sa.select(sa.func.count()).select_from(dup.subquery())).scalar_one()
        if n:
            found[label] = n
    return found
