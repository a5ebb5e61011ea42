"""Where a brand's files live: its sources' drop stores, the landing zone (under the data folder,
or in object storage with a copy kept there), the work folders of each landing's claim, and the
parquet parts a step leaves there."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from bspk_pipelines.ingest.drop import CHUNK, safe_name
from bspk_pipelines.ingest.stores.archives import ZipMembers
from bspk_pipelines.ingest.stores import (
    Changed, DropStore, DropUrlError, S3Address, SftpCredentials, chunks, open_store, parse_drop,
)
from bspk_pipelines.model.brand import Brand

# Under a source's entity work folder, the folders of the claims (the others are digests').
CLAIMS = "claims"


@dataclass(frozen=True)
class Layout:
    """Where a brand's files live: under the data folder, and in the stores its sources name."""

    data_dir: Path
    # s3://bucket/prefix: landed files are kept in object storage (and copied into the data folder).
    landing_url: str | None = None
    # The SFTP host keys trusted (default ~/.ssh/known_hosts).
    known_hosts: Path | None = None

    def drop(self, brand: Brand, source: str) -> Path | None:
        """The source's drop folder on this machine; None when its drop is a remote store."""
        drop = brand.sources[source].drop
        if drop is None:  # a Shopify source's pulls write into a folder of their own
            return self.data_dir / brand.brand / "shopify" / source
        where = parse_drop(drop)
        if not isinstance(where, Path):
            return None
        return where if where.is_absolute() else self.data_dir / where

    def drop_store(self, brand: Brand, source: str) -> DropStore:
        """The store the source's files arrive in, with an SFTP drop's credentials from the
        variables the source names. Close it when done (a remote store holds a connection)."""
        src = brand.sources[source]
        folder = self.drop(brand, source)
        if folder is not None:
            # A Shopify source's folder is its pulls' own: made by the first pull, empty until then.
            return ZipMembers(open_store(str(folder), self.data_dir, missing_ok=src.drop is None))
        return ZipMembers(open_store(src.drop, self.data_dir, self.known_hosts,
                                     SftpCredentials.from_env(src.drop_key_env, src.drop_password_env)))

    def landed(self, brand: str, source: str, name: str) -> Path:
        """A landed file's place in the data folder (with a landing URL, the copy kept there)."""
        return self.data_dir / brand / "landing" / source / safe_name(name)

    def landed_at(self, brand: str, source: str, name: str) -> str:
        """Where a landed file is kept, as a user would look for it: its object's URL or its path."""
        if self.landing_url is None:
            return str(self.landed(brand, source, name))
        return f"{self.landing_url.rstrip('/')}/{_landed_key(brand, source, name)}"

    def keep_landed(self, copy: Path, brand: str, source: str, name: str, sha256: str) -> Path:
        """Move a complete copy of a delivered file into the landing zone: into object storage
        first where there is a landing URL (so run workers elsewhere read it), then into its place
        in the data folder."""
        if self.landing_url is not None:
            from bspk_pipelines.ingest.stores import s3
            s3.keep(self._landing_bucket(), _landed_key(brand, source, name), copy, sha256)
        landed = self.landed(brand, source, name)
        os.replace(copy, landed)
        return landed

    def landed_copy(self, brand: str, source: str, name: str) -> Path:
        """The landed file, readable here: the data folder's copy, fetched from the landing URL
        first if this machine has none (its bytes checked against the sha256 kept with it)."""
        landed = self.landed(brand, source, name)
        if self.landing_url is None or landed.exists():
            return landed
        from bspk_pipelines.ingest.stores import s3
        landed.parent.mkdir(parents=True, exist_ok=True)
        partial = landed.with_name(f".{secrets.token_hex(8)}.part")
        try:
            kept = s3.fetch(self._landing_bucket(), _landed_key(brand, source, name), partial)
            if kept != sha256_of(partial):
                raise Changed(f"{self.landed_at(brand, source, name)}: its bytes do not match the sha256 kept with it "
                              f"({kept or 'none'}): the landed original was altered or is incomplete")
            os.replace(partial, landed)
        finally:
            partial.unlink(missing_ok=True)
        return landed

    def _landing_bucket(self) -> S3Address:
        where = parse_drop(self.landing_url or "")
        if not isinstance(where, S3Address):
            raise DropUrlError(f"{self.landing_url}: a landing URL is s3://bucket/prefix")
        return where

    def work(self, brand: str, source: str, entity: str, name: str, claim: str | None, layer: str) -> Path:
        """Folder of a file's rows after a step, as parquet parts (one per batch): in a folder of
        the landing's claim (files landed before claims existed have none)."""
        folder = self.data_dir / brand / "work" / source / entity
        return (folder / CLAIMS / safe_name(claim) if claim else folder) / f"{safe_name(name)}.{layer}"

    def digests(self, brand: str, source: str, entity: str) -> Path:
        """Folder of the row digests of the source's last applied file of the entity."""
        return self.data_dir / brand / "work" / source / entity / "applied-digests"

def _landed_key(brand: str, source: str, name: str) -> str:
    return f"{brand}/landing/{source}/{safe_name(name)}"


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes, read a chunk at a time."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in chunks(f, CHUNK):
            h.update(chunk)
    return h.hexdigest()


def parquet_parts(folder: Path) -> list[Path]:
    """The parquet parts a step left in a work folder, in batch order."""
    return sorted(folder.glob("part-*.parquet"))

def count_rows(parts: list[Path]) -> int:
    """Rows in parquet parts, read from their footers."""
    return pl.scan_parquet(parts).select(pl.len()).collect().item() if parts else 0
