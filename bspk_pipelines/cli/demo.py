"""`bspk demo` (`make demo`): the bundled sample brands' files generated and ingested through
Dagster, then the way out shown: associates at work, their webhooks delivered, extracts written."""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from urllib.parse import urlparse

import dagster as dg

from bspk_pipelines.cli import sync
from bspk_pipelines.cli.environment import PROJECT_ROOT, deployment, ensure_dagster_home, webhook_settings
from bspk_pipelines.cli.extract import run_extracts
from bspk_pipelines.cli.instance import open_instance, resource
from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.defs.resources import default_resources
from bspk_pipelines.demo.receiver import Receiver
from bspk_pipelines.demo.shop import PORT, TOKEN_ENV, a_day_later, lune_shop
from bspk_pipelines.demo.samples import generate_samples, redeliver_samples
from bspk_pipelines.demo.simulate import simulate
from bspk_pipelines.engagement.activity import Platform
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.brand_file import load_brands
from bspk_pipelines.outbound.settings import WebhookSettings
from bspk_pipelines.outbound.webhooks.admin import delivery_counts
from bspk_pipelines.outbound.webhooks.delivery import deliver
from bspk_pipelines.settings import brand_secret


def run(args: argparse.Namespace) -> int:
    """Generate the bundled sample brands' files, ingest them all through Dagster, then show the
    way out: simulated associate activity, its webhooks delivered, its extracts written. The data
    and mappings folders default to the project's, where the sample brands are."""
    webhooks = webhook_settings()  # before the long ingest, not after it
    settings = deployment(root=PROJECT_ROOT)
    home = ensure_dagster_home()
    brands = load_brands(settings.mappings_dir)
    written = generate_samples(settings.data_dir)
    print(f"Sample drop files written under {settings.data_dir / 'drop'}: "
          + ", ".join(f"{b} ({len(p)} files)" for b, p in written.items()))
    with ExitStack() as stack:
        shop = _start_shop(stack)
        synced = [b.brand for b in brands if shop or b.brand != "lune"]
        if shop:
            print(f"lune's Shopify shop (the stand-in) on {shop.url}: its first pull is a bulk load")
        code = sync.run(argparse.Namespace(brand=synced, settle=args.settle, allow_failed=True), settings)
        again = redeliver_samples(settings.data_dir)
        print("\nA day later, exports written again under the same names: "
              + ", ".join(f"{b} ({', '.join(p.name for p in paths)})" for b, paths in again.items()))
        if shop:
            print(f"and in lune's shop, customers edited their profiles: {', '.join(a_day_later(shop))}")
        code = max(code, sync.run(argparse.Namespace(brand=[*again, *(["lune"] if shop else [])], settle=args.settle,
                                                     allow_failed=True), settings))
    _demo_outbound(build_definitions(brands, default_resources(settings)), brands, webhooks)
    print(
        f"\nRuns, asset lineage and metadata are in the Dagster instance at {home}; extracts are under "
        f"{settings.data_dir}/<brand>/outbox.\n"
        "Open the UI on it with `make dev` (dagster dev) and browse http://127.0.0.1:3000."
    )
    return code


def _missing_for_activity(brand: Brand) -> str:
    """Why no associate could be simulated at work for the brand: it needs shoppers and associates."""
    lacks = [e.replace("sales_", "") for e in ("shoppers", "sales_associates") if e not in brand.entities]
    return f"the brand sends no {' and no '.join(lacks)}" if lacks else "the brand's shoppers or associates are not in yet"


def _start_shop(stack: ExitStack):
    """Lune's shop, serving until the stack closes; None, said in one line, if it cannot start."""
    try:
        return stack.enter_context(lune_shop())
    except OSError as e:
        print(f"lune: its shop (the Shopify stand-in) cannot listen on 127.0.0.1:{PORT} ({e.strerror}); lune is left out")
    except KeyError:
        print(f"lune: {TOKEN_ENV} is not set (`make demo` sets it); lune is left out")
    return None


def _demo_outbound(defs: dg.Definitions, brands: list[Brand], webhooks: WebhookSettings) -> None:
    """Associates at work on the sample brands, their webhooks delivered to local receivers the
    demo starts, and the extracts written."""
    engine = resource(defs, "warehouse").engine
    print("\nAssociates at work (simulated):")
    for brand in brands:
        done = simulate(Platform(engine, brand.brand), actions=60)
        print(f"  {brand.brand}: " + (", ".join(f"{n} {kind}" for kind, n in sorted(done.items()))
                                      or f"nothing: {_missing_for_activity(brand)}"))
    receivers = []
    for brand in brands:
        for endpoint in brand.webhooks.endpoints:
            url, secret = urlparse(endpoint.url), brand_secret(endpoint.secret_env)
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
        report = deliver(engine, brands, budget_seconds=20, settings=webhooks)
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
                  + ", ".join(f"{k} {v}" for k, v in delivery_counts(conn, brand.brand).items()))
    print("\nExtracts (incremental, with manifests):")
    with open_instance() as instance:
        for brand in brands:
            run_extracts(defs, brand, instance, out=print)
