"""Incremental extracts: the platform's engagement data as files in the brand's outbox.

One run extracts one entity (one Extraction API endpoint, `outbound.views.VIEWS`) and writes the
rows that are new or changed since the previous run, with the same fields the API returns:

1. `upper` = now (naive UTC); `lower` = the stored watermark minus the brand's look-back, or no
   lower bound on the first run.
2. In one read transaction: the rows updated in [lower, upper], in (updated time, id) order, and
   what was already exported inside the look-back window (`extract_seen`). The look-back finds
   those again; they are skipped, so a row version (id, updated time) is exported once.
3. The remaining rows go to `<ENTITY>_<brand>_<YYYYMMDDTHHMMSSffffffZ of upper>.csv|.jsonl`,
   written as `<name>.part`, fsynced, renamed over the final name; then its manifest
   `<name>.manifest.json` (file, entity, format, rows, from/to = min/max updated time, watermark,
   sha256 of the file's bytes, created_at) the same way. A consumer takes a file once its
   manifest exists. Nothing new: no file (the watermark still moves on).
4. In one write transaction: the exported versions still inside the next look-back window go to
   `extract_seen`, older `extract_seen` rows are pruned, and `extract_state.watermark` = upper.

Why the look-back: a row's updated time is taken when its transaction starts, not when it
commits. A transaction that commits after a run read the table, with an updated time at or
before that run's `upper`, is not in that run's file; the next run looks again from
`watermark - lookback` and finds it. A row that commits more than the look-back after its updated
time can be missed: choose the look-back longer than the longest write transaction.

Crash safety: the watermark only moves in step 4. If the process dies after the file (or its
manifest) is written and before that commit, the state is as if the run never happened: the
next run starts from the old watermark and exports those rows again, in a new file. Nothing is
lost; a crash can only duplicate the crashed run's rows, and consumers de-duplicate by
(id, updated_at) anyway. A `.part` file left by a crash is removed by the entity's next run.
Two runs of the same brand and entity at the same time are not supported: the later commit finds
the watermark moved and fails (its file is then a duplicate, harmless).

CSV: header = the view's field names in order; null is an empty cell, booleans `true`/`false`,
lists and objects JSON text. JSON Lines: one object per line, UTF-8. Timestamps in rows as the
API writes them (ISO 8601 UTC, milliseconds); in the manifest with microseconds (exact watermark).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from bspk_pipelines.model.brand import Brand, duration
from bspk_pipelines.outbound.views import VIEWS
from bspk_pipelines.warehouse.apply import now
from bspk_pipelines.warehouse.platform import extract_seen, extract_state
from bspk_pipelines.warehouse.engine import writing

EXTENSIONS = {"csv": ".csv", "jsonl": ".jsonl"}


class ExtractError(RuntimeError):
    """A run that cannot complete safely (a file name taken, a concurrent run of the same entity)."""


@dataclass(frozen=True)
class ExtractResult:
    entity: str
    path: Path | None  # the file; None: nothing new, no file written
    manifest: Path | None
    rows: int
    first_updated: datetime | None  # min / max updated time of the exported rows
    last_updated: datetime | None
    sha256: str | None
    watermark_before: datetime | None  # None on the first run
    watermark_after: datetime
    skipped: int  # rows the look-back found again, already exported


def outbox_folder(data_dir: Path, brand: Brand) -> Path:
    """Where the brand's extracts go: `extracts.outbox` under the data folder, else `<brand>/outbox`."""
    return Path(data_dir) / (brand.extracts.outbox or f"{brand.brand}/outbox")


def file_name(entity: str, brand: str, upper: datetime, fmt: str) -> str:
    return f"{entity.upper()}_{brand}_{upper.strftime('%Y%m%dT%H%M%S%fZ')}{EXTENSIONS[fmt]}"


def run_extracts(engine: sa.Engine, brand: Brand, outbox: Path, clock: Callable[[], datetime] = now) -> list[ExtractResult]:
    """Every entity of `brand.extracts.entities`, one after the other (each its own run)."""
    return [run_extract(engine, brand, entity, outbox, clock) for entity in brand.extracts.entities]


def run_extract(engine: sa.Engine, brand: Brand, entity: str, outbox: Path,
                clock: Callable[[], datetime] = now) -> ExtractResult:
    """Extract `entity`'s rows new or changed since the last run into `outbox` (see the module doc)."""
    if entity not in VIEWS:
        raise ValueError(f"no extract {entity!r}; known: {', '.join(VIEWS)}")
    view, fmt = VIEWS[entity], brand.extracts.format
    lookback = duration(brand.extracts.lookback)
    outbox = Path(outbox)
    outbox.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(outbox, entity, brand.brand)

    upper = clock()
    name = file_name(entity, brand.brand, upper, fmt)
    final = outbox / name
    if final.exists():
        raise ExtractError(f"{final} exists already: the clock did not move since the run that wrote it")
    keep_from = upper - lookback  # the next run's lower bound: exported versions from here on are remembered

    writer = _Writer(outbox / f"{name}.part", fmt)
    remembered: list[tuple[str, datetime]] = []
    first = last = None
    skipped = 0
    try:
        with _reading(engine) as conn:
            before = conn.execute(sa.select(extract_state.c.watermark).where(
                extract_state.c.brand == brand.brand, extract_state.c.entity == entity)).scalar()
            lower = None if before is None else before - lookback
            seen = _seen(conn, brand.brand, entity, lower)
            for row_id, updated_at, record in view.rows(conn, brand.brand, since=lower, until=upper):
                key = (str(row_id), _datetime(updated_at))
                if key in seen:
                    skipped += 1
                    continue
                writer.write(record)
                first = key[1] if first is None else min(first, key[1])
                last = key[1] if last is None else max(last, key[1])
                if key[1] >= keep_from:
                    remembered.append(key)
        sha = None
        if writer.rows:
            sha = writer.publish(final)
            _write_atomically(outbox / f"{name}.manifest.json", json.dumps({
                "file": name, "entity": entity, "format": fmt, "rows": writer.rows,
                "from": _exact(first), "to": _exact(last), "watermark": _exact(upper), "sha256": sha,
                "created_at": _exact(upper),
            }, indent=2).encode("utf-8") + b"\n")
    finally:
        writer.discard()

    _commit(engine, brand.brand, entity, before, upper, keep_from, remembered, name if writer.rows else None)
    return ExtractResult(
        entity=entity, path=final if writer.rows else None,
        manifest=outbox / f"{name}.manifest.json" if writer.rows else None, rows=writer.rows,
        first_updated=first, last_updated=last, sha256=sha, watermark_before=before, watermark_after=upper,
        skipped=skipped,
    )


# --- the warehouse side ----------------------------------------------------------------------

class _reading:
    """One read transaction with one snapshot of the tables (REPEATABLE READ on PostgreSQL;
    SQLite's WAL gives a transaction a snapshot already)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def __enter__(self) -> sa.Connection:
        self.conn = self.engine.connect()
        if self.conn.dialect.name == "postgresql":
            self.conn.execution_options(isolation_level="REPEATABLE READ")
        self.tx = self.conn.begin()
        return self.conn

    def __exit__(self, *exc) -> None:
        try:
            self.tx.rollback()  # read only: nothing to keep
        finally:
            self.conn.close()


def _seen(conn: sa.Connection, brand: str, entity: str, lower: datetime | None) -> set[tuple[str, datetime]]:
    if lower is None:
        return set()  # a first run (or a reset state): nothing is remembered
    s = extract_seen.c
    return {(r.row_id, _datetime(r.row_updated_at)) for r in conn.execute(
        sa.select(s.row_id, s.row_updated_at).where(s.brand == brand, s.entity == entity, s.row_updated_at >= lower))}


def _commit(engine: sa.Engine, brand: str, entity: str, before: datetime | None, upper: datetime, keep_from: datetime,
            exported: list[tuple[str, datetime]], last_file: str | None) -> None:
    """Step 4, one transaction: remember the exported versions, prune, move the watermark."""
    s, st = extract_seen.c, extract_state.c
    with writing(engine) as conn:
        key = sa.and_(st.brand == brand, st.entity == entity)
        if before is None:
            if conn.execute(sa.select(st.watermark).where(key)).first() is not None:
                raise ExtractError(f"{brand}/{entity}: another run extracted meanwhile")
            conn.execute(extract_state.insert().values(
                brand=brand, entity=entity, watermark=upper, last_file=last_file, updated_at=upper))
        else:
            values: dict[str, Any] = {"watermark": upper, "updated_at": upper}
            if last_file is not None:
                values["last_file"] = last_file
            if conn.execute(extract_state.update().where(key, st.watermark == before).values(**values)).rowcount != 1:
                raise ExtractError(f"{brand}/{entity}: another run extracted meanwhile")
        if exported:
            conn.execute(extract_seen.insert(), [
                {"brand": brand, "entity": entity, "row_id": row_id, "row_updated_at": at} for row_id, at in exported])
        conn.execute(extract_seen.delete().where(s.brand == brand, s.entity == entity, s.row_updated_at < keep_from))


# --- the file side ---------------------------------------------------------------------------

class _Writer:
    """Rows into `<name>.part`, opened at the first row; sha256 of the bytes as they are written."""

    def __init__(self, part: Path, fmt: str):
        self.part, self.fmt = part, fmt
        self.rows = 0
        self.sha = hashlib.sha256()
        self.out: IO[bytes] | None = None
        self.fields: list[str] | None = None
        self.buffer = io.StringIO()
        self.csv = csv.writer(self.buffer, lineterminator="\n")

    def write(self, record: dict[str, Any]) -> None:
        if self.out is None:
            self.out = open(self.part, "wb")  # noqa: SIM115 (held across write() calls, closed by publish/discard)
            if self.fmt == "csv":
                self.fields = list(record)
                self.csv.writerow(self.fields)
        if self.fmt == "csv":
            self.csv.writerow([_cell(record[f]) for f in self.fields])
            text = self.buffer.getvalue()
            self.buffer.seek(0)
            self.buffer.truncate()
        else:
            text = json.dumps(record, ensure_ascii=False) + "\n"
        data = text.encode("utf-8")
        self.sha.update(data)
        self.out.write(data)
        self.rows += 1

    def publish(self, final: Path) -> str:
        """fsync, rename to the final name, fsync the folder; returns the sha256."""
        assert self.out is not None
        self.out.flush()
        os.fsync(self.out.fileno())
        self.out.close()
        self.out = None
        os.replace(self.part, final)
        _fsync_dir(final.parent)
        return self.sha.hexdigest()

    def discard(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
        self.part.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    try:
        with open(part, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
        _fsync_dir(path.parent)
    finally:
        part.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible everywhere (Windows); the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_parts(outbox: Path, entity: str, brand: str) -> None:
    for part in outbox.glob(f"{entity.upper()}_{brand}_*.part"):
        part.unlink(missing_ok=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _datetime(value: Any) -> datetime:
    # SQLite may hand back a computed timestamp (the associates' view) as text.
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def _exact(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"

