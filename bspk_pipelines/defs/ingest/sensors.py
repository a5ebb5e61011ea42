"""Watching the brands' drop stores: one run per file once it has stopped growing.

One sensor watches every brand of a code location. A sensor per brand cost the daemon a tick, a
call to the code server and a write of the tick for each brand every second: at fifty idle brands
the daemon fell behind, and a dropped file waited about 15 s for its brand's turn."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from dataclasses import dataclass, field

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.defs import names
from bspk_pipelines.defs.resources import Initialized
from bspk_pipelines.model.entities import ENTITIES, dependents
from bspk_pipelines.ingest.months import month_bounds, pending, pending_by_brand
from bspk_pipelines.ingest.drop import (
    Delivery, FileNameError, classify, delivery_key, delivery_number, hash_delivered, look,
)
from bspk_pipelines.ingest.stores import Changed, DropStore, Refused, Snapshot
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.ingest.ledger import REFUSED, record_duplicate, record_failed_name, record_refused, recorded, still_there
from bspk_pipelines.warehouse.apply import entities_with_held
from bspk_pipelines.warehouse.engine import writing

_hasher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sha256")
# The brands' looks side by side: a store over the network (SFTP, a bucket) waits on its server,
# and one slow server must not hold back the other brands' looks for long.
_looks = ThreadPoolExecutor(max_workers=8, thread_name_prefix="drop-look")


@dataclass
class Plan:
    """What one look at the drop folders decided: runs to request, and what to remember."""

    runs: list[dg.RunRequest] = field(default_factory=list)
    partitions: dict[str, list[str]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    # Re-deliveries recorded without a run: their raw partitions' materialisations, reported as is.
    duplicates: list[dg.AssetMaterialization] = field(default_factory=list)
    cursor: dict = field(default_factory=dict)
    # Files seen that have not stopped growing yet: another look will take them.
    settling: int = 0
    # Sources whose drop store was refused whole (unreachable, credentials refused, no folder): why.
    refused_stores: dict[str, str] = field(default_factory=dict)


def load_cursor(text: str | None) -> dict:
    """One brand's cursor, as `plan_runs` takes and gives it."""
    return _brand_cursor(json.loads(text) if text else {})


def _brand_cursor(cursor: dict) -> dict:
    return {"seen": cursor.get("seen", {}), "requested": cursor.get("requested", {})}


def load_cursors(text: str | None) -> dict[str, dict]:
    """The drop sensor's cursor: each brand's, by brand (a brand with nothing on its way in has none)."""
    return {b: _brand_cursor(c) for b, c in (json.loads(text) if text else {}).items()}


def dump_cursors(cursors: dict[str, dict]) -> str:
    """The drop sensor's cursor, without the brands and sources that have nothing on their way in:
    with two hundred idle brands it stays a few bytes."""
    kept = {}
    for brand, cursor in cursors.items():
        parts = {part: {s: files for s, files in by_source.items() if files} for part, by_source in cursor.items()}
        if any(parts.values()):
            kept[brand] = {part: by_source for part, by_source in parts.items() if by_source}
    return json.dumps(kept, sort_keys=True)


def run_request(brand: Brand, delivery: Delivery, sha: str | None, also_apply: list[str]) -> dg.RunRequest:
    """The run of one delivery: landed once, then checked, contributed and applied for each
    entity it feeds (`sha`: the bytes it must land; None to retry a landed one)."""
    b, s = brand.brand, delivery.source
    selection = [names.raw_key(b, s)]
    for e in delivery.entities:
        selection += [names.validated_key(b, s, e), names.mapped_key(b, s, e)]
    # A month-partitioned table is rebuilt by month runs once the file has landed its months.
    tables = [e for e in delivery.entities if not ENTITIES[e].month_column]
    selection += [names.bspk_key(b, t) for t in dict.fromkeys(tables + also_apply)]
    return dg.RunRequest(
        # One sensor requests every brand's runs: two brands may get the same file.
        run_key=f"{b}/{s}/{delivery.name}/{sha}" if sha else None,
        job_name=names.ingest_job(b, s),
        partition_key=delivery.name,
        asset_selection=selection,
        tags={names.BRAND_TAG: b, names.FILE_TAG: delivery.name, "source": s, "entity": ",".join(delivery.entities),
              **({names.SHA_TAG: sha} if sha else {})},
    )


def plan_runs(brand: Brand, layout: Layout, engine: sa.Engine, cursor: dict, log=None,
              months_waiting: dict[tuple[str, str], list[tuple[str, datetime]]] | None = None) -> Plan:
    """Ready files not requested before, in first-in-first-out and dependency order.

    A file counts once two looks saw the same size and modification time, or once its `.done`
    marker exists; a file that changed after it was requested is requested again, as its new
    bytes. A name that comes again with other bytes (a fixed export name overwritten) is the next
    delivery under it, `name@2`; with the bytes of its last delivery it is the same one, touched.
    A name that says nothing we can apply is recorded as a failed file; a link, an entry that is
    not a regular file or a file that cannot be read is recorded as refused (and looked at again),
    without stopping the brand's other files. `months_waiting`: the pending months of the drop
    sensor's brands, read once for all of them (`pending_by_brand`); read here if not given.
    """
    plan = Plan(cursor={"seen": {}, "requested": {}})
    found: list[tuple[Delivery, str]] = []

    def report(message: str) -> None:
        plan.failed.append(message)
        if log:
            log.warning(f"{brand.brand}: {message}")

    for source in brand.sources:
        store = layout.drop_store(brand, source)
        try:
            found += _look_at(brand, source, store, engine, cursor, plan, report)
        finally:
            store.close()
    found.sort(key=lambda f: f[0].sort_key)
    with engine.connect() as conn:
        for delivery, sha in found:
            plan.runs.append(run_request(brand, delivery, sha, also_apply(conn, brand, delivery, found)))
            _add_partition(plan, brand, delivery)
    plan.runs += month_requests(brand, engine, months_waiting)
    return plan


def _look_at(brand: Brand, source: str, store: DropStore, engine: sa.Engine, cursor: dict, plan: Plan,
             report) -> list[tuple[Delivery, str]]:
    """One source's files to request (see `plan_runs`), its part of the cursor and its records."""
    found: list[tuple[Delivery, str]] = []
    previous = {n: Snapshot(*v) for n, v in cursor["seen"].get(source, {}).items()}
    try:
        seen = look(store, previous)
    except Refused as e:
        report(f"{store.where}: refused: {e}")
        plan.refused_stores[source] = str(e)
        plan.cursor["seen"][source] = cursor["seen"].get(source, {})
        plan.cursor["requested"][source] = cursor["requested"].get(source, {})
        return found
    for name, refusal in seen.refused.items():
        if record_refused(engine, brand.brand, source, name, refusal):
            report(f"{name}: refused: {refusal}")
    if not seen.seen:
        # An empty drop store: nothing on its way in, and nothing to ask the ledger.
        plan.cursor["seen"][source], plan.cursor["requested"][source] = {}, {}
        return found
    with engine.connect() as conn:
        ledger = recorded(conn, brand.brand, source, only=seen.seen.keys())
    # The cursor holds only files on their way in: one the ledger holds as it is in the folder
    # is remembered there (a refused one is looked at again, whatever the cursor says).
    arriving = {n: s for n, s in seen.seen.items()
                if n not in ledger or ledger[n].status == REFUSED or not _as_recorded(ledger[n], s)}
    plan.cursor["seen"][source] = {n: [s.size, s.mtime_ns, s.etag] for n, s in arriving.items()}
    # What was requested of each file not recorded yet (its run is queued): [sha256, size,
    # mtime_ns, etag].
    kept = {n: v for n, v in cursor["requested"].get(source, {}).items()
            if n in arriving and (n not in ledger or ledger[n].status != REFUSED)}
    ready = {n: s for n, s in seen.ready if n in arriving}
    plan.settling += sum(1 for n in arriving if n not in ready and n not in kept)
    fresh = [(n, s) for n, s in ready.items() if _requested_as(kept.get(n)) != s]
    # Each is hashed (a re-delivery? changed since it was imported?), side by side where the
    # store allows, as hashlib lets go of the GIL.
    hashes = {name: _hasher.submit(hash_delivered, store, name) for name, _ in fresh} if store.parallel_reads else {}
    for name, snap in fresh:
        try:
            sha = hashes[name].result() if name in hashes else hash_delivered(store, name)
        except (FileNotFoundError, Changed):
            continue  # gone or replaced since the look: the next look sees what is there
        except Refused as e:
            if record_refused(engine, brand.brand, source, name, e):
                report(f"{name}: refused: {e}")
            continue
        kept[name] = [sha, snap.size, snap.mtime_ns, snap.etag]
        before = ledger.get(name)
        if before is not None and before.status != REFUSED and sha == before.sha256:
            # Touched, not changed: the same delivery still in the folder.
            with writing(engine) as conn:
                still_there(conn, brand.brand, source, before.name, snap)
            continue
        # A name that comes again with other bytes is the next delivery under it.
        number = (delivery_number(before.name) if before.status == REFUSED else before.deliveries + 1) if before else 1
        try:
            delivery = classify(brand, source, name, snap.mtime_ns / 1e9).again(number)
        except FileNameError as e:
            if record_failed_name(engine, brand.brand, source, delivery_key(name, number), sha, snap, str(e)):
                report(str(e))
            continue
        twin = record_duplicate(engine, brand.brand, delivery, sha, snap)
        if twin:
            # The same bytes came before: no run (nothing to land or apply), only the record.
            plan.duplicates.append(dg.AssetMaterialization(
                asset_key=names.raw_key(brand.brand, source), partition=delivery.name,
                description=f"same bytes as {twin}: recorded as a duplicate, not applied",
                metadata={"file": delivery.name, "status": "duplicate", "duplicate_of": twin, "sha256": sha, "size_bytes": snap.size},
            ))
            _add_partition(plan, brand, delivery)
            continue
        found.append((delivery, sha))
    plan.cursor["requested"][source] = kept
    return found


def _as_recorded(row, snap: Snapshot) -> bool:
    """Whether a drop file still looks as it did when it was recorded (size, and the time and
    version when the record has them)."""
    return (row.size == snap.size and row.dropped_mtime_ns in (None, snap.mtime_ns)
            and row.dropped_etag in (None, snap.etag))


def _requested_as(requested) -> Snapshot | None:
    """The snapshot a file had when it was requested (None from a cursor of an earlier version)."""
    return Snapshot(*requested[1:]) if isinstance(requested, list) else None


def also_apply(conn: sa.Connection, brand: Brand, delivery: Delivery, coming: list[tuple[Delivery, str]]) -> list[str]:
    """Tables a delivery's run applies besides its own: those that depend on what it feeds and hold
    rows waiting for it, or that other deliveries of the same look feed."""
    in_tick = {e for d, _ in coming for e in d.entities}
    also = []
    for entity in delivery.entities:
        waiting = set(entities_with_held(conn, brand.brand, entity))
        also += [d for d in dependents(entity)
                 if d in brand.entities and not ENTITIES[d].month_column and (d in waiting or d in in_tick)]
    return list(dict.fromkeys(also))


def _add_partition(plan: Plan, brand: Brand, delivery: Delivery) -> None:
    plan.partitions.setdefault(names.file_partitions(brand.brand, delivery.source), []).append(delivery.name)


def month_requests(brand: Brand, engine: sa.Engine,
                   months_waiting: dict[tuple[str, str], list[tuple[str, datetime]]] | None = None) -> list[dg.RunRequest]:
    """Runs rebuilding the months that new files or arrived references left pending, in ranges
    of consecutive months (at most the brand's months_per_run each). `months_waiting`: as
    `pending_by_brand` gives them; read here if not given."""
    requests = []
    for entity in brand.entities:
        if not ENTITIES[entity].month_column:
            continue
        waiting = (pending(engine, brand.brand, entity) if months_waiting is None
                   else months_waiting.get((brand.brand, entity), []))
        for chunk in _consecutive(waiting, brand.months_per_run):
            first, last = chunk[0][0], chunk[-1][0]
            stamp = max(since for _, since in chunk).isoformat()
            requests.append(dg.RunRequest(
                run_key=f"{brand.brand}/months/{entity}/{first}..{last}/{stamp}",
                job_name=names.months_job(brand.brand, entity),
                tags={names.BRAND_TAG: brand.brand, "entity": entity,
                      names.RANGE_START_TAG: first, names.RANGE_END_TAG: last},
            ))
    return requests


def _consecutive(waiting: list[tuple[str, datetime]], most: int) -> list[list[tuple[str, datetime]]]:
    chunks: list[list[tuple[str, datetime]]] = []
    for month, since in waiting:
        last = chunks[-1][-1][0] if chunks else None
        if last and len(chunks[-1]) < most and month_bounds(last)[1] == month_bounds(month)[0]:
            chunks[-1].append((month, since))
        else:
            chunks.append([(month, since)])
    return chunks


def build_drop_sensor(brands: list[Brand], jobs: list, resources: Initialized) -> dg.SensorDefinition:
    """The sensor that watches every brand's drop stores (`brands`: a code location's) and requests
    each brand's runs, with a cursor per brand. A brand whose look fails is reported and keeps
    its cursor; the other brands' looks go on. `resources`: the location's."""
    watched = ", ".join(f"{b.brand} ({', '.join(s.drop or f'{b.brand}/shopify/{sid}' for sid, s in b.sources.items())})"
                        for b in brands[:DESCRIBED_BRANDS])
    more = f" and {len(brands) - DESCRIBED_BRANDS} more" if len(brands) > DESCRIBED_BRANDS else ""

    @dg.sensor(
        name=names.DROP_SENSOR, jobs=jobs, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Watches the drop stores of {watched}{more}, and requests one run per file once it has stopped "
        "growing or has a .done marker.",
    )
    def drop_sensor(context: dg.SensorEvaluationContext):
        return look_at_brands(brands, resources["folders"].layout, resources["warehouse"].engine, context.cursor,
                              TickLog(context))

    return drop_sensor


class TickLog:
    """A tick's log, taken at its first message: Dagster keeps it with the instance, which it
    opens for it (see `resources.Initialized`), and most ticks have nothing to say."""

    def __init__(self, context: dg.SensorEvaluationContext):
        self._context = context

    def warning(self, message: str) -> None:
        self._context.log.warning(message)

    def error(self, message: str) -> None:
        self._context.log.error(message)


# A sensor's description names this many brands' drop stores; the brand files say the rest.
DESCRIBED_BRANDS = 20


def look_at_brands(brands: list[Brand], layout: Layout, engine: sa.Engine, cursor: str | None, log) -> dg.SensorResult:
    """One tick of the drop sensor: every brand's look, side by side (see `plan_runs`)."""
    cursors = load_cursors(cursor)
    months_waiting = pending_by_brand(engine, [b.brand for b in brands])

    def plan(brand: Brand) -> Plan | None:
        try:
            return plan_runs(brand, layout, engine, cursors.get(brand.brand, load_cursor(None)), log, months_waiting)
        except Exception as e:  # noqa: BLE001 - one brand's failure must not stop the others' drops
            log.error(f"{brand.brand}: its drop stores were not looked at: {type(e).__name__}: {e}")
            return None

    runs, partitions, duplicates, after = [], [], [], {}
    for brand, planned in zip(brands, _looks.map(plan, brands)):
        if planned is None:
            after[brand.brand] = cursors.get(brand.brand, load_cursor(None))
            continue
        runs += planned.runs
        partitions += [dg.AddDynamicPartitionsRequest(p, keys) for p, keys in planned.partitions.items()]
        duplicates += planned.duplicates
        after[brand.brand] = planned.cursor
    return dg.SensorResult(
        run_requests=runs, cursor=dump_cursors(after), dynamic_partitions_requests=partitions, asset_events=duplicates,
        skip_reason=None if runs else f"{len(duplicates)} duplicate(s) recorded" if duplicates
        else f"no new file has settled in the drop stores of {len(brands)} brand(s)",
    )
