"""Drop stores: where a source's deliveries arrive, behind one interface.

A store lists its entries (each a file's `Snapshot`, a `Refused` entry, or a name present but not
looked at: hidden names, partial uploads, `.done` markers), and opens one file as a stream with
the snapshot it had when opened (`Reading`), never through a link. What was taken is kept as a
record, in the ledger: a store's files are never moved or deleted by the pipeline.

Three stores: a local folder (`local.LocalFolder`), an SFTP folder (`sftp.SftpFolder`) and an
S3-compatible bucket prefix (`s3.S3Prefix`). A source's `drop` names its store:
`sftp://user@host:22/outbox/pos`, `s3://bucket/prefix`, or a folder.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from bspk_pipelines.settings import brand_secret


@dataclass(frozen=True)
class Snapshot:
    """What a drop store entry looked like at one look: enough to tell whether it still grows or
    was rewritten (the store's etag where it has one)."""

    size: int
    mtime_ns: int
    etag: str | None = None


class Refused(Exception):
    """A drop store entry the pipeline does not read: a link, not a regular file, or unreadable
    (`retried`: looked at again later). Its message says why and what to change; it never quotes
    the entry's content."""

    def __init__(self, reason: str, retried: bool):
        super().__init__(reason)
        self.retried = retried


class Changed(Exception):
    """A dropped file changed while (or since) it was looked at: it is not ready yet."""


@dataclass
class Reading:
    """A drop file opened for reading: its stream, its snapshot as opened, and how to look at it
    again once read (`now`), to tell whether it changed meanwhile."""

    stream: BinaryIO
    opened: Snapshot
    now: Callable[[], Snapshot]


# A listing: each entry's snapshot, its refusal, or None for a name not looked at (not a candidate).
Listing = dict[str, "Snapshot | Refused | None"]


class DropStore(Protocol):
    """Where one source's deliveries arrive."""

    # How the store is named in messages: a folder, `sftp://user@host:port/path`, `s3://bucket/prefix`.
    where: str
    # Whether files may be read side by side (several threads hashing at once).
    parallel_reads: bool

    def entries(self) -> Listing:
        """The store's entries now (folders left out). Refused if the store itself is refused: it
        cannot be reached, its folder does not exist (`NO_FOLDER`) or is a link."""

    def reading(self, name: str) -> AbstractContextManager[Reading]:
        """One file opened for reading. Refused says why not; FileNotFoundError if it is gone."""

    def stat(self, name: str) -> Snapshot | None:
        """One file's snapshot now; None if there is none (or it is no regular file)."""

    def close(self) -> None:
        """Let go of the connection, if the store holds one."""


LINK = "a symbolic link: links in a drop folder are never followed; put the file itself there"
FOLDER_LINK = ("the drop folder is a symbolic link: links are never followed; name the folder itself in the "
               "source's `drop`, or put the files there")
NO_FOLDER = "the folder does not exist: create it, or correct the source's `drop`"
NOT_A_FOLDER = "not a folder: name the folder the files arrive in as the source's `drop`"


def is_candidate(name: str) -> bool:
    """Files a drop store's watcher looks at at all: not hidden, not partial uploads, not markers."""
    return not name.startswith(".") and not name.endswith((".tmp", ".part", ".done"))


def not_regular(kind: str) -> Refused:
    return Refused(f"{kind}, not a regular file: only regular files are read from a drop folder", retried=False)


def kind_of(mode: int) -> str:
    """What an entry that is not a regular file is, from its mode."""
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else "a named pipe"
            if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


def check_folder(mode: int) -> None:
    """Refused unless a drop folder's mode (as lstat gives it) is a folder's: a link is never followed."""
    if stat.S_ISLNK(mode):
        raise Refused(FOLDER_LINK, retried=False)
    if not stat.S_ISDIR(mode):
        raise Refused(NOT_A_FOLDER, retried=True)


def listed(mode: int, snapshot: Callable[[], Snapshot]) -> Snapshot | Refused | None:
    """A candidate entry by its mode (as lstat gives it): its snapshot, its refusal (a link, a
    pipe...), or None for a subfolder, which is left alone (a subfolder is not a delivery)."""
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return Refused(LINK, retried=False)
    if not stat.S_ISREG(mode):
        return not_regular(kind_of(mode))
    return snapshot()


class DropUrlError(ValueError):
    """A source's `drop` is not a folder, an sftp:// or an s3:// address."""


SFTP_FORM = "sftp://user@host:22/path"
S3_FORM = "s3://bucket/prefix"
# A `scheme:` at the start of a drop: an address, never a folder (`sftp:/host/path` lacks a slash).
SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")
WRITTEN = {"sftp": f"an SFTP drop is written {SFTP_FORM}", "s3": f"an S3 drop is written {S3_FORM}"}


@dataclass(frozen=True)
class SftpAddress:
    user: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class S3Address:
    bucket: str
    prefix: str  # "" or ending in "/"


@dataclass(frozen=True)
class SftpCredentials:
    """An SFTP drop's key file and password, and the variables they are read from (named in messages)."""

    key_file: str | None = None
    password: str | None = None
    key_env: str = "BSPK_SFTP_KEY_FILE"
    password_env: str = "BSPK_SFTP_PASSWORD"

    @classmethod
    def from_env(cls, key_env: str, password_env: str) -> SftpCredentials:
        """The credentials in the variables a source names (`drop_key_env`, `drop_password_env`)."""
        return cls(brand_secret(key_env), brand_secret(password_env), key_env, password_env)


def parse_drop(drop: str) -> Path | SftpAddress | S3Address:
    """A source's `drop` as the store it names (DropUrlError saying what is wrong)."""
    if "://" not in drop:
        return _folder(drop)
    parts = urlsplit(drop)
    if parts.scheme == "sftp":
        if not parts.username or not parts.hostname:
            raise DropUrlError(f"{drop}: an SFTP drop names its user and host: {SFTP_FORM}")
        if parts.password is not None:
            raise DropUrlError(f"{drop}: never write a password into a drop address: put it in the variable the "
                               "source's `drop_password_env` names")
        if parts.query or parts.fragment:
            raise DropUrlError(f"{drop}: an SFTP drop takes no ?query or #fragment")
        try:
            port = parts.port or 22
        except ValueError:
            raise DropUrlError(f"{drop}: the port must be a number from 1 to 65535") from None
        path = unquote(parts.path) or "."
        return SftpAddress(unquote(parts.username), parts.hostname, port, path.rstrip("/") or "/")
    if parts.scheme == "s3":
        if not parts.netloc or parts.username or parts.port:
            raise DropUrlError(f"{drop}: an S3 drop is s3://bucket/prefix (the endpoint is AWS_ENDPOINT_URL_S3)")
        if parts.query or parts.fragment:
            raise DropUrlError(f"{drop}: an S3 drop takes no ?query or #fragment")
        prefix = unquote(parts.path).strip("/")
        return S3Address(parts.netloc, f"{prefix}/" if prefix else "")
    raise DropUrlError(f"{drop}: a drop is a folder, {SFTP_FORM} or {S3_FORM}; {parts.scheme}:// is not one of them")


def _folder(drop: str) -> Path:
    """A drop without `://` as the folder it names; DropUrlError for a mistyped address
    (`sftp:/host/path`, `s3:bucket`, `sftp:user@host`), which would be taken for a folder."""
    typo = SCHEME.match(drop)
    if typo is None:
        return Path(drop)
    form = WRITTEN.get(typo["scheme"].lower())
    if form:
        raise DropUrlError(f"{drop}: {form}, with `://`")
    raise DropUrlError(f"{drop}: a drop is a folder, {SFTP_FORM} or {S3_FORM} (a folder whose name has a colon is "
                       f"written ./{drop})")


def open_store(drop: str, base: Path, known_hosts: Path | None = None,
               credentials: SftpCredentials = SftpCredentials(), missing_ok: bool = False) -> DropStore:
    """The store a source's `drop` names (a relative folder is under `base`); SFTP's host keys
    (default ~/.ssh/known_hosts) and credentials (from the variables the source names). A folder
    that does not exist is refused (`NO_FOLDER`), or empty with `missing_ok` (a folder the
    pipeline makes itself). DropUrlError if `drop` names none."""
    where = parse_drop(drop)
    if isinstance(where, SftpAddress):
        from bspk_pipelines.ingest.stores.sftp import SftpFolder
        return SftpFolder(where, known_hosts or Path.home() / ".ssh" / "known_hosts", credentials)
    if isinstance(where, S3Address):
        from bspk_pipelines.ingest.stores.s3 import S3Prefix
        return S3Prefix(where)
    from bspk_pipelines.ingest.stores.local import LocalFolder
    return LocalFolder(where if where.is_absolute() else base / where, missing_ok)


def chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """A stream's bytes, `size` at a time."""
    return iter(lambda: stream.read(size), b"")
