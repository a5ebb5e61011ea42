"""What the commands take from the environment, without Dagster: the project, DAGSTER_HOME, the
deployment's settings (`bspk_pipelines.settings`), the brands asked for and the warehouse (`bspk
serve` runs the API in its own process, which never loads Dagster). A mistake in a setting is one
line on stderr and exit status 2."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.brand_file import load_brands
from bspk_pipelines.outbound.settings import WebhookSettings
from bspk_pipelines.settings import SettingError, Settings
from bspk_pipelines.warehouse.engine import engine_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

T = TypeVar("T")


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to .dagster_home in the project, with the embedded dagster.yaml."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def checked(read: Callable[[], T]) -> T:
    """What `read` returns; a SettingError it raises is one line on stderr and exit status 2."""
    try:
        return read()
    except SettingError as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None


def deployment(root: Path = Path()) -> Settings:
    """Where the data folder, the brand files and the warehouse are; the default folders are in
    `root` (the working directory)."""
    return checked(lambda: Settings.from_env(root=root))


def webhook_settings() -> WebhookSettings:
    """The deployment's webhook settings (`outbound.settings`)."""
    return checked(WebhookSettings.from_env)


def chosen_brands(settings: Settings, wanted: list[str] | None) -> list[Brand]:
    """The wanted brands (default: all); a brand without a brand file is one line on stderr and
    exit status 2."""
    brands = load_brands(settings.mappings_dir)
    missing = set(wanted or []) - {b.brand for b in brands}
    if missing:
        print(f"no brand file for {', '.join(sorted(missing))} in {settings.mappings_dir}", file=sys.stderr)
        raise SystemExit(2)
    return [b for b in brands if not wanted or b.brand in wanted]


def warehouse_engine(settings: Settings) -> sa.Engine:
    """The deployment's warehouse (BSPK_WAREHOUSE_URL, else the SQLite file in the data folder)."""
    return engine_for(settings.warehouse)
