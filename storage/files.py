"""Layout of the data folder and safe file writes.

    <data_dir>/studio.db                      the SQLite database (WAL: also -wal and -shm files)
    <data_dir>/uploads/<sha256[:16]>/<name>   an imported file, stored once per content

Paths stored in the database are relative to the data folder (POSIX separators), so the folder
can be moved as a whole.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

DATABASE_FILE_NAME = "studio.db"
UPLOADS_DIR_NAME = "uploads"
MAX_FILE_NAME_CHARS = 120
"""Longest stored file name; longer names are cut before the extension."""

_UNSAFE_CHARS_RE = re.compile(r"[^\w.\- ]+")


def safe_file_name(original_name: str) -> str:
    """A file name that cannot leave its folder: the last path component only, unusual
    characters replaced by '_', no leading dots, at most MAX_FILE_NAME_CHARS characters.
    ``"../../x.csv"`` becomes ``"x.csv"``; a name with nothing usable left becomes ``"upload"``."""
    last = original_name.replace("\\", "/").split("/")[-1]
    name = _UNSAFE_CHARS_RE.sub("_", last).strip(" ._") or "upload"
    if len(name) > MAX_FILE_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if not dot or len(ext) > 16:
            stem, ext = name, ""
        keep = MAX_FILE_NAME_CHARS - len(ext) - (1 if ext else 0)
        name = stem[:keep].rstrip(" ._") + ("." + ext if ext else "")
    return name


def upload_relpath(sha256: str, original_name: str) -> str:
    """Where an upload is stored, relative to the data folder."""
    return str(PurePosixPath(UPLOADS_DIR_NAME, sha256[:16], safe_file_name(original_name)))


def inside(data_dir: Path, relpath: str) -> Path:
    """The absolute path of ``relpath`` under ``data_dir``; ValueError if it would escape it."""
    root = data_dir.resolve()
    path = (root / relpath).resolve()
    if root != path and root not in path.parents:
        raise ValueError(f"Stored path {relpath!r} points outside the data folder {root}.")
    return path
