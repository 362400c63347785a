"""The schema, as an ordered tuple of migrations (``storage.db.migrate`` applies them).

To change the schema, append a function to ``MIGRATIONS``; never edit or reorder one that has
shipped: a database's ``PRAGMA user_version`` is the number of migrations it has had.
"""

from __future__ import annotations

from typing import Callable

from sqlite_utils import Database

from storage import jobs

Migration = Callable[[Database], None]


def _001_datasets(db: Database) -> None:
    """Uploads and versioned datasets."""
    db.executescript("""
        CREATE TABLE uploads (
            id INTEGER PRIMARY KEY,
            original_name TEXT NOT NULL,
            stored_path TEXT NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            size_bytes INTEGER NOT NULL,
            format TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );
        CREATE TABLE datasets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE dataset_versions (
            id INTEGER PRIMARY KEY,
            dataset_id INTEGER NOT NULL REFERENCES datasets(id),
            version INTEGER NOT NULL CHECK (version >= 1),
            template_json TEXT NOT NULL,
            example_count INTEGER NOT NULL,
            format TEXT NOT NULL DEFAULT '',
            upload_id INTEGER REFERENCES uploads(id),
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            UNIQUE (dataset_id, version)
        );
        CREATE INDEX dataset_versions_upload ON dataset_versions(upload_id);
        CREATE TABLE dataset_examples (
            version_id INTEGER NOT NULL REFERENCES dataset_versions(id),
            position INTEGER NOT NULL,
            fields_json TEXT NOT NULL,
            output TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (version_id, position)
        ) WITHOUT ROWID;
    """)


def _002_frozen_dataset_versions(db: Database) -> None:
    """A saved dataset version never changes: abort any UPDATE or DELETE of it."""
    for table in ("dataset_versions", "dataset_examples"):
        for action in ("UPDATE", "DELETE"):
            db.execute(f"""
                CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}
                BEGIN
                    SELECT RAISE(ABORT, 'A saved dataset version cannot be changed: save a new version instead.');
                END
            """)


def _003_jobs(db: Database) -> None:
    """Tuning jobs (the tuned model is a job's result) and their metrics, snapshots and logs."""
    db.executescript(jobs.SCHEMA_003)


def _004_log_keys(db: Database) -> None:
    """Job log lines keep their message key and values, to be said in the reader's language."""
    db.execute("ALTER TABLE job_log ADD COLUMN key TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE job_log ADD COLUMN params_json TEXT NOT NULL DEFAULT '{}'")


MIGRATIONS: tuple[Migration, ...] = (
    _001_datasets,
    _002_frozen_dataset_versions,
    _003_jobs,
    _004_log_keys,
)
