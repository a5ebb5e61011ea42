"""Where a brand's files live on disk under the data folder: drop folders, the landing zone, the
work folders of each landing's claim, and the parquet parts a step leaves there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from bspk_pipelines.ingest.drop import safe_name
from bspk_pipelines.model.brand import Brand

# Under a source's entity work folder, the folders of the claims (the others are digests').
CLAIMS = "claims"


@dataclass(frozen=True)
class Layout:
    """Where a brand's files live on disk under the data folder."""

    data_dir: Path

    def drop(self, brand: Brand, source: str) -> Path:
        drop = brand.sources[source].drop
        if drop is None:  # a Shopify source's pulls write into a folder of their own
            return self.data_dir / brand.brand / "shopify" / source
        path = Path(drop)
        return path if path.is_absolute() else self.data_dir / path

    def landed(self, brand: str, source: str, name: str) -> Path:
        return self.data_dir / brand / "landing" / source / safe_name(name)

    def work(self, brand: str, source: str, entity: str, name: str, claim: str | None, layer: str) -> Path:
        """Folder of a file's rows after a step, as parquet parts (one per batch): in a folder of
        the landing's claim (files landed before claims existed have none)."""
        folder = self.data_dir / brand / "work" / source / entity
        return (folder / CLAIMS / safe_name(claim) if claim else folder) / f"{safe_name(name)}.{layer}"

    def digests(self, brand: str, source: str, entity: str) -> Path:
        """Folder of the row digests of the source's last applied file of the entity."""
        return self.data_dir / brand / "work" / source / entity / "applied-digests"

def parquet_parts(folder: Path) -> list[Path]:
    """The parquet parts a step left in a work folder, in batch order."""
    return sorted(folder.glob("part-*.parquet"))

def count_rows(parts: list[Path]) -> int:
    """Rows in parquet parts, read from their footers."""
    return pl.scan_parquet(parts).select(pl.len()).collect().item() if parts else 0
