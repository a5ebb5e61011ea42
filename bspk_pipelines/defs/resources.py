"""Resources: the warehouse and the brand folders. Switching SQLite for PostgreSQL happens here only."""

from __future__ import annotations

from functools import cached_property
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
    """Where the brands' files live: the data folder (drop folders given as relative paths, the
    landing zone, work files), the landing zone's object storage if any, the SFTP host keys trusted."""

    data_dir: str
    landing_url: str | None = None
    known_hosts: str | None = None

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.data_dir).resolve(), self.landing_url,
                      Path(self.known_hosts) if self.known_hosts else None)


class Initialized:
    """A code location's resources as a run gets them (an `EnvVar` read), made at the first use and
    kept, for the sensors: a sensor that takes Dagster's resources makes a DagsterInstance at every
    tick (its storage opened, its migrations read), and so does initialising a resource (an
    ephemeral one): most of a tick's time in the code server, at a tick every five seconds."""

    def __init__(self, resources: dict[str, dg.ConfigurableResource]):
        self._resources = resources

    @cached_property
    def _ready(self) -> dict[str, dg.ConfigurableResource]:
        return {key: resource.process_config_and_initialize() for key, resource in self._resources.items()}

    def __getitem__(self, key: str) -> dg.ConfigurableResource:
        return self._ready[key]


def default_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources from the deployment's settings (default: read now): the warehouse, named to
    Dagster by its variable (BSPK_WAREHOUSE_URL, so the UI never shows its password) when one is
    set, else the SQLite file in the data folder; and the data folder."""
    settings = settings or Settings.from_env()
    url = dg.EnvVar(WAREHOUSE_URL) if settings.warehouse_url else settings.warehouse
    return {
        "warehouse": WarehouseResource(url=url),
        "folders": BrandFoldersResource(data_dir=str(settings.data_dir), landing_url=settings.landing_url,
                                        known_hosts=str(settings.known_hosts) if settings.known_hosts else None),
    }
