"""The Dagster side of the commands that run jobs: the instance at DAGSTER_HOME, the brands'
definitions, resources as a run sees them and a run's outcome in one line."""

from __future__ import annotations

import fcntl
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa

from bspk_pipelines.cli.environment import chosen_brands, ensure_dagster_home
from bspk_pipelines.defs.project import build_definitions
from bspk_pipelines.defs.resources import default_resources
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.settings import Settings

# The console shows one line per run (a failure's is its message, never a stack trace); every
# event, stack traces included, is still stored in the instance for the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class _ClosedSqliteReset(logging.Filter):
    """Drops the traceback SQLAlchemy's pool logs when it resets a connection that Dagster's
    SQLite storage has already closed (dagster-io/dagster#21586): nothing is lost, and a command
    prints no stack trace for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, sqlite3.ProgrammingError) and "closed database" in str(error))


def quiet_closed_sqlite_resets() -> None:
    """Install `_ClosedSqliteReset` (once) where SQLAlchemy's pools log: a logger's filters apply
    to the records it makes itself, and each pool class logs under its own name."""
    for pool in ("NullPool", "QueuePool", "SingletonThreadPool", "StaticPool"):
        logger = logging.getLogger(f"sqlalchemy.pool.impl.{pool}")
        if not any(isinstance(f, _ClosedSqliteReset) for f in logger.filters):
            logger.addFilter(_ClosedSqliteReset())


def add_partitions(instance: dg.DagsterInstance, partitions_def_name: str, keys: list[str]) -> None:
    """Add dynamic partitions that another process may be adding at the same moment: Dagster
    looks for the keys, then inserts the missing ones, so of two adders one may meet the other's
    insert. It then looks again and adds what is still missing."""
    for _ in range(5):
        try:
            instance.add_dynamic_partitions(partitions_def_name, keys)
            return
        except sa.exc.IntegrityError:
            continue
    instance.add_dynamic_partitions(partitions_def_name, keys)


@contextmanager
def open_instance() -> Iterator[dg.DagsterInstance]:
    """The Dagster instance at DAGSTER_HOME. Processes that start together on a new DAGSTER_HOME
    create its storage one at a time: Dagster's SQLite storage would record its schema twice."""
    quiet_closed_sqlite_resets()
    home = ensure_dagster_home()
    with (home / ".bspk-instance.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
    with instance:
        yield instance


def resource(defs: dg.Definitions, key: str):
    """A resource as a run sees it: EnvVar settings (the warehouse URL) resolved."""
    return defs.resources[key].process_config_and_initialize()


def failure(result: dg.ExecuteInProcessResult) -> str:
    """Why a run failed, in one line: the failed step's message, never its stack trace."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.user_failure_data:
            return event.step_failure_data.user_failure_data.description or "step failed"
        if event.is_step_failure:
            return event.step_failure_data.error.message.strip().splitlines()[-1]
    return "run failed"


def each_brand(settings: Settings, wanted: list[str] | None,
               step: Callable[[dg.Definitions, Brand, dg.DagsterInstance], bool]) -> tuple[dg.Definitions, list[Brand], bool]:
    """`step(defs, brand, instance) -> ok` for each wanted brand (default: all) on the instance."""
    ensure_dagster_home()
    brands = chosen_brands(settings, wanted)
    defs = build_definitions(brands, default_resources(settings))
    with open_instance() as instance:
        ok = all([step(defs, brand, instance) for brand in brands])
    return defs, brands, ok
