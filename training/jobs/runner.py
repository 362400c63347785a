"""The job runner: a background thread that trains queued jobs one at a time, first in first out,
each in a worker process of its own started with torchrun (``training.jobs.worker``), so that a
crash, an out-of-memory kill or a leak in training ends the worker, not the studio.

The queue is the ``jobs`` table, so it survives restarts and is shared by every process on the
same data folder (the studio and ``app.py tune``): claiming a job is one transaction, and a lock
file per device keeps one job at a time on it. Progress goes to SQLite through ``StoreSink``;
the UI and the command line poll it.

Cancel: a queued job at once; a running one is marked ``cancelling`` and its worker is told
(SIGTERM), stopping at the next step and keeping its last checkpoint as a partial model. A worker
that dies without an outcome fails its job with the cause (signal or exit code, its last output),
and the job can be resumed from its last checkpoint. Restart: the
runner holds a lock file per running job, which the OS releases when the process dies, so
``start()`` can tell jobs whose studio died (resumed from their last checkpoint, ahead of newer
queued jobs) from jobs another live process is training (left alone).

Files of a job: its tuned model's folder (see ``training.core.layout``); the runner writes
``base_model.json`` there, the trainer the rest. The prompt template and the settings stay in
SQLite, with the job.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import threading
import time
import traceback
from dataclasses import fields, replace
from pathlib import Path
from typing import Callable, Literal

from storage.db import Store
from storage.jobs import Job
from training.core.config import TuningConfig
from training.core.errors import NotFoundError, StorageFullError, StudioError
from training.core.layout import checkpoint_adapter, checkpoint_folders, lock_file, tuned_dir
from training.core.limits import DEFAULT_LIMITS, DatasetLimits
from training.core.messages import english
from training.core.progress import TrainResult
from training.core.states import ACTIVE_STATES, FINAL_STATES, IllegalTransition
from training.jobs.create import create_job
from training.jobs.locks import FileLock, held_elsewhere, process_owner
from training.jobs.request import JobRequest
from training.jobs.sink import StopCheck, StoreSink, relative_to
from training.jobs.worker import (
    OUTCOME_FILE, WORKER_LOG, die_with_parent, failure_of, read_outcome, train_job,
)
from training.jobs.workers import (
    ONE_MACHINE, REPO, Nodes, processes_per_node, signal_group, worker_command, worker_death,
    worker_env,
)

__all__ = ["JobRequest", "JobRunner", "StopCheck", "StoreSink", "TrainFn"]

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
"""How often an idle runner looks for jobs queued by another process."""
WATCH_INTERVAL_S = 0.1
"""How often the runner looks at a running worker group."""

TrainFn = Callable[..., TrainResult]


class JobRunner:
    """Trains queued jobs in a background thread. ``scope='all'`` (the studio) runs every queued
    job and resumes interrupted ones at start; ``scope='submitted'`` (``app.py tune``) runs only
    the jobs submitted through this runner."""

    def __init__(self, store: Store, data_dir: Path, train_fn: TrainFn | None = None, *,
                 device: str | None = None, scope: Literal["all", "submitted"] = "all",
                 limits: DatasetLimits = DEFAULT_LIMITS, poll_interval_s: float = POLL_INTERVAL_S,
                 nodes: Nodes = ONE_MACHINE):
        self.store, self.data_dir = store, Path(data_dir).resolve()
        self.nodes = nodes
        """The machines each job trains on (others join with ``app.py worker``)."""
        self.device, self.scope, self.limits = device, scope, limits
        self.poll_interval_s = poll_interval_s
        self._train_fn = train_fn
        self._owner = process_owner()
        self._submitted: set[str] = set()
        self._cancel_requested: set[str] = set()
        self._unrecorded: list[Callable[[], None]] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: subprocess.Popen | None = None
        self.current_job_id: str | None = None

    # ---- life cycle ----

    def start(self) -> None:
        """Resume jobs a dead studio left behind (scope 'all'), then start the thread."""
        if self._thread is not None:
            return
        if self.scope == "all":
            self.recover()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the thread; a running job stops at its next step and is left ``interrupted``,
        to resume when the studio starts again."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def recover(self) -> list[Job]:
        """Re-queue (ahead of newer queued jobs) the jobs whose process died while training them
        and those interrupted by a studio shutdown; a job that was being cancelled ends as
        cancelled. Jobs another live process is training are left alone. Returns the re-queued."""
        left = self.store.jobs_in_states("running", "cancelling", "interrupted")
        resumed = []
        for job in reversed(left):  # each goes to the front: the oldest ends up first
            if job.state in ACTIVE_STATES and held_elsewhere(self._job_lock_path(job.id)):
                continue
            try:
                if job.state == "cancelling":
                    self._end_cancelled(self.store.change_job_state(job.id, "interrupt"))
                    continue
                if job.state == "running":
                    job = self.store.change_job_state(job.id, "interrupt")
                resumed.append(self._requeue(job, front=True, reason="restarted"))
            except IllegalTransition:  # another studio starting at the same time got it first
                continue
        return resumed

    # ---- requests ----

    def submit(self, request: JobRequest) -> Job:
        """Check the request and queue the job (``create_job``); returns at once (StudioError
        naming the problem when the dataset, settings or base model cannot be used)."""
        job = create_job(self.store, self.data_dir, request, self.limits)
        self._submitted.add(job.id)
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> Job:
        """A queued (or interrupted) job is cancelled at once; a running one is marked
        ``cancelling`` and stops within one training step."""
        job = self.store.change_job_state(job_id, "cancel")
        if job.state == "cancelling":
            self._cancel_requested.add(job_id)
            worker = self._worker
            if worker is not None and self.current_job_id == job_id:
                signal_group(worker, signal.SIGTERM)  # it stops at its next step
        else:
            self._end_cancelled(job)
        return job

    def resume(self, job_id: str) -> Job:
        """Queue a failed, cancelled or interrupted job again, from its last checkpoint."""
        job = self.store.get_job(job_id)
        job = self._requeue(job, front=False, reason="resumed")
        self._submitted.add(job_id)
        self._wake.set()
        return job

    def delete(self, job_id: str) -> None:
        """Remove the job, its progress rows and its files (refused while it trains). On a disk
        too full to record the deletion, the files go first to make room."""
        try:
            self.store.delete_job(job_id)
        except StorageFullError:
            if self.store.get_job(job_id).state in ACTIVE_STATES:
                raise
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
            self.store.delete_job(job_id)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        self._job_lock_path(job_id).unlink(missing_ok=True)

    def tune_again(self, job_id: str, **changes) -> Job:
        """A new job with the same dataset, base model and settings except ``changes``: any
        JobRequest field (display_name, ...), ``config``, or TuningConfig fields (epochs=2)."""
        job = self.store.get_job(job_id)
        request = JobRequest(job.display_name, job.description, job.base_model,
                             job.dataset_version_id, job.config, job.eval_dataset_version_id)
        request_names = {f.name for f in fields(JobRequest)}
        config_names = {f.name for f in fields(TuningConfig)}
        unknown = set(changes) - request_names - config_names
        if unknown:
            raise TypeError(f"tune_again() got unknown settings: {', '.join(sorted(unknown))}")
        request = replace(request, **{k: v for k, v in changes.items() if k in request_names})
        config_changes = {k: v for k, v in changes.items() if k in config_names}
        if config_changes:
            config = TuningConfig.from_dict({**request.config.to_dict(), **config_changes})
            request = replace(request, config=config)
        return self.submit(request)

    def wait(self, job_id: str, timeout_s: float, poll_s: float = 0.1) -> Job:
        """The job once it is succeeded, failed or cancelled; TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.store.get_job(job_id)
            if job.state in FINAL_STATES:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout_s} s")
            time.sleep(poll_s)

    def job_dir(self, job_id: str) -> Path:
        """The job's result folder: the trainer's output folder and the files beside it."""
        return tuned_dir(self.data_dir, job_id)

    # ---- the thread ----

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._record_pending()
                    ran = self._run_next()
                except StorageFullError as error:  # wait for room; no traceback every second
                    log.warning("the job runner waits for disk space: %s", error)
                    ran = False
                except Exception:  # keep the runner alive: a database hiccup must not end it
                    log.exception("the job runner failed to start a job; retrying")
                    ran = False
                if not ran:
                    self._wake.wait(self.poll_interval_s)
                    self._wake.clear()
        finally:
            self.store.close()

    def _run_next(self) -> bool:
        """Run the next queued job if this device is free; False when there was none to run.
        The job's lock is taken before the job is marked running, so a studio starting at that
        moment never mistakes it for a job whose process died."""
        among = None if self.scope == "all" else set(self._submitted)
        job = self.store.next_queued_job(among) if among is None or among else None
        if job is None:
            return False
        device = FileLock(lock_file(self.data_dir, f"device-{self.device or 'auto'}"))
        with device, FileLock(self._job_lock_path(job.id)) as job_lock:
            if not device.acquire() or not job_lock.acquire():
                return False  # another process trains on this device, or took this job
            try:
                job = self.store.change_job_state(job.id, "start", owner=self._owner)
            except (IllegalTransition, NotFoundError):  # cancelled, claimed or deleted meanwhile
                return True
            self.current_job_id = job.id
            try:
                self._run(job)
            finally:
                self.current_job_id = None
                self._cancel_requested.discard(job.id)
        return True

    def _run(self, job: Job) -> None:
        stop = StopCheck(self.store, job.id,
                         lambda: self._stopping.is_set() or job.id in self._cancel_requested)
        try:
            result = self._train(job, stop)
        except Exception as error:
            failure = failure_of(error, self.data_dir)
            trace = getattr(error, "trace", "") or traceback.format_exc().rstrip()
            self._record(lambda: self._fail(job.id, failure, trace))
        else:
            self._record(lambda: self._finish(job.id, result))

    def _record(self, write: Callable[[], None]) -> None:
        """Write a job's outcome; when the disk is too full even for that, keep it and write it
        as soon as there is room again (the runner retries every poll interval)."""
        try:
            write()
        except StorageFullError as error:
            log.error("%s; the job's outcome is written when there is room again", error)
            self._unrecorded.append(write)

    def _record_pending(self) -> None:
        while self._unrecorded:
            write = self._unrecorded[0]
            write()  # StorageFullError: still no room, try again at the next poll
            self._unrecorded.pop(0)

    def _train(self, job: Job, stop: StopCheck) -> TrainResult:
        """Train in a worker process (``training.jobs.worker``), or in this thread with the
        ``train_fn`` given to the runner."""
        if self._train_fn is not None:
            return train_job(self.store, self.data_dir, job, stop, self._train_fn, self.device)
        return self._train_in_worker(job)

    def _stopped_early(self, job_id: str) -> TrainResult:
        """A worker stopped (cancel, studio stop) before it wrote an outcome, e.g. while still
        loading: stopped at its last recorded step, with its last checkpoint if any."""
        job = self.store.get_job(job_id)
        adapter = checkpoint_adapter(job.path(self.data_dir, job.checkpoint_dir))
        return TrainResult("stopped", job.completed_steps, adapter)

    def _train_in_worker(self, job: Job) -> TrainResult:
        """Start the job's worker group with torchrun and watch it: SIGTERM when the studio
        stops (it stops at the next step); its outcome file, or the way it died, when it ends."""
        folder = self.job_dir(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        outcome = folder / OUTCOME_FILE
        outcome.unlink(missing_ok=True)
        with open(folder / WORKER_LOG, "ab") as output:
            process = subprocess.Popen(
                worker_command(self.data_dir, job.id, self.device,
                               processes_per_node(job.config.processes, self.device), self.nodes),
                stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, cwd=REPO, env=worker_env(),
                start_new_session=True, preexec_fn=die_with_parent)
        self._worker = process
        signalled = False
        try:
            while process.poll() is None:
                if self._stopping.is_set() and not signalled:
                    signal_group(process, signal.SIGTERM)
                    signalled = True
                self._stopping.wait(WATCH_INTERVAL_S)
        finally:
            self._worker = None
        result, trace = read_outcome(outcome, self.data_dir)
        outcome.unlink(missing_ok=True)
        if isinstance(result, TrainResult):
            return result
        if result is None and (signalled or job.id in self._cancel_requested):
            return self._stopped_early(job.id)  # told to stop before it could say so itself
        if result is None:
            result = worker_death(process.returncode, folder / WORKER_LOG)
        result.trace = trace
        raise result

    def _finish(self, job_id: str, result: TrainResult) -> None:
        adapter = relative_to(self.data_dir, result.adapter_dir) if result.adapter_dir else None
        state = self.store.get_job(job_id).state
        if result.status != "stopped":
            self.store.change_job_state(job_id, "finish", result_dir=adapter, partial=False,
                                        final_loss=result.final_loss)
            self.store.log(job_id, "log.finished", step=result.last_step)
        elif state == "cancelling":
            job = self.store.change_job_state(job_id, "cancelled", result_dir=adapter,
                                              partial=adapter is not None, final_loss=None)
            self._log_cancelled(job, result.last_step)
        else:  # the runner is stopping with the studio
            self.store.change_job_state(job_id, "interrupt")
            self.store.log(job_id, "log.interrupted", step=result.last_step)

    def _fail(self, job_id: str, failure: StudioError, trace: str) -> None:
        message = english(failure.key, **failure.params) if failure.key else str(failure)
        log.warning("job %s failed: %s\n%s", job_id, message, trace)
        with self.store.transaction():
            self.store.append_log(job_id, trace)
            self.store.log(job_id, "log.failed", message=message, cause=failure.key,
                           cause_params=failure.params)
            self.store.change_job_state(job_id, "fail", error=message)

    # ---- helpers ----

    def _requeue(self, job: Job, *, front: bool, reason: Literal["resumed", "restarted"]) -> Job:
        """Queue ``job`` again from its last checkpoint: drop the progress rows and checkpoint
        folders after it (those steps run again) and say so in the log (``reason``: the user
        resumed it, or the studio restarted)."""
        step, epoch, had_checkpoint = job.checkpoint_step or 0, job.checkpoint_epoch, job.checkpoint_dir
        with self.store.transaction():
            job = self.store.requeue_job(job.id, front=front, result_dir=None, partial=False,
                                         final_loss=None, error="")
            self.store.truncate_metrics_after(job.id, step)
            if had_checkpoint:
                self.store.log(job.id, f"log.{reason}_checkpoint", epoch=epoch, step=step)
            else:
                self.store.log(job.id, f"log.{reason}_start")
        self._remove_checkpoints_after(job.id, job.checkpoint_epoch or 0)
        return job

    def _remove_checkpoints_after(self, job_id: str, epoch: int) -> None:
        """Checkpoints newer than the recorded one (the process died between writing one and
        recording it) would be written again: remove them first."""
        for number, folder in checkpoint_folders(self.job_dir(job_id)).items():
            if number > epoch:
                shutil.rmtree(folder, ignore_errors=True)

    def _end_cancelled(self, job: Job) -> None:
        """Label a job that became cancelled without its trainer (queued, interrupted, or its
        studio died while cancelling): the last checkpoint, if any, is its partial model."""
        adapter = checkpoint_adapter(job.path(self.data_dir, job.checkpoint_dir))
        if adapter is not None:
            self.store.update_job(job.id, partial=True,
                                  result_dir=relative_to(self.data_dir, adapter))
            job = self.store.get_job(job.id)
        self._log_cancelled(job, None)

    def _log_cancelled(self, job: Job, step: int | None) -> None:
        key = "log.cancelled_partial" if job.partial else "log.cancelled_empty"
        at = {} if step is None else {"at": step}
        checkpoint = dict(epoch=job.checkpoint_epoch, step=job.checkpoint_step) if job.partial else {}
        self.store.log(job.id, key + ("_at" if at else ""), **at, **checkpoint)

    def _job_lock_path(self, job_id: str) -> Path:
        return lock_file(self.data_dir, f"job-{job_id}")
