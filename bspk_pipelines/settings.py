"""Where a deployment keeps its things: the data folder, the brand files and the warehouse.

Read from the environment here and nowhere else, when a process asks (never at import), and
reading them creates nothing on disk:

- `BSPK_DATA_DIR`: drop folders, landing zone, work files and the default SQLite warehouse
  (default: `data` in the working directory);
- `BSPK_MAPPINGS_DIR`: the brand files (default: `mappings`);
- `BSPK_WAREHOUSE_URL`: the warehouse as a SQLAlchemy URL (default: `warehouse.sqlite` in the
  data folder).

The REST API's limits (`BSPK_API_*`, `api.deps.ApiSettings`) and the webhook settings
(`BSPK_WEBHOOK_*`, `outbound.settings.WebhookSettings`) are read by their own settings classes,
next to the code they configure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WAREHOUSE_URL = "BSPK_WAREHOUSE_URL"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    mappings_dir: Path
    warehouse_url: str | None  # None: the SQLite file in the data folder

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            data_dir=Path(environ.get("BSPK_DATA_DIR") or "data").resolve(),
            mappings_dir=Path(environ.get("BSPK_MAPPINGS_DIR") or "mappings"),
            warehouse_url=environ.get(WAREHOUSE_URL) or None,
        )

    @property
    def warehouse(self) -> str:
        """The warehouse's URL: the configured one, or the SQLite file in the data folder."""
        return self.warehouse_url or f"sqlite:///{self.data_dir / 'warehouse.sqlite'}"
