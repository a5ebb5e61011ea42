"""`bspk retry`: a brand's failed deliveries run again with its current config, from their landed
copies (a file whose name matched no pattern, from the drop folder), then the months they touch."""

from __future__ import annotations

import argparse
from dataclasses import replace

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.cli.environment import deployment
from bspk_pipelines.cli.instance import add_partitions, each_brand, resource
from bspk_pipelines.cli.sync import execute
from bspk_pipelines.defs import names
from bspk_pipelines.defs.ingest.sensors import month_requests, run_request
from bspk_pipelines.ingest.drop import FileNameError, classify, delivery_number, dropped_name
from bspk_pipelines.ingest.ledger import failed
from bspk_pipelines.model.brand import Brand


def run(args: argparse.Namespace) -> int:
    """Retry the brand's failed deliveries (or those under `--file`); non-zero if one fails again."""
    def step(defs: dg.Definitions, brand: Brand, instance: dg.DagsterInstance) -> bool:
        return retry_brand(defs, brand, instance, args.file)

    _, _, ok = each_brand(deployment(), [args.brand], step)
    return 0 if ok else 1


def retry_brand(defs: dg.Definitions, brand: Brand, instance: dg.DagsterInstance, name: str | None, out=print) -> bool:
    engine: sa.Engine = resource(defs, "warehouse").engine
    waiting: dict[tuple[str, str], list[str]] = {}
    with engine.connect() as conn:
        for r in failed(conn, brand.brand, name):
            waiting.setdefault((r.source, r.name), []).append(r.entity)
    if not waiting:
        out(f"{brand.brand}: nothing to retry: no failed delivery" + (f" named {name}" if name else ""))
        return name is None
    out(f"{brand.brand}: retrying {len(waiting)} failed deliver{'y' if len(waiting) == 1 else 'ies'}")
    ok = True
    for (source, key), entities in waiting.items():
        try:
            delivery = classify(brand, source, dropped_name(key)).again(delivery_number(key))
        except FileNameError as e:
            out(f"  {key}: FAILED: {e}")
            ok = False
            continue
        if "" not in entities:  # landed: only what failed runs again
            delivery = replace(delivery, entities=tuple(e for e in delivery.entities if e in entities))
        add_partitions(instance, names.file_partitions(brand.brand, source), [key])
        ok &= execute(defs, instance, run_request(brand, delivery, None, []), out).success
    for request in month_requests(brand, engine):
        ok &= execute(defs, instance, request, out).success
    return ok
