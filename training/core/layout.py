"""The layout of the data folder and of a tuned model's folder: every path is built here.

    <data_dir>/studio.db                      the SQLite database (WAL: also -wal and -shm files)
    <data_dir>/studio.log                     the server log
    <data_dir>/uploads/<sha256[:16]>/<name>   an imported file, stored once per content
    <data_dir>/models/<name>/                 prepared and user-copied base models
    <data_dir>/tuned/<id>/                    a tuned model (below)
    <data_dir>/exports/                       downloads: datasets, batch tests, adapters, merged models
    <data_dir>/locks/                         one lock file per device and per running job
    <data_dir>/cache/gradio/                  Gradio's upload and output cache

A tuned model's folder, ``tuned/<id>/``::

    adapter/                               the final adapter (safetensors + adapter_config.json)
    checkpoints/epoch-<n>/adapter/         each epoch's adapter
    checkpoints/epoch-<n>/trainer_state.pt optimizer, scheduler, step, epoch, RNG, best metric
    best/                                  the adapter with the best eval loss
    metrics.json                           final figures
    base_model.json                        the base model as resolved when training started
    generation.json                        the model's generation defaults (optional)

Its prompt template and tuning settings live in SQLite only (the job and its dataset version).
Paths stored in the database are relative to the data folder (POSIX separators), so the folder
can be moved as a whole.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

DATABASE_FILE_NAME = "studio.db"
LOG_FILE_NAME = "studio.log"
UPLOADS_DIR_NAME = "uploads"
MODELS_DIR_NAME = "models"
TUNED_DIR_NAME = "tuned"
EXPORTS_DIR_NAME = "exports"
LOCKS_DIR_NAME = "locks"
GRADIO_CACHE_DIR = Path("cache") / "gradio"

# inside a tuned model's folder (and a run's output folder)
ADAPTER = "adapter"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CHECKPOINTS = "checkpoints"
BEST = "best"
STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.json"
BASE_MODEL_FILE = "base_model.json"
GENERATION_FILE = "generation.json"
TEMPLATE_FILE = "template.json"
"""The prompt template beside an exported adapter."""

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


# --- the data folder ---------------------------------------------------------------------------


def database_file(data_dir: Path) -> Path:
    return Path(data_dir) / DATABASE_FILE_NAME


def log_file(data_dir: Path) -> Path:
    return Path(data_dir) / LOG_FILE_NAME


def uploads_dir(data_dir: Path) -> Path:
    return Path(data_dir) / UPLOADS_DIR_NAME


def models_dir(data_dir: Path) -> Path:
    """Where prepared and user-copied base models live."""
    return Path(data_dir) / MODELS_DIR_NAME


def tuned_dir(data_dir: Path, job_id: str) -> Path:
    """A tuned model's folder (the trainer's output folder)."""
    return Path(data_dir) / TUNED_DIR_NAME / job_id


def exports_dir(data_dir: Path) -> Path:
    return Path(data_dir) / EXPORTS_DIR_NAME


def lock_file(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / LOCKS_DIR_NAME / f"{name}.lock"


def gradio_cache_dir(data_dir: Path) -> Path:
    return Path(data_dir) / GRADIO_CACHE_DIR


# --- a tuned model's folder --------------------------------------------------------------------

_EPOCH_RE = re.compile(r"epoch-(\d+)")


def checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch}"


def checkpoint_dir(model_dir: Path, epoch: int) -> Path:
    return Path(model_dir) / CHECKPOINTS / checkpoint_name(epoch)


def checkpoint_folders(model_dir: Path) -> dict[int, Path]:
    """Every ``checkpoints/epoch-N`` folder by epoch, complete or not."""
    folder = Path(model_dir) / CHECKPOINTS
    if not folder.is_dir():
        return {}
    return {int(match.group(1)): child for child in folder.iterdir()
            if (match := _EPOCH_RE.fullmatch(child.name))}


def has_adapter(folder: Path | None) -> bool:
    return folder is not None and (Path(folder) / ADAPTER_CONFIG).is_file()


def checkpoint_adapter(folder: Path | None) -> Path | None:
    """The adapter inside a checkpoint folder (``adapter/`` or the folder itself), if any."""
    if folder is None or not Path(folder).is_dir():
        return None
    for candidate in (Path(folder) / ADAPTER, Path(folder)):
        if has_adapter(candidate):
            return candidate
    return None
