"""What the commands take from the environment, without Dagster: the project, DAGSTER_HOME, the
brands asked for, the warehouse and the webhook settings (`bspk serve` runs the API in its own
process, which never loads Dagster)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand, load_brands
from bspk_pipelines.settings import Settings
from bspk_pipelines.outbound.settings import SettingError, WebhookSettings
from bspk_pipelines.warehouse.engine import engine_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to .dagster_home in the project, with the embedded dagster.yaml."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def chosen_brands(wanted: list[str] | None) -> list[Brand]:
    """The wanted brands (default: all); a brand without a brand file is one line on stderr and
    exit status 2."""
    brands = load_brands()
    missing = set(wanted or []) - {b.brand for b in brands}
    if missing:
        print(f"no brand file for {', '.join(sorted(missing))} in {Settings.from_env().mappings_dir}", file=sys.stderr)
        raise SystemExit(2)
    return [b for b in brands if not wanted or b.brand in wanted]


def warehouse_engine() -> sa.Engine:
    """The environment's warehouse (BSPK_WAREHOUSE_URL, else the SQLite file under BSPK_DATA_DIR)."""
    return engine_for(Settings.from_env().warehouse)


def webhook_settings() -> WebhookSettings:
    """The deployment's webhook settings (`outbound.settings`); a mistake in them is one line on
    stderr and exit status 2."""
    try:
        return WebhookSettings.from_env()
    except SettingError as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None
