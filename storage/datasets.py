"""Uploads and versioned datasets.

Each function takes this thread's ``Database``; ``storage.db.Store`` supplies it and wraps
writes in a BEGIN IMMEDIATE transaction. A dataset is a name plus versions 1..n; each save appends a
version, and a saved version (its template and examples) never changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from storage.timestamps import utc_now
from training.core.atomic import write_file_atomic
from training.core.dataset import Dataset, Example, PromptTemplate
from training.core.errors import DatasetError, NotFoundError
from training.core.layout import inside, upload_relpath
from training.core.messages import say

MAX_NAME_CHARS = 80
"""Longest dataset name, in characters, after stripping spaces."""

INSERT_BATCH_ROWS = 1000
"""Examples per multi-row INSERT statement."""


@dataclass(frozen=True)
class Upload:
    id: int
    original_name: str
    """The file name as the user's browser sent it (shown to the user, never used as a path)."""
    stored_path: str
    """Where the bytes are, relative to the data folder: ``uploads/<sha256[:16]>/<safe name>``."""
    sha256: str
    size_bytes: int
    format: str
    created_at: str

    def path(self, data_dir: Path) -> Path:
        """The absolute path of the stored file."""
        return inside(data_dir, self.stored_path)


@dataclass(frozen=True)
class DatasetSummary:
    id: int
    name: str
    latest_version: int
    example_count: int
    """Examples in the latest version."""
    format: str
    """Format of the latest version, e.g. ``csv`` or ``gemini-jsonl``; empty if unknown."""
    updated_at: str


@dataclass(frozen=True)
class DatasetVersionInfo:
    id: int
    dataset_id: int
    name: str
    version: int
    created_at: str
    format: str
    upload_id: int | None
    note: str
    example_count: int


@dataclass(frozen=True)
class DatasetVersion(DatasetVersionInfo):
    dataset: Dataset
    """The template and the examples, in saved order."""


def check_name(name: str) -> str:
    """The dataset name stripped of surrounding spaces; DatasetError if empty or too long."""
    stripped = name.strip()
    if not stripped:
        raise DatasetError(say("dataset.name_empty", most=MAX_NAME_CHARS))
    if len(stripped) > MAX_NAME_CHARS:
        raise DatasetError(say("dataset.name_too_long", chars=len(stripped), most=MAX_NAME_CHARS))
    return stripped


# ---- uploads ----------------------------------------------------------------------------------

def save_upload(db: Database, data_dir: Path, original_name: str, data: bytes, format: str) -> Upload:
    """Store the bytes once per content. Call inside a write transaction. The file is written
    (temp file + rename) before its row, so a row never points to a missing or partial file."""
    sha256 = hashlib.sha256(data).hexdigest()
    existing = _upload_by_sha256(db, sha256)
    relpath = existing.stored_path if existing else upload_relpath(sha256, original_name)
    path = inside(data_dir, relpath)
    if not path.is_file() or path.stat().st_size != len(data):
        write_file_atomic(path, data)
    if existing:
        return existing
    row = {
        "original_name": original_name,
        "stored_path": relpath,
        "sha256": sha256,
        "size_bytes": len(data),
        "format": format,
        "created_at": utc_now(),
    }
    upload_id = db["uploads"].insert(row).last_pk
    return Upload(id=upload_id, **row)


def get_upload(db: Database, upload_id: int) -> Upload:
    rows = list(db["uploads"].rows_where("id = ?", [upload_id]))
    if not rows:
        raise NotFoundError.of("store.upload_missing", id=upload_id)
    return Upload(**rows[0])


def _upload_by_sha256(db: Database, sha256: str) -> Upload | None:
    rows = list(db["uploads"].rows_where("sha256 = ?", [sha256]))
    return Upload(**rows[0]) if rows else None


# ---- datasets ---------------------------------------------------------------------------------

def save_dataset(
    db: Database,
    name: str,
    dataset: Dataset,
    *,
    format: str = "",
    upload_id: int | None = None,
    note: str = "",
) -> DatasetVersion:
    """Append a version to the dataset called ``name`` (case-insensitively), creating the dataset
    on its first save. Call inside a BEGIN IMMEDIATE transaction: it reads the last version
    number and then writes the next."""
    name = check_name(name)
    if upload_id is not None:
        get_upload(db, upload_id)
    now = utc_now()
    row = db.execute("SELECT id, name FROM datasets WHERE name = ?", [name]).fetchone()
    if row is None:
        dataset_id = db["datasets"].insert(
            {"name": name, "created_at": now, "updated_at": now}
        ).last_pk
    else:
        dataset_id, name = row
        db.execute("UPDATE datasets SET updated_at = ? WHERE id = ?", [now, dataset_id])
    (last,) = db.execute(
        "SELECT coalesce(max(version), 0) FROM dataset_versions WHERE dataset_id = ?",
        [dataset_id],
    ).fetchone()
    info = {
        "dataset_id": dataset_id,
        "version": last + 1,
        "created_at": now,
        "format": format,
        "upload_id": upload_id,
        "note": note,
        "example_count": len(dataset.examples),
    }
    template_json = json.dumps(dataset.template.to_dict(), ensure_ascii=False)
    version_id = db["dataset_versions"].insert(dict(info, template_json=template_json)).last_pk
    _insert_examples(db, version_id, dataset.examples)
    frozen = Dataset(
        dataset.template,
        tuple(Example(dict(e.fields), e.output, e.source) for e in dataset.examples),
    )
    return DatasetVersion(id=version_id, name=name, dataset=frozen, **info)


def _insert_examples(db: Database, version_id: int, examples: tuple[Example, ...]) -> None:
    header = [("version_id", "position", "fields_json", "output", "source")]
    rows = (
        (version_id, position, json.dumps(dict(e.fields), ensure_ascii=False), e.output, e.source)
        for position, e in enumerate(examples, start=1)
    )
    db["dataset_examples"].insert_all(
        [*header, *rows] if examples else [], batch_size=INSERT_BATCH_ROWS
    )


_VERSION_COLUMNS = """
    v.id, v.dataset_id, d.name, v.version, v.created_at, v.format, v.upload_id, v.note,
    v.example_count
"""


def list_datasets(db: Database) -> list[DatasetSummary]:
    """Every dataset with its latest version, the most recently saved first."""
    rows = db.query("""
        SELECT d.id, d.name, v.version AS latest_version, v.example_count, v.format,
               d.updated_at
        FROM datasets d
        JOIN dataset_versions v ON v.dataset_id = d.id
        WHERE v.version = (SELECT max(version) FROM dataset_versions WHERE dataset_id = d.id)
        ORDER BY v.id DESC
    """)
    return [DatasetSummary(**row) for row in rows]


def list_versions(db: Database, name_or_id: str | int) -> list[DatasetVersionInfo]:
    """The versions of one dataset without their examples, version 1 first."""
    dataset_id, _ = _find_dataset(db, name_or_id)
    rows = db.query(
        f"SELECT {_VERSION_COLUMNS} FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id"
        " WHERE v.dataset_id = ? ORDER BY v.version",
        [dataset_id],
    )
    return [DatasetVersionInfo(**row) for row in rows]


def version_info(db: Database, version_id: int) -> DatasetVersionInfo:
    """One version's name, number and size by its version id, without loading its examples
    (My Library asks for this every second for every job)."""
    rows = list(db.query(
        f"SELECT {_VERSION_COLUMNS} FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id"
        " WHERE v.id = ?", [version_id]))
    if not rows:
        raise NotFoundError.of("store.version_missing", id=version_id)
    return DatasetVersionInfo(**rows[0])


def latest_if_same(db: Database, name: str, dataset: Dataset) -> DatasetVersion | None:
    """The latest version of ``name`` when it holds the same template and examples as
    ``dataset``, else None (also when there is no such dataset)."""
    try:
        latest = get_version(db, check_name(name))
    except NotFoundError:
        return None
    return latest if latest.dataset.same_content(dataset) else None


def get_version(db: Database, name_or_id: str | int, version: int | None = None) -> DatasetVersion:
    """One version with its examples; the latest when ``version`` is None. ``name_or_id`` is a
    dataset name (any case) or a dataset id."""
    dataset_id, name = _find_dataset(db, name_or_id)
    sql = (
        f"SELECT {_VERSION_COLUMNS}, v.template_json"
        " FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id WHERE v.dataset_id = ?"
    )
    if version is None:
        rows = list(db.query(sql + " ORDER BY v.version DESC LIMIT 1", [dataset_id]))
    else:
        rows = list(db.query(sql + " AND v.version = ?", [dataset_id, version]))
    if not rows:
        (count,) = db.execute(
            "SELECT count(*) FROM dataset_versions WHERE dataset_id = ?", [dataset_id]
        ).fetchone()
        raise NotFoundError(say("dataset.no_version", name=name, version=version, count=count))
    row = rows[0]
    template = PromptTemplate.from_dict(json.loads(row.pop("template_json")))
    examples = tuple(
        Example(json.loads(fields_json), output, source)
        for fields_json, output, source in db.execute(
            "SELECT fields_json, output, source FROM dataset_examples"
            " WHERE version_id = ? ORDER BY position",
            [row["id"]],
        )
    )
    return DatasetVersion(dataset=Dataset(template, examples), **row)


def _find_dataset(db: Database, name_or_id: str | int) -> tuple[int, str]:
    """(id, stored name) of a dataset given its name in any case or its id."""
    if isinstance(name_or_id, int) and not isinstance(name_or_id, bool):
        row = db.execute("SELECT id, name FROM datasets WHERE id = ?", [name_or_id]).fetchone()
        if row is None:
            raise NotFoundError.of("store.dataset_missing", id=name_or_id)
        return row
    name = str(name_or_id).strip()
    row = db.execute("SELECT id, name FROM datasets WHERE name = ?", [name]).fetchone()
    if row is None:
        raise NotFoundError(say("dataset.no_such_name", name=name))
    return row
