"""Locks that say whether a process is alive: the OS releases them when their process dies.

The job runner holds one per running job (so a studio starting later can tell a job whose process
died, which it resumes, from one another live process is training, which it leaves alone) and one
per device (one job at a time per device, across processes).
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class FileLock:
    """An exclusive, non-blocking lock on ``path`` (created if missing). Two holders conflict
    even inside one process, because each ``FileLock`` opens the file on its own."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; True when taken (or already held by this object)."""
        if self._handle is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+b")
        try:
            _lock(handle)
        except OSError:
            handle.close()
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()  # closing the file releases the lock

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def held_elsewhere(path: Path) -> bool:
    """True when another holder (a live process, or another FileLock here) has the lock."""
    probe = FileLock(path)
    if probe.acquire():
        probe.release()
        return False
    return True


def _lock(handle) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:  # pragma: no cover - Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)


def process_owner() -> str:
    """``pid@host`` of this process, recorded on the jobs it runs (for people reading the log)."""
    import socket

    return f"{os.getpid()}@{socket.gethostname()}"
