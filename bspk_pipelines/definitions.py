"""The one entry point: every brand's definitions from its YAML, merged with the shared resources."""

from __future__ import annotations

import dagster as dg

from bspk_pipelines.config import Brand, load_brands
from bspk_pipelines.defs.ingest.factory import build_ingest
from bspk_pipelines.defs.resources import default_resources


def build_definitions(brands: list[Brand]) -> dg.Definitions:
    return dg.Definitions.merge(
        *[build_ingest(b) for b in brands],
        dg.Definitions(resources=default_resources()),
    )


defs = build_definitions(load_brands())
