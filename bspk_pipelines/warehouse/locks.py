"""One writer per brand: a lock held with the warehouse around every step that writes a brand's
files, work folders or tables.

Whatever starts the step (the drop sensor's run, a schedule, `bspk sync` or `bspk backfill` in
process, a materialisation or backfill from the UI, a run on another machine), it takes the
brand's lock first; a second writer waits its turn. Different brands never wait for each other.

- PostgreSQL: a session advisory lock keyed by the warehouse's schema and the brand, so every
  machine sharing the warehouse sees it; the server drops it when the holder's connection ends.
- SQLite: an exclusive `flock` on a file beside the database (a SQLite warehouse lives on one
  machine); the kernel drops it when the holder's process ends.

Either way a writer that dies (killed, out of memory, machine lost) never leaves its brand locked.
The lock is re-entrant within a thread, so a step may call another step that takes it too.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

# How often a waiting writer says that it is still waiting.
REPORT_EVERY_SECONDS = 30.0
POLL_SECONDS = 0.05

_held = threading.local()


def _advisory_key(schema: str, brand: str) -> int:
    digest = hashlib.sha256(f"bspk-brand-writer\0{schema}\0{brand}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_file(engine: sa.Engine, brand: str) -> Path | None:
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return Path(database).resolve().with_name(f"{Path(database).name}.locks") / f"{brand}.lock"


@contextmanager
def brand_lock(engine: sa.Engine, brand: str) -> Iterator[None]:
    """Hold `brand`'s writer lock for the block, waiting for it as long as it takes and saying so
    on stderr now and then (a run's stderr is in its logs in the UI; `bspk sync` shows it)."""
    counts = _held.__dict__.setdefault("counts", {})
    token = (str(engine.url), brand)
    if counts.get(token):
        counts[token] += 1
        try:
            yield
        finally:
            counts[token] -= 1
        return
    acquire, release = _postgres(engine, brand) if engine.dialect.name == "postgresql" else _sqlite(engine, brand)
    started = reported = time.monotonic()
    while not acquire():
        if time.monotonic() - reported >= REPORT_EVERY_SECONDS:
            print(f"{brand}: waiting {time.monotonic() - started:.0f} s for another run writing this brand to finish",
                  file=sys.stderr, flush=True)
            reported = time.monotonic()
        time.sleep(POLL_SECONDS)
    counts[token] = 1
    try:
        yield
    finally:
        counts.pop(token, None)
        release()


def _postgres(engine: sa.Engine, brand: str):
    conn = engine.connect()
    try:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar() or ""
        conn.commit()
    except BaseException:
        conn.close()
        raise
    key = _advisory_key(schema, brand)

    def acquire() -> bool:
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()  # no transaction stays open while the lock is held
        return bool(got)

    def release() -> None:
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
        except sa.exc.DBAPIError:
            pass  # the connection is gone, and the server let go of the lock with it
        finally:
            conn.close()

    return acquire, release


_process_locks: dict[str, threading.Lock] = {}


def _sqlite(engine: sa.Engine, brand: str):
    path = _lock_file(engine, brand)
    if path is None:  # an in-memory database lives in one process: a process-wide lock will do
        lock = _process_locks.setdefault(brand, threading.Lock())
        return (lambda: lock.acquire(blocking=False)), lock.release
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)

    def acquire() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release() -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return acquire, release
