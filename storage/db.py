"""SQLite connections, schema migrations and ``Store``, the object the studio keeps things with.

Threads: Gradio runs handlers in worker threads and training runs in a thread of its own, so
each thread gets its own connection (``Connections``). Every connection uses WAL (readers never
wait for the writer), a 10 s busy timeout (a writer waits for another instead of failing) and
foreign keys. A write that reads before it decides (the next version number) runs inside
``immediate()``: BEGIN IMMEDIATE takes the write lock first, so two writers are serialised
instead of one failing with 'database is locked' when it tries to upgrade its read lock.

Migrations: ``storage.migrations.MIGRATIONS`` is an ordered tuple of functions; the schema
version is ``PRAGMA user_version`` (the number of migrations applied); ``migrate`` applies the
missing ones.

Store: owns the data folder and the connections, migrates when opened, and has one thin method
per function of a table-group module (``storage.datasets``, ``storage.jobs``), which
it calls with this thread's connection, inside ``immediate()`` for writes.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Collection, Iterator, Sequence

from sqlite_utils import Database

from storage import datasets, jobs, progress
from storage.datasets import DatasetSummary, DatasetVersion, DatasetVersionInfo, Upload
from storage.jobs import Job
from storage.migrations import MIGRATIONS, Migration
from storage.progress import LogLine
from training.core.dataset import Dataset, NewDataset
from training.core.disk_space import full_disk_as_error
from training.core.errors import StudioError
from training.core.layout import database_file, uploads_dir
from training.core.messages import english
from training.core.progress import EpochSnapshot, EvalMetrics, StepMetrics
from training.core.states import JobEvent, JobState

BUSY_TIMEOUT_S = 10.0
"""How long a connection waits for another thread's or process's write lock before failing."""

def open_database(path: Path) -> Database:
    """A new connection to the database file with this module's settings (WAL, busy timeout,
    foreign keys). The connection may be closed from another thread (``Connections.close_all``)
    but is otherwise used by one thread only."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    db = Database(conn)
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    db.execute("PRAGMA foreign_keys = ON")
    db.enable_wal()
    return db


@contextmanager
def immediate(db: Database) -> Iterator[Database]:
    """A write transaction that holds the write lock from its first statement (BEGIN IMMEDIATE).
    Commits on success, rolls back on any exception. Inside an open transaction it nests as a
    savepoint of that transaction."""
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    try:
        db.conn.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise


class Connections:
    """One connection per thread to one database file, opened on first use."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._open: weakref.WeakSet[Database] = weakref.WeakSet()
        self._lock = threading.Lock()

    def get(self) -> Database:
        """This thread's connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = open_database(self.path)
            self._local.db = db
            with self._lock:
                self._open.add(db)
        return db

    def close(self) -> None:
        """Close this thread's connection; the next ``get()`` opens a new one."""
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            with self._lock:
                self._open.discard(db)
            db.close()

    def close_all(self) -> None:
        """Close every thread's connection (for shutdown and tests; no thread may be using one)."""
        self._local = threading.local()
        with self._lock:
            open_now = list(self._open)
            self._open.clear()
        for db in open_now:
            db.close()


def schema_version(db: Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: Database, migrations: Sequence[Migration] | None = None) -> int:
    """Apply the migrations this database has not had yet, all in one transaction; return the
    schema version. Safe to run again, and from several processes at once."""
    migrations = MIGRATIONS if migrations is None else migrations
    with immediate(db):
        current = schema_version(db)
        if current > len(migrations):
            path = db.execute("PRAGMA database_list").fetchone()[2]
            raise StudioError(
                f"The database {path} has schema version {current}, newer than this Tuning "
                f"Studio knows ({len(migrations)}): upgrade Tuning Studio or choose another "
                "data folder."
            )
        for number, migration in enumerate(migrations[current:], start=current + 1):
            migration(db)
            db.execute(f"PRAGMA user_version = {number}")
    return len(migrations)


class Store:
    """Everything the studio keeps, in ``data_dir``: ``studio.db`` and ``uploads/``."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        uploads_dir(self.data_dir).mkdir(exist_ok=True)
        self.db_path = database_file(self.data_dir)
        self._connections = Connections(self.db_path)
        self.schema_version = migrate(self.db)

    @property
    def db(self) -> Database:
        """This thread's connection (opened on first use)."""
        return self._connections.get()

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """A BEGIN IMMEDIATE transaction on this thread's connection. A full disk raises
        ``StorageFullError`` naming the data folder and the space left; nothing is written."""
        with full_disk_as_error(self.data_dir), immediate(self.db) as db:
            yield db

    def close(self) -> None:
        """Close this thread's connection; the store stays usable and reopens on demand."""
        self._connections.close()

    def close_all(self) -> None:
        """Close every thread's connection (at shutdown and in tests)."""
        self._connections.close_all()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close_all()

    # ---- uploads ----

    def save_upload(self, original_name: str, data: bytes, format: str) -> Upload:
        with self.transaction() as db:
            return datasets.save_upload(db, self.data_dir, original_name, data, format)

    def get_upload(self, upload_id: int) -> Upload:
        return datasets.get_upload(self.db, upload_id)

    # ---- datasets ----

    def save_dataset(
        self,
        name: str,
        dataset: Dataset,
        *,
        format: str = "",
        upload_id: int | None = None,
        note: str = "",
    ) -> DatasetVersion:
        with self.transaction() as db:
            return datasets.save_dataset(
                db, name, dataset, format=format, upload_id=upload_id, note=note
            )

    def save_dataset_if_changed(self, name: str, dataset: Dataset, *, format: str = "",
                                upload_id: int | None = None) -> tuple[DatasetVersion, bool]:
        """Save ``dataset`` as a new version of ``name``, unless the latest version already holds
        the same template and examples: then that version and False (nothing written)."""
        with self.transaction() as db:
            latest = datasets.latest_if_same(db, name, dataset)
            if latest is not None:
                return latest, False
            return datasets.save_dataset(db, name, dataset, format=format,
                                         upload_id=upload_id), True

    def latest_if_same(self, name: str, dataset: Dataset) -> DatasetVersion | None:
        """The latest version of ``name`` when it already holds ``dataset``'s content."""
        return datasets.latest_if_same(self.db, name, dataset)

    def list_datasets(self) -> list[DatasetSummary]:
        return datasets.list_datasets(self.db)

    def list_versions(self, name_or_id: str | int) -> list[DatasetVersionInfo]:
        return datasets.list_versions(self.db, name_or_id)

    def get_version(self, name_or_id: str | int, version: int | None = None) -> DatasetVersion:
        return datasets.get_version(self.db, name_or_id, version)

    def get_dataset_version(self, version_id: int) -> DatasetVersion:
        """A dataset version by its version id (as jobs refer to it)."""
        return jobs.dataset_version(self.db, version_id)

    def dataset_version_info(self, version_id: int) -> DatasetVersionInfo:
        """Name, version number and size of a version by its id; no examples are read."""
        return datasets.version_info(self.db, version_id)

    # ---- tuning jobs (a tuned model is a job's result) ----

    def create_job(self, *, new_dataset: NewDataset | None = None,
                   before_commit: Callable[[Job], None] | None = None, **fields) -> Job:
        """A new queued job (see ``storage.jobs.create_job`` for the fields), on ``new_dataset``
        saved as a new version (with its uploaded file) when given. One transaction: when the
        job cannot be created, or ``before_commit(job)`` raises, nothing is left behind."""
        with self.transaction() as db:
            if new_dataset is not None:
                upload_id = None
                if new_dataset.upload is not None:
                    name, data = new_dataset.upload
                    upload_id = datasets.save_upload(db, self.data_dir, name, data,
                                                     new_dataset.format).id
                version = datasets.save_dataset(
                    db, new_dataset.name, new_dataset.dataset, format=new_dataset.format,
                    upload_id=upload_id, note=new_dataset.note)
                fields["dataset_version_id"] = version.id
            job = jobs.create_job(db, **fields)
            if before_commit is not None:
                before_commit(job)
            return job

    def get_job(self, job_id: str) -> Job:
        return jobs.get_job(self.db, job_id)

    def list_jobs(self) -> list[Job]:
        """Every job, the newest first."""
        return jobs.list_jobs(self.db)

    def next_queued_job(self, among: Collection[str] | None = None) -> Job | None:
        return jobs.next_queued_job(self.db, among)

    def jobs_in_states(self, *states: JobState) -> list[Job]:
        return jobs.jobs_in_states(self.db, states)

    def change_job_state(self, job_id: str, event: JobEvent, **fields) -> Job:
        """Apply a state event (IllegalTransition if not allowed) and set ``fields`` with it."""
        with self.transaction() as db:
            return jobs.change_state(db, job_id, event, **fields)

    def requeue_job(self, job_id: str, *, front: bool, **fields) -> Job:
        """Resume a failed, cancelled or interrupted job: queued again, at the front of the queue
        (a restart) or at its back (the user's resume)."""
        with self.transaction() as db:
            order = jobs.front_of_queue(db) if front else jobs.back_of_queue(db)
            return jobs.change_state(db, job_id, "resume", queue_order=order, **fields)

    def update_job(self, job_id: str, **fields) -> None:
        with self.transaction() as db:
            jobs.update_job(db, job_id, **fields)

    def delete_job(self, job_id: str) -> None:
        """Remove the job and its rows (not its files); refused while it trains."""
        with self.transaction() as db:
            jobs.delete_job(db, job_id)

    def record_step(self, job_id: str, metrics: StepMetrics) -> None:
        with self.transaction() as db:
            progress.record_step(db, job_id, metrics)

    def record_eval(self, job_id: str, metrics: EvalMetrics) -> None:
        with self.transaction() as db:
            progress.record_eval(db, job_id, metrics)

    def record_snapshot(self, job_id: str, snapshot: EpochSnapshot) -> None:
        with self.transaction() as db:
            progress.record_snapshot(db, job_id, snapshot)

    def metrics_after(self, job_id: str, step: int = 0) -> list[StepMetrics]:
        return progress.metrics_after(self.db, job_id, step)

    def job_evals(self, job_id: str) -> list[EvalMetrics]:
        return progress.evals(self.db, job_id)

    def job_snapshots(self, job_id: str) -> list[EpochSnapshot]:
        return progress.snapshots(self.db, job_id)

    def truncate_metrics_after(self, job_id: str, step: int) -> None:
        with self.transaction() as db:
            progress.truncate_metrics_after(db, job_id, step)

    def append_log(self, job_id: str, line: str) -> int:
        """A line without a message key (a traceback): shown as it is in every language."""
        with self.transaction() as db:
            return progress.append_log(db, job_id, line)

    def log(self, job_id: str, key: str, /, **params) -> int:
        """The message ``key`` (``training.core.messages``) as a log line: its English text is
        stored with the key and values, so each reader sees it in their language."""
        with self.transaction() as db:
            return progress.append_log(db, job_id, english(key, **params), key, params)

    def log_lines(self, job_id: str, after_seq: int = 0) -> list[LogLine]:
        return progress.log_lines(self.db, job_id, after_seq)
