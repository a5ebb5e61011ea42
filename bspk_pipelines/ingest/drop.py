"""Delivered files: which entities a file name feeds, its order, the key of each delivery under a
name, its hash, when it is ready, and how it is copied from its drop store (the bytes copied are
the bytes hashed)."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.ingest.stores import Changed, DropStore, Refused, Snapshot, chunks
from bspk_pipelines.ingest.stores.archives import split_member
from bspk_pipelines.model.entities import BY_FILE_TYPE, DEPENDENCY_ORDER

NATIVE_NAME = re.compile(
    r"^(?P<type>[A-Z][A-Z-]*)_(?P<version>V\d+)_(?P<company>[A-Za-z0-9]+)_(?P<ts>\d{12})\.csv$"
)


class FileNameError(ValueError):
    """A delivered file's name does not say what it holds."""


# A later delivery under a name that came before: `customers_export.csv@2`, `@3`...
LATER = re.compile(r"^(?P<name>.+)@(?P<n>[1-9][0-9]*)$")


def delivery_key(name: str, n: int) -> str:
    """The key of the `n`th delivery under a file name: the name itself first, then `name@n`."""
    return name if n == 1 else f"{name}@{n}"


def dropped_name(key: str) -> str:
    """The drop folder name a delivery's key stands for."""
    m = LATER.match(key)
    return m["name"] if m else key


def matches(name: str, pattern: str) -> bool:
    """Whether a dropped file's name fits a file pattern: an archive's member by its own name
    (`exports.zip!clients.csv`), a gzip file by its name with or without `.gz`."""
    parts = split_member(name)
    name = parts[1] if parts else name
    return fnmatch.fnmatchcase(name, pattern) or (name.endswith(".gz") and fnmatch.fnmatchcase(name[:-3], pattern))


def delivery_number(key: str) -> int:
    m = LATER.match(key)
    return int(m["n"]) if m else 1


@dataclass(frozen=True, order=True)
class Delivery:
    """A file recognised as feeding entities of one source, with its place in the queue. `name`
    is the delivery's key: the file's name, or `name@n` for the nth delivery under that name."""

    sort_key: tuple[str, int, str]
    brand: str
    source: str
    entities: tuple[str, ...]
    name: str

    @property
    def queue_position(self) -> str:
        """The sort key as text that sorts the same way (stored with the file): deliveries under
        one name in the order they came (`@10` after `@9`)."""
        ts, order, name = self.sort_key
        return f"{ts}/{order:02d}/{dropped_name(name)}/{delivery_number(name):06d}"

    def again(self, n: int) -> Delivery:
        """The same file as the `n`th delivery under its name."""
        key = delivery_key(dropped_name(self.name), n)
        return replace(self, name=key, sort_key=(self.sort_key[0], self.sort_key[1], key))


def safe_name(name: str) -> str:
    """A file name is one path component: no separators, not `.` or `..`, no control characters
    (`v1..2.csv` is a name like any other: without a separator, `..` inside it leaves no folder)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise FileNameError(f"{name!r}: a file name must not contain path separators or '..'")
    if any(ord(ch) < 32 for ch in name):
        raise FileNameError(f"{name!r}: a file name must not contain control characters")
    return name


def classify(brand: Brand, source_id: str, name: str, mtime: float = 0.0) -> Delivery:
    """Which entity a file feeds and its first-in-first-out sort key, or FileNameError saying why not."""
    safe_name(name)
    source = brand.sources[source_id]
    if source.format == "bspk":
        parts = split_member(name)
        m = NATIVE_NAME.match(parts[1] if parts else name.removesuffix(".gz"))
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
        return Delivery((m["ts"], DEPENDENCY_ORDER[entity.name], name), brand.brand, source_id, (entity.name,), name)
    if LATER.match(name):
        raise FileNameError(f"{name}: a name ending in @<number> is how the pipeline keys a later delivery under "
                            "the same name (customers.csv@2): rename the file")
    matching = [spec for spec in source.files if matches(name, spec.pattern)]
    if len(matching) > 1:
        raise FileNameError(f"{name}: matches more than one of source {source_id}'s file patterns "
                            f"({', '.join(f.pattern for f in matching)}): a file must match one; for a file that feeds "
                            "several entities, list them under one entry's `entities`")
    for spec in matching:
        ts = datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y%m%d%H%M%S")
        if spec.timestamp:
            m = re.search(spec.timestamp.regex, name)
            try:
                ts = datetime.strptime(m.group(1), spec.timestamp.format).strftime("%Y%m%d%H%M%S") if m else ""
            except ValueError:
                m = None
            if not m:
                raise FileNameError(f"{name}: no timestamp matching {spec.timestamp.regex} ({spec.timestamp.format})")
        fed = tuple(spec.feeds)
        return Delivery((ts, DEPENDENCY_ORDER[fed[0]], name), brand.brand, source_id, fed, name)
    patterns = ", ".join(f.pattern for f in source.files)
    raise FileNameError(f"{name}: matches none of source {source_id}'s file patterns ({patterns})")


def route(brand: Brand, name: str, source: str | None = None) -> Delivery:
    """The delivery a file name is to the brand: of `source`, or of the one source whose naming
    rule it follows; FileNameError saying why none (or several)."""
    if source is not None and source not in brand.sources:
        raise FileNameError(f"source: {brand.brand} has no source {source!r}; it has {', '.join(brand.sources)}")
    found, problems = [], []
    for sid in [source] if source else list(brand.sources):
        try:
            found.append(classify(brand, sid, name))
        except FileNameError as e:
            problems.append(f"source {sid}: {e}")
    if not found:
        raise FileNameError("the file name fits none of the brand's naming rules: " + "; ".join(problems))
    if len(found) > 1:
        raise FileNameError(f"{name} fits sources {', '.join(d.source for d in found)}: name the source to choose "
                            "(an upload's `source` field, `bspk preview --source`)")
    return found[0]


# Bytes read at a time from a dropped file: memory stays flat whatever its size.
CHUNK = 1 << 20


def hash_delivered(store: DropStore, name: str) -> str:
    """The sha256 of a dropped file's bytes (see the store's `reading`)."""
    h = hashlib.sha256()
    with store.reading(name) as r:
        for chunk in chunks(r.stream, CHUNK):
            h.update(chunk)
    return h.hexdigest()


def copy_delivered(store: DropStore, name: str, target: Path) -> tuple[str, Snapshot]:
    """Copy a dropped file to `target`, hashing the very bytes written; (sha256, the file as copied).

    Changed if the file's size, modification time or version moved while it was copied: the copy
    would mix two versions.
    """
    h = hashlib.sha256()
    size = 0
    with store.reading(name) as r, target.open("wb") as out:
        for chunk in chunks(r.stream, CHUNK):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
        after = r.now()
        out.flush()
        os.fsync(out.fileno())
    if after != r.opened or size != after.size:
        raise Changed(f"{name} changed while it was copied ({r.opened.size:,} then {after.size:,} bytes)")
    return h.hexdigest(), after


@dataclass
class Look:
    """One look at a drop store: the files ready to take, what every file looked like (kept for
    the next look), and the entries refused with the reason."""

    ready: list[tuple[str, Snapshot]]
    seen: dict[str, Snapshot]
    refused: dict[str, Refused]


def look(store: DropStore, previous: dict[str, Snapshot]) -> Look:
    """Files that have stopped growing since the previous look (the same size, time and version),
    or that carry a `.done` marker.

    Links and other entries that are not regular files are refused without being opened or
    followed; folders are left alone (a subfolder is not a delivery). A store refused whole (a
    drop folder that is a link or does not exist, a server that cannot be reached) raises Refused.
    """
    result = Look([], {}, {})
    listing = store.entries()
    for name, entry in sorted(listing.items()):
        if entry is None:
            continue
        if isinstance(entry, Refused):
            result.refused[name] = entry
            continue
        result.seen[name] = entry
        if f"{name}.done" in listing or previous.get(name) == entry:
            result.ready.append((name, entry))
    return result
