"""A gzip file (`clients.csv.gz`) read as the file it holds: landed as it came, byte for byte, and
decompressed as a stream into a temporary copy only to be read, so memory stays bounded. Where
its content would pass the archives' limit (MAX_EXPANDED_BYTES), the delivery fails whole; a
gzip that is cut short or damaged fails naming how far it could be read. (A zip archive's members
are deliveries of their own: see `stores.archives`.)"""

from __future__ import annotations

import contextlib
import gzip
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from bspk_pipelines.ingest.parse import FileFailure
from bspk_pipelines.ingest.stores.archives import MAX_EXPANDED_BYTES

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


@contextlib.contextmanager
def expanded(path: Path) -> Iterator[Path]:
    """The file to read: `path` itself, or for a gzip file a decompressed copy under the same name
    (messages name the delivery as it came)."""
    if not is_gzip(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bspk-gunzip-") as scratch:
        copy = Path(scratch) / path.name
        written = 0
        try:
            with gzip.open(path, "rb") as f, copy.open("wb") as out:
                # read1: one decompression at a time, so what came before a fault is counted.
                for chunk in iter(lambda: f.read1(_CHUNK), b""):
                    written += len(chunk)
                    if written > MAX_EXPANDED_BYTES:
                        raise FileFailure(f"{path.name}: it expands past {MAX_EXPANDED_BYTES >> 30} GiB, the most a "
                                          "compressed delivery may hold: send the export in several files")
                    out.write(chunk)
        except gzip.BadGzipFile as e:
            if written:  # a whole gzip stream, then bytes that start none
                raise FileFailure(f"{path.name}: after its gzip data ({written:,} bytes of content) come bytes that are "
                                  f"not gzip ({e}): nothing is read from a file with trailing garbage; send it again "
                                  "as gzip wrote it") from None
            raise FileFailure(f"{path.name}: not a gzip file ({e}), though it starts as one: send it again") from None
        except (EOFError, zlib.error) as e:
            raise FileFailure(f"{path.name}: not a whole gzip file ({e}) after {written:,} bytes of its content: "
                              "was it cut short? Send it again") from None
        if is_gzip(copy):
            raise FileFailure(f"{path.name}: a gzip file inside a gzip file: compress the export once")
        yield copy
