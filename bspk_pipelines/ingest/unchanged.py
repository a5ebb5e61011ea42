"""Unchanged rows: rows a source sends again exactly as in its last applied file are set aside
before they are split, mapped and checked, and count as unchanged."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from bspk_pipelines.ingest.drop import safe_name
from bspk_pipelines.ingest.layout import Layout, count_rows, parquet_parts
from bspk_pipelines.ingest.ledger import last_applied
from bspk_pipelines.ingest.parse import LINE
from bspk_pipelines.ingest.precedence import owned_columns
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.entities import CELL, ENTITIES

DIGEST = ["_h1", "_h2"]

def can_set_aside(entity) -> bool:
    """Whether a row equal to the last file's can be left out: not where a file's rows act as a
    whole (an image set replaces the product's), nor where rows are compared on a time
    (inventory's latest measurement, sales by month)."""
    return not (entity.replace_set_by or entity.latest_by or entity.month_column)

class UnchangedRows:
    """Rows a source sends again exactly as in its last applied file are neither mapped, checked
    nor applied again: they count as unchanged.

    Brands resend whole files (every shopper, every day) where a few rows changed. Each applied
    file leaves, for each of its rows that passed, a 128-bit digest (two seeded polars row
    hashes) of its line as read (its fields, for a file Python's csv module reads), with its key
    and unique values. The next file of the same source and entity sets aside each row whose
    digest is among them before splitting it into fields and mapping it; the key and
    unique values of the rows set aside still take part in the file's duplicate checks, so rejects
    and duplicates are reported exactly as if every row had been checked. A line a mapping
    unpivots into several rows leaves one digest for each of them (with its cell), and only if
    none of them was rejected or skipped. Only the source's last
    applied file counts (a row changed, then changed back, is applied); if another file of the
    source is applied in between, the file is checked again, against that one, before it applies. The
    digests' folder name carries the file's header, the source's settings, the attributes it
    owns, the code of the rules and the polars version: a change to any of them compares with nothing.
    """

    def __init__(self, layout: Layout, brand: Brand, source: str, entity: str, name: str, claim: str):
        self.layout, self.brand, self.source, self.entity, self.name = layout, brand, source, entity, name
        self.work = layout.work(brand.brand, source, entity, name, claim, "validated")
        state = self.work / "unchanged.json"
        self.state = json.loads(state.read_text()) if state.exists() else {}
        self.previous: pl.DataFrame | None = None
        self.rules = ""  # the fingerprint of the code that checks rows: see `start`
        self.batches = 0

    @classmethod
    def start(cls, conn: sa.Connection, layout: Layout, brand: Brand, source: str, entity: str, name: str,
              claim: str, rules: str) -> UnchangedRows:
        """Before validation: compare with the source's last applied file. `rules`: a fingerprint
        of the code that reads, maps and checks rows (digests made under other rules compare with
        nothing)."""
        rows = cls(layout, brand, source, entity, name, claim)
        rows.rules = rules
        rows.state = {"compared_with": last_applied(conn, brand.brand, source, entity, name)}
        for folder in ("aside", "digests"):
            (rows.work / folder).mkdir(parents=True, exist_ok=True)
        return rows

    @classmethod
    def of_validated(cls, layout: Layout, brand: Brand, source: str, entity: str, name: str,
                     claim: str) -> UnchangedRows | None:
        """After validation: what it set aside, if it compared at all."""
        rows = cls(layout, brand, source, entity, name, claim)
        return rows if rows.state else None

    def set_aside_rows(self, header: list[str], rows: pl.DataFrame) -> pl.DataFrame:
        """Of one batch of rows as read (lines, or fields: see `read_batches`), the rows to read on,
        split, map and check; the others are set aside."""
        content = rows.drop(LINE)
        hashed = rows.with_columns(content.hash_rows(seed=1).alias(DIGEST[0]), content.hash_rows(seed=2).alias(DIGEST[1]))
        if "digests" not in self.state:
            self.state["digests"] = self._fingerprint(header, content.columns)
            (self.work / "unchanged.json").write_text(json.dumps(self.state))
            base = self.state["compared_with"] and self._digests_of(self.state["compared_with"])
            self.previous = pl.read_parquet(base) if base and base.exists() else None
        part = f"part-{self.batches:05d}.parquet"
        self.batches += 1
        if self.previous is not None:
            hashed.select(LINE, *DIGEST).join(self.previous, on=DIGEST).write_parquet(self.work / "aside" / part)
            hashed = hashed.join(self.previous, on=DIGEST, how="anti", maintain_order="left")
        hashed.select(LINE, *DIGEST).write_parquet(self.work / "digests" / part)
        return hashed.drop(DIGEST)

    def aside_parts(self) -> list[Path]:
        return parquet_parts(self.work / "aside")

    def set_aside(self) -> int:
        return count_rows(self.aside_parts())

    def record_in(self, mapped: Path) -> None:
        """Note beside the mapped rows what they were compared with, and how many were set aside."""
        (mapped / "unchanged.json").write_text(json.dumps(self.state | {"set_aside": self.set_aside()}))

    @staticmethod
    def mapped_against_last_applied(conn: sa.Connection, layout: Layout, brand: Brand, source: str, entity: str,
                                    name: str, claim: str) -> bool:
        """Whether the file's mapped rows still stand: nothing was set aside, or against the source's
        last applied file. Mapped rows without the note (a check stopped half way) do not."""
        note = layout.work(brand.brand, source, entity, name, claim, "mapped") / "unchanged.json"
        if not note.exists():
            return False
        state = json.loads(note.read_text())
        return not state["set_aside"] or state["compared_with"] == last_applied(conn, brand.brand, source, entity, name)

    def keep(self) -> None:
        """Leave this file's digests for the next file: those set aside, and those of the rows that passed."""
        if "digests" not in self.state or not parquet_parts(self.work / "digests"):
            return
        parts = parquet_parts(self.work)
        schema = pl.read_parquet_schema(parts[0]) if parts else {}
        kept = [c for c in schema if c in _dedup_columns(ENTITIES[self.entity])]
        cell = [CELL] if CELL in schema else []
        passed = pl.scan_parquet(parquet_parts(self.work / "digests")).join(
            pl.scan_parquet(parts).select(LINE, *cell, *kept), on=LINE)
        aside = [pl.scan_parquet(self.aside_parts())] if self.aside_parts() else []
        rows = pl.concat([passed, *aside], how="diagonal")
        # A line that gave rows (unpivoted) of which one was rejected or skipped is read again next
        # time: set aside whole, its rows would all count as unchanged.
        unsettled = [pl.scan_parquet(found).select(pl.col("line").alias(LINE))
                     for found in (parquet_parts(self.work / "rejects"), parquet_parts(self.work / "skipped")) if found]
        if unsettled:
            rows = rows.join(pl.concat(unsettled), on=LINE, how="anti")
        digests = rows.select(*DIGEST, *cell, *kept).unique([*DIGEST, *cell])
        path = self._digests_of(self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.part")
        digests.sink_parquet(partial)
        os.replace(partial, path)

    def forget_all_but_this(self) -> None:
        """Once this file is applied, earlier files' digests (of any fingerprint) are of no use."""
        keep = self._digests_of(self.name)
        for path in self.layout.digests(self.brand.brand, self.source, self.entity).glob("*/*.parquet"):
            if path != keep:
                path.unlink(missing_ok=True)

    def _fingerprint(self, header: list[str], hashed: list[str]) -> str:
        settings = [pl.__version__, self.rules, header, hashed, self.brand.sources[self.source].model_dump(mode="json"),
                    owned_columns(self.brand, self.source, self.entity)]
        return hashlib.sha256(json.dumps(settings, default=str).encode()).hexdigest()[:16]

    def _digests_of(self, name: str) -> Path:
        return self.layout.digests(self.brand.brand, self.source, self.entity) / self.state["digests"] / f"{safe_name(name)}.parquet"

def _dedup_columns(entity) -> set[str]:
    """The columns a file's duplicate checks read: the key and the values that must be unique."""
    return set(entity.key) | {c.name for c in entity.columns if c.unique}
