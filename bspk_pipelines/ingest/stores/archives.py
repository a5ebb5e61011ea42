"""Zip archives in a drop store: each member a delivery of its own, named `archive.zip!member.csv`.

A brand that sends several exports as one archive (or one export zipped) sees each member taken,
checked and applied as if it had been dropped alone: it matches the source's file patterns by its
own name, it has its own record in the ledger (its sha256 is that of its bytes), and its landed copy
is its bytes, byte for byte as the brand's system wrote them. The archive stays in the drop store,
which the pipeline never alters.

`ZipMembers` wraps any drop store. An archive's members are listed from its central directory
(for a remote store, the archive is fetched once per look and version: see `_members`). A member
counts as ready as its archive does (two looks, or `archive.zip.done`). Members that are folders,
hidden files and macOS's `__MACOSX/` copies are no deliveries; a member in a folder of the archive
is delivered under its file name. An archive is refused whole, with a message, when a member's path
would leave it (`../`, an absolute path), when two members have the same file name, when a member
is encrypted, when it has more than MAX_MEMBERS members, or when its members expand past
MAX_EXPANDED_BYTES; one that is not a readable zip (still being written, or damaged) is refused
until it is. A member is never read past the size its archive declares, and one whose bytes do
not match it (a CRC, a size) is refused when it is read (`_Damaged`).
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import tempfile
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import PurePosixPath

from bspk_pipelines.ingest.stores import DropStore, Listing, Reading, Refused, Snapshot

# The most an archive's members (or a gzip file) may expand to: past it, the delivery is refused
# (a zip bomb, or an export too large to be one delivery). 32 GiB.
MAX_EXPANDED_BYTES = 32 << 30
# The most members an archive may deliver: each is a delivery, with a run of its own.
MAX_MEMBERS = 1000
MEMBER = "!"  # between an archive's name and its member's: `exports.zip!clients.csv`
ZIP_MAGIC = b"PK\x03\x04"
# Member lists of archives looked at lately, by store, name and version (a remote archive is fetched
# once per version, not at every look while it stays in the store).
_LISTED: OrderedDict[tuple[str, str, Snapshot], dict[str, zipfile.ZipInfo] | Refused] = OrderedDict()
_LISTED_MAX = 1024


def is_zip(path) -> bool:
    """Whether a file's bytes are a zip archive's (an .xlsx workbook's too)."""
    with open(path, "rb") as f:
        return f.read(4) == ZIP_MAGIC


def is_archive(name: str) -> bool:
    return name.lower().endswith(".zip") and MEMBER not in name


def split_member(name: str) -> tuple[str, str] | None:
    """(archive, member) of a member's delivery name, None for another file's."""
    archive, sep, member = name.partition(MEMBER)
    return (archive, member) if sep and is_archive(archive) else None


class ZipMembers:
    """A drop store whose zip archives are listed as their members (see the module's docstring)."""

    def __init__(self, inner: DropStore):
        self.inner = inner
        self.where = inner.where
        self.parallel_reads = inner.parallel_reads

    def entries(self) -> Listing:
        listing = self.inner.entries()
        out: Listing = {}
        for name, entry in listing.items():
            if not is_archive(name) or not isinstance(entry, Snapshot):
                out[name] = entry
                continue
            members = self._members(name, entry)
            if isinstance(members, Refused):
                out[name] = members
                continue
            for member, info in members.items():
                key = f"{name}{MEMBER}{member}"
                out[key] = _member_snapshot(entry, info)
                if f"{name}.done" in listing:
                    out[f"{key}.done"] = None  # the archive's marker marks each member ready
        return out

    @contextlib.contextmanager
    def reading(self, name: str) -> Iterator[Reading]:
        parts = split_member(name)
        if parts is None:
            with self.inner.reading(name) as r:
                yield r
            return
        archive, member = parts
        with self.inner.reading(archive) as r, _seekable(r.stream) as stream:
            try:
                zf = zipfile.ZipFile(stream)
            except (zipfile.BadZipFile, OSError) as e:
                raise Refused(_unreadable(e), retried=True) from None
            members = _checked_members(zf)
            if isinstance(members, Refused):
                raise members
            if member not in members:
                raise FileNotFoundError(f"{archive} has no member {member}")
            info = members[member]
            with zf.open(info) as m:
                yield Reading(_Damaged(m, archive, member), _member_snapshot(r.opened, info),
                              lambda: _member_snapshot(r.now(), info))

    def stat(self, name: str) -> Snapshot | None:
        parts = split_member(name)
        if parts is None:
            return self.inner.stat(name)
        archive, member = parts
        snap = self.inner.stat(archive)
        members = self._members(archive, snap) if snap else None
        if not isinstance(members, dict) or member not in members:
            return None
        return _member_snapshot(snap, members[member])

    def close(self) -> None:
        self.inner.close()

    def _members(self, name: str, snap: Snapshot) -> dict[str, zipfile.ZipInfo] | Refused:
        """The archive's deliveries by member name, or its refusal, as of this version of it."""
        key = (self.where, name, snap)
        if key not in _LISTED:
            try:
                with self.inner.reading(name) as r, _seekable(r.stream) as stream:
                    with zipfile.ZipFile(stream) as zf:
                        _LISTED[key] = _checked_members(zf)
            except (zipfile.BadZipFile, OSError) as e:
                return Refused(_unreadable(e), retried=True)  # not kept: it may be complete at the next look
            except Refused as e:
                return e
            while len(_LISTED) > _LISTED_MAX:
                _LISTED.popitem(last=False)
        _LISTED.move_to_end(key)
        return _LISTED[key]


def _member_snapshot(archive: Snapshot, info: zipfile.ZipInfo) -> Snapshot:
    """A member's snapshot: its size, its archive's time, and its archive's version with its CRC."""
    return Snapshot(info.file_size, archive.mtime_ns, f"{archive.etag or ''}:{info.CRC:08x}")


def _unreadable(e: Exception) -> str:
    return (f"not a readable zip archive ({e}): if it is still being written, it is taken once it is whole "
            "(drop it under a .part name and rename it, or drop a .done marker after it); if it is damaged, send it again")


def _checked_members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo] | Refused:
    """The members that are deliveries, by file name; Refused for an archive refused whole."""
    found: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in zf.infolist():
        path = info.filename.replace("\\", "/")
        parts = PurePosixPath(path).parts
        if path.startswith("/") or ".." in parts or (parts and parts[0].endswith(":")):
            return Refused(f"member {info.filename!r} has a path that leaves the archive: the archive is refused whole "
                           "(no member is taken); zip the files with paths inside the archive", retried=False)
        base = posixpath.basename(path)
        if info.is_dir() or not base or base.startswith(".") or (parts and parts[0] == "__MACOSX"):
            continue
        if info.flag_bits & 0x1:
            return Refused(f"member {info.filename!r} is encrypted: the archive is refused whole; send it without a "
                           "password (the drop store's access is what protects it)", retried=False)
        if base in found:
            return Refused(f"members {found[base].filename!r} and {info.filename!r} have the same file name: the "
                           "archive is refused whole; each member is delivered under its file name", retried=False)
        total += info.file_size
        if len(found) >= MAX_MEMBERS:
            return Refused(f"it has more than {MAX_MEMBERS:,} members, each of which would be a delivery with a run of "
                           "its own: the archive is refused whole; send fewer, larger files", retried=False)
        if total > MAX_EXPANDED_BYTES:
            return Refused(f"its members expand past {MAX_EXPANDED_BYTES >> 30} GiB, the most an archive may hold: "
                           "the archive is refused whole; send the exports in several archives", retried=False)
        found[base] = info
    return found


class _Damaged:
    """A member's stream whose damage (a CRC or size that does not match its bytes, data that does
    not inflate) is a refusal of the archive, as an archive that cannot be read is, never a crash of
    the look or the run that reads it."""

    def __init__(self, stream, archive: str, member: str):
        self.stream, self.archive, self.member = stream, archive, member

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise Refused(f"member {self.member!r} of {self.archive} is damaged ({e}): its bytes are not the ones "
                          "the archive says it holds; send the archive again", retried=True) from None


@contextlib.contextmanager
def _seekable(stream) -> Iterator:
    """The stream itself where it can seek (a local file), else a temporary copy of it (zip reads
    its directory from the end)."""
    if stream.seekable():
        yield stream
        return
    with tempfile.TemporaryFile(prefix="bspk-zip-") as copy:
        shutil.copyfileobj(stream, copy, 1 << 20)
        copy.seek(0)
        yield copy
