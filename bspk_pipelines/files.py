"""Delivered files: which entity a file name feeds, its order, its hash, and when it is ready."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bspk_pipelines.config import Brand
from bspk_pipelines.entities import BY_FILE_TYPE, DEPENDENCY_ORDER

NATIVE_NAME = re.compile(
    r"^(?P<type>[A-Z][A-Z-]*)_(?P<version>V\d+)_(?P<company>[A-Za-z0-9]+)_(?P<ts>\d{12})\.csv$"
)
IGNORED_SUFFIXES = (".tmp", ".part", ".done")


class FileNameError(ValueError):
    """A delivered file's name does not say what it holds."""


@dataclass(frozen=True, order=True)
class Delivery:
    """A file recognised as feeding one entity of one source, with its place in the queue."""

    sort_key: tuple[str, int, str]
    brand: str
    source: str
    entity: str
    name: str

    @property
    def queue_position(self) -> str:
        """The sort key as text that sorts the same way (stored with the file)."""
        ts, order, name = self.sort_key
        return f"{ts}/{order:02d}/{name}"


def safe_name(name: str) -> str:
    """A file name is one path component: no separators, no `..`, no control characters."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or ".." in name:
        raise FileNameError(f"{name!r}: a file name must not contain path separators or '..'")
    if any(ord(ch) < 32 for ch in name):
        raise FileNameError(f"{name!r}: a file name must not contain control characters")
    return name


def is_candidate(name: str) -> bool:
    """Files the drop-folder watcher looks at at all: not hidden, not partial uploads, not markers."""
    return not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


def classify(brand: Brand, source_id: str, name: str, mtime: float = 0.0) -> Delivery:
    """Which entity a file feeds and its first-in-first-out sort key, or FileNameError saying why not."""
    safe_name(name)
    source = brand.sources[source_id]
    if source.format == "bspk":
        m = NATIVE_NAME.match(name)
        if not m:
            raise FileNameError(
                f"{name}: expected <TYPE>_<VERSION>_{brand.company_name}_<YYYYMMDDHHMM>.csv"
            )
        entity = BY_FILE_TYPE.get(m["type"])
        if entity is None:
            raise FileNameError(f"{name}: unknown file TYPE {m['type']!r}; expected one of {', '.join(BY_FILE_TYPE)}")
        if m["version"] not in entity.versions:
            raise FileNameError(
                f"{name}: {m['type']} files are version {' or '.join(entity.versions)}; found {m['version']}"
            )
        if m["company"] != brand.company_name:
            raise FileNameError(f"{name}: company name should be {brand.company_name}; found {m['company']}")
        try:
            datetime.strptime(m["ts"], "%Y%m%d%H%M")
        except ValueError:
            raise FileNameError(f"{name}: timestamp {m['ts']} is not a valid YYYYMMDDHHMM") from None
        return Delivery((m["ts"], DEPENDENCY_ORDER[entity.name], name), brand.brand, source_id, entity.name, name)
    for spec in source.files:
        if fnmatch.fnmatchcase(name, spec.pattern):
            ts = datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y%m%d%H%M%S")
            if spec.timestamp:
                m = re.search(spec.timestamp.regex, name)
                try:
                    ts = datetime.strptime(m.group(1), spec.timestamp.format).strftime("%Y%m%d%H%M%S") if m else ""
                except ValueError:
                    m = None
                if not m:
                    raise FileNameError(f"{name}: no timestamp matching {spec.timestamp.regex} ({spec.timestamp.format})")
            return Delivery((ts, DEPENDENCY_ORDER[spec.entity], name), brand.brand, source_id, spec.entity, name)
    patterns = ", ".join(f.pattern for f in source.files)
    raise FileNameError(f"{name}: matches none of source {source_id}'s file patterns ({patterns})")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """What a drop folder entry looked like at one look: enough to tell whether it still grows."""

    size: int
    mtime_ns: int


def ready_files(
    folder: Path, previous: dict[str, Snapshot]
) -> tuple[list[tuple[str, Snapshot]], dict[str, Snapshot]]:
    """Files that have stopped growing since the previous look (or carry a `.done` marker).

    Returns the ready files and the snapshot of everything seen now, which the caller keeps
    for the next look.
    """
    if not folder.is_dir():
        return [], {}
    entries = {e.name: e for e in folder.iterdir()}
    now: dict[str, Snapshot] = {}
    ready = []
    for name, entry in sorted(entries.items()):
        if not is_candidate(name) or not entry.is_file():
            continue
        st = entry.stat()
        snap = Snapshot(st.st_size, st.st_mtime_ns)
        now[name] = snap
        if f"{name}.done" in entries or previous.get(name) == snap:
            ready.append((name, snap))
    return ready, now
