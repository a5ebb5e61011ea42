"""A drop folder on an SFTP server (paramiko): the server's host key is checked against a
known_hosts file and never accepted unseen; a key file or a password from the environment.

SFTP has no open-without-following, so a file is looked at (lstat) before it is opened and again
after, and refused if either look is not the regular file that was opened. Modification times are
whole seconds (SFTP version 3, which OpenSSH speaks).
"""

from __future__ import annotations

import errno
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import paramiko

from bspk_pipelines.ingest.stores import (
    LINK, NO_FOLDER, Listing, Reading, Refused, SftpAddress, SftpCredentials, Snapshot, check_folder, is_candidate,
    kind_of, listed, not_regular,
)

# Seconds to wait for the server (TCP, banner, authentication).
TIMEOUT = 20
# How a public key file begins (OpenSSH's one line, or RFC 4716's block).
PUBLIC_KEY = (b"ssh-", b"ecdsa-", b"sk-ssh-", b"sk-ecdsa-", b"---- BEGIN SSH2 PUBLIC KEY")


def _snapshot(attrs: paramiko.SFTPAttributes) -> Snapshot:
    return Snapshot(attrs.st_size or 0, int(attrs.st_mtime or 0) * 1_000_000_000)


def _io_refusal(error: OSError) -> Refused:
    if error.errno in (errno.EACCES, errno.EPERM):
        return Refused("cannot be read (permission denied on the SFTP server): give the account read access; "
                       "it is taken as soon as it can be read", retried=True)
    return Refused(f"cannot be read over SFTP ({error.strerror or error}); it is tried again at the next look",
                   retried=True)


def _key_file_problem(path: Path) -> str | None:
    """What is wrong with a key file before paramiko reads it (its messages name no variable), if anything."""
    if path.is_dir():
        return "is a folder, not a key file: give the private key file"
    if not path.exists():
        return "does not exist: mount the private key there or correct the variable"
    if not path.is_file():
        return "is not a regular file: give the private key file"
    try:
        with path.open("rb") as f:
            head = f.read(len(PUBLIC_KEY[-1]))
    except OSError as e:
        return f"cannot be read ({e.strerror or e}): give the pipeline's user read access"
    if path.suffix == ".pub" or head.startswith(PUBLIC_KEY):
        return "points at a public key; give the private key file"
    return None


class SftpFolder:
    """A folder on an SFTP server, reached with one connection for as long as the store is open."""

    parallel_reads = False

    def __init__(self, address: SftpAddress, known_hosts: Path, credentials: SftpCredentials):
        self.address = address
        self.known_hosts = known_hosts
        self.credentials = credentials
        self.where = f"sftp://{address.user}@{address.host}:{address.port}{address.path}"
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def _session(self) -> paramiko.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        a, c = self.address, self.credentials
        if not c.key_file and not c.password:
            raise Refused(f"no credentials for {a.user}@{a.host}: set {c.key_env} (a private key file's path) or "
                          f"{c.password_env} (the variables the source's `drop_key_env` and `drop_password_env` "
                          "name)", retried=True)
        problem = _key_file_problem(Path(c.key_file)) if c.key_file else None
        if problem:
            raise Refused(f"{c.key_env} ({c.key_file}) {problem}", retried=True)
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(self.known_hosts))
        except FileNotFoundError:
            raise Refused(f"the known_hosts file {self.known_hosts} does not exist: add the server's host key there "
                          f"(ssh-keyscan -p {a.port} {a.host}, after checking its fingerprint with the brand) or set "
                          "BSPK_SFTP_KNOWN_HOSTS", retried=True) from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(a.host, a.port, a.user, password=c.password, key_filename=c.key_file,
                           allow_agent=False, look_for_keys=False, timeout=TIMEOUT, banner_timeout=TIMEOUT,
                           auth_timeout=TIMEOUT)
            self._sftp = client.open_sftp()
        except paramiko.BadHostKeyException:
            client.close()
            raise Refused(f"{a.host}:{a.port} offered a host key other than the one in {self.known_hosts}: it is not "
                          "trusted; if the brand changed its server's key, check the new fingerprint with them and "
                          "replace the line", retried=True) from None
        except paramiko.AuthenticationException:
            client.close()
            raise Refused(f"{a.user}@{a.host}:{a.port} refused the credentials: check the key in {c.key_env} or the "
                          f"password in {c.password_env}", retried=True) from None
        except paramiko.SSHException as e:
            client.close()
            unknown = "not found in known_hosts" in str(e)
            raise Refused(f"{a.host}:{a.port}'s host key is not in {self.known_hosts}: it is never accepted unseen; "
                          f"add it (ssh-keyscan -p {a.port} {a.host}) after checking its fingerprint with the brand"
                          if unknown else f"SFTP with {a.host}:{a.port} failed ({e}); tried again at the next look",
                          retried=True) from None
        except (OSError, socket.timeout) as e:
            client.close()
            raise Refused(f"cannot reach {a.host}:{a.port} ({e.strerror or e}); tried again at the next look",
                          retried=True) from None
        self._client = client
        return self._sftp

    def _path(self, name: str) -> str:
        return str(PurePosixPath(self.address.path) / name)

    def entries(self) -> Listing:
        sftp = self._session()
        try:
            check_folder(sftp.lstat(self.address.path).st_mode or 0)
            attrs = sftp.listdir_attr(self.address.path)
        except FileNotFoundError:
            raise Refused(NO_FOLDER, retried=True) from None
        except OSError as e:
            raise _io_refusal(e) from None
        listing: Listing = {}
        for a in attrs:
            item = listed(a.st_mode or 0, lambda: _snapshot(a)) if is_candidate(a.filename) else None
            if item is not None or not is_candidate(a.filename):
                listing[a.filename] = item
        return listing

    def _regular(self, name: str) -> paramiko.SFTPAttributes:
        attrs = self._session().lstat(self._path(name))  # FileNotFoundError if gone
        mode = attrs.st_mode or 0
        if stat.S_ISLNK(mode):
            raise Refused(LINK, retried=False)
        if not stat.S_ISREG(mode):
            raise not_regular(kind_of(mode))
        return attrs

    @contextmanager
    def reading(self, name: str) -> Iterator[Reading]:
        sftp = self._session()
        try:
            self._regular(name)
            f = sftp.open(self._path(name), "rb")
        except FileNotFoundError:
            raise
        except OSError as e:
            raise _io_refusal(e) from None
        with f:
            opened = f.stat()
            # Still the regular file opened, not a link swapped in between the look and the open.
            if _snapshot(self._regular(name)) != _snapshot(opened) or not stat.S_ISREG(opened.st_mode or 0):
                raise Refused("changed into another entry while it was opened; it is looked at again", retried=True)
            f.prefetch(opened.st_size)
            yield Reading(f, _snapshot(opened), lambda: _snapshot(f.stat()))

    def stat(self, name: str) -> Snapshot | None:
        try:
            return _snapshot(self._regular(name))
        except (FileNotFoundError, Refused):
            return None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._sftp = None
