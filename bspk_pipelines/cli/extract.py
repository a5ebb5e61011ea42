"""`bspk extract`: brands' incremental extracts written to their outboxes."""

from __future__ import annotations

import argparse
from pathlib import Path

import dagster as dg

from bspk_pipelines.cli.environment import deployment
from bspk_pipelines.cli.instance import QUIET, each_brand, failure
from bspk_pipelines.defs import names
from bspk_pipelines.model.brand import Brand


def run(args: argparse.Namespace) -> int:
    """Run brands' extract jobs now, as their schedule would, recorded in the Dagster instance."""
    return 0 if each_brand(deployment(), args.brand, run_extracts)[2] else 1


def run_extracts(defs: dg.Definitions, brand: Brand, instance: dg.DagsterInstance, out=print) -> bool:
    """The brand's extract job on the instance, one line per extract written; whether it succeeded."""
    result = defs.resolve_job_def(names.extract_job(brand.brand)).execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET)
    for event in result.get_asset_materialization_events():
        m = event.materialization
        file = m.metadata.get("file")
        out(f"  {brand.brand} {m.asset_key.path[-1]:<17} {m.metadata['rows'].value:>5} row(s)"
            + (f" -> {Path(file.value).name}" if file else ""))
    if not result.success:
        out(f"  {brand.brand} extracts: run {result.run_id[:8]} FAILED: {failure(result)}")
    return result.success
