"""A job's progress rows: one per optimizer step, evaluation and finished epoch, and its log.

Training writes one metrics row per step, so the writers are one short statement pair each.
Each function takes this thread's ``Database``; ``storage.db.Store`` wraps writes in a BEGIN
IMMEDIATE transaction. The tables are created with the jobs table (``storage.jobs.SCHEMA_003``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from storage.timestamps import utc_now
from training.core.messages import say
from training.core.progress import EpochSnapshot, EvalMetrics, StepMetrics


@dataclass(frozen=True)
class LogLine:
    seq: int
    time: str
    line: str
    """The line in English (what ``app.py tune`` prints and older lines hold)."""
    key: str = ""
    """Its message key in ``training.core.messages`` ('' for text without one: a traceback)."""
    params: dict = field(default_factory=dict)

    def said(self) -> str:
        """The line in the current reader's language. A failure whose cause has a message key
        (``cause``, ``cause_params``) says that cause in the reader's language too."""
        if not self.key:
            return self.line
        params = dict(self.params)
        if params.get("cause"):
            params["message"] = say(params["cause"], **params.get("cause_params", {}))
        return say(self.key, **params)

    def cause_said(self) -> str:
        """A failure's cause alone, in the current reader's language."""
        cause = self.params.get("cause")
        return say(cause, **self.params.get("cause_params", {})) if cause else self.params.get(
            "message", self.line)


def record_step(db: Database, job_id: str, m: StepMetrics) -> None:
    db.execute(
        "INSERT OR REPLACE INTO job_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [job_id, m.step, m.epoch, m.loss, m.token_accuracy, m.num_predictions, m.learning_rate,
         m.tokens, m.step_time_s],
    )
    db.execute("UPDATE jobs SET completed_steps = ?, updated_at = ? WHERE id = ?",
               [m.step, utc_now(), job_id])


def record_eval(db: Database, job_id: str, m: EvalMetrics) -> None:
    db.execute(
        "INSERT OR REPLACE INTO job_evals VALUES (?, ?, ?, ?, ?, ?)",
        [job_id, m.step, m.epoch, m.eval_loss, m.eval_token_accuracy, m.eval_num_predictions],
    )


def record_snapshot(db: Database, job_id: str, s: EpochSnapshot) -> None:
    db.execute(
        "INSERT OR REPLACE INTO job_snapshots VALUES (?, ?, ?, ?, ?)",
        [job_id, s.epoch, s.step, s.mean_loss, s.compute_time_s],
    )


def metrics_after(db: Database, job_id: str, step: int = 0) -> list[StepMetrics]:
    """Step rows with a step number above ``step``, in step order (for incremental charts)."""
    rows = db.query(
        "SELECT step, epoch, loss, token_accuracy, num_predictions, learning_rate, tokens,"
        " step_time_s FROM job_metrics WHERE job_id = ? AND step > ? ORDER BY step",
        [job_id, step],
    )
    return [StepMetrics(**row) for row in rows]


def evals(db: Database, job_id: str) -> list[EvalMetrics]:
    rows = db.query(
        "SELECT step, epoch, eval_loss, eval_token_accuracy, eval_num_predictions"
        " FROM job_evals WHERE job_id = ? ORDER BY step",
        [job_id],
    )
    return [EvalMetrics(**row) for row in rows]


def snapshots(db: Database, job_id: str) -> list[EpochSnapshot]:
    rows = db.query(
        "SELECT epoch, step, mean_loss, compute_time_s FROM job_snapshots WHERE job_id = ?"
        " ORDER BY epoch",
        [job_id],
    )
    return [EpochSnapshot(**row) for row in rows]


def truncate_metrics_after(db: Database, job_id: str, step: int) -> None:
    """Drop the progress rows after ``step`` (a resume re-runs those steps from the checkpoint
    at ``step``, so the curve stays one continuous line) and set the step count back."""
    for table in ("job_metrics", "job_evals", "job_snapshots"):
        db.execute(f"DELETE FROM {table} WHERE job_id = ? AND step > ?", [job_id, step])
    db.execute("UPDATE jobs SET completed_steps = ? WHERE id = ?", [step, job_id])


def append_log(db: Database, job_id: str, line: str, key: str = "",
               params: dict | None = None) -> int:
    """Add a line to the job's log (its English text, and its message key and values when it has
    one); returns its sequence number (1, 2, ...). Call inside a BEGIN IMMEDIATE transaction
    (reads the last number, then writes)."""
    (last,) = db.execute(
        "SELECT coalesce(max(seq), 0) FROM job_log WHERE job_id = ?", [job_id]
    ).fetchone()
    db.execute("INSERT INTO job_log (job_id, seq, time, line, key, params_json)"
               " VALUES (?, ?, ?, ?, ?, ?)",
               [job_id, last + 1, utc_now(), line, key, json.dumps(params or {})])
    return last + 1


def log_lines(db: Database, job_id: str, after_seq: int = 0) -> list[LogLine]:
    rows = db.query(
        "SELECT seq, time, line, key, params_json FROM job_log WHERE job_id = ? AND seq > ?"
        " ORDER BY seq",
        [job_id, after_seq],
    )
    return [LogLine(row["seq"], row["time"], row["line"], row["key"],
                    json.loads(row["params_json"])) for row in rows]
