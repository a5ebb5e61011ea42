"""Delivered files: which entities a file name feeds, its order, the key of each delivery under a
name, its hash, when it is ready, and how a dropped file is read (never through a link, only a regular file, the bytes copied are the bytes hashed)."""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from bspk_pipelines.model.brand import Brand
from bspk_pipelines.model.entities import BY_FILE_TYPE, DEPENDENCY_ORDER

NATIVE_NAME = re.compile(
    r"^(?P<type>[A-Z][A-Z-]*)_(?P<version>V\d+)_(?P<company>[A-Za-z0-9]+)_(?P<ts>\d{12})\.csv$"
)
IGNORED_SUFFIXES = (".tmp", ".part", ".done")


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
        return Delivery((m["ts"], DEPENDENCY_ORDER[entity.name], name), brand.brand, source_id, (entity.name,), name)
    if LATER.match(name):
        raise FileNameError(f"{name}: a name ending in @<number> is how the pipeline keys a later delivery under "
                            "the same name (customers.csv@2): rename the file")
    matching = [spec for spec in source.files if fnmatch.fnmatchcase(name, spec.pattern)]
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


@dataclass(frozen=True)
class Snapshot:
    """What a drop folder entry looked like at one look: enough to tell whether it still grows."""

    size: int
    mtime_ns: int


class Refused(Exception):
    """A drop folder entry the pipeline does not read: a link, not a regular file, or unreadable.

    Its message says why and what to change; it never quotes the entry's content.
    """

    def __init__(self, reason: str, retried: bool):
        super().__init__(reason)
        self.retried = retried


LINK = "a symbolic link: links in a drop folder are never followed; put the file itself there"
FOLDER_LINK = ("the drop folder is a symbolic link: links are never followed; name the folder itself in the "
               "source's `drop`, or put the files there")


def _refusal(error: OSError) -> Refused:
    if error.errno == errno.ELOOP:
        return Refused(LINK, retried=False)
    if error.errno in (errno.EACCES, errno.EPERM):
        return Refused("cannot be read (permission denied): give the pipeline's user read access; "
                       "it is taken as soon as it can be read", retried=True)
    return Refused(f"cannot be read ({os.strerror(error.errno) if error.errno else error}); it is tried again "
                   "at the next look", retried=True)


def _kind(mode: int) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode) else "a socket"
            if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


@contextmanager
def open_delivered(path: Path) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """A dropped file opened for reading, with its status as opened: never through a link (neither
    the file nor its folder is followed, so a link swapped in after a look is refused too), and
    only a regular file. Refused says why not; FileNotFoundError if it is gone."""
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR) and path.parent.is_symlink():
            raise Refused(FOLDER_LINK, retried=False) from None
        raise
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except FileNotFoundError:
        raise  # gone since the look: nothing to refuse
    except OSError as e:
        raise _refusal(e) from None
    finally:
        os.close(folder)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Refused(f"{_kind(st.st_mode)}, not a regular file: only regular files are read from a drop folder",
                      retried=False)
    with os.fdopen(fd, "rb") as f:
        yield f, st


def hash_delivered(path: Path) -> str:
    """The sha256 of a dropped file's bytes (see `open_delivered`)."""
    h = hashlib.sha256()
    with open_delivered(path) as (f, _):
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class Changed(Exception):
    """A dropped file changed while (or since) it was looked at: it is not ready yet."""


def copy_delivered(path: Path, target: Path) -> tuple[str, Snapshot]:
    """Copy a dropped file to `target`, hashing the very bytes written; (sha256, the file as copied).

    Changed if the file's size or modification time moved while it was copied: the copy would
    mix two versions.
    """
    h = hashlib.sha256()
    size = 0
    with open_delivered(path) as (f, before), target.open("wb") as out:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
        after = os.fstat(f.fileno())
        out.flush()
        os.fsync(out.fileno())
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or size != after.st_size:
        raise Changed(f"{path.name} changed while it was copied ({before.st_size:,} then {after.st_size:,} bytes)")
    return h.hexdigest(), Snapshot(size, after.st_mtime_ns)


@dataclass
class Look:
    """One look at a drop folder: the files ready to take, what every file looked like (kept for
    the next look), and the entries refused with the reason."""

    ready: list[tuple[str, Snapshot]]
    seen: dict[str, Snapshot]
    refused: dict[str, Refused]


def look(folder: Path, previous: dict[str, Snapshot]) -> Look:
    """Files that have stopped growing since the previous look (or carry a `.done` marker).

    Links and other entries that are not regular files are refused without being opened or
    followed; folders are left alone (a subfolder is not a delivery). A drop folder that is itself
    a link is refused whole (Refused).
    """
    result = Look([], {}, {})
    try:
        if stat.S_ISLNK(os.lstat(folder).st_mode):
            raise Refused(FOLDER_LINK, retried=False)
        entries = {e.name: e for e in os.scandir(folder)}
    except (FileNotFoundError, NotADirectoryError):
        return result
    for name, entry in sorted(entries.items()):
        if not is_candidate(name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone since the folder was listed
        if stat.S_ISLNK(st.st_mode):
            result.refused[name] = Refused(LINK, retried=False)
            continue
        if stat.S_ISDIR(st.st_mode):
            continue
        if not stat.S_ISREG(st.st_mode):
            result.refused[name] = Refused(f"{_kind(st.st_mode)}, not a regular file: only regular files are read "
                                           "from a drop folder", retried=False)
            continue
        snap = Snapshot(st.st_size, st.st_mtime_ns)
        result.seen[name] = snap
        if f"{name}.done" in entries or previous.get(name) == snap:
            result.ready.append((name, snap))
    return result
