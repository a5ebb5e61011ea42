"""Every brand's definitions (ingest and outbound) merged with the project-wide resources and executor."""

from __future__ import annotations

import dagster as dg

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.defs.ingest.factory import build_ingest
from bspk_pipelines.defs.outbound import build_outbound
from bspk_pipelines.defs.resources import default_resources
from bspk_pipelines.defs.tables import warehouse_dialect


def build_definitions(brands: list[Brand], resources: dict | None = None) -> dg.Definitions:
    """`resources` replaces the ones from the environment (tests point them at their own folders)."""
    resources = resources or default_resources()
    url = resources["warehouse"].url
    dialect = warehouse_dialect(url.get_value() if isinstance(url, dg.EnvVar) else url)
    return dg.Definitions.merge(
        *[build_ingest(b, dialect) for b in brands],
        *[build_outbound(b) for b in brands],
        # Every run in one process, the UI's materialisations too: a run's steps follow each other
        # (land, validate, map, apply) and take the brand's writer lock, so a process per step
        # would add its start-up time and run nothing side by side.
        dg.Definitions(resources=resources, executor=dg.in_process_executor),
    )
