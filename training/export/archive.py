"""Zip a folder (an adapter, a merged model) into one file for download, atomically."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

STORED_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
"""Weights barely compress (540 MB of float32 deflate to 470 MB in 32 s): they are stored as is."""


def zip_folder(folder: Path, target: Path, arcname: str | None = None) -> Path:
    """Write ``target`` (a .zip holding ``folder`` under ``arcname``) via a temp file + rename."""
    folder, target = Path(folder), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    root = arcname or folder.name
    handle, temp_name = tempfile.mkstemp(prefix=".partial-", suffix=".zip", dir=target.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(temp_name, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    stored = path.suffix in STORED_SUFFIXES
                    archive.write(path, f"{root}/{path.relative_to(folder).as_posix()}",
                                  compress_type=zipfile.ZIP_STORED if stored else None)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target
