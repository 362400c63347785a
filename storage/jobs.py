"""Tuning jobs: one row per job (the tuned model is the job's result), and the tables' schema.

Each function takes this thread's ``Database``; ``storage.db.Store`` supplies it and wraps writes
in a BEGIN IMMEDIATE transaction. Training writes one metrics row per step, so the progress
writers are one short statement pair each. Paths are stored relative to the data folder.

    jobs            id (the tuned-model id), names, base model, dataset version, config, state,
                    queue order, timestamps, step counts, last checkpoint, error, partial, result
    job_metrics     one row per optimizer step        (job_id, step)
    job_evals       one row per evaluation            (job_id, step)
    job_snapshots   one row per finished epoch        (job_id, epoch)
    job_log         the job's log lines               (job_id, seq)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

from sqlite_utils import Database

from storage import datasets
from storage.datasets import DatasetVersion
from storage.timestamps import utc_now
from training.core.config import TuningConfig
from training.core.errors import ConflictError, NotFoundError, StudioError
from training.core.layout import inside
from training.core.states import (
    ACTIVE_STATES, FINAL_STATES, JobEvent, JobState, gemini_state, transition, tuned_model_id,
)


@dataclass(frozen=True)
class Job:
    id: str
    """The tuned-model id, e.g. ``support-tickets-2``."""
    display_name: str
    description: str
    base_model: str
    """The base model as the user chose it (bundled id, folder or hub id)."""
    dataset_version_id: int
    eval_dataset_version_id: int | None
    config: TuningConfig
    state: JobState
    queue_order: int
    """Queued jobs run in increasing order."""
    queue_position: int | None
    """1 for the next queued job to run; None when not queued."""
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    total_steps: int
    completed_steps: int
    steps_per_epoch: int
    checkpoint_epoch: int | None
    checkpoint_step: int | None
    checkpoint_dir: str | None
    """The last complete checkpoint, relative to the data folder (a resume starts from it)."""
    error: str
    """Why the job failed, as shown to the user; empty otherwise."""
    partial: bool
    """The result is the last checkpoint of a cancelled job (an unfinished model)."""
    result_dir: str | None
    """The adapter the tuned model uses, relative to the data folder."""
    final_loss: float | None
    owner: str
    """``pid@host`` of the process that runs or last ran the job."""
    recent_step_s: float | None = None
    """Mean wall time of the job's last PACE_STEPS training steps (None before the first): the
    pace a time-left estimate uses, free of the start-up time."""

    @property
    def gemini_state(self) -> str:
        return gemini_state(self.state)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def path(self, data_dir: Path, relpath: str | None) -> Path | None:
        return inside(data_dir, relpath) if relpath else None


# Applied by migration 003 in storage/db.py. Never edit it: append a migration there instead.
SCHEMA_003 = """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 40),
        display_name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        base_model TEXT NOT NULL,
        dataset_version_id INTEGER NOT NULL REFERENCES dataset_versions(id),
        eval_dataset_version_id INTEGER REFERENCES dataset_versions(id),
        config_json TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'cancelling', 'cancelled',
                                             'succeeded', 'failed', 'interrupted')),
        queue_order INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        total_steps INTEGER NOT NULL DEFAULT 0,
        completed_steps INTEGER NOT NULL DEFAULT 0,
        steps_per_epoch INTEGER NOT NULL DEFAULT 0,
        checkpoint_epoch INTEGER,
        checkpoint_step INTEGER,
        checkpoint_dir TEXT,
        error TEXT NOT NULL DEFAULT '',
        partial INTEGER NOT NULL DEFAULT 0 CHECK (partial IN (0, 1)),
        result_dir TEXT,
        final_loss REAL,
        owner TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX jobs_queue ON jobs(state, queue_order);
    CREATE INDEX jobs_dataset_version ON jobs(dataset_version_id);
    CREATE TABLE job_metrics (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        epoch REAL NOT NULL,
        loss REAL NOT NULL,
        token_accuracy REAL NOT NULL,
        num_predictions INTEGER NOT NULL,
        learning_rate REAL NOT NULL,
        tokens INTEGER NOT NULL DEFAULT 0,
        step_time_s REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, step)
    ) WITHOUT ROWID;
    CREATE TABLE job_evals (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        epoch REAL NOT NULL,
        eval_loss REAL NOT NULL,
        eval_token_accuracy REAL NOT NULL,
        eval_num_predictions INTEGER NOT NULL,
        PRIMARY KEY (job_id, step)
    ) WITHOUT ROWID;
    CREATE TABLE job_snapshots (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        step INTEGER NOT NULL,
        mean_loss REAL NOT NULL,
        compute_time_s REAL NOT NULL,
        PRIMARY KEY (job_id, epoch)
    ) WITHOUT ROWID;
    CREATE TABLE job_log (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        time TEXT NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    ) WITHOUT ROWID;
"""

UPDATABLE = frozenset({
    "display_name", "description", "total_steps", "completed_steps", "steps_per_epoch", "error", "partial", "result_dir",
    "final_loss", "owner", "queue_order", "checkpoint_epoch", "checkpoint_step", "checkpoint_dir",
})
"""Columns ``update_job`` and ``change_state`` may set besides the state and timestamps."""

PACE_STEPS = 20
"""Steps the pace of a running job is measured over (the latest ones)."""

_SELECT = f"""
    SELECT j.*, CASE WHEN j.state = 'queued' THEN (
        SELECT count(*) FROM jobs q WHERE q.state = 'queued' AND q.queue_order <= j.queue_order
    ) END AS queue_position, CASE WHEN j.state = 'running' THEN (
        SELECT avg(step_time_s) FROM (SELECT step_time_s FROM job_metrics m
                                      WHERE m.job_id = j.id ORDER BY m.step DESC
                                      LIMIT {PACE_STEPS})
    ) END AS recent_step_s
    FROM jobs j
"""


def _job(row: dict) -> Job:
    row = dict(row)
    row["config"] = TuningConfig.from_dict(json.loads(row.pop("config_json")))
    row["partial"] = bool(row["partial"])
    return Job(**row)


# ---- jobs -------------------------------------------------------------------------------------

def create_job(
    db: Database,
    *,
    display_name: str,
    description: str,
    base_model: str,
    dataset_version_id: int,
    config: TuningConfig,
    eval_dataset_version_id: int | None = None,
    job_id: str | None = None,
    steps_per_epoch: int = 0,
    total_steps: int = 0,
) -> Job:
    """A new queued job at the back of the queue, planned to take ``total_steps``. Its id is ``job_id`` when given (ConflictError
    when taken), else derived from the display name and unique. Call inside a BEGIN IMMEDIATE
    transaction (reads the taken ids, then writes)."""
    taken = {row[0] for row in db.execute("SELECT id FROM jobs")}
    if job_id is not None and job_id in taken:
        raise ConflictError.of("store.model_id_taken", id=job_id)
    job_id = job_id if job_id is not None else tuned_model_id(display_name, taken)
    now = utc_now()
    db["jobs"].insert({
        "id": job_id,
        "display_name": display_name.strip(),
        "description": description.strip(),
        "base_model": base_model,
        "dataset_version_id": dataset_version_id,
        "eval_dataset_version_id": eval_dataset_version_id,
        "config_json": json.dumps(config.to_dict()),
        "state": "queued",
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "queue_order": back_of_queue(db),
        "created_at": now,
        "updated_at": now,
    })
    return get_job(db, job_id)


def get_job(db: Database, job_id: str) -> Job:
    rows = list(db.query(_SELECT + " WHERE j.id = ?", [job_id]))
    if not rows:
        raise NotFoundError.of("store.model_missing", id=job_id)
    return _job(rows[0])


def list_jobs(db: Database) -> list[Job]:
    """Every job, the newest first."""
    return [_job(row) for row in db.query(_SELECT + " ORDER BY j.created_at DESC, j.rowid DESC")]


def next_queued_job(db: Database, among: Collection[str] | None = None) -> Job | None:
    """The queued job to run next (first in, first out; resumed jobs go ahead); only jobs whose
    id is in ``among`` when given."""
    where, params = "j.state = 'queued'", []
    if among is not None:
        where += f" AND j.id IN ({', '.join('?' * len(among))})"
        params = list(among)
    rows = list(db.query(_SELECT + f" WHERE {where} ORDER BY j.queue_order LIMIT 1", params))
    return _job(rows[0]) if rows else None


def jobs_in_states(db: Database, states: tuple[JobState, ...]) -> list[Job]:
    """Jobs in any of ``states``, in queue order."""
    marks = ", ".join("?" * len(states))
    rows = db.query(_SELECT + f" WHERE j.state IN ({marks}) ORDER BY j.queue_order", states)
    return [_job(row) for row in rows]


def back_of_queue(db: Database) -> int:
    (last,) = db.execute("SELECT coalesce(max(queue_order), 0) FROM jobs").fetchone()
    return last + 1


def front_of_queue(db: Database) -> int:
    (first,) = db.execute(
        "SELECT coalesce(min(queue_order), 1) FROM jobs WHERE state = 'queued'"
    ).fetchone()
    return first - 1


def change_state(db: Database, job_id: str, event: JobEvent, **fields) -> Job:
    """Apply ``event`` to the job's current state (IllegalTransition when not allowed) and set
    ``fields`` with it. Call inside a BEGIN IMMEDIATE transaction: it reads, then decides."""
    job = get_job(db, job_id)
    state = transition(job.state, event)
    now = utc_now()
    values = {"state": state, "updated_at": now, **_checked(fields)}
    if state == "running":
        values["started_at"] = job.started_at or now
        values["error"] = ""
    if state in FINAL_STATES:
        values["finished_at"] = now
    if state == "queued":
        values["finished_at"] = None
    db["jobs"].update(job_id, values)
    return get_job(db, job_id)


def update_job(db: Database, job_id: str, **fields) -> None:
    db["jobs"].update(job_id, {**_checked(fields), "updated_at": utc_now()})


def _checked(fields: dict) -> dict:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"jobs columns that cannot be set this way: {sorted(unknown)}")
    return {k: int(v) if k == "partial" else v for k, v in fields.items()}


def delete_job(db: Database, job_id: str) -> None:
    """Remove the job and its progress rows (not its files). Refused while it is training."""
    job = get_job(db, job_id)
    if job.state in ACTIVE_STATES:
        raise StudioError.of("store.still_training", id=job_id)
    db.execute("DELETE FROM jobs WHERE id = ?", [job_id])  # progress rows: ON DELETE CASCADE


def dataset_version(db: Database, version_id: int) -> DatasetVersion:
    """A dataset version (with its examples) by its version id."""
    row = db.execute(
        "SELECT dataset_id, version FROM dataset_versions WHERE id = ?", [version_id]
    ).fetchone()
    if row is None:
        raise NotFoundError.of("store.version_missing", id=version_id)
    return datasets.get_version(db, row[0], row[1])
