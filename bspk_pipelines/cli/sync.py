"""`bspk sync`: what changed in brands' shops pulled, what is pending in their drop folders
processed once, through the jobs the schedules and the sensor launch, and a summary of what the
warehouse holds from it."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.cli.environment import deployment
from bspk_pipelines.cli.instance import QUIET, add_partitions, each_brand, failure, resource
from bspk_pipelines.defs import names
from bspk_pipelines.defs.ingest.sensors import load_cursor, plan_runs
from bspk_pipelines.ingest.ledger import failed
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.entities import DEPENDENCY_ORDER
from bspk_pipelines.model.shopify import ShopifySource
from bspk_pipelines.settings import Settings
from bspk_pipelines.warehouse.schema import files, held, months
from bspk_pipelines.warehouse.special_orders import needing_action


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Sync the wanted brands (default: all), then print the summary. Exit 0 when every delivery is
    applied (or a duplicate), 1 when one failed, now or before and not retried yet (0 with
    `allow_failed`), or when a drop store was refused whole (whatever `allow_failed` says: nothing
    of it was looked at), 2 for a config error. `settings` are the deployment's unless given
    (`bspk demo` gives its own)."""
    refused: list[str] = []  # brands with a drop store refused whole

    def step(defs: dg.Definitions, brand: Brand, instance: dg.DagsterInstance) -> bool:
        print(f"{brand.brand}:")
        pulled = all([r.success for r in pull_shops(defs, brand, instance)])
        synced = take_pending(defs, brand, instance, args.settle)
        if not_taken_from(brand, synced.refused_stores):
            refused.append(brand.brand)
        ran = all([r.success for r in synced.runs])
        return still_failed(resource(defs, "warehouse").engine, brand) == 0 and ran and pulled

    defs, brands, ok = each_brand(settings or deployment(), args.brand, step)
    engine = resource(defs, "warehouse").engine
    print()
    print(summary(engine, [b.brand for b in brands]))
    for line in alerts(engine, [b.brand for b in brands if "special_order_events" in b.entities]):
        print(line)
    return 1 if refused or not (ok or args.allow_failed) else 0


def pull_shops(defs: dg.Definitions, brand: Brand, instance: dg.DagsterInstance, only: str | None = None,
               full: bool = False, out=print) -> list[dg.ExecuteInProcessResult]:
    """Pull what changed in each of the brand's Shopify sources (or `only` that one; everything
    through bulk operations with `full`) into their drop folders, through the pull job the
    schedule runs; what each pull did, a line per object."""
    results = []
    for sid, source in brand.sources.items():
        if not isinstance(source, ShopifySource) or only not in (None, sid):
            continue
        job = defs.resolve_job_def(names.pull_job(brand.brand, sid))
        [op] = [node.name for node in job.graph.node_defs]
        result = job.execute_in_process(instance=instance, raise_on_error=False,
                                        run_config=QUIET | {"ops": {op: {"config": {"full": full}}}})
        for record in instance.all_logs(result.run_id):
            if not record.is_dagster_event and record.step_key:
                out(f"  {sid}: {record.user_message}")
        if not result.success:
            out(f"  {sid}: pull FAILED: {failure(result)}")
        results.append(result)
    return results


@dataclass
class Synced:
    """What one sync of a brand's drop stores did: the runs, and the sources whose store was
    refused whole (unreachable, credentials refused, no folder), with why."""

    runs: list[dg.ExecuteInProcessResult]
    refused_stores: dict[str, str]


def sync_brand(defs: dg.Definitions, brand: Brand, instance: dg.DagsterInstance, settle_seconds: float = 1.0, out=print) -> list[dg.ExecuteInProcessResult]:
    """The runs of `take_pending`."""
    return take_pending(defs, brand, instance, settle_seconds, out).runs


def take_pending(defs: dg.Definitions, brand: Brand, instance: dg.DagsterInstance, settle_seconds: float = 1.0,
                 out=print) -> Synced:
    """Process everything pending in the brand's drop folders through the same jobs the sensor
    launches, recording each run in the Dagster instance; each problem said once. Waits
    `settle_seconds` between looks so a file still being written is left for later."""
    warehouse, folders = resource(defs, "warehouse"), resource(defs, "folders")
    layout = folders.layout
    cursor = load_cursor(None)
    results = []
    refused: dict[str, str] = {}
    said: set[str] = set()
    done: set[str] = set()
    for _ in range(100):
        plan = plan_runs(brand, layout, warehouse.engine, cursor)
        refused |= plan.refused_stores
        for problem in plan.failed:
            if problem not in said:
                said.add(problem)
                out(f"  not taken: {problem}")
        for partitions, keys in plan.partitions.items():
            add_partitions(instance, partitions, keys)
        for event in plan.duplicates:
            instance.report_runless_asset_event(event)
            out(f"  {event.partition}: {event.description} (no run needed)")
        ran = False
        for request in plan.runs:
            if request.run_key in done:
                continue  # as a sensor would: one run per run key (a failed one waits for a fix)
            done.add(request.run_key)
            ran = True
            results.append(execute(defs, instance, request, out))
        cursor = plan.cursor
        if not ran and not plan.settling:
            break
        time.sleep(settle_seconds)
    return Synced(results, refused)


def not_taken_from(brand: Brand, refused_stores: dict[str, str], out=print) -> int:
    """One line naming the brand's sources whose drop store was refused whole (why is said above),
    and how to try again; how many there are."""
    if refused_stores:
        whose, them = ("its drop store was", "it") if len(refused_stores) == 1 else ("their drop stores were", "them")
        out(f"  nothing was taken from {', '.join(refused_stores)}: {whose} refused (above); fix {them}, then: "
            f"bspk sync --brand {brand.brand}")
    return len(refused_stores)


def still_failed(engine: sa.Engine, brand: Brand, out=print) -> int:
    """One line for each of the brand's deliveries that failed and wait for a fix, with how to
    retry it; how many there are."""
    with engine.connect() as conn:
        waiting = failed(conn, brand.brand)
    for r in waiting:
        out(f"  failed: {r.error}" + (f" [{r.entity}]" if r.entity else ""))
    if waiting:
        out(f"  fix the file or {brand.brand}.yaml, then: bspk retry --brand {brand.brand} [--file NAME]")
    return len(waiting)


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest, out=print) -> dg.ExecuteInProcessResult:
    """Run what a sensor would request, in this process, recorded in the instance; one line out."""
    result = defs.resolve_job_def(request.job_name).execute_in_process(
        instance=instance, partition_key=request.partition_key, asset_selection=request.asset_selection,
        tags=request.tags, raise_on_error=False, run_config=QUIET,
    )
    outcome = "ok" if result.success else "FAILED: " + _unnamed(failure(result), request.partition_key)
    out(f"  {_what(request)}: run {result.run_id[:8]} {outcome}")
    return result


def _unnamed(message: str, name: str | None) -> str:
    """A run's failure without the file name it starts with: the line names the file already."""
    return message.removeprefix(f"{name}: ") if name else message


def _what(request: dg.RunRequest) -> str:
    if request.partition_key:
        return request.partition_key
    start, end = request.tags[names.RANGE_START_TAG], request.tags[names.RANGE_END_TAG]
    return f"{request.tags.get('entity', '')} months {start}" + ("" if start == end else f" to {end}")


def alerts(engine: sa.Engine, brands: list[str]) -> list[str]:
    """A line per brand whose special orders ask an associate for action (their last event says
    so), naming each order, its event and the associate alerted."""
    lines = []
    with engine.connect() as conn:
        for brand in brands:
            waiting = needing_action(conn, brand)
            if waiting:
                lines.append(f"{brand}: {len(waiting)} special order(s) need action: " + "; ".join(
                    f"{o['order_ref']} ({o['sequence']} {o['description']}, {o['sales_associate_id']})" for o in waiting))
    return lines


def summary(engine: sa.Engine, brands: list[str]) -> str:
    """Per brand and entity: files, rows read, inserted, updated, unchanged, rejected, skipped (by
    the mapping's skip rules), held, and files failed, duplicate or refused (a refused entry feeds
    no entity: it counts as `(unknown)`)."""
    f = files.c
    query = (
        sa.select(
            f.brand, f.entity, sa.func.count().label("files"),
            *[sa.func.coalesce(sa.func.sum(c), 0).label(c.name)
              for c in (f.rows_read, f.inserted, f.updated, f.unchanged, f.rejected, f.skipped, f.superseded)],
            sa.func.sum(sa.case((f.status == "failed", 1), else_=0)).label("failed"),
            sa.func.sum(sa.case((f.status == "duplicate", 1), else_=0)).label("duplicate"),
            sa.func.sum(sa.case((f.status == "refused", 1), else_=0)).label("refused"),
        )
        .where(f.brand.in_(brands))
        .group_by(f.brand, f.entity)
    )
    m = months.c
    by_month = sa.select(m.brand, m.entity, sa.func.sum(m.inserted).label("inserted"), sa.func.sum(m.updated).label("updated")
                         ).where(m.brand.in_(brands)).group_by(m.brand, m.entity)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        # Month-partitioned tables count their writes per month rebuild; unchanged is what is left.
        rebuilt = {(r.brand, r.entity): r for r in conn.execute(by_month)}
        holds = dict(((r.brand, r.entity), r.n) for r in conn.execute(
            sa.select(held.c.brand, held.c.entity, sa.func.count().label("n")).group_by(held.c.brand, held.c.entity)))
    cols = ["files", "rows_read", "inserted", "updated", "unchanged", "rejected", "skipped", "held", "failed", "duplicate",
            "refused"]
    width = max([len("(unknown)"), *(len(r["entity"] or "") for r in rows)])
    lines = [f"{'brand':<8} {'entity':<{width}} " + " ".join(f"{c:>9}" for c in cols)]
    for r in sorted(rows, key=lambda r: (r["brand"], DEPENDENCY_ORDER.get(r["entity"], 99))):
        values = r | {"held": holds.get((r["brand"], r["entity"]), 0)}
        if (r["brand"], r["entity"]) in rebuilt:
            month = rebuilt[(r["brand"], r["entity"])]
            values |= {"inserted": month.inserted, "updated": month.updated}
            values["unchanged"] = max(0, r["rows_read"] - r["rejected"] - r["skipped"] - r["superseded"] - month.inserted
                                      - month.updated - values["held"])
        lines.append(f"{r['brand']:<8} {r['entity'] or '(unknown)':<{width}} "
                     + " ".join(f"{int(values[c]):>9,}" for c in cols))
    return "\n".join(lines)
