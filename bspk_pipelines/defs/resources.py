"""Resources: the warehouse and the brand folders. Switching SQLite for PostgreSQL happens here only."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.settings import WAREHOUSE_URL, Settings
from bspk_pipelines.warehouse.engine import engine_for


class WarehouseResource(dg.ConfigurableResource):
    """The SQL database holding the platform tables (a SQLAlchemy URL)."""

    url: str

    @property
    def engine(self) -> sa.Engine:
        return engine_for(self.url)


class BrandFoldersResource(dg.ConfigurableResource):
    """The data folder: drop folders given as relative paths, the landing zone and work files.

    A local folder today; an object store would implement the same Layout.
    """

    data_dir: str

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.data_dir).resolve())


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources from the environment: BSPK_WAREHOUSE_URL (kept out of the UI) or a SQLite file."""
    settings = Settings.from_env()
    url = dg.EnvVar(WAREHOUSE_URL) if settings.warehouse_url else settings.warehouse
    return {
        "warehouse": WarehouseResource(url=url),
        "folders": BrandFoldersResource(data_dir=str(settings.data_dir)),
    }
