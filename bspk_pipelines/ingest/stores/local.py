"""A drop folder on a local disk: never read through a link (neither the file nor its folder is
followed, so a link swapped in after a look is refused too), only regular files."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bspk_pipelines.ingest.stores import (
    FOLDER_LINK, LINK, NO_FOLDER, Listing, Reading, Refused, Snapshot, check_folder, is_candidate, kind_of, listed,
    not_regular,
)


def _refusal(error: OSError) -> Refused:
    if error.errno == errno.ELOOP:
        return Refused(LINK, retried=False)
    if error.errno in (errno.EACCES, errno.EPERM):
        return Refused("cannot be read (permission denied): give the pipeline's user read access; "
                       "it is taken as soon as it can be read", retried=True)
    return Refused(f"cannot be read ({os.strerror(error.errno) if error.errno else error}); it is tried again "
                   "at the next look", retried=True)


def _snapshot(st: os.stat_result) -> Snapshot:
    return Snapshot(st.st_size, st.st_mtime_ns)


class LocalFolder:
    """A drop folder on this machine's disks (or a volume mounted on it); one that does not exist
    is refused (`NO_FOLDER`), or empty with `missing_ok` (a folder the pipeline makes itself)."""

    parallel_reads = True

    def __init__(self, folder: Path, missing_ok: bool = False):
        self.folder = folder
        self.missing_ok = missing_ok
        self.where = str(folder)

    def entries(self) -> Listing:
        try:
            check_folder(os.lstat(self.folder).st_mode)
            entries = list(os.scandir(self.folder))
        except (FileNotFoundError, NotADirectoryError):  # not there, or under a file
            if self.missing_ok:
                return {}
            raise Refused(NO_FOLDER, retried=True) from None
        except OSError as e:
            raise _refusal(e) from None
        listing: Listing = {}
        for entry in entries:
            if not is_candidate(entry.name):
                listing[entry.name] = None
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since the folder was listed
            item = listed(st.st_mode, lambda: _snapshot(st))
            if item is not None:
                listing[entry.name] = item
        return listing

    @contextmanager
    def reading(self, name: str) -> Iterator[Reading]:
        try:
            folder = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR) and self.folder.is_symlink():
                raise Refused(FOLDER_LINK, retried=False) from None
            raise
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
        except FileNotFoundError:
            raise  # gone since the look: nothing to refuse
        except OSError as e:
            raise _refusal(e) from None
        finally:
            os.close(folder)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise not_regular(kind_of(st.st_mode))
        with os.fdopen(fd, "rb") as f:
            yield Reading(f, _snapshot(st), lambda: _snapshot(os.fstat(f.fileno())))

    def stat(self, name: str) -> Snapshot | None:
        try:
            st = os.lstat(self.folder / name)
        except FileNotFoundError:
            return None
        return _snapshot(st) if stat.S_ISREG(st.st_mode) else None

    def close(self) -> None:
        pass
