"""A full disk, told apart from other failures and said in the user's terms.

Libraries report a full disk in their own words: ``OSError`` with ENOSPC or EDQUOT, SQLite's
"database or disk is full", torch's "[enforce fail at inline_container.cc] unexpected pos" or
"file write failed", safetensors' "No space left on device (os error 28)", often wrapped in
another exception. ``is_disk_full`` recognises them anywhere in an exception's chain;
``full_disk_as_error`` turns them into ``StorageFullError`` naming the folder and the space left.
"""

from __future__ import annotations

import errno
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from training.core.errors import StorageFullError, StudioError

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXTS = ("no space left", "database or disk is full", "disk quota exceeded", "os error 28",
               "unexpected pos", "file write failed")


def is_disk_full(error: BaseException | None) -> bool:
    """Whether ``error``, or an exception it was raised from or while handling, says the disk
    (or the user's quota) is full."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, StorageFullError):
            return True
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            return True
        if not isinstance(error, (KeyboardInterrupt, SystemExit)):
            text = str(error).lower()
            if any(mark in text for mark in _FULL_TEXTS):
                return True
        error = error.__cause__ or error.__context__
    return False


def free_mb(folder: Path) -> int:
    """Megabytes free on the disk that holds ``folder`` (or its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free // 2**20
    except OSError:
        return 0


def no_space(folder: Path, key: str = "disk.no_space", error: type[StudioError] = StorageFullError,
             **params) -> StudioError:
    """"No space left in <folder> (N MB free): <what to do>." as ``error``; ``key`` names the
    message (``disk.no_space``: try again; ``disk.no_space_resume``: resume the job)."""
    return error.of(key, folder=folder, free=free_mb(folder), **params)


@contextmanager
def full_disk_as_error(folder: Path) -> Iterator[None]:
    """Inside, an error that says the disk is full becomes ``StorageFullError`` naming
    ``folder``; every other error passes through unchanged."""
    try:
        yield
    except StorageFullError:
        raise
    except Exception as error:
        if is_disk_full(error):
            raise no_space(folder) from error
        raise
