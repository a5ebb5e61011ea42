"""`bspk`: check brand configs, sync drop folders once, backfill months, write extracts, manage webhooks, run the demo."""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand, ConfigError, load_brands, mappings_dir
from bspk_pipelines.defs import names

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The console shows one line per run (a failure's is its message, never a stack trace); every
# event, stack traces included, is still stored in the instance for the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def check_config(args: argparse.Namespace) -> int:
    """Report every mistake in the brand files with file, key path, expected and found."""
    try:
        brands = load_brands(Path(args.mappings) if args.mappings else None)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) found", file=sys.stderr)
        return 1
    for b in brands:
        print(f"{b.brand}: ok ({', '.join(f'{s} ({src.format})' for s, src in b.sources.items())}; entities: {', '.join(b.entities)})")
    return 0


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to .dagster_home in the project, with the embedded dagster.yaml."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


@contextmanager
def open_instance() -> Iterator[dg.DagsterInstance]:
    """The Dagster instance at DAGSTER_HOME. Processes that start together on a new DAGSTER_HOME
    create its storage one at a time: Dagster's SQLite storage would record its schema twice."""
    home = ensure_dagster_home()
    with (home / ".bspk-instance.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
    with instance:
        yield instance


def sync_brand(defs: dg.Definitions, brand: Brand, instance: dg.DagsterInstance, settle_seconds: float = 1.0, out=print) -> list[dg.ExecuteInProcessResult]:
    """Process everything pending in the brand's drop folders through the same jobs the sensor
    launches, recording each run in the Dagster instance. Waits `settle_seconds` between looks
    so a file still being written is left for later."""
    from bspk_pipelines.defs.ingest.sensors import load_cursor, plan_runs

    warehouse, folders = resource(defs, "warehouse"), resource(defs, "folders")
    layout = folders.layout
    cursor = load_cursor(None)
    results = []
    done: set[str] = set()
    for _ in range(100):
        plan = plan_runs(brand, layout, warehouse.engine, cursor)
        for problem in plan.failed:
            out(f"  not taken: {problem}")
        for partitions, keys in plan.partitions.items():
            instance.add_dynamic_partitions(partitions, keys)
        for event in plan.duplicates:
            instance.report_runless_asset_event(event)
            out(f"  {event.partition}: {event.description} (no run needed)")
        ran = False
        for request in plan.runs:
            if request.run_key in done:
                continue  # as a sensor would: one run per run key (a failed one waits for a fix)
            done.add(request.run_key)
            ran = True
            job = defs.resolve_job_def(request.job_name)
            result = job.execute_in_process(
                instance=instance, partition_key=request.partition_key, asset_selection=request.asset_selection,
                tags=request.tags, raise_on_error=False, run_config=QUIET,
            )
            results.append(result)
            outcome = "ok" if result.success else "FAILED: " + _failure(result)
            out(f"  {_what(request)}: run {result.run_id[:8]} {outcome}")
        cursor = plan.cursor
        unsettled = any(
            name not in cursor["requested"].get(source, {}) for source, seen in cursor["seen"].items() for name in seen
        )
        if not ran and not unsettled:
            break
        time.sleep(settle_seconds)
    return results


def resource(defs: dg.Definitions, key: str):
    """A resource as a run sees it: EnvVar settings (the warehouse URL) resolved."""
    return defs.resources[key].process_config_and_initialize()


def _what(request: dg.RunRequest) -> str:
    if request.partition_key:
        return request.partition_key
    start, end = request.tags[names.RANGE_START_TAG][:7], request.tags[names.RANGE_END_TAG][:7]
    return f"{request.tags.get('entity', '')} months {start}" + ("" if start == end else f" to {end}")


def _failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.user_failure_data:
            return event.step_failure_data.user_failure_data.description or "step failed"
        if event.is_step_failure:
            return event.step_failure_data.error.message.strip().splitlines()[-1]
    return "run failed"


def summary(engine: sa.Engine, brands: list[str]) -> str:
    """Per brand and entity: files, rows read, inserted, updated, unchanged, rejected, held, and
    files failed, duplicate or refused (a refused entry feeds no entity: it counts as `(unknown)`)."""
    from bspk_pipelines.warehouse.schema import files, held, months

    f = files.c
    query = (
        sa.select(
            f.brand, f.entity, sa.func.count().label("files"),
            *[sa.func.coalesce(sa.func.sum(c), 0).label(c.name) for c in (f.rows_read, f.inserted, f.updated, f.unchanged, f.rejected)],
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
    from bspk_pipelines.model.entities import DEPENDENCY_ORDER

    cols = ["files", "rows_read", "inserted", "updated", "unchanged", "rejected", "held", "failed", "duplicate", "refused"]
    lines = [f"{'brand':<8} {'entity':<18} " + " ".join(f"{c:>9}" for c in cols)]
    for r in sorted(rows, key=lambda r: (r["brand"], DEPENDENCY_ORDER.get(r["entity"], 99))):
        values = r | {"held": holds.get((r["brand"], r["entity"]), 0)}
        if (r["brand"], r["entity"]) in rebuilt:
            month = rebuilt[(r["brand"], r["entity"])]
            values |= {"inserted": month.inserted, "updated": month.updated}
            values["unchanged"] = max(0, r["rows_read"] - r["rejected"] - month.inserted - month.updated - values["held"])
        lines.append(f"{r['brand']:<8} {r['entity'] or '(unknown)':<18} " + " ".join(f"{int(values[c]):>9,}" for c in cols))
    return "\n".join(lines)


def _each_brand(wanted: list[str] | None, step) -> tuple[dg.Definitions, list[Brand], bool]:
    """`step(defs, brand, instance) -> ok` for each wanted brand (default: all) on the instance."""
    ensure_dagster_home()
    from bspk_pipelines.defs.project import build_definitions

    brands = _brands(wanted)
    defs = build_definitions(brands)
    with open_instance() as instance:
        ok = all([step(defs, brand, instance) for brand in brands])
    return defs, brands, ok


def sync(args: argparse.Namespace) -> int:
    def step(defs: dg.Definitions, brand: Brand, instance: dg.DagsterInstance) -> bool:
        print(f"{brand.brand}:")
        return all(r.success for r in sync_brand(defs, brand, instance, args.settle))

    defs, brands, ok = _each_brand(args.brand, step)
    print()
    print(summary(resource(defs, "warehouse").engine, [b.brand for b in brands]))
    return 0 if ok or args.allow_failed else 1


def backfill(args: argparse.Namespace) -> int:
    """Rebuild a range of months of a brand's sales, months_per_run months per run."""
    ensure_dagster_home()
    from bspk_pipelines.defs.ingest.assets import month_partitions
    from bspk_pipelines.defs.project import build_definitions

    [brand] = _brands([args.brand])
    keys = month_partitions(brand).get_partition_keys()
    first, last = f"{args.start}-01", f"{args.end}-01"
    wanted = [k for k in keys if first <= k <= last]
    if not wanted:
        print(f"no month of {brand.brand}'s history ({keys[0][:7]} to {keys[-1][:7]}) is in {args.start}..{args.end}", file=sys.stderr)
        return 2
    defs = build_definitions([brand])
    job = defs.resolve_job_def(names.months_job(brand.brand, args.entity))
    ok = True
    with open_instance() as instance:
        for i in range(0, len(wanted), brand.months_per_run):
            chunk = wanted[i:i + brand.months_per_run]
            tags = {names.BRAND_TAG: brand.brand, "entity": args.entity,
                    names.RANGE_START_TAG: chunk[0], names.RANGE_END_TAG: chunk[-1]}
            result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False, run_config=QUIET)
            ok &= result.success
            print(f"  {args.entity} months {chunk[0][:7]} to {chunk[-1][:7]}: run {result.run_id[:8]} "
                  + ("ok" if result.success else "FAILED: " + _failure(result)))
    return 0 if ok else 1


def _brands(wanted: list[str] | None) -> list[Brand]:
    brands = load_brands()
    missing = set(wanted or []) - {b.brand for b in brands}
    if missing:
        print(f"no brand file for {', '.join(sorted(missing))} in {mappings_dir()}", file=sys.stderr)
        raise SystemExit(2)
    return [b for b in brands if not wanted or b.brand in wanted]


def _engine() -> sa.Engine:
    from bspk_pipelines.warehouse.engine import engine_for, warehouse_url

    return engine_for(warehouse_url())


def _webhook_settings():
    """The deployment's webhook settings (`outbound.settings`); a mistake in them is one line on
    stderr and exit status 2."""
    from bspk_pipelines.outbound.settings import SettingError, WebhookSettings

    try:
        return WebhookSettings.from_env()
    except SettingError as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None


def extract(args: argparse.Namespace) -> int:
    """Run brands' extract jobs now, as their schedule would, recorded in the Dagster instance."""
    return 0 if _each_brand(args.brand, _run_extracts)[2] else 1


def _run_extracts(defs: dg.Definitions, brand: Brand, instance: dg.DagsterInstance, out=print) -> bool:
    result = defs.resolve_job_def(names.extract_job(brand.brand)).execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET)
    for event in result.get_asset_materialization_events():
        m = event.materialization
        file = m.metadata.get("file")
        out(f"  {brand.brand} {m.asset_key.path[-1]:<17} {m.metadata['rows'].value:>5} row(s)"
            + (f" -> {Path(file.value).name}" if file else ""))
    if not result.success:
        out(f"  {brand.brand} extracts: run {result.run_id[:8]} FAILED: {_failure(result)}")
    return result.success


def webhooks(args: argparse.Namespace) -> int:
    """Deliver, inspect, replay and re-enable brands' webhooks; re-encrypt their stored secrets
    under the newest key; or receive them locally."""
    from bspk_pipelines.outbound import webhooks as hooks

    if args.action == "receive":
        return _receive(args)
    if args.action == "rotate-key":
        return _rotate_key()
    settings = _webhook_settings() if args.action == "deliver" else None
    brands = _brands(args.brand)
    engine = _engine()
    if args.action == "deliver":
        print(hooks.deliver(engine, brands, budget_seconds=args.budget, settings=settings).summary())
    elif args.action == "list":
        with engine.connect() as conn:
            for brand in brands:
                print(f"{brand.brand}:")
                for e in hooks.endpoints(conn, brand.brand):
                    state = "disabled: " + e.disabled_reason if e.disabled_reason else "enabled" if e.is_enabled else "off"
                    print(f"  endpoint {e.id} {e.target_url} ({state}) events: {', '.join(e.events)}")
                print("  deliveries: " + ", ".join(f"{k} {v}" for k, v in hooks.delivery_counts(conn, brand.brand).items()))
                for d in hooks.dead_letters(conn, brand.brand):
                    print(f"  {d.status} {d.message_id} {d.event_name} -> endpoint {d.endpoint_id} after {d.attempts} "
                          f"attempt(s): {d.last_error}")
    elif args.action == "replay":
        for brand in brands:
            n = hooks.replay(engine, brand.brand, endpoint_id=args.endpoint, message_id=args.event)
            print(f"{brand.brand}: {n} dead-lettered deliver{'y' if n == 1 else 'ies'} queued again")
    elif args.action == "enable":
        if args.endpoint is None:
            print("enable needs --endpoint (see `bspk webhooks list`)", file=sys.stderr)
            return 2
        for brand in brands:
            done = hooks.enable_endpoint(engine, brand.brand, args.endpoint)
            print(f"{brand.brand}: endpoint {args.endpoint} " + ("enabled again" if done else "not found"))
    return 0


def _rotate_key() -> int:
    """Every stored webhook secret encrypted again under the newest key, or nothing changed."""
    from bspk_pipelines.outbound.encryption import UnreadableSecret, reencrypt_secrets

    box = _webhook_settings().box
    try:
        done = reencrypt_secrets(_engine(), box)
    except UnreadableSecret as e:
        print(f"nothing changed: {e}", file=sys.stderr)
        return 1
    print(f"{done.secrets} secret(s) encrypted under the newest key ({done.were_clear} of them stored in clear before)")
    return 0


def _receive(args: argparse.Namespace) -> int:
    from bspk_pipelines.demo.receiver import Receiver, describe

    secret = os.environ.get(args.secret_env)
    if not secret:
        print(f"set {args.secret_env} to the endpoint's whsec_ secret", file=sys.stderr)
        return 2
    receiver = Receiver(secret.split()[0], port=args.port, path=args.path, on_event=lambda e: print(describe(e), flush=True))
    print(f"receiving on {receiver.url}, verifying signatures with {args.secret_env}; Ctrl-C stops", flush=True)
    try:
        receiver.thread.join()
    except KeyboardInterrupt:
        receiver.stop()
    return 0


def _demo_outbound(defs: dg.Definitions, brands: list[Brand]) -> None:
    """Associates at work on the sample brands, their webhooks delivered to local receivers the
    demo starts, and the extracts written."""
    from urllib.parse import urlparse

    from bspk_pipelines.engagement.activity import Platform
    from bspk_pipelines.demo.simulate import simulate
    from bspk_pipelines.outbound import webhooks as hooks
    from bspk_pipelines.demo.receiver import Receiver

    engine = resource(defs, "warehouse").engine
    print("\nAssociates at work (simulated):")
    for brand in brands:
        done = simulate(Platform(engine, brand.brand), actions=60)
        print(f"  {brand.brand}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(done.items())))
    receivers = []
    for brand in brands:
        for endpoint in brand.webhooks.endpoints:
            url, secret = urlparse(endpoint.url), os.environ.get(endpoint.secret_env)
            if url.hostname != "127.0.0.1" or not secret:
                print(f"  {brand.brand}: no local receiver for {endpoint.url} ({endpoint.secret_env} "
                      f"{'set' if secret else 'not set: run `make demo`'})")
                continue
            try:
                receivers.append((brand.brand, Receiver(secret.split()[0], port=url.port, path=url.path)))
            except OSError as e:
                print(f"  {brand.brand}: cannot listen on {endpoint.url} ({e}); its events stay queued")
    print("\nWebhooks (delivered to receivers on 127.0.0.1 that verify every signature):")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        report = hooks.deliver(engine, brands, budget_seconds=20)
        if not report.attempted:
            break
    for brand_id, receiver in receivers:
        kinds = sorted({r.event_name for r in receiver.unique.values()})
        print(f"  {brand_id}: {len(receiver.unique)} event(s) received and verified at {receiver.url} "
              f"({', '.join(kinds)})")
        receiver.stop()
    with engine.connect() as conn:
        for brand in brands:
            print(f"  {brand.brand} deliveries: "
                  + ", ".join(f"{k} {v}" for k, v in hooks.delivery_counts(conn, brand.brand).items()))
    print("\nExtracts (incremental, with manifests):")
    with open_instance() as instance:
        for brand in brands:
            _run_extracts(defs, brand, instance, out=print)


def demo(args: argparse.Namespace) -> int:
    """Generate the bundled sample brands' files, ingest them all through Dagster, then show the
    way out: simulated associate activity, its webhooks delivered, its extracts written."""
    from bspk_pipelines.defs.project import build_definitions
    from bspk_pipelines.demo.samples import generate_samples

    _webhook_settings()  # before the long ingest, not after it
    os.environ.setdefault("BSPK_MAPPINGS_DIR", str(PROJECT_ROOT / "mappings"))
    data = Path(os.environ.setdefault("BSPK_DATA_DIR", str(PROJECT_ROOT / "data")))
    home = ensure_dagster_home()
    written = generate_samples(data)
    print(f"Sample drop files written under {data / 'drop'}: " + ", ".join(f"{b} ({len(p)} files)" for b, p in written.items()))
    code = sync(argparse.Namespace(brand=None, settle=args.settle, allow_failed=True))
    brands = load_brands()
    _demo_outbound(build_definitions(brands), brands)
    print(
        f"\nRuns, asset lineage and metadata are in the Dagster instance at {home}; extracts are under "
        f"{data}/<brand>/outbox.\nOpen the UI on it with `make dev` (dagster dev) and browse http://127.0.0.1:3000."
    )
    return code


def serve(args: argparse.Namespace) -> int:
    """The REST API (Extraction API, Platform API, import upload) over the environment's warehouse
    and drop folders, until Ctrl-C."""
    import uvicorn

    _webhook_settings()  # the Platform API stores webhook secrets: no key, no start
    print(f"API on http://{args.host}:{args.port} (OpenAPI at /openapi.json, docs at /docs); keys: `bspk api-keys`",
          flush=True)
    uvicorn.run("bspk_pipelines.api.app:create_app", factory=True, host=args.host, port=args.port, log_level="info")
    return 0


def dev(args: argparse.Namespace) -> int:
    """The Dagster UI, daemon and sensors (`dagster dev`) and the REST API, until SIGTERM or Ctrl-C
    stops them all."""
    from bspk_pipelines.dev import run

    ensure_dagster_home()
    return run(PROJECT_ROOT / "workspace.yaml", args.host, args.port, args.api_port)


def api_keys(args: argparse.Namespace) -> int:
    """Create, list and revoke a brand's API keys. `create` prints the key alone on stdout, once."""
    from bspk_pipelines.api import keys

    brand = _brands([args.brand])[0].brand
    engine = _engine()
    if args.action == "create":
        if not args.name:
            print("create needs --name: what the key is for", file=sys.stderr)
            return 2
        key_id, key = keys.create_key(engine, brand, args.name)
        print(f"{brand}: key {key_id} ({args.name}) created; it is shown this once, keep it secret:", file=sys.stderr)
        print(key)
    elif args.action == "list":
        with engine.connect() as conn:
            for k in keys.list_keys(conn, brand):
                state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
                print(f"{k.key_id}  {state:<24} created {k.created_at:%Y-%m-%d %H:%M}  {k.name}")
    elif args.action == "revoke":
        if not args.key_id:
            print("revoke needs --key-id (see `bspk api-keys list`)", file=sys.stderr)
            return 2
        done = keys.revoke_key(engine, brand, args.key_id)
        print(f"{brand}: key {args.key_id} " + ("revoked" if done else "not found among the active keys"))
        return 0 if done else 1
    return 0


def _month(text: str) -> str:
    try:
        return time.strftime("%Y-%m", time.strptime(text, "%Y-%m"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a month YYYY-MM; found {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bspk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-config", help="validate every brand file in the mappings folder")
    p.add_argument("--mappings", help="folder of brand YAML files (default: $BSPK_MAPPINGS_DIR or mappings/)")
    p.set_defaults(func=check_config)
    p = sub.add_parser("sync", help="process everything pending in brands' drop folders once")
    p.add_argument("--brand", action="append", help="brand id (repeatable; default: every brand)")
    p.add_argument("--settle", type=float, default=1.0, help="seconds a file must stop growing (default 1)")
    p.add_argument("--allow-failed", action="store_true", help="exit 0 even if a file failed")
    p.set_defaults(func=sync)
    p = sub.add_parser("backfill", help="rebuild a range of months of a brand's sales history")
    p.add_argument("--brand", required=True)
    p.add_argument("--from", dest="start", required=True, type=_month, help="first month, YYYY-MM")
    p.add_argument("--to", dest="end", required=True, type=_month, help="last month, YYYY-MM")
    p.add_argument("--entity", default="sales", help=argparse.SUPPRESS)
    p.set_defaults(func=backfill)
    p = sub.add_parser("extract", help="write brands' incremental extracts to their outboxes now")
    p.add_argument("--brand", action="append", help="brand id (repeatable; default: every brand)")
    p.set_defaults(func=extract)
    p = sub.add_parser("webhooks", help="deliver, list, replay or re-enable webhooks; re-encrypt their stored "
                                        "secrets (rotate-key); or receive them locally")
    p.add_argument("action", choices=["deliver", "list", "replay", "enable", "rotate-key", "receive"])
    p.add_argument("--brand", action="append", help="brand id (repeatable; default: every brand)")
    p.add_argument("--endpoint", type=int, help="endpoint id (replay: only its deliveries; enable: required)")
    p.add_argument("--event", help="replay: only this webhook-id (msg_...)")
    p.add_argument("--budget", type=float, default=40, help="deliver: seconds to keep delivering (default 40)")
    p.add_argument("--port", type=int, default=8765, help="receive: port on 127.0.0.1 (default 8765)")
    p.add_argument("--path", default="/webhooks", help="receive: URL path (default /webhooks)")
    p.add_argument("--secret-env", default="BSPK_WEBHOOK_SECRET", help="receive: variable holding the whsec_ secret")
    p.set_defaults(func=webhooks)
    p = sub.add_parser("demo", help="generate the sample brands' files, ingest them, and show webhooks and extracts")
    p.add_argument("--settle", type=float, default=1.0)
    p.set_defaults(func=demo)
    p = sub.add_parser("serve", help="serve the REST API (Extraction, Platform, import upload)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.set_defaults(func=serve)
    p = sub.add_parser("dev", help="dagster dev and the REST API together, stopped together (SIGTERM, Ctrl-C)")
    p.add_argument("--host", default="127.0.0.1", help="address both listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=3000, help="the Dagster UI's port (default 3000)")
    p.add_argument("--api-port", type=int, default=8000, help="the REST API's port (default 8000)")
    p.set_defaults(func=dev)
    p = sub.add_parser("api-keys", help="create, list or revoke a brand's API keys")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("--brand", required=True, help="brand id")
    p.add_argument("--name", help="create: what the key is for")
    p.add_argument("--key-id", help="revoke: the key's id (see list)")
    p.set_defaults(func=api_keys)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
