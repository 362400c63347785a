"""How a running job reports: the trainer's progress sink and stop check for one job.

``StoreSink`` turns every report of the trainer into a row in the store (the UI and the command
line poll those rows). ``StopCheck`` is the trainer's ``should_stop``: cheap enough to call every
step (an in-memory flag, plus the job's state read from the database at most every 0.5 s, so a
cancel from another process is seen too).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from storage.db import Store
from training.core.progress import EpochSnapshot, EvalMetrics, StepMetrics

STOP_CHECK_INTERVAL_S = 0.5
"""How often a running trainer re-reads its job's state (a cancel from another process)."""


class StoreSink:
    """The trainer's ProgressSink for one job: every report becomes a row in the store."""

    def __init__(self, store: Store, job_id: str, data_dir: Path):
        self.store, self.job_id, self.data_dir = store, job_id, Path(data_dir)
        self.epochs = 0

    def on_start(self, total_steps: int, steps_per_epoch: int, first_step: int) -> None:
        self.epochs = total_steps // steps_per_epoch if steps_per_epoch else 0
        self.store.update_job(self.job_id, total_steps=total_steps, steps_per_epoch=steps_per_epoch)

    def on_step(self, metrics: StepMetrics) -> None:
        self.store.record_step(self.job_id, metrics)

    def on_eval(self, metrics: EvalMetrics) -> None:
        self.store.record_eval(self.job_id, metrics)
        self.log("log.eval", step=metrics.step, epoch=metrics.epoch, loss=metrics.eval_loss,
                 accuracy=metrics.eval_token_accuracy)

    def on_epoch(self, snapshot: EpochSnapshot) -> None:
        self.store.record_snapshot(self.job_id, snapshot)
        self.log("log.epoch", epoch=snapshot.epoch, epochs=self.epochs or "?", step=snapshot.step,
                 loss=snapshot.mean_loss, seconds=snapshot.compute_time_s)

    def on_checkpoint(self, epoch: int, step: int, path: Path) -> None:
        self.store.update_job(self.job_id, checkpoint_epoch=epoch, checkpoint_step=step,
                              checkpoint_dir=relative_to(self.data_dir, path))
        self.log("log.checkpoint", epoch=epoch, step=step)

    def log(self, key: str, **params) -> None:
        self.store.log(self.job_id, key, **params)


class StopCheck:
    """The trainer's ``should_stop`` for one job: true once this runner cancels the job or shuts
    down, or when the database says the job is no longer running (a cancel from another process,
    read at most every STOP_CHECK_INTERVAL_S)."""

    def __init__(self, store: Store, job_id: str, stop_now: Callable[[], bool],
                 interval_s: float = STOP_CHECK_INTERVAL_S):
        self.store, self.job_id, self.stop_now, self.interval_s = store, job_id, stop_now, interval_s
        self._checked_at = time.monotonic()
        self._stopped = False

    def __call__(self) -> bool:
        if not self._stopped and self.stop_now():
            self._stopped = True
        if not self._stopped and time.monotonic() - self._checked_at >= self.interval_s:
            self._checked_at = time.monotonic()
            self._stopped = self.store.get_job(self.job_id).state != "running"
        return self._stopped


def relative_to(data_dir: Path, path: Path | str) -> str:
    """``path`` relative to the data folder, with '/' separators, as stored in the database."""
    return Path(path).resolve().relative_to(Path(data_dir).resolve()).as_posix()
