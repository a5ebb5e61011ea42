"""`bspk backfill`: a range of months of a brand's sales rebuilt, or a Shopify source pulled whole
again and applied, recorded in the Dagster instance."""

from __future__ import annotations

import argparse
import sys

from bspk_pipelines.cli.environment import chosen_brands, deployment, ensure_dagster_home
from bspk_pipelines.cli.instance import QUIET, failure, open_instance, resource
from bspk_pipelines.cli.sync import pull_shops, still_failed, summary, sync_brand
from bspk_pipelines.defs import names
from bspk_pipelines.defs.ingest.assets import month_partitions
from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.defs.resources import default_resources
from bspk_pipelines.model.shopify import ShopifySource


def run(args: argparse.Namespace) -> int:
    """Rebuild a range of months of a brand's sales, months_per_run months per run; or, with
    `--source`, pull a Shopify source whole through bulk operations and apply what it lands."""
    settings = deployment()
    ensure_dagster_home()
    [brand] = chosen_brands(settings, [args.brand])
    if args.source:
        return _reload(settings, brand, args.source)
    if not (args.start and args.end):
        print("backfill: give the months (--from YYYY-MM --to YYYY-MM) or a Shopify source (--source)", file=sys.stderr)
        return 2
    keys = month_partitions(brand).get_partition_keys()
    wanted = [k for k in keys if args.start <= k <= args.end]
    if not wanted:
        print(f"no month of {brand.brand}'s history ({keys[0]} to {keys[-1]}) is in {args.start}..{args.end}", file=sys.stderr)
        return 2
    defs = build_definitions([brand], default_resources(settings))
    job = defs.resolve_job_def(names.months_job(brand.brand, args.entity))
    ok = True
    with open_instance() as instance:
        for i in range(0, len(wanted), brand.months_per_run):
            chunk = wanted[i:i + brand.months_per_run]
            tags = {names.BRAND_TAG: brand.brand, "entity": args.entity,
                    names.RANGE_START_TAG: chunk[0], names.RANGE_END_TAG: chunk[-1]}
            result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False, run_config=QUIET)
            ok &= result.success
            print(f"  {args.entity} months {chunk[0]} to {chunk[-1]}: run {result.run_id[:8]} "
                  + ("ok" if result.success else "FAILED: " + failure(result)))
    return 0 if ok else 1


def _reload(settings, brand, source: str) -> int:
    if not isinstance(brand.sources.get(source), ShopifySource):
        shops = [s for s, spec in brand.sources.items() if isinstance(spec, ShopifySource)]
        print(f"backfill: {source!r} is not a Shopify source of {brand.brand} ({', '.join(shops) or 'it has none'}); "
              "a file source's history is backfilled by delivering its files", file=sys.stderr)
        return 2
    defs = build_definitions([brand], default_resources(settings))
    with open_instance() as instance:
        print(f"{brand.brand}:")
        pulled = all(r.success for r in pull_shops(defs, brand, instance, only=source, full=True))
        ran = all(r.success for r in sync_brand(defs, brand, instance))
        waiting = still_failed(resource(defs, "warehouse").engine, brand)
    print()
    print(summary(resource(defs, "warehouse").engine, [brand.brand]))
    return 0 if pulled and ran and not waiting else 1
